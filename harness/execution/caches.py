"""Compile caches a validation job's child may reuse from earlier runs.

A validation job checks what compiled code computes, not how long compiling takes, so its child
turns on JAX's persistent compilation cache (the executables of every computation, eager
primitives included: on the 2-core AMD EPYC, ``validate -b jax -p cubic,tanh`` took 31 CPU seconds
without it and 10 with it warm). The cache's key covers the computation, jax and jaxlib's versions, the
XLA flags and the device, so a new version or flag compiles anew, and a cached executable is the
one XLA built: every check still runs it and compares its result with the oracles.

Benchmark jobs never get it: their first-call time is the compile time, and it must stay honest.
TorchInductor's own caches are on by default in every job (``TORCHINDUCTOR_CACHE_DIR``).
The cache lives beside the remembered devices (``$HARNESS_CACHE_DIR``, default
``~/.cache/gradient-harness``). A variable already set wins; ``HARNESS_COMPILE_CACHE=off`` turns
the cache off (every compile done anew, as on the first run after an install). The default run
writes about 6 MB there. Nothing is evicted (JAX's size limit needs the ``filelock`` package and
takes a lock on every read); the folder can be deleted at any time.
"""

from __future__ import annotations

import os

from harness.jobs import Job
from harness.results import files

SWITCH_ENV = "HARNESS_COMPILE_CACHE"


def environment(job: Job) -> dict[str, str]:
    """The variables to set, before any framework is imported, in ``job``'s child."""
    if job.kind != "validate" or os.environ.get(SWITCH_ENV, "on").lower() in ("off", "0", "no"):
        return {}
    return {
        "JAX_COMPILATION_CACHE_DIR": str(files.cache_dir() / "jax-compilation"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",  # eager primitives compile in ms, often
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }


def apply(job: Job) -> None:
    """Set `environment` where the variable is not set already (in a child, before any import)."""
    for name, value in environment(job).items():
        os.environ.setdefault(name, value)
