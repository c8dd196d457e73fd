"""The execution layer: run jobs in child processes (or here) with time limits, interrupts and
progress, and keep everything they finished.

A *job* (`Job`) is one backend's validation plan or benchmark plan, or one world
of `harness.distributed.scale`, as data: the backend's name and what to run, by name. `run` gives each
job to a child
interpreter (``python -m harness.execution.runner FOLDER PARENT_PID``) when the backend
and problems can be loaded from entry points, else runs it in this process.
With ``executor="ray"`` the children run on the nodes of a Ray cluster instead
(`harness.execution.ray_executor`), one Ray task per job, each through this same machinery there.
Either way the job reports through the same function, `execute`, as *events*:

- ``("total", n)``, ``("current", label)``, ``("advance",)``: progress;
- ``("result", item)``: a `harness.validation.checks.Check`, or a benchmark entry;
- ``("log", line)``: a line for the user; ``("machine", info)``: where it ran;
- ``("error", message)``: the job failed outside any check; ``("end",)``: it finished.

Guarantees, each tested in ``tests/test_runner.py``:

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import machine, plugins
from harness.benchmark import timing
from harness.hookspecs import DTYPES
from harness.plugins import Registry
from harness.validation import checks

POLL_S = 0.05
"""How often the parent reads its children's events and checks their time limits."""
JOB_FILE, EVENTS_FILE, OUTPUT_FILE = "job.json", "events", "output"


@dataclass(frozen=True)
class Job:
    """One backend's plan. ``kind`` ``validate``: the `harness.validation.checks.Plan` fields by name
    (``None``: everything the backend offers); ``benchmark``: a `harness.benchmark.timing.PROFILES` name;
    ``scale``: one world of `harness.distributed.scale` (``engine``, ``world``, global ``size``, ``scaling``,
    the dtype in ``dtypes``)."""

    kind: str
    backend: str
    problems: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = DTYPES
    modes: tuple[str, ...] | None = None
    strategies: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    orders: tuple[int, ...] | None = None
    profile: str = "quick"
    engine: str | None = None
    world: int = 1
    size: tuple[int, ...] = ()
    scaling: str = "strong"

    @property
    def noun(self) -> str:
        return {"validate": "check", "scale": "record"}.get(self.kind, "benchmark")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> Job:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in record.items()})


@dataclass
class Outcome:
    """What a job produced: its results in order, and why it stopped early, if it did."""

    job: Job
    results: list = field(default_factory=list)
    machine: dict | None = None
    failure: tuple[str, str] | None = None
    """(classification, message): ``timeout``, ``crash`` or ``exception``."""
    finished: bool = False
    seconds: float = 0.0
    node: str | None = None
    """Where a Ray task ran the job (host, node id, worker pid); ``None`` here."""

    def finished_text(self) -> str:
        return f"{len(self.results)} {self.job.noun}(s) had finished and are kept"


