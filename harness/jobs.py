"""The vocabulary every layer shares: a `Job` (what to run, as data), its `Outcome` (what it
produced), the events a job reports while it runs, and `Interrupted`.

A job reports through one function as *events*:

- ``("total", n)``, ``("current", label)``, ``("advance",)``: progress;
- ``("result", item)``: a `harness.validation.verdicts.Check`, or a benchmark entry;
- ``("log", line)``: a line for the user; ``("machine", info)``: where it ran;
- ``("error", message)``: the job failed outside any check; ``("end",)``: it finished.

An executor adds ``("start",)`` and ``("stop",)`` around each job for its listeners; `fold_event`
folds every event into the job's `Outcome`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from harness.hookspecs import DTYPES


@dataclass(frozen=True)
class Job:
    """One backend's plan. ``kind`` ``validate``: the `harness.validation.checks.Plan` fields by
    name (``None``: everything the backend offers); ``benchmark``: a profile name
    (`harness.benchmark.cases.PROFILES`); ``scale``: one world of `harness.distributed` (``engine``,
    ``world``, global ``size``, ``scaling``, the dtype in ``dtypes``); ``threads``: the intra-op
    threads every framework is given (``None``: its own choice)."""

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
    threads: int | None = None
    """Intra-op threads for every framework (`harness.threads`); ``None``: each its own choice."""
    passes: int = 1
    """A benchmark job is one of this many interleaved passes: its time budget and rounds are
    this share of the profile's (`harness.benchmark.measure.merge_passes` pools them)."""
    problem_files: tuple[str, ...] = ()
    """Problem files or ``module:attribute`` specs the job's registry loads (`harness.problem_files`)."""

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


def fold_event(outcome: Outcome, event: tuple, listen: Listener) -> None:
    """Fold ``event`` into ``outcome``, then pass it to ``listen``."""
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
