"""Condition sets: which classes the GAN is conditioned on, and how a multi-label row becomes one class.

Rule (documented in every YAML file): a row's findings are tested against the classes in ``priority``
order; the first class whose ``findings`` intersect the row's findings wins, ``"*"`` matches any row not
matched earlier, and a row that matches nothing is skipped (and counted) by the readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from cxr_fedsynth.common.errors import ConfigError

BUILTIN_SETS = ("coarse", "nih6", "nih14")
WILDCARD = "*"


def _normalise(text: str) -> str:
    return text.strip().lower().replace("_", " ").replace("-", " ")


@dataclass(frozen=True)
class ConditionClass:
    """One class: its name, the findings that select it, and folder-name aliases."""

    name: str
    findings: tuple[str, ...]
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConditionSet:
    """Classes with the multi-label rule; ``selected`` are the classes trained on (index = position).

    A subset still classifies with the full rule and then drops rows of unselected classes, so a
    ``Pneumonia|COVID-19`` row stays COVID-19 (and is skipped) when only No Finding and Pneumonia are kept.
    """

    name: str
    classes: tuple[ConditionClass, ...]
    priority: tuple[str, ...]
    selected: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.selected:
            object.__setattr__(self, "selected", tuple(c.name for c in self.classes))

    @property
    def names(self) -> list[str]:
        return list(self.selected)

    def __len__(self) -> int:
        return len(self.selected)

    def index(self, name: str) -> int:
        """Index of a selected class by exact name; raises ConfigError naming the valid choices."""
        if name not in self.selected:
            raise ConfigError(f"unknown condition {name!r} in set {self.name!r}; choose one of {self.names}")
        return self.selected.index(name)

    def _selected_index(self, name: str | None) -> int | None:
        return self.selected.index(name) if name in self.selected else None

    def classify(self, findings: list[str] | tuple[str, ...]) -> int | None:
        """Class index for a row's findings by the priority rule, or None when no selected class matches."""
        wanted = {_normalise(f) for f in findings if f.strip()}
        by_name = {c.name: c for c in self.classes}
        for name in self.priority:
            cls = by_name[name]
            if WILDCARD in cls.findings:
                if wanted:
                    return self._selected_index(name)
            elif wanted & {_normalise(f) for f in cls.findings}:
                return self._selected_index(name)
        return None

    def classify_folder(self, folder_name: str) -> int | None:
        """Class index for a class-folder name (matched on names and aliases, case-insensitively)."""
        key = _normalise(folder_name)
        for c in self.classes:
            if key == _normalise(c.name) or key in {_normalise(a) for a in c.aliases}:
                return self._selected_index(c.name)
        return None

    def subset(self, names: list[str]) -> "ConditionSet":
        """The same rule with only ``names`` selected (in the given order); unknown names raise ConfigError."""
        known = [c.name for c in self.classes]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise ConfigError(f"unknown condition(s) {unknown} for set {self.name!r}; choose from {known}")
        return ConditionSet(
            name=f"{self.name}:{','.join(names)}", classes=self.classes, priority=self.priority, selected=tuple(names)
        )


def parse_condition_set(data: object, *, source: str) -> ConditionSet:
    """Build a ConditionSet from parsed YAML, with errors that name ``source`` and the fix."""
    if not isinstance(data, dict) or "classes" not in data:
        raise ConfigError(f"{source}: a condition set needs a 'classes' list (see common/data/conditions/coarse.yaml)")
    classes = []
    for entry in data["classes"]:
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{source}: every class needs a 'name' (got {entry!r})")
        findings = entry.get("findings") or [entry["name"]]
        classes.append(
            ConditionClass(
                name=str(entry["name"]),
                findings=tuple(str(f) for f in findings),
                aliases=tuple(str(a) for a in entry.get("aliases", [])),
            )
        )
    names = [c.name for c in classes]
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"{source}: class names must be unique and non-empty (got {names})")
    priority = [str(p) for p in data.get("priority", names)]
    unknown = sorted(set(priority) - set(names))
    if unknown or sorted(priority) != sorted(names):
        raise ConfigError(
            f"{source}: 'priority' must list every class exactly once (unknown {unknown}, classes {names})"
        )
    return ConditionSet(name=str(data.get("name", Path(source).stem)), classes=tuple(classes), priority=tuple(priority))


def load_condition_set(spec: str) -> ConditionSet:
    """Load a built-in set by name (coarse, nih6, nih14) or a YAML file by path.

    ``spec`` may end in ``:A,B,C`` to keep only those classes, e.g. ``coarse:No Finding,Pneumonia``.
    """
    base, _, keep = spec.partition(":")
    if base in BUILTIN_SETS:
        text = resources.files("cxr_fedsynth.common.data.conditions").joinpath(f"{base}.yaml").read_text()
        source = f"built-in condition set {base!r}"
    else:
        path = Path(base)
        if not path.is_file():
            raise ConfigError(
                f"condition set {base!r} is neither a built-in set {list(BUILTIN_SETS)} nor an existing YAML file"
            )
        text, source = path.read_text(), str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from None
    cset = parse_condition_set(data, source=source)
    if keep:
        cset = cset.subset([n.strip() for n in keep.split(",") if n.strip()])
    return cset
