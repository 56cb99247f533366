"""The demo's stages: one progress bar each (with an ETA), their times, and a closing summary.

Why: the demo's first stage trains the base model for minutes; without a bar the command
looks hung. Bars go to stderr (stdout carries the results table or the JSON) and only
when the caller asks for them: the CLI shows them on a terminal and never with ``--json``.
Every stage is timed and recorded whether or not bars are shown, so ``results.json`` and
the closing table say which models were reused and where the time went.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class StageRecord:
    stage: str
    seconds: float
    result: str  # "trained", "reused" or "evaluated"


class Stage:
    """The running stage: its bar moves with ``update``; ``result`` goes into its record."""

    def __init__(self, progress, task, result: str):
        self._progress, self._task, self.result = progress, task, result

    def update(self, completed: int, total: int | None = None) -> None:
        self._progress.update(self._task, completed=completed, total=total)

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)


class Stages:
    """Context manager around the whole run; ``stage(name)`` around each stage."""

    def __init__(self, show_progress: bool = False, console=None):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.records: list[StageRecord] = []
        self._started = time.perf_counter()
        # stdout is not redirected through the bar: it belongs to the results.
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[result]}"),
            console=console or Console(stderr=True), disable=not show_progress,
            redirect_stdout=False, redirect_stderr=False,
        )

    def __enter__(self) -> Stages:
        self._started = time.perf_counter()
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    @contextlib.contextmanager
    def stage(self, name: str, result: str, total: int | None = None) -> Iterator[Stage]:
        """Time the body as stage ``name``; its bar starts at 0 of ``total`` (None: not known yet)."""
        task = self._progress.add_task(name, total=total, result="")
        handle = Stage(self._progress, task, result)
        t0 = time.perf_counter()
        yield handle
        seconds = time.perf_counter() - t0
        total = next(t.total for t in self._progress.tasks if t.id == task) or 1  # a reused stage: 1 of 1
        self._progress.update(task, total=total, completed=total, result=handle.result)
        self.records.append(StageRecord(name, round(seconds, 1), handle.result))

    @property
    def total_seconds(self) -> float:
        return round(time.perf_counter() - self._started, 1)

    def summary(self) -> dict:
        """``{"stages": [{stage, seconds, result}, ...], "total_s": wall time of the run}``."""
        return {"stages": [asdict(r) for r in self.records], "total_s": self.total_seconds}


def render_stages(summary: dict) -> str:
    """The closing table: stage, time, trained/reused/evaluated, then the total."""
    rows = summary["stages"]
    width = max([len("total"), *(len(r["stage"]) for r in rows)]) + 2
    lines = [f"{'stage':<{width}}{'time':>9}  result"]
    lines += [f"{r['stage']:<{width}}{r['seconds']:>8.1f}s  {r['result']}" for r in rows]
    lines.append(f"{'total':<{width}}{summary['total_s']:>8.1f}s")
    return "\n".join(lines)
