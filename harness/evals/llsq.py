"""llsq: linear least squares, a polynomial fitted to a sign function (from cmpad's llsq_obj)."""

from __future__ import annotations

import numpy as np

from harness.evals import adapter
from harness.evals.inputs import draw
from harness.problems import GradientProblem


def primal(xp, x, t, s):
    """``1/2 sum_i (s_i - sum_j x_j t_i**j)**2``: GradBench's llsq, with ``t_i = -1 + 2 i / (n - 1)``
    and ``s_i = sign(t_i)`` passed in as data (`args`)."""
    residual = s
    for j in range(x.shape[0]):
        residual = residual - x[j] * t**j
    return xp.sum(residual * residual) / 2


def args(size=None):
    """``x``: m uniform numbers (GradBench's input); ``t`` and ``s`` from n, as GradBench's C++."""
    n, m = size or (16, 8)
    t = -1 + np.arange(n) * 2 / (n - 1)
    return draw(m), t, np.sign(t)


def _powers(x, t):
    return t[:, None] ** np.arange(x.shape[0])  # n x m: t_i**j


def gradient(x, t, s):
    """``-V^T (s - V x)``, ``V_ij = t_i**j``."""
    V = _powers(x, t)
    return -V.T @ (s - V @ x)


def magnitude(x, t, s):
    """``|V|^T (|s| + |V| |x|)``: the terms each entry sums, with the residual's own terms."""
    V = np.abs(_powers(x, t))
    return V.T @ (np.abs(s) + V @ np.abs(x))


def hvp(v, x, t, s):
    """The Hessian ``V^T V`` (constant) times ``v``."""
    V = _powers(x, t)
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
