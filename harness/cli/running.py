"""Running a command's jobs: the pool its options choose, live progress, and interrupts kept."""

from __future__ import annotations

from harness.cli import progress
from harness.errors import RayUnavailable, UsageError
from harness.execution import ray_executor, runner
from harness.jobs import Interrupted, Job, Outcome
from harness.plugins import Registry


def pool(
    executor: str, address: str | None, timeout: float, parallel: int, isolate: bool, first=None
) -> runner.Pool:
    """Where isolated jobs run: children here (``local``) or Ray tasks on a cluster (``ray``).
    ``first``: the local children's start order (`runner.LocalPool`)."""
    if address and executor != "ray":
        raise UsageError("--address names a Ray cluster: use it with --executor ray")
    if executor != "ray":
        return runner.LocalPool(timeout, parallel, first)
    if not isolate:
        raise UsageError("--executor ray runs every job isolated on a node: leave out --no-isolate")
    try:
        return ray_executor.RayPool(timeout, address)
    except RayUnavailable as exc:
        raise UsageError(str(exc)) from None


def run_with_progress(
    jobs: list[Job],
    registry: Registry,
    jobs_pool: runner.Pool,
    *,
    isolate: bool,
    quiet: bool,
    on_result=None,
    on_stop=None,
    stream: bool = False,
) -> tuple[list[Outcome], Interrupted | None]:
    """(outcomes, the interrupt or None): the jobs run with live progress on a terminal."""
    display = progress.Display(progress.Display.wanted(quiet, stream))

    def listener(outcome: Outcome, event: tuple) -> None:
        display(outcome, event)
        if event[0] == "result" and on_result:
            on_result(event[1])
        elif event[0] == "stop" and on_stop:
            on_stop(outcome)

    with display:
        try:
            return runner.run_jobs(jobs, registry, jobs_pool, isolate=isolate, listener=listener), None
        except Interrupted as exc:
            return exc.outcomes, exc
        except RayUnavailable as exc:
            raise UsageError(str(exc)) from None
