"""Progress bars for long steps (rich, on stderr), silent when disabled."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")


@contextmanager
def steps(total: int | None, description: str, *, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """A progress bar for ``total`` steps; call the yielded function after each one."""
    if not enabled:
        yield lambda: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def progress(
    items: Iterable[T], *, total: int | None = None, description: str = "", enabled: bool = True
) -> Iterator[T]:
    """Iterate ``items`` with a progress bar when ``enabled``."""
    with steps(total, description, enabled=enabled) as advance:
        for item in items:
            yield item
            advance()
