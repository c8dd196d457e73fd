"""One process (rank) of a world: ``python -m harness.distributed.worker FOLDER RANK``, started by
`harness.distributed.launch` with the world's spec and reference in ``FOLDER``
(`harness.distributed.folder`).

Each rank makes only its own rows (`harness.distributed.data`) on its engine
(`harness.distributed.plan`), then:

- validated first: the first call's value and gradient against the single-device float64 closed
  form (`harness.distributed.data.reference`) with `harness.validation.tolerances.agrees`: the
  dtype's tolerance plus the slack of the summed magnitudes, as the ``logistic`` problem's checks
  allow;
- then timed, only if it agreed: rounds and iterations calibrated on a warm step to fill
  `BUDGET_S` (at least `MIN_ROUNDS` rounds), the same on every process, then
  `harness.benchmark.measure.measure`; the times are rank 0's. A step ends when the reduced value and
  gradient are ready on every device of rank 0, after the collective, so it waits for the slowest
  rank.

Rank 0 writes the result. The planted faults of the tests (`harness.distributed.faults`) are chosen
before the step is built: the timed step has none.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from harness import problems
from harness.benchmark import measure
from harness.distributed import faults, folder
from harness.distributed.data import rows, weights
from harness.distributed.plan import shape
from harness.validation import tolerances

BUDGET_S = 1.0
"""Seconds of timed steps per world (at least `MIN_ROUNDS` rounds, at most 1000)."""
MIN_ROUNDS = 20


def run_rank(world_folder: Path, rank: int) -> int:
    """One process of a world: compute, validate (rank 0), time, write the result (rank 0)."""
    spec = folder.read_spec(world_folder)
    faults.note_pid(rank)
    engine, world, dtype, port = spec["engine"], spec["world"], spec["dtype"], spec["port"]
    n, d = spec["size"]
    fault = faults.planted()
    processes, _ = shape(engine, world)
    faults.crash_or_hang(fault, rank, processes)
    if engine == "torch.distributed":
        result = _torch_rank(world, rank, (n, d), dtype, fault, world_folder)
    else:
        result = _jax_rank(engine, world, rank, (n, d), dtype, port, fault, world_folder)
    if rank == 0:
        folder.write_result(world_folder, result)
    return 0


def verdict(value, gradient, dtype: str, reference) -> dict:
    """Rank 0's verdict on the first call against the reference the launcher wrote."""
    value_ok = tolerances.agrees(value, reference["value"], dtype, 0, reference["magnitude_value"])
    gradient_ok = tolerances.agrees(gradient, reference["gradient"], dtype, 1, reference["magnitude"])
    bad = [what for what, ok in (("value", value_ok), ("gradient", gradient_ok)) if not ok]
    return {
        "ok": not bad,
        "classification": f"wrong {' and '.join(bad)}" if bad else None,
        "max_rel_err": max(
            tolerances.relative_error(value, reference["value"]),
            tolerances.relative_error(gradient, reference["gradient"]),
        ),
        "tolerance": tolerances.tolerance(dtype, 1),
    }


def validated_then_timed(
    step: Callable, to_numpy: Callable, share: Callable, dtype: str, world_folder: Path, rank: int
) -> dict:
    """The first call, validated on rank 0; then, if it agreed, the steps timed on every process.

    ``share(x)`` is rank 0's number ``x`` on every process (a broadcast): the verdict, and the
    warm step's time that sets rounds and iterations as `harness.benchmark.measure.calibrate` would,
    so that every process runs the same number of steps (each step is a collective).
    """
    started = time.perf_counter()
    flat = to_numpy(step())
    first = time.perf_counter() - started
    if rank == 0:
        found = verdict(flat[0], flat[1:], dtype, folder.read_reference(world_folder))
    else:
        found = {"ok": False}
    if not share(1.0 if found["ok"] else 0.0):
        return {**found, "first_call_s": first, "times": None, "iterations": 0}
    started = time.perf_counter()
    step()
    once = max(share(time.perf_counter() - started), 1e-9)
    iterations = max(1, int(1e-4 / once))
    rounds = int(min(max(BUDGET_S / (once * iterations), MIN_ROUNDS), 1000))
    times = measure.measure(step, rounds, iterations)
    return {**found, "first_call_s": first, "times": times, "iterations": iterations}


def _jax_rank(
    engine: str, world: int, rank: int, size, dtype: str, port: int, fault: str | None, world_folder: Path
) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    if engine == "jax.distributed":
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=world, process_id=rank)
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

    def total(local):  # the sum of the devices' shard sums
        return lax.psum(local, "data")

    total = faults.jax_total(fault, total)

    def shard_sum(W, b, x, t):  # on each device: its shard's sum, then the sum over the devices
        return total(problems.logistic_loss(jnp, W, b, x, t))

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

    result = validated_then_timed(step, to_numpy, share, dtype, world_folder, rank)
    result["device"] = chosen[0].platform.replace("gpu", "cuda")
    if engine == "jax.distributed":
        jax.distributed.shutdown()
    return result


def _torch_rank(world: int, rank: int, size, dtype: str, fault: str | None, world_folder: Path) -> dict:
    """(The rendezvous is in the environment the launcher set: ``MASTER_ADDR``, ``MASTER_PORT``.)"""
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
    all_reduce = faults.torch_all_reduce(fault, dist.all_reduce, rank, world)

    def step():
        W.grad = b.grad = None
        value = problems.logistic_loss(torch, W, b, x, t)
        value.backward()
        flat = torch.cat([value.detach().reshape(1), W.grad, b.grad.reshape(1)])
        all_reduce(flat)  # the sum of the shards' sums
        if cuda:
            torch.cuda.synchronize(device)
        return flat

    def share(x: float) -> float:
        number = torch.tensor([x], dtype=torch.float64, device=device)
        dist.broadcast(number, src=0)
        return float(number.item())

    def to_numpy(flat):
        return flat.detach().cpu().double().numpy()

    result = validated_then_timed(step, to_numpy, share, dtype, world_folder, rank)
    result["device"] = device.type
    dist.destroy_process_group()
    return result


if __name__ == "__main__":
    sys.exit(run_rank(Path(sys.argv[1]), int(sys.argv[2])))
