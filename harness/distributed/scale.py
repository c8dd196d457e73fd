"""Distributed gradients: the ``logistic`` loss's value and gradient with the data sharded over a
world of devices or processes, on each framework's own engine, validated and then timed.

``python -m harness scale`` runs one world (an engine at a world size, a size and a dtype) per
`harness.execution.runner` job. Engines (`ENGINES`):

- ``jax.sharding``: one process and a `jax.sharding.Mesh` of ``world`` devices (on a machine
  without GPUs, XLA's forced host devices: ``--xla_force_host_platform_device_count``, set in
  that process's environment only). The inputs are sharded along N with a `NamedSharding`;
  under `jax.jit`, `jax.value_and_grad` of a loss in which `jax.shard_map` gives each device its
  shard's sum and ``lax.psum`` adds them up. W and b are replicated, so the gradient's all-reduce
  is that psum's transpose: the sum of the shards' gradients.
- ``jax.distributed``: one process per shard, joined by `jax.distributed.initialize` (the
  coordinator on 127.0.0.1, a free port), one device each (a GPU each, by
  ``CUDA_VISIBLE_DEVICES``, where there are GPUs); the same jitted function over the global
  mesh, each process supplying its own rows.
- ``torch.distributed``: one process per rank with the variables ``torchrun`` sets
  (``MASTER_ADDR`` 127.0.0.1, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``), gloo on CPU and NCCL
  on GPU. Each rank's autograd gradient of its shard, then one ``all_reduce`` (sum) of
  ``[value, dW, db]``. On CPU each rank gets ``cores // world`` threads (at least 1).

The reduction: the harness's logistic loss is a *sum* over the N rows (`problems.logistic_loss`),
so the world's value and gradient are the sums of the shards'; nothing is divided by N or by the
world size. Shards are equal: N must split evenly over every world size.

Where the processes run: the runner gives each world to a child interpreter that leads its own
process group. That child (`launch`) computes the reference, starts the world's processes
(``python -m harness.distributed.scale FOLDER RANK``) in the same group and reports one `Record`. A process
that exits early ends the world at once with an ``error`` record naming it; one that hangs (in a
collective, say) is ended by the runner's time limit, which kills the whole group, ranks and all.

The protocol of one world:

- data: seeded blocks of `BLOCK` rows (`rows`), so each process makes only its own rows and every
  world size sees the same N x D data (not `problems.synthetic_args`' draw, which makes all N rows
  at once);
- validated first: the first call's value and gradient against the single-device float64 closed
  form (`problems.logistic_gradient` on the data rounded to the dtype) with
  `harness.validation.tolerances.agrees`: the dtype's tolerance plus the slack of the summed
  magnitudes, as the
  ``logistic`` problem's checks allow;
- then timed, only if it agreed: rounds and iterations calibrated on a warm step to fill
  `BUDGET_S` (at least `MIN_ROUNDS` rounds), the same on every process, then
  `harness.benchmark.timing.measure`; the times are rank 0's. A step ends when the reduced value and
  gradient are ready on every device of rank 0, after the collective, so it waits for the slowest
  rank.

Test-only variables (the planted faults of ``tests/test_scale.py``): `FAULT_ENV` makes the world
wrong (``mean``: the shards' mean instead of their sum; ``drop``: shard 1 left out) or makes
process 1 (the only one, for ``jax.sharding``) die (``exit``) or hang (``hang``) before its first
collective; `PIDS_ENV` names a file each process appends ``RANK PID PGID`` to.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from harness import machine, problems
from harness.results import runs

ENGINES = {"jax": ("jax.sharding", "jax.distributed"), "torch": ("torch.distributed",)}
"""Each framework's distributed engines, by backend name."""
ENGINE_NAMES = tuple(e for engines in ENGINES.values() for e in engines)
SCALINGS = ("strong", "weak")
"""strong: the same N x D at every world size; weak: N x D per process (world x N rows in all)."""
BUDGET_S = 1.0
"""Seconds of timed steps per world (at least `MIN_ROUNDS` rounds, at most 1000)."""
MIN_ROUNDS = 20
BLOCK = 4096
"""Rows per seeded block of data."""
SEED = 0
POLL_S = 0.05
FAULT_ENV = "HARNESS_SCALE_FAULT"
PIDS_ENV = "HARNESS_SCALE_PIDS"
FAULTS = ("mean", "drop", "exit", "hang")
STATUSES = ("pass", "fail", "error")
SPEC_FILE, REFERENCE_FILE, RESULT_FILE = "spec.json", "reference.npz", "result.pkl"


