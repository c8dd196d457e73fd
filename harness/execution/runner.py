"""Jobs in child processes here, with time limits, interrupts and progress, keeping everything
they finished.

`run_jobs` gives each job (`harness.jobs.Job`) to a child interpreter
(``python -m harness.execution.child FOLDER PARENT_PID``) when the backend and problems can be
loaded from entry points, else runs it in this process. The children run in a pool the caller
hands in: `LocalPool` (the default: child processes on this machine) or
`harness.execution.ray_executor.RayPool` (one Ray task per job, each through this same machinery
on its node). Either way every job reports through `harness.execution.kinds.execute`, as the
events described in `harness.jobs`.

Guarantees, each tested in ``tests/execution/test_runner.py``:

- **Same results either way.** A child pickles its events (full precision,
  every element), so a plan gives the same checks isolated or not.
- **Time limits hold.** Each child leads its own process group; at its time
  limit, and whenever it ends, the whole group is killed, helper processes and
  all. Events go to a file, not a pipe, so a helper that inherits the child's
  output cannot stall the parent.
- **Interrupts.** SIGINT and SIGTERM kill every child's group and raise
  `Interrupted`, which carries what finished. A child whose parent dies kills
  its own group.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

from harness.execution.child import EVENTS_FILE, JOB_FILE, OUTPUT_FILE
from harness.execution.kinds import execute, portable
from harness.jobs import Interrupted, Job, Listener, Outcome, fold_event
from harness.plugins import Registry

POLL_S = 0.05
"""How often the parent reads its children's events and checks their time limits."""


class Pool(Protocol):
    """Where `run_jobs` sends the jobs a child can load: `LocalPool` or
    `harness.execution.ray_executor.RayPool`."""

    def run(self, outcomes: list[Outcome], listen: Listener) -> None: ...

    def close(self) -> None:
        """End what still runs (an interrupt: keeping what it finished); always called."""


def run_jobs(
    jobs: list[Job],
    registry: Registry,
    pool: Pool | None = None,
    *,
    isolate: bool = True,
    listener: Listener | None = None,
) -> list[Outcome]:
    """Every job's outcome, in the order given.

    Jobs a child can load go to ``pool`` (default: a `LocalPool`, one child at a time within an
    hour each) when ``isolate``; the rest run here first. ``listener`` sees every event as it
    arrives. Raises `Interrupted` on SIGINT or SIGTERM, every child and its helpers already ended.
    """
    outcomes = [Outcome(job) for job in jobs]
    away = [o for o in outcomes if isolate and portable(o.job, registry)]
    listen = listener or (lambda outcome, event: None)
    pool = pool or LocalPool()
    try:
        with _sigterm_raises():
            for outcome in outcomes:
                if outcome not in away:
                    _run_here(outcome, registry, listen)
            pool.run(away, listen)
    except KeyboardInterrupt:
        raise Interrupted(signal.SIGINT, outcomes) from None
    except Interrupted as exc:
        raise Interrupted(exc.signum, outcomes) from None
    finally:
        with _signals_ignored():  # a second Ctrl-C must not stop the cleanup
            pool.close()
    return outcomes


def _run_here(outcome: Outcome, registry: Registry, listen: Listener) -> None:
    started = time.monotonic()
    listen(outcome, ("start",))
    execute(outcome.job, registry, lambda event: fold_event(outcome, event, listen))
    outcome.seconds = time.monotonic() - started
    listen(outcome, ("stop",))


class _Child:
    """One job in a child interpreter that leads its own process group."""

    def __init__(self, outcome: Outcome, folder: Path):
        self.outcome = outcome
        folder.mkdir()
        (folder / JOB_FILE).write_text(json.dumps(outcome.job.to_json()))
        (folder / EVENTS_FILE).touch()
        self.output_path = folder / OUTPUT_FILE
        with open(self.output_path, "wb") as output:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "harness.execution.child", str(folder), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.events = open(folder / EVENTS_FILE, "rb")  # noqa: SIM115 -- open while the child runs
        self.started = time.monotonic()
        self.timed_out = False

    def pump(self, listen: Listener) -> None:
        """Pass on every complete event the child has written so far."""
        while True:
            where = self.events.tell()
            header = self.events.read(8)
            size = int.from_bytes(header, "little") if len(header) == 8 else -1
            data = self.events.read(size) if size >= 0 else b""
            if size < 0 or len(data) < size:  # not written in full (yet, or ever)
                self.events.seek(where)
                return
            try:
                event = pickle.loads(data)
            except Exception:  # a damaged stream ends the reading, not the run
                self.events.seek(0, os.SEEK_END)
                return
            fold_event(self.outcome, event, listen)

    def kill(self) -> None:
        """End the child's process group (the child, and any helper it started)."""
        with suppress(ProcessLookupError, PermissionError):  # the group is gone already
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self, listen: Listener, timeout: float, interrupted: bool = False) -> None:
        self.kill()
        self.pump(listen)
        self.events.close()
        outcome = self.outcome
        outcome.seconds = time.monotonic() - self.started
        if outcome.failure is None and not outcome.finished and not interrupted:
            outcome.failure = self._failure(timeout)
        listen(outcome, ("stop",))

    def _failure(self, timeout: float) -> tuple[str, str]:
        kept = self.outcome.finished_text()
        if self.timed_out:
            return "timeout", (
                f"no result within {timeout:g} s: the backend's process group was killed; {kept}"
            )
        code = self.proc.returncode
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if name == "SIGKILL" else ""
            return "crash", f"the backend's process died with {name}{hint}; {kept}"
        lines = self.output_path.read_text(errors="replace").strip().splitlines()
        tail = " | ".join(lines[-3:]) or "no message"
        return "crash", f"the backend's process exited with code {code} before finishing: {tail}; {kept}"


class LocalPool:
    """Children on this machine side by side, ``parallel`` at a time, each killed after ``timeout``
    seconds. ``first``: a sort key for the order they start in (lowest first; default: as given);
    outcomes keep the order given either way."""

    def __init__(self, timeout: float = 3600.0, parallel: int = 1, first: Callable[[Job], Any] | None = None):
        self.timeout, self.parallel, self.first = timeout, max(1, parallel), first
        self.listen: Listener = lambda outcome, event: None
        self.live: list[_Child] = []
        self.folder: tempfile.TemporaryDirectory | None = None

    def run(self, outcomes: list[Outcome], listen: Listener) -> None:
        self.listen = listen
        if not outcomes:
            return
        self.folder = tempfile.TemporaryDirectory(prefix="harness-jobs-")
        pending = list(enumerate(outcomes))
        if self.first is not None:
            pending.sort(key=lambda item: self.first(item[1].job))  # stable: ties keep their order
        while pending or self.live:
            while pending and len(self.live) < self.parallel:
                index, outcome = pending.pop(0)
                self.listen(outcome, ("start",))
                self.live.append(_Child(outcome, Path(self.folder.name) / str(index)))
            for child in list(self.live):
                child.pump(self.listen)
                if child.proc.poll() is None and time.monotonic() - child.started > self.timeout:
                    child.timed_out = True
                if child.timed_out or child.proc.returncode is not None:
                    self.live.remove(child)
                    child.close(self.listen, self.timeout)
            time.sleep(POLL_S)

    def close(self) -> None:
        """Kill what still runs (an interrupt: keeping what it finished) and remove the job folders."""
        for child in self.live:
            child.close(self.listen, self.timeout, interrupted=True)
        self.live = []
        if self.folder is not None:
            self.folder.cleanup()


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While running: SIGTERM raises `Interrupted` (SIGINT raises KeyboardInterrupt already)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
