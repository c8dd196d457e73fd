"""What ``python -m harness scale`` runs: the engines, the scalings, and one `harness.jobs.Job` per
world (an engine at a world size, a size and a dtype), each run by the runner in its own child
(`harness.distributed.launch`).

Engines (`ENGINES`):

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

Shards are equal: with strong scaling N must split evenly over every world size.
"""

from __future__ import annotations

from harness.errors import UsageError
from harness.jobs import Job

ENGINES = {"jax": ("jax.sharding", "jax.distributed"), "torch": ("torch.distributed",)}
"""Each framework's distributed engines, by backend name."""
ENGINE_NAMES = tuple(e for engines in ENGINES.values() for e in engines)
SCALINGS = ("strong", "weak")
"""strong: the same N x D at every world size; weak: N x D per process (world x N rows in all)."""


def shape(engine: str, world: int) -> tuple[int, int]:
    """(processes, devices) of a world."""
    return (1 if engine == "jax.sharding" else world), world


def select(registry, backends: list[str] | None, engines: list[str] | None) -> tuple[list, list[str]]:
    """(backend entries, engines): ``engines`` (default: every engine of the chosen backends) of
    ``backends`` (default: those of ``engines``, else those of ``$HARNESS_BACKENDS`` or the
    registry that have one). `harness.errors.UsageError` for a name that is unknown, or named
    and without an engine."""
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


def world_jobs(entries, engines, worlds, size, scalings, dtypes) -> list[Job]:
    """One `harness.jobs.Job` of kind ``scale`` per world: scaling, backend, engine, dtype, world
    size in turn, each with the global size (weak scaling: world times N rows).
    `harness.errors.UsageError` when strong scaling cannot split N evenly over a world size."""
    n, d = size
    uneven = [w for w in worlds if n % w] if "strong" in scalings else []
    if uneven:
        raise UsageError(
            f"N = {n} does not split evenly over world size {', '.join(map(str, uneven))}: "
            "strong scaling gives every process N / world rows; choose N divisible by each"
        )
    return [
        Job(
            kind="scale",
            backend=entry.name,
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
