"""Jobs as Ray tasks: the local runner's isolation, on whichever node of a Ray cluster has room.

Each job becomes one Ray task that runs it exactly as the local executor does, through
`harness.execution.runner.run_jobs` on that node: a child interpreter leading its own process group, the
same time limit, the same crash and timeout classifications, the same pickled events. The
task returns those events, and the driver replays them into the job's `Outcome`, so a run
gives the same checks on a cluster as here. What Ray adds is placement: a job asks for one
CPU, and one GPU when it names a ``cuda`` device (that node's GPUs then stay visible to it,
so ``cuda:N`` means what it means locally); jobs are spread over the nodes. A job that no
node of the cluster could ever take (a GPU where there is none) is refused before any runs,
rather than left waiting.

`RayPool` has the local pool's interface (`run`, then `close` in any case), so `runner.run_jobs`
drives either the same way. Events arrive when a job ends, not as they happen (progress
advances per job). An interrupt cancels every task still running (the runner on its node
ends the job's process group, as it does here) and keeps what finished. Every node needs
the same installation as the driver (the harness, the backends and their frameworks), or a
Ray ``runtime_env`` that provides it.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness import problem_files
from harness.errors import RayUnavailable
from harness.execution import runner
from harness.jobs import Interrupted, Job, Listener, Outcome, fold_event

INSTALL_HINT = "pip install 'gradient-harness[ray]'"
POLL_S = 0.2
CANCEL_S = 20.0
"""How long an interrupted task may take to end its job's processes before its worker is killed."""
PROBE_S = 10.0
"""How long `_probe` waits for a connection, and then for the server's first bytes."""
NO_RENUMBERING = {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}
"""Ray hides every GPU but the ones it assigns and renumbers them from 0; a job naming
``cuda:N`` keeps the node's numbering instead (Ray still counts the GPU as taken)."""


class RayPool:
    """The jobs given to `run` as Ray tasks on the cluster at ``address`` (``None``: Ray's
    default, a local instance unless one is found, connected here and left by `close`).

    How many jobs run at once is Ray's to decide from each task's resources (a CPU each: what
    the local pool's ``parallel`` guards). Benchmark jobs are the exception: they run in turn,
    all on the node the first one ran on, so that a run's timings come from one machine with
    nothing beside them, as `compare` times them here."""

    def __init__(self, timeout: float, address: str | None):
        self.ray = _ray()  # a missing Ray is a usage error before anything runs
        self.timeout, self.address = timeout, address
        self.listen: Listener = lambda outcome, event: None
        self.pending: dict[Any, Any] = {}
        self.connected_here = False

    def run(self, outcomes: list[Outcome], listen: Listener) -> None:
        """Run each outcome's job as a Ray task and fill the outcome in as the task ends."""
        self.listen = listen
        if not outcomes:
            return
        with _sigterm_noted() as sigterm:
            ray = self.ray
            if not ray.is_initialized():
                _connect(ray, self.address)
                self.connected_here = True
            _check_placeable(ray, outcomes, self.address)
            task = ray.remote(_job_on_a_node)
            in_turn = all(o.job.kind == "benchmark" for o in outcomes)
            queue, node = list(outcomes), None  # node: where jobs in turn run, once one ran
            while (queue or self.pending) and not sigterm:
                while queue and not (in_turn and self.pending):
                    outcome = queue.pop(0)
                    self.listen(outcome, ("start",))
                    placed = task.options(**_options(outcome.job, node))
                    self.pending[placed.remote(outcome.job.to_json(), self.timeout)] = outcome
                done, _ = ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
                for ref in done:
                    ran_on = _finish(ray, self.pending.pop(ref), ref, self.listen)
                    if in_turn and node is None:
                        node = ran_on
            if sigterm:
                raise Interrupted(signal.SIGTERM)

    def close(self) -> None:
        """Cancel the tasks still running (an interrupt: what finished is kept), then leave
        the cluster, or shut down the local instance started here.

        A running task is first interrupted (KeyboardInterrupt in its worker), so that the
        runner there kills its job's process group as it does here; only a task still running
        after `CANCEL_S` has its worker killed. Killing the worker at once would not do: Ray
        then kills the worker's child, the job's process, and nothing kills the rest of that
        process's group (a helper it started); that remains the risk for a task that does not
        answer the interrupt in time (stuck in native code)."""
        refs = list(self.pending)
        if refs:
            for ref in refs:
                self.ray.cancel(ref)
            _, running = self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_S)
            for ref in running:
                self.ray.cancel(ref, force=True)
            for outcome in self.pending.values():
                self.listen(outcome, ("stop",))
        self.pending = {}
        if self.connected_here:
            self.ray.shutdown()
            self.connected_here = False


