"""Jobs as Ray tasks: `harness.runner`'s isolation, on whichever node of a Ray cluster has room.

Each job becomes one Ray task that runs it exactly as the local executor does, through
`harness.runner.run` on that node: a child interpreter leading its own process group, the
same time limit, the same crash and timeout classifications, the same pickled events. The
task returns those events, and the driver replays them into the job's `Outcome`, so a run
gives the same checks on a cluster as here. What Ray adds is placement: a job asks for one
CPU, and one GPU when it names a ``cuda`` device (that node's GPUs then stay visible to it,
so ``cuda:N`` means what it means locally); jobs are spread over the nodes.

Events arrive when a job ends, not as they happen (progress advances per job). An interrupt
cancels every task still running (its worker is killed; the job's child ends with its parent)
and keeps what finished. Every node needs the same installation as the driver (the harness,
the backends and their frameworks), or a Ray ``runtime_env`` that provides it.
"""

from __future__ import annotations

import os
import socket
from typing import Any

INSTALL_HINT = "pip install 'gradient-harness[ray]'"
POLL_S = 0.2
NO_RENUMBERING = {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}
"""Ray hides every GPU but the ones it assigns and renumbers them from 0; a job naming
``cuda:N`` keeps the node's numbering instead (Ray still counts the GPU as taken)."""


class RayUnavailable(RuntimeError):
    """Ray is not installed, or no cluster answers at the address given."""


def run(outcomes: list, timeout: float, listen, address: str | None) -> None:
    """Run each outcome's job as a Ray task and fill the outcome in; see the module docstring."""
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        _connect(ray, address)
    task = ray.remote(_job_on_a_node)
    pending: dict[Any, Any] = {}
    try:
        for outcome in outcomes:
            gpu = any(d.startswith("cuda") for d in outcome.job.devices or ())
            options = {"num_cpus": 1, "num_gpus": 1 if gpu else 0, "max_retries": 0}
            options["scheduling_strategy"] = "SPREAD"
            if gpu:
                options["runtime_env"] = {"env_vars": NO_RENUMBERING}
            listen(outcome, ("start",))
            pending[task.options(**options).remote(outcome.job.to_json(), timeout)] = outcome
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in done:
                _finish(ray, pending.pop(ref), ref, listen)
    finally:
        for ref in pending:  # an interrupt: what still runs is cancelled, what finished is kept
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def _ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _connect(ray, address: str | None) -> None:
    """Join the cluster at ``address`` (host:port, or ``auto``), or start a local one."""
    if address and address != "auto":
        _reachable(address)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address}" if address else "here"
        raise RayUnavailable(
            f"no Ray cluster {where}: {str(exc).strip().splitlines()[0]} (start one with "
            "'ray start --head', or leave out --address for a local one)"
        ) from None


def _reachable(address: str, seconds: float = 10.0) -> None:
    """Fail fast where nothing listens at ``address``: ``ray.init`` retries such an address
    forever."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"--address {address!r} is not HOST:PORT (or 'auto')")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise RayUnavailable(
            f"no Ray cluster at {address}: {exc.strerror or exc} (start one with "
            "'ray start --head', or leave out --address for a local one)"
        ) from None


def _finish(ray, outcome, ref, listen) -> None:
    from harness import runner

    try:
        report = ray.get(ref)
    except ray.exceptions.RayError as exc:  # the task's worker died or the node was lost
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        outcome.failure = ("crash", f"the Ray task died: {first}; {outcome.finished_text()}")
        listen(outcome, ("stop",))
        return
    for event in report["events"]:
        runner.record(outcome, event, listen)
    outcome.failure = report["failure"]
    outcome.finished = report["finished"]
    outcome.seconds = report["seconds"]
    outcome.node = report["node"]
    listen(outcome, ("stop",))


def _job_on_a_node(job: dict, timeout: float) -> dict:
    """The Ray task: one job through the local executor on this node; its events and end."""
    import ray

    from harness import plugins, runner

    events: list[tuple] = []

    def keep(outcome, event: tuple) -> None:
        if event[0] not in ("start", "stop"):  # the driver's listener gets its own
            events.append(event)

    (outcome,) = runner.run(
        [runner.Job.from_json(job)], plugins.load(), isolate=True, timeout=timeout, listener=keep
    )
    node = f"{socket.gethostname()} {ray.get_runtime_context().get_node_id()[:12]} pid {os.getpid()}"
    return {
        "events": events,
        "failure": outcome.failure,
        "finished": outcome.finished,
        "seconds": outcome.seconds,
        "node": node,
    }
