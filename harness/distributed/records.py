"""What ``python -m harness scale`` reports: each world's `Record`, its JSON form and its
pytest-benchmark entry for a saved run (`harness.results.runs`), and the speedups against world 1.

A world's status is ``pass`` (its first call agreed with the reference, then it was timed),
``fail`` (validated and wrong: not timed) or ``error`` (it did not finish: a process died, it hung
past the time limit, or an exception).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from harness.distributed.plan import shape
from harness.jobs import Job
from harness.results import runs

STATUSES = ("pass", "fail", "error")


@dataclass
class Record:
    """One world's outcome; a JSON record of ``scale`` (`to_json`)."""

    backend: str
    version: str | None
    engine: str
    scaling: str
    world: int
    processes: int
    devices: int
    device: str
    size: list[int]
    """The global N x D (weak scaling: world times the rows per process)."""
    dtype: str
    status: str
    """pass, fail (validated and wrong: not timed) or error (it did not finish)."""
    classification: str | None = None
    """fail: ``wrong value``, ``wrong gradient`` or both; error: ``crash``, ``timeout`` or ``exception``."""
    max_rel_err: float | None = None
    tolerance: float | None = None
    first_call_s: float | None = None
    median_s: float | None = None
    speedup: float | None = None
    """Throughput (rows per second) over that of world 1 of the same engine, scaling and dtype."""
    efficiency: float | None = None
    """Speedup over world size (1: perfect)."""
    seconds: float | None = None
    message: str = ""
    times: list[float] | None = field(default=None, repr=False)
    """Rank 0's seconds per step in each timed round (in the saved run, not in the JSON record)."""
    iterations: int = field(default=1, repr=False)
    """Steps per timed round."""

    def to_json(self) -> dict:
        """Strict JSON data: no times, and each non-finite number as ``null``."""
        record = asdict(self)
        record.pop("times")
        record.pop("iterations")
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}

    @property
    def group(self) -> str:
        """The saved run's group: one problem, scaling, size and world, every engine side by side."""
        n, d = self.size
        if self.scaling == "weak":
            return f"logistic value+grad weak scaling {n // self.world}x{d} per process, world {self.world}"
        return f"logistic value+grad strong scaling {n}x{d}, world {self.world}"

    def benchmark(self) -> dict:
        """The timed record as a pytest-benchmark entry with the harness fields (`harness.results.runs`)."""
        n, d = self.size
        itemsize = np.dtype(self.dtype).itemsize
        name = f"{self.group} | {self.backend} {self.engine} reverse {self.dtype} {self.device}"
        return runs.entry(
            self.group,
            name,
            {
                "backend": self.backend,
                "version": self.version,
                "device": self.device,
                "dtype": self.dtype,
                "mode": self.engine,
                "strategy": "reverse",
                "problem": "logistic",
                "size": list(self.size),
                "order": 1,
                "engine": self.engine,
                "scaling": self.scaling,
                "world": self.world,
                "processes": self.processes,
                "devices": self.devices,
                "bytes": 2.0 * n * d * itemsize,  # problems.logistic_cost: the inputs read twice
                "flops": 4.0 * n * d,
                "first_call_s": self.first_call_s,
                "validated": True,
                "validation": "single-device float64 closed form",
                "validation_error": self.max_rel_err,
                "speedup": self.speedup,
                "efficiency": self.efficiency,
            },
            self.times or (),
            self.iterations,
        )


def add_speedups(found: list[Record]) -> None:
    """Fill in each timed record's speedup and efficiency against world 1 of its engine, scaling and
    dtype (left ``None`` where world 1 was not timed)."""
    base = {
        (r.backend, r.engine, r.scaling, r.dtype): r.median_s
        for r in found
        if r.world == 1 and r.median_s is not None
    }
    for r in found:
        t1 = base.get((r.backend, r.engine, r.scaling, r.dtype))
        if t1 is not None and r.median_s is not None:
            r.speedup = runs.speedup(t1, r.median_s, r.world, r.scaling)
            r.efficiency = r.speedup / r.world


def world_records(outcomes, registry) -> list[Record]:
    """Each world's `Record` in plan order, an ``error`` one where it stopped early (speedups filled
    in); worlds an interrupt kept from starting or finishing are left out."""
    found = []
    for outcome in outcomes:
        if outcome.results:
            found += outcome.results
        elif outcome.failure:
            version = registry.backends[outcome.job.backend].version
            classification, message = outcome.failure
            found.append(failed_record(outcome.job, version, classification, message, outcome.seconds))
    add_speedups(found)
    return found


def _identity(job: Job, version: str | None, device: str) -> dict:
    """The fields that say which world a record is about, from its job."""
    processes, devices = shape(job.engine, job.world)
    return {
        "backend": job.backend,
        "version": version,
        "engine": job.engine,
        "scaling": job.scaling,
        "world": job.world,
        "processes": processes,
        "devices": devices,
        "device": device,
        "size": list(job.size),
        "dtype": job.dtypes[0],
    }


def failed_record(job: Job, version: str | None, classification: str, message: str, seconds: float) -> Record:
    """The ``error`` record of a world that did not finish."""
    return Record(
        **_identity(job, version, "-"),
        status="error",
        classification=classification,
        seconds=round(seconds, 3),
        message=message,
    )


def finished_record(job: Job, version: str | None, result: dict, seconds: float) -> Record:
    """The ``pass`` or ``fail`` record of a world from rank 0's result (`harness.distributed.worker`)."""
    times = result["times"]
    return Record(
        **_identity(job, version, result["device"]),
        status="pass" if result["ok"] else "fail",
        classification=None if result["ok"] else result["classification"],
        max_rel_err=result["max_rel_err"],
        tolerance=result["tolerance"],
        first_call_s=result["first_call_s"],
        median_s=float(np.median(times)) if times else None,
        seconds=round(seconds, 3),
        message="" if result["ok"] else f"{result['classification']}: not timed",
        times=times,
        iterations=result["iterations"],
    )
