"""Live progress of running jobs on a terminal, with rich: one line per backend.

Each line shows cases done of the total, elapsed time, an estimate of the time
left and what is running now (problem, strategy, order). Off when stderr is not
a terminal or with ``--quiet``: then nothing is drawn and lines for the user
(`Display.log`) go to stderr as plain text. Progress never touches stdout, so
``--format json`` and ``jsonl`` output stays clean.
"""

from __future__ import annotations

import sys

from harness.jobs import Outcome


class Display:
    """A `harness.jobs.Listener` that draws progress; a context manager around the run."""

    def __init__(self, enabled: bool):
        self.progress = None
        self.tasks: dict[int, int] = {}
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description:>10}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[current]}", markup=False),
                console=Console(stderr=True),
                redirect_stdout=False,
                redirect_stderr=False,
            )

    @staticmethod
    def wanted(quiet: bool, stdout_stream: bool = False) -> bool:
        """Draw only on a terminal, unless quiet or streaming records to the same terminal."""
        return not quiet and sys.stderr.isatty() and not (stdout_stream and sys.stdout.isatty())

    def __enter__(self) -> Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def log(self, line: str) -> None:
        if self.progress is not None:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def __call__(self, outcome: Outcome, event: tuple) -> None:
        kind = event[0]
        if kind == "log":
            self.log(event[1])
        if self.progress is None:
            return
        key = id(outcome)
        if kind == "start":
            job = outcome.job
            label = f"{job.backend} {job.dtypes[0]}" if len(job.dtypes) == 1 else job.backend
            self.tasks[key] = self.progress.add_task(label, total=None, current="starting")
            return
        task = self.tasks.get(key)
        if task is None:
            return
        if kind == "total":
            self.progress.update(task, total=event[1])
        elif kind == "current":
            self.progress.update(task, current=event[1])
        elif kind == "advance":
            self.progress.advance(task)
        elif kind == "stop":
            what = (
                f"{outcome.failure[0]}"
                if outcome.failure
                else f"done: {len(outcome.results)} {outcome.job.noun}s"
            )
            total = self.progress.tasks[task].total
            self.progress.update(task, current=what, total=total if total is not None else 1)
            self.progress.stop_task(task)