# --- The data and the reference ------------------------------------------------------------------


def weights(d: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) in float64: W scaled so that the logits stay O(1)."""
    rng = np.random.default_rng([seed, d])
    return rng.standard_normal(d) / np.sqrt(d), np.array(rng.standard_normal())


def rows(start: int, stop: int, W: np.ndarray, b: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, ...]:
    """Rows ``start:stop`` of the seeded data, float64 (inputs, 0/1 targets), whatever the world:
    block k of `BLOCK` rows comes from its own generator."""
    d = W.shape[0]
    if stop <= start:
        return np.zeros((0, d)), np.zeros(0)
    inputs, targets = [], []
    for k in range(start // BLOCK, (stop - 1) // BLOCK + 1):
        rng = np.random.default_rng([seed, d, k])
        x = rng.standard_normal((BLOCK, d))
        t = (rng.random(BLOCK) < problems.sigmoid(np, x @ W + b)).astype(np.float64)
        lo, hi = max(start - k * BLOCK, 0), min(stop - k * BLOCK, BLOCK)
        inputs.append(x[lo:hi])
        targets.append(t[lo:hi])
    return np.concatenate(inputs), np.concatenate(targets)


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` as the dtype holds it, back in float64: what the reference is computed on."""
    return np.asarray(a, dtype=dtype).astype(np.float64)


def reference(size: tuple[int, int], dtype: str, seed: int = SEED) -> dict[str, np.ndarray]:
    """The single-device float64 closed form over all N rows, a block at a time: the value, the
    flat gradient ``[dW, db]`` and the summed |terms| behind each (`problems.logistic_magnitude`)."""
    n, d = size
    W, b = weights(d, seed)
    W64, b64 = rounded(W, dtype), rounded(b, dtype)
    value = magnitude_value = 0.0
    gradient, magnitude = np.zeros(d + 1), np.zeros(d + 1)
    for start in range(0, n, BLOCK):
        x, t = rows(start, min(start + BLOCK, n), W, b, seed)
        x, t = rounded(x, dtype), rounded(t, dtype)
        value += float(problems.logistic_loss(np, W64, b64, x, t))
        dW, db = problems.logistic_gradient(W64, b64, x, t)
        mW, mb = problems.logistic_magnitude(W64, b64, x, t)
        gradient += np.append(dW, db)
        magnitude += np.append(mW, mb)
    magnitude_value = value  # every term -log(p) is 0 or more
    return {
        "value": np.array(value),
        "gradient": gradient,
        "magnitude_value": np.array(magnitude_value),
        "magnitude": magnitude,
    }


# --- Records ----------------------------------------------------------------------------------------


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


def shape(engine: str, world: int) -> tuple[int, int]:
    """(processes, devices) of a world."""
    return (1 if engine == "jax.sharding" else world), world


def select(registry, backends: list[str] | None, engines: list[str] | None) -> tuple[list, list[str]]:
    """(backend entries, engines): ``engines`` (default: every engine of the chosen backends) of
    ``backends`` (default: those of ``engines``, else those of ``$HARNESS_BACKENDS`` or the
    registry that have one). `harness.plugins.UsageError` for a name that is unknown, or named
    and without an engine."""
    from harness.plugins import UsageError

    if backends is None and engines:
        backends = list(dict.fromkeys(b for b, own in ENGINES.items() for e in engines if e in own))
    entries = list({e.name: e for e in registry.select_backends(backends)}.values())
    without = [e.name for e in entries if e.name not in ENGINES]
    if without and backends is not None:
        raise UsageError(
            f"{', '.join(without)} {'has' if len(without) == 1 else 'have'} no distributed engine; "
            f"scale runs {', '.join(ENGINES)}"
        )
    entries = [e for e in entries if e.name in ENGINES]
    offered = [e for entry in entries for e in ENGINES[entry.name]]
    stray = [e for e in engines or () if e not in offered]
    if stray:
        raise UsageError(
            f"engine {', '.join(stray)} is not one of the chosen backends' ({', '.join(offered) or 'none'})"
        )
    return entries, [e for e in offered if not engines or e in engines]


