"""Flower run-config values (TOML or ``--run-config`` strings, ints, floats, bools) to a config field's type."""

from __future__ import annotations

from cxr_fedsynth.common.errors import ConfigError


def coerce_run_config_value(key: str, value: object, kind: type) -> object:
    """``value`` as ``kind``; a value that is not one (a float that is not whole for an int, ...) raises ConfigError."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"run config {key} must be a {kind.__name__} (got {value!r} of type {type(value).__name__})")
