"""The planted faults of ``tests/distributed/test_scale.py``, test-only: read from the environment of
a world's processes and applied by choosing a rank's functions before anything is timed, so a healthy world's
timed steps have no fault in them.

`FAULT_ENV` makes the world wrong (``mean``: the shards' mean instead of their sum; ``drop``: shard 1
left out) or makes process 1 (the only one, for ``jax.sharding``) die (``exit``) or hang (``hang``)
before its first collective; `PIDS_ENV` names a file each process appends ``RANK PID PGID`` to.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

FAULT_ENV = "HARNESS_SCALE_FAULT"
PIDS_ENV = "HARNESS_SCALE_PIDS"
FAULTS = ("mean", "drop", "exit", "hang")


def planted() -> str | None:
    """The fault `FAULT_ENV` plants, if any; `ValueError` for one that is not in `FAULTS`."""
    fault = os.environ.get(FAULT_ENV) or None
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"${FAULT_ENV} is {fault!r}; use one of {', '.join(FAULTS)}")
    return fault


def note_pid(rank: int) -> None:
    """Append ``RANK PID PGID`` to the file `PIDS_ENV` names, if it names one."""
    if os.environ.get(PIDS_ENV):
        with open(os.environ[PIDS_ENV], "a") as fh:
            fh.write(f"{rank} {os.getpid()} {os.getpgid(0)}\n")


def crash_or_hang(fault: str | None, rank: int, processes: int) -> None:
    """The planted process faults: process 1 (or the only one) dies or hangs."""
    if rank != min(1, processes - 1):
        return
    if fault == "exit":
        os._exit(3)
    if fault == "hang":
        while True:
            time.sleep(60)


def jax_total(fault: str | None, total: Callable) -> Callable:
    """``total`` (a device's shard sum to the sum over the mesh's ``data`` axis, inside
    `jax.shard_map`), or the planted wrong one: ``mean`` averages, ``drop`` zeroes shard 1's."""
    if fault == "mean":
        from jax import lax

        return lambda local: lax.pmean(local, "data")
    if fault == "drop":
        import jax.numpy as jnp
        from jax import lax

        return lambda local: total(jnp.where(lax.axis_index("data") == 1, jnp.zeros_like(local), local))
    return total


def torch_all_reduce(fault: str | None, all_reduce: Callable, rank: int, world: int) -> Callable:
    """``all_reduce`` (the in-place sum of ``[value, dW, db]`` over the ranks), or the planted wrong
    one: ``mean`` divides the sum by the world size, ``drop`` makes rank 1 add zeros."""
    if fault == "drop" and rank == 1:

        def dropped(flat) -> None:
            flat.zero_()
            all_reduce(flat)

        return dropped
    if fault == "mean":

        def mean(flat) -> None:
            all_reduce(flat)
            flat /= world

        return mean
    return all_reduce