def jobs(entries, engines, worlds, size, scalings, dtypes) -> list:
    """One `harness.execution.runner.Job` per world: scaling, backend, engine, dtype, world size in turn.
    `harness.plugins.UsageError` when strong scaling cannot split N evenly over a world size."""
    from harness.execution.runner import Job
    from harness.plugins import UsageError

    n, d = size
    uneven = [w for w in worlds if n % w] if "strong" in scalings else []
    if uneven:
        raise UsageError(
            f"N = {n} does not split evenly over world size {', '.join(map(str, uneven))}: "
            "strong scaling gives every process N / world rows; choose N divisible by each"
        )
    return [
        Job(
            "scale",
            entry.name,
            dtypes=(dtype,),
            engine=engine,
            world=world,
            size=(n * world if scaling == "weak" else n, d),
            scaling=scaling,
        )
        for scaling in scalings
        for entry in entries
        for engine in ENGINES[entry.name]
        if engine in engines
        for dtype in dtypes
        for world in worlds
    ]


def records(outcomes, registry) -> list[Record]:
    """Each world's `Record` in plan order, an ``error`` one where it stopped early (speedups filled
    in); worlds an interrupt kept from starting or finishing are left out."""
    found = []
    for outcome in outcomes:
        if outcome.results:
            found += outcome.results
        elif outcome.failure:
            version = registry.backends[outcome.job.backend].version
            found.append(failed_record(outcome.job, version, *outcome.failure, outcome.seconds))
    add_speedups(found)
    return found


def _identity(job, version: str | None, device: str) -> dict:
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


def failed_record(job, version: str | None, classification: str, message: str, seconds: float) -> Record:
    """The ``error`` record of a world that did not finish."""
    return Record(
        **_identity(job, version, "-"),
        status="error",
        classification=classification,
        seconds=round(seconds, 3),
        message=message,
    )


# --- The launcher (in the runner's child) -------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(engine: str, world: int, rank: int, port: int, gpus: int) -> dict[str, str]:
    """Process ``rank``'s environment: the forced host device count for JAX (one device per
    process for ``jax.distributed``, and one GPU each where there are GPUs and no
    ``CUDA_VISIBLE_DEVICES``), torchrun's variables for torch."""
    env = dict(os.environ)
    if engine.startswith("jax."):
        count = world if engine == "jax.sharding" else 1
        flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "", env.get("XLA_FLAGS", ""))
        env["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={count}".strip()
        if engine == "jax.distributed" and gpus and "CUDA_VISIBLE_DEVICES" not in env:
            env["CUDA_VISIBLE_DEVICES"] = str(rank % gpus)
    else:
        env.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank),
            LOCAL_WORLD_SIZE=str(world),
        )
    return env


def launch(job, version: str | None, emit) -> None:
    """Run one world (a `harness.execution.runner.Job` of kind ``scale``) and emit its `Record`.

    Its processes join this process's group, so the runner's kill at the time limit ends them
    too; whatever happens, they are killed before this returns.
    """
    started = time.monotonic()
    engine, world, size, dtype = job.engine, job.world, tuple(job.size), job.dtypes[0]
    processes, devices = shape(engine, world)
    emit(("total", 1))
    emit(("current", f"{engine} world {world} {'x'.join(map(str, size))} {dtype}: reference"))
    with tempfile.TemporaryDirectory(prefix="harness-scale-") as name:
        folder = Path(name)
        np.savez(folder / REFERENCE_FILE, **reference(size, dtype))
        port, gpus = free_port(), len(machine.gpus())
        spec = {"engine": engine, "world": world, "size": list(size), "dtype": dtype, "port": port}
        (folder / SPEC_FILE).write_text(json.dumps(spec))
        emit(("current", f"{engine} world {world} {'x'.join(map(str, size))} {dtype}"))
        procs = []
        try:
            for rank in range(processes):
                with open(folder / f"rank-{rank}.out", "wb") as out:
                    procs.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "harness.distributed.scale", str(folder), str(rank)],
                            env=_environment(engine, world, rank, port, gpus),
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    )
            died = _wait(procs)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        seconds = time.monotonic() - started
        if died:
            rank, code = died
            emit(
                (
                    "result",
                    failed_record(job, version, "crash", _died(folder, rank, code, processes), seconds),
                )
            )
        else:
            outcome = pickle.loads((folder / RESULT_FILE).read_bytes())
            emit(("result", _record(job, version, outcome, seconds)))
    emit(("advance",))


def _wait(procs: list[subprocess.Popen]) -> tuple[int, int] | None:
    """Wait until every process has exited; (rank, exit code) of the first to fail, if one does."""
    while True:
        codes = [p.poll() for p in procs]
        failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            return failed[0]
        if all(code == 0 for code in codes):
            return None
        time.sleep(POLL_S)


