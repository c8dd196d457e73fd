"""A job's kind to its workload: validation checks, benchmark cases, or one distributed world.

`execute` runs a job in this process, the same in a child interpreter, on a Ray node or here,
reporting through ``emit`` (events: `harness.jobs`). `portable` says whether a child interpreter
can load the job again from entry points.
"""

from __future__ import annotations

from collections.abc import Callable

from harness import machine, threads
from harness.benchmark import cases, measure
from harness.distributed.launch import launch_world
from harness.jobs import Job
from harness.plugins import BackendEntry, Registry
from harness.validation import checks

Emit = Callable[[tuple], None]


def _validate(job: Job, entry: BackendEntry, registry: Registry, emit: Emit) -> None:
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


def _benchmark(job: Job, entry: BackendEntry, registry: Registry, emit: Emit) -> None:
    spec = cases.PROFILES[job.profile]
    threads.apply(job.threads)  # in a child, applied before the framework was imported (child.main)
    before, info = machine.state(), machine.info()
    emit(("machine", {**info, "threads_requested": job.threads, "state_before": before}))
    found = cases.cases([entry], job.profile, registered=registry.problems.values())
    emit(("total", len(found)))
    for case in found:
        emit(("current", case.name))
        timed = measure.bench(
            case,
            spec["budget"] / job.passes,
            -(-spec.get("min_rounds", measure.MIN_ROUNDS) // job.passes),  # pooled: at least the profile's
            log=lambda line: emit(("log", line)),
        )
        if timed is not None:
            emit(("result", timed))
        emit(("advance",))
    emit(("machine", {**info, "threads_requested": job.threads, **machine.around(before)}))


def _scale(job: Job, entry: BackendEntry, registry: Registry, emit: Emit) -> None:
    launch_world(job, entry.version, emit)


WORKLOADS: dict[str, Callable[[Job, BackendEntry, Registry, Emit], None]] = {
    "validate": _validate,
    "benchmark": _benchmark,
    "scale": _scale,
}


def execute(job: Job, registry: Registry, emit: Emit) -> None:
    """Run ``job`` in this process, reporting through ``emit`` (the same in a child and here)."""
    entry = registry.backends[job.backend]
    try:
        WORKLOADS[job.kind](job, entry, registry, emit)
    except Exception as exc:  # a fault outside any check: the job's, not the run's
        emit(("error", f"{type(exc).__name__}: {exc}"))
        return
    emit(("end",))


def portable(job: Job, registry: Registry) -> bool:
    """Whether a child interpreter finds the job's backend and problems (entry points, built-ins)."""
    if job.kind == "scale":  # no problem of the registry's: the built-in logistic loss
        return registry.portable(registry.backends[job.backend], ())
    chosen = (
        registry.select_problems(job.problems) if job.kind == "validate" else registry.problems.values()
    )  # a benchmark times plugin problems too
    return registry.portable(registry.backends[job.backend], chosen)
