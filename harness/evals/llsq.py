"""llsq: linear least squares, a polynomial fitted to a sign function (from cmpad's llsq_obj)."""

from __future__ import annotations

import numpy as np

from harness.evals import adapter
from harness.evals.inputs import draw
from harness.problems import GradientProblem


def primal(xp, x, t, s):
    """``1/2 sum_i (s_i - sum_j x_j t_i**j)**2``: GradBench's llsq, with ``t_i = -1 + 2 i / (n - 1)``
    and ``s_i = sign(t_i)`` passed in as data (`args`)."""
    residual = s - xp.matmul(_powers(xp, x, t), x)
    return xp.sum(residual * residual) / 2


def args(size=None):
    """``x``: m uniform numbers (GradBench's input); ``t`` and ``s`` from n, as GradBench's C++."""
    n, m = size or (16, 8)
    t = -1 + np.arange(n) * 2 / (n - 1)
    return draw(m), t, np.sign(t)


def _powers(xp, x, t):
    """``V``, n x m: ``V_ij = t_i**j``, one array (a loop over j dispatched or traced m products
    one by one), by products as GradBench's C++ and JAX tool form them (a cumulative product is 3x
    faster than ``**`` under ``jax.jit`` at n, m = 1024, 128)."""
    cumulative_prod = getattr(xp, "cumulative_prod", None) or xp.cumprod  # TensorFlow's numpy: cumprod
    ones_then_t = xp.where(xp.arange(x.shape[0]) == 0, xp.ones_like(t)[:, None], t[:, None])
    return cumulative_prod(ones_then_t, axis=1)


def gradient(x, t, s):
    """``-V^T (s - V x)``, ``V_ij = t_i**j``."""
    V = _powers(np, x, t)
    return -V.T @ (s - V @ x)


def magnitude(x, t, s):
    """``|V|^T (|s| + |V| |x|)``: the terms each entry sums, with the residual's own terms."""
    V = np.abs(_powers(np, x, t))
    return V.T @ (np.abs(s) + V @ np.abs(x))


def hvp(v, x, t, s):
    """The Hessian ``V^T V`` (constant) times ``v``."""
    V = _powers(np, x, t)
    return V.T @ (V @ v)


PROBLEMS = (
    GradientProblem(
        "llsq",
        primal,
        args,
        argnums=0,
        description="GradBench's llsq: 1/2 sum_i (s_i - sum_j x_j t_i^j)^2, t_i = -1 + 2i/(n-1), "
        "s_i = sign(t_i), x: [m] uniform in [0, 1) (seed 31337); gradient [m], -V^T (s - V x) with "
        "V_ij = t_i^j (closed form), Hessian V^T V. GradBench's sizes n = 16 ... 16392, m = 128; "
        "here (n, m) = (16, 8)",
        gradient=gradient,
        magnitude=magnitude,
        hvp=hvp,
    ),
)


# --- GradBench's protocol (harness.evals.adapter) ----------------------------------------------


def gradbench_input(size=None) -> dict:
    """``{"x": [m], "n": n}``."""
    x, t, _ = args(size)
    return {"x": x.tolist(), "n": int(t.size)}


def from_gradbench(input: dict) -> tuple:
    n, x = int(input["n"]), np.asarray(input["x"], np.float64)
    t = -1 + np.arange(n) * 2 / (n - 1)
    return x, t, np.sign(t)


GRADBENCH = {"primal": adapter.value(), "gradient": adapter.gradient()}