def _died(folder: Path, rank: int, code: int, processes: int) -> str:
    how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
    lines = (folder / f"rank-{rank}.out").read_text(errors="replace").strip().splitlines()
    tail = " | ".join(lines[-3:]) or "no output"
    others = "; the others were killed" if processes > 1 else ""
    return f"process {rank} of {processes} {how} before the world finished{others}: {tail}"


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _record(job, version: str | None, outcome: dict, seconds: float) -> Record:
    times = outcome["times"]
    return Record(
        **_identity(job, version, outcome["device"]),
        status="pass" if outcome["ok"] else "fail",
        classification=None if outcome["ok"] else outcome["classification"],
        max_rel_err=outcome["max_rel_err"],
        tolerance=outcome["tolerance"],
        first_call_s=outcome["first_call_s"],
        median_s=float(np.median(times)) if times else None,
        seconds=round(seconds, 3),
        message="" if outcome["ok"] else f"{outcome['classification']}: not timed",
        times=times,
        iterations=outcome["iterations"],
    )


# --- The world's processes --------------------------------------------------------------------------


def _fault() -> str | None:
    fault = os.environ.get(FAULT_ENV) or None
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"${FAULT_ENV} is {fault!r}; use one of {', '.join(FAULTS)}")
    return fault


def _crash_or_hang(fault: str | None, rank: int, processes: int) -> None:
    """The planted process faults: process 1 (or the only one) dies or hangs."""
    if rank != min(1, processes - 1):
        return
    if fault == "exit":
        os._exit(3)
    if fault == "hang":
        while True:
            time.sleep(60)


def _validate(value, gradient, dtype: str, folder: Path) -> dict:
    """Rank 0's verdict on the first call against the reference the launcher wrote."""
    from harness.validation import tolerances

    ref = np.load(folder / REFERENCE_FILE)
    value_ok = tolerances.agrees(value, ref["value"], dtype, 0, ref["magnitude_value"])
    gradient_ok = tolerances.agrees(gradient, ref["gradient"], dtype, 1, ref["magnitude"])
    bad = [what for what, ok in (("value", value_ok), ("gradient", gradient_ok)) if not ok]
    return {
        "ok": not bad,
        "classification": f"wrong {' and '.join(bad)}" if bad else None,
        "max_rel_err": max(
            tolerances.relative_error(value, ref["value"]),
            tolerances.relative_error(gradient, ref["gradient"]),
        ),
        "tolerance": tolerances.tolerance(dtype, 1),
    }


def worker(folder: Path, rank: int) -> int:
    """One process of a world: compute, validate (rank 0), time, write the result (rank 0)."""
    spec = json.loads((folder / SPEC_FILE).read_text())
    if os.environ.get(PIDS_ENV):
        with open(os.environ[PIDS_ENV], "a") as fh:
            fh.write(f"{rank} {os.getpid()} {os.getpgid(0)}\n")
    engine, world, dtype = spec["engine"], spec["world"], spec["dtype"]
    n, d = spec["size"]
    fault = _fault()
    processes, _ = shape(engine, world)
    _crash_or_hang(fault, rank, processes)
    run = _torch_world if engine == "torch.distributed" else _jax_world
    outcome = run(engine, world, rank, (n, d), dtype, fault, folder)
    if rank == 0:
        tmp = folder / f".{RESULT_FILE}.tmp"
        tmp.write_bytes(pickle.dumps(outcome))
        tmp.rename(folder / RESULT_FILE)
    return 0


def _first_and_timed(step, to_numpy, share, dtype: str, folder: Path, rank: int) -> dict:
    """The first call, validated on rank 0; then, if it agreed, the steps timed on every process.

    ``share(x)`` is rank 0's number ``x`` on every process (a broadcast): the verdict, and the
    warm step's time that sets rounds and iterations as `harness.benchmark.timing.calibrate` would, so that
    every process runs the same number of steps (each step is a collective).
    """
    from harness.benchmark import timing

    started = time.perf_counter()
    flat = to_numpy(step())
    first = time.perf_counter() - started
    outcome = _validate(flat[0], flat[1:], dtype, folder) if rank == 0 else {"ok": False}
    if not share(1.0 if outcome["ok"] else 0.0):
        return {**outcome, "first_call_s": first, "times": None, "iterations": 0}
    started = time.perf_counter()
    step()
    once = max(share(time.perf_counter() - started), 1e-9)
    iterations = max(1, int(1e-4 / once))
    rounds = int(min(max(BUDGET_S / (once * iterations), MIN_ROUNDS), 1000))
    times = timing.measure(step, rounds, iterations)
    return {**outcome, "first_call_s": first, "times": times, "iterations": iterations}


