"""Progress bars for long jobs (rich), sharing the console with the log handler so lines don't collide.

with progress_bar("pseudo-label", total=len(videos)) as bar:
    for video in videos:
        ...
        bar.advance()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["ProgressBar", "progress_bar"]


class ProgressBar:
    def __init__(self, progress: Progress | None, task: int | None):
        self._progress, self._task = progress, task

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, steps)

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)


@contextmanager
def progress_bar(
    description: str, total: int | None, completed: int = 0, enabled: bool = True
) -> Iterator[ProgressBar]:
    """A bar with count, elapsed time and ETA; a no-op when ``enabled`` is False."""
    if not enabled:
        yield ProgressBar(None, None)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=completed)
        yield ProgressBar(progress, task)