@contextmanager
def _sigterm_noted() -> Iterator[list]:
    """SIGTERM noted in the list yielded, for `RayPool.run` to raise between Ray calls: Ray runs
    signal handlers inside ``ray.wait``, and turns an exception they raise (other than
    KeyboardInterrupt) into a SystemError."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: noted.append(signum))
    try:
        yield noted
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt here, which is how Ray interrupts a task it cancels
    (`RayPool.close`). A node started where SIGINT is ignored (by a script's ``ray start &``, a
    service manager) hands that on to its workers, and Python then never raises it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _connect(ray, address: str | None) -> None:
    """Join the cluster at ``address`` (host:port, or ``auto``), else Ray's default: the
    cluster at $RAY_ADDRESS, or one that ``ray start`` started on this machine, or a new local
    instance."""
    named = address or os.environ.get("RAY_ADDRESS")
    if named and named not in ("auto", "local"):
        _probe(named, "--address" if address else "RAY_ADDRESS")
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {named}" if named else "here"
        raise RayUnavailable(f"Ray could not start or join a cluster {where}: {_first_line(exc)}") from None
    finally:
        # ray.init makes SIGTERM exit the process at once; the runner's own handler keeps
        # what finished, as it does locally.
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)


def _probe(address: str, source: str) -> None:
    """Fail fast unless a Ray head answers at ``address``: ``ray.init`` retries an address
    with nothing there, or with something else there, for many minutes. A head's GCS is a
    gRPC (HTTP/2) server, so it answers a client's connection preface with a SETTINGS frame."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        raise RayUnavailable(
            f"{source} {address!r} is not the head node's HOST:PORT (its GCS port, 6379 unless "
            "'ray start --head --port' said otherwise) or 'auto'"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_S) as conn:
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
            header = b""
            while len(header) < 9:
                chunk = conn.recv(9 - len(header))
                if not chunk:
                    break
                header += chunk
    except OSError as exc:
        raise RayUnavailable(
            f"no Ray cluster at {address} ({source}): {exc.strerror or exc or 'no answer'} "
            f"({_instead(source)})"
        ) from None
    if len(header) < 9 or header[3] != 4:  # a frame's type is its fourth byte; 4: SETTINGS
        raise RayUnavailable(
            f"no Ray cluster at {address} ({source}): something answers there, but not a Ray "
            f"head node's GCS (is the port the one 'ray start --head' printed? {_instead(source)})"
        )


def _instead(source: str) -> str:
    unset = "leave out --address" if source == "--address" else "unset RAY_ADDRESS"
    return f"start a head with 'ray start --head', or {unset} for a local Ray instance"


def _demand(job) -> dict[str, int]:
    gpu = any(d.startswith("cuda") for d in job.devices or ())
    return {"CPU": 1, "GPU": 1 if gpu else 0}


def _options(job, node: str | None) -> dict[str, Any]:
    """The task's resources and placement: spread over the nodes, or on ``node`` (by id)."""
    demand = _demand(job)
    options: dict[str, Any] = {"num_cpus": demand["CPU"], "num_gpus": demand["GPU"], "max_retries": 0}
    if node is None:
        options["scheduling_strategy"] = "SPREAD"
    else:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    if demand["GPU"]:
        options["runtime_env"] = {"env_vars": NO_RENUMBERING}
    return options


def _check_placeable(ray, outcomes: list, address: str | None) -> None:
    """Refuse the run if some job asks for more than any live node has: Ray would keep that
    task waiting forever."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for outcome in outcomes:
        demand = _demand(outcome.job)
        if any(all(node.get(r, 0) >= n for r, n in demand.items()) for node in nodes):
            continue
        job = outcome.job
        wanted = " and ".join(f"{n} {r}" for r, n in demand.items() if n)
        offered = (
            "; ".join(", ".join(f"{node.get(r, 0):g} {r}" for r in demand) for node in nodes)
            or "no live node"
        )
        devices = f" on {', '.join(job.devices)}" if job.devices else ""
        raise RayUnavailable(
            f"{job.backend}{devices} needs {wanted} on one node, and no node of the Ray cluster "
            f"{'at ' + address if address else 'started here'} has that (its nodes: {offered}); "
            "start a node that has it ('ray start --address HEAD:PORT --num-gpus N' on a GPU "
            "machine), or leave out the devices it lacks"
        )


def _finish(ray, outcome, ref, listen) -> str | None:
    """Fill ``outcome`` in from its task's report: the id of the node it ran on, if known."""
    try:
        report = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # the task itself raised, outside the job
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        why = f"{type(cause).__name__}: {_first_line(cause)}"
        outcome.failure = ("exception", f"the Ray task raised {why}; {outcome.finished_text()}")
        listen(outcome, ("stop",))
        return None
    except ray.exceptions.RayError as exc:  # the task's worker died, or its node was lost
        outcome.failure = ("crash", f"the Ray task died: {_first_line(exc)}; {outcome.finished_text()}")
        listen(outcome, ("stop",))
        return None
    for event in report["events"]:
        fold_event(outcome, event, listen)
    outcome.failure = report["failure"]
    outcome.finished = report["finished"]
    outcome.seconds = report["seconds"]
    outcome.node = report["node"]
    listen(outcome, ("stop",))
    return report["node_id"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _job_on_a_node(job: dict, timeout: float) -> dict:
    """The Ray task: one job through the local executor on this node; its events and end."""
    import ray

    events: list[tuple] = []

    def keep(outcome, event: tuple) -> None:
        if event[0] not in ("start", "stop"):  # the driver's listener gets its own
            events.append(event)

    node_id = ray.get_runtime_context().get_node_id()
    node = f"{socket.gethostname()} {node_id[:12]} pid {os.getpid()}"
    chosen = Job.from_json(job)
    registry = problem_files.registry_with(chosen.problem_files)
    if chosen.backend in registry.backends:
        with _interruptible():
            (outcome,) = runner.run_jobs([chosen], registry, runner.LocalPool(timeout), listener=keep)
    else:  # a node installed differently from the driver
        outcome = Outcome(chosen)
        outcome.failure = (
            "exception",
            f"backend {chosen.backend} is not installed on Ray node {node}: every node needs the "
            f"driver's installation; {outcome.finished_text()}",
        )
    return {
        "events": events,
        "failure": outcome.failure,
        "finished": outcome.finished,
        "seconds": outcome.seconds,
        "node": node,
        "node_id": node_id,
    }