def _jax_world(engine: str, world: int, rank: int, size, dtype: str, fault, folder: Path) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    if engine == "jax.distributed":
        spec = json.loads((folder / SPEC_FILE).read_text())
        jax.distributed.initialize(f"127.0.0.1:{spec['port']}", num_processes=world, process_id=rank)
        by_process = {d.process_index: d for d in reversed(jax.devices())}
        chosen = [by_process[p] for p in range(world)]  # the first device of each process
    else:
        chosen = jax.devices()[:world]
        if len(chosen) < world:
            raise RuntimeError(f"world {world} needs {world} devices; jax has {len(jax.devices())}")
    from jax import lax
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    try:
        from jax import shard_map
    except ImportError:  # jax before 0.6
        from jax.experimental.shard_map import shard_map
    jnp = jax.numpy
    mesh = Mesh(np.array(chosen), ("data",))
    n, d = size
    W, b = weights(d)
    if engine == "jax.distributed":
        share = n // world
        x, t = rows(rank * share, (rank + 1) * share, W, b)
    else:
        x, t = rows(0, n, W, b)

    def put(a, spec, shape):
        a = np.asarray(a, dtype=dtype)
        sharding = NamedSharding(mesh, spec)
        if engine == "jax.distributed":
            return jax.make_array_from_process_local_data(sharding, a, shape)
        return jax.device_put(a, sharding)

    args = (
        put(W, P(), (d,)),
        put(b, P(), ()),
        put(x, P("data"), (n, d)),
        put(t, P("data"), (n,)),
    )

    def shard_sum(W, b, x, t):  # on each device: its shard's sum, then the sum over the devices
        local = problems.logistic_loss(jnp, W, b, x, t)
        if fault == "drop":
            local = jnp.where(lax.axis_index("data") == 1, jnp.zeros_like(local), local)
        return lax.pmean(local, "data") if fault == "mean" else lax.psum(local, "data")

    spread = shard_map(shard_sum, mesh=mesh, in_specs=(P(), P(), P("data"), P("data")), out_specs=P())
    # The gradient's all-reduce is the transpose of the psum (W and b are replicated).
    compiled = jax.jit(jax.value_and_grad(spread, argnums=(0, 1)))

    def step():
        return jax.block_until_ready(compiled(*args))

    def to_numpy(result):
        value, (dW, db) = result
        return np.concatenate([np.asarray(a, np.float64).reshape(-1) for a in (value, dW, db)])

    def share(x: float) -> float:
        if engine != "jax.distributed":
            return x
        from jax.experimental import multihost_utils

        return float(multihost_utils.broadcast_one_to_all(np.array(x, np.float64)))

    outcome = _first_and_timed(step, to_numpy, share, dtype, folder, rank)
    outcome["device"] = chosen[0].platform.replace("gpu", "cuda")
    if engine == "jax.distributed":
        jax.distributed.shutdown()
    return outcome


def _torch_world(engine: str, world: int, rank: int, size, dtype: str, fault, folder: Path) -> dict:
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if cuda:
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    n, d = size
    W64, b64 = weights(d)
    share = n // world
    x, t = rows(rank * share, (rank + 1) * share, W64, b64)
    kind = getattr(torch, dtype)
    x, t = (torch.as_tensor(a, dtype=kind, device=device) for a in (x, t))
    W = torch.as_tensor(W64, dtype=kind, device=device).requires_grad_()
    b = torch.as_tensor(b64, dtype=kind, device=device).requires_grad_()

    def step():
        W.grad = b.grad = None
        value = problems.logistic_loss(torch, W, b, x, t)
        value.backward()
        flat = torch.cat([value.detach().reshape(1), W.grad, b.grad.reshape(1)])
        if fault == "drop" and rank == 1:
            flat.zero_()
        dist.all_reduce(flat)  # the sum of the shards' sums
        if fault == "mean":
            flat /= world
        if cuda:
            torch.cuda.synchronize(device)
        return flat

    def share(x: float) -> float:
        number = torch.tensor([x], dtype=torch.float64, device=device)
        dist.broadcast(number, src=0)
        return float(number.item())

    def to_numpy(flat):
        return flat.detach().cpu().double().numpy()

    outcome = _first_and_timed(step, to_numpy, share, dtype, folder, rank)
    outcome["device"] = device.type
    dist.destroy_process_group()
    return outcome


if __name__ == "__main__":
    sys.exit(worker(Path(sys.argv[1]), int(sys.argv[2])))
