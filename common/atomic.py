"""Write files so that a crash never leaves a half-written one: temp file in the same folder, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PUBLIC_MODE = 0o644
PRIVATE_MODE = 0o600


@contextmanager
def atomic_path(target: Path, *, private: bool = False, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    ``private``: the file is readable by its owner only (a site's cache and ledger); else 0644, as published
    artifacts are meant to be read. ``durable``: the file and its folder are fsynced, so a power cut right after
    the write cannot lose it (a privacy ledger).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, PRIVATE_MODE if private else PUBLIC_MODE)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if durable:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        if durable:
            folder = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_atomic(target: Path, writer: Callable[[Path], None], *, private: bool = False, durable: bool = False) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``target``."""
    with atomic_path(target, private=private, durable=durable) as tmp:
        writer(tmp)


def write_text_atomic(target: Path, text: str, *, private: bool = False, durable: bool = False) -> None:
    """Atomically write a text file."""
    write_atomic(target, lambda p: p.write_text(text, encoding="utf-8"), private=private, durable=durable)


def write_json_atomic(target: Path, data: object, *, private: bool = False, durable: bool = False) -> None:
    """Atomically write pretty-printed JSON."""
    write_text_atomic(target, json.dumps(data, indent=2, sort_keys=False) + "\n", private=private, durable=durable)
