"""How many threads each framework computes with: set on purpose (`apply`, before any framework
is imported) and recorded with every run (`settings`).

`apply` sets the environment every framework reads when it starts: ``OMP_NUM_THREADS`` (torch's
intra-op pool, OpenMP), ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` (numpy's BLAS),
``XLA_FLAGS`` (JAX's CPU backend: Eigen's thread pool off for one thread, the intra-op
parallelism at N) and ``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS`` (TensorFlow). A
framework imported already keeps what it read; torch is told again (``torch.set_num_threads``)
because it can be.
"""

from __future__ import annotations

import os
import sys

ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "XLA_FLAGS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


def check(threads: int | None) -> int | None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a whole number of 1 or more, not {threads!r}")
    return threads


def environment(threads: int, env: dict[str, str]) -> dict[str, str]:
    """The variables to set so that every framework started with ``env`` uses ``threads``
    intra-op threads (``XLA_FLAGS`` extended, not replaced)."""
    n = str(check(threads))
    xla = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_cpu_multi_thread_eigen")]
    xla = [f for f in xla if not f.startswith("intra_op_parallelism_threads")]
    xla += [f"--xla_cpu_multi_thread_eigen={'false' if threads == 1 else 'true'}"]
    xla += [f"intra_op_parallelism_threads={n}"]
    return {
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "XLA_FLAGS": " ".join(xla),
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": "1",
    }


def apply(threads: int | None) -> None:
    """Give every framework ``threads`` intra-op threads (``None``: leave each its own choice)."""
    if threads is None:
        return
    os.environ.update(environment(threads, dict(os.environ)))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def settings() -> dict:
    """The thread settings in force: the environment's, and those of each framework loaded."""
    found: dict = {"env": {k: os.environ.get(k) for k in ENV}}
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        found["torch"] = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    tf = sys.modules.get("tensorflow")
    threading = getattr(getattr(tf, "config", None), "threading", None)
    if threading is not None:
        found["tensorflow"] = {
            "intra_op": threading.get_intra_op_parallelism_threads(),
            "inter_op": threading.get_inter_op_parallelism_threads(),
        }
    return found