Listener = Callable[[Outcome, tuple], None]


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped the run; ``outcomes`` holds what had finished.

    A `BaseException`, so that no ``except Exception`` in a check swallows it."""

    def __init__(self, signum: int, outcomes: list[Outcome] | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.outcomes = outcomes or []

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def execute(job: Job, registry: Registry, emit: Callable[[tuple], None]) -> None:
    """Run ``job`` in this process, reporting through ``emit`` (the same in a child and here)."""
    entry = registry.backends[job.backend]
    try:
        if job.kind == "validate":
            plan = checks.Plan(
                [entry],
                registry.select_problems(job.problems),
                job.dtypes,
                job.modes,
                job.strategies,
                job.devices,
                job.orders,
            )
            for check in checks.backend_checks(entry, plan, emit):
                emit(("result", check))
        elif job.kind == "scale":
            from harness.distributed import scale

            scale.launch(job, entry.version, emit)
        else:
            spec = timing.PROFILES[job.profile]
            emit(("machine", machine.info()))
            found = timing.cases([entry], job.profile, registered=registry.problems.values())
            emit(("total", len(found)))
            for case in found:
                emit(("current", case.name))
                timed = timing.bench(
                    case,
                    spec["budget"],
                    spec.get("min_rounds", timing.MIN_ROUNDS),
                    log=lambda line: emit(("log", line)),
                )
                if timed is not None:
                    emit(("result", timed))
                emit(("advance",))
    except Exception as exc:  # a fault outside any check: the job's, not the run's
        emit(("error", f"{type(exc).__name__}: {exc}"))
        return
    emit(("end",))


def run(
    jobs: list[Job],
    registry: Registry,
    *,
    isolate: bool = True,
    timeout: float = 3600.0,
    parallel: int = 1,
    listener: Listener | None = None,
    executor: str = "local",
    address: str | None = None,
) -> list[Outcome]:
    """Every job's outcome, in the order given.

    Jobs a child can load run in children (``parallel`` at a time, each killed after
    ``timeout`` seconds) when ``isolate``; the rest run here first. ``executor``
    ``"ray"``: those children run on the nodes of a Ray cluster instead, one Ray task per
    job (`harness.execution.ray_executor.Pool`: as many at once as the cluster has room for, benchmark
    jobs in turn on one node; ``address`` of the cluster, else Ray's default; raises
    `harness.execution.ray_executor.RayUnavailable` where Ray cannot take the jobs).
    ``listener`` sees every event as it arrives. Raises `Interrupted` on SIGINT or
    SIGTERM, every child and its helpers already ended.
    """
    outcomes = [Outcome(job) for job in jobs]
    away = [o for o in outcomes if isolate and _portable(o.job, registry)]
    listen = listener or (lambda outcome, event: None)
    if executor == "ray":
        from harness.execution import ray_executor

        pool: Any = ray_executor.Pool(timeout, listen, address)
    else:
        pool = _Pool(timeout, parallel, listen)
    try:
        with _sigterm_raises():
            for outcome in outcomes:
                if outcome not in away:
                    _run_here(outcome, registry, listen)
            pool.run(away)
    except KeyboardInterrupt:
        raise Interrupted(signal.SIGINT, outcomes) from None
    except Interrupted as exc:
        raise Interrupted(exc.signum, outcomes) from None
    finally:
        with _signals_ignored():  # a second Ctrl-C must not stop the cleanup
            pool.close()
    return outcomes


def _portable(job: Job, registry: Registry) -> bool:
    """Whether a child interpreter finds the job's backend and problems (entry points, built-ins)."""
    if job.kind == "scale":  # no problem of the registry's: the built-in logistic loss
        return registry.portable(registry.backends[job.backend], ())
    chosen = (
        registry.select_problems(job.problems) if job.kind == "validate" else registry.problems.values()
    )  # a benchmark times plugin problems too
    return registry.portable(registry.backends[job.backend], chosen)


def record(outcome: Outcome, event: tuple, listen: Listener) -> None:
    kind = event[0]
    if kind == "result":
        outcome.results.append(event[1])
    elif kind == "machine":
        outcome.machine = event[1]
    elif kind == "error":
        outcome.failure = ("exception", f"{event[1]}; {outcome.finished_text()}")
    elif kind == "end":
        outcome.finished = True
    listen(outcome, event)


def _run_here(outcome: Outcome, registry: Registry, listen: Listener) -> None:
    started = time.monotonic()
    listen(outcome, ("start",))
    execute(outcome.job, registry, lambda event: record(outcome, event, listen))
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
                [sys.executable, "-m", "harness.execution.runner", str(folder), str(os.getpid())],
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
            record(self.outcome, event, listen)

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


class _Pool:
    """Children side by side, ``parallel`` at a time, each within ``timeout`` seconds."""

    def __init__(self, timeout: float, parallel: int, listen: Listener):
        self.timeout, self.parallel, self.listen = timeout, max(1, parallel), listen
        self.live: list[_Child] = []
        self.folder: tempfile.TemporaryDirectory | None = None

    def run(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        self.folder = tempfile.TemporaryDirectory(prefix="harness-jobs-")
        pending = list(enumerate(outcomes))
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


# --- The child's side -------------------------------------------------------------------------------


def child(folder: Path, parent: int) -> int:
    """Run the job in ``folder``, writing length-prefixed pickled events to its events file."""
    threading.Thread(target=_end_with_parent, args=(parent,), daemon=True).start()
    job = Job.from_json(json.loads((folder / JOB_FILE).read_text()))
    registry = plugins.load()
    with open(folder / EVENTS_FILE, "ab") as out:

        def emit(event: tuple[Any, ...]) -> None:
            data = pickle.dumps(event, protocol=pickle.HIGHEST_PROTOCOL)
            out.write(len(data).to_bytes(8, "little") + data)
            out.flush()

        execute(job, registry, emit)
    return 0


def _end_with_parent(parent: int) -> None:
    """If the parent dies (even by SIGKILL), end this process group: no orphans."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.killpg(0, signal.SIGKILL)


if __name__ == "__main__":
    from harness.execution.runner import (
        child as _child,  # the importable copy: pickles name harness.execution.runner
    )

    sys.exit(_child(Path(sys.argv[1]), int(sys.argv[2])))
