"""GradBench's evals (github.com/gradbench/gradbench, MIT), written once against an array namespace
``xp``: the definitions, their seeded inputs and their derivatives in closed form.

Each follows GradBench's golden C++ code (``cpp/gradbench/evals/<eval>.hpp``) and its input
generator (``python/gradbench/gradbench/evals/<eval>/run.py``): the same formula, the same
order of operations where it matters (det's expansion, ode's Runge-Kutta stages), and inputs
drawn as GradBench draws them, ``np.random.seed(31337)`` then ``np.random.rand`` (here
``np.random.RandomState(31337)``, the same stream; GradBench draws its sizes one after another
from it, so only its first size sees the same numbers). `harness.problems` registers them.
"""

from __future__ import annotations

from math import isqrt

import numpy as np

from harness import oracles

SEED = 31337
"""GradBench's seed for every eval's inputs."""


def draw(n: int) -> np.ndarray:
    """``n`` uniform numbers in [0, 1), as GradBench draws an eval's input."""
    return np.random.RandomState(SEED).rand(n)


# --- lse: log-sum-exp ---------------------------------------------------------------------------


def lse(xp, x):
    """``log(sum(exp(x - A))) + A`` with ``A = max(x)``, as GradBench computes it."""
    shift = xp.max(x)
    return xp.log(xp.sum(xp.exp(x - shift))) + shift


def lse_args(size=None):
    (n,) = size or (32,)
    return (draw(n),)


def softmax(x):
    """lse's gradient: ``exp(x - lse(x))``."""
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def lse_magnitude(x):
    """Each gradient entry ``exp(x_i - A) / s`` divides by the sum ``s`` of positive terms: a
    correct reduction is off by about eps times the entry itself."""
    return softmax(x)


def lse_hvp(v, x):
    """The Hessian ``diag(p) - p p^T`` (``p`` the softmax) times ``v``."""
    p = softmax(x)
    return p * v - p * np.dot(p, v)


# --- llsq: linear least squares -------------------------------------------------------------------


def llsq(xp, x, t, s):
    """``1/2 sum_i (s_i - sum_j x_j t_i**j)**2``: GradBench's llsq (from cmpad's llsq_obj), with
    ``t_i = -1 + 2 i / (n - 1)`` and ``s_i = sign(t_i)`` passed in as data (`llsq_args`)."""
    residual = s
    for j in range(x.shape[0]):
        residual = residual - x[j] * t**j
    return xp.sum(residual * residual) / 2


def llsq_args(size=None):
    """``x``: m uniform numbers (GradBench's input); ``t`` and ``s`` from n, as GradBench's C++."""
    n, m = size or (16, 8)
    t = -1 + np.arange(n) * 2 / (n - 1)
    return draw(m), t, np.sign(t)


def _powers(x, t):
    return t[:, None] ** np.arange(x.shape[0])  # n x m: t_i**j


def llsq_gradient(x, t, s):
    """``-V^T (s - V x)``, ``V_ij = t_i**j``."""
    V = _powers(x, t)
    return -V.T @ (s - V @ x)


def llsq_magnitude(x, t, s):
    """``|V|^T (|s| + |V| |x|)``: the terms each entry sums, with the residual's own terms."""
    V = np.abs(_powers(x, t))
    return V.T @ (np.abs(s) + V @ np.abs(x))


def llsq_hvp(v, x, t, s):
    """The Hessian ``V^T V`` (constant) times ``v``."""
    V = _powers(x, t)
    return V.T @ (V @ v)


# --- det: the determinant by expansion in minors -------------------------------------------------------


def det(xp, A):
    """The determinant of the ell x ell matrix ``A`` (ell**2 entries, row-major), expanded in
    minors along the first row, recursively, as GradBench's ``det_of_minor`` (from cmpad): ell!
    products, no pivoting, no memo."""
    ell = _side(A.shape[0])
    return _det_of_minor(A, ell, tuple(range(ell)), tuple(range(ell)), signed=True)


def _side(entries) -> int:
    """``isqrt(entries)`` by comparisons alone: torch.compile may trace a shape as a symbol, which
    compares (guarded) but does not pass through ``math.isqrt``."""
    ell = 0
    while (ell + 1) * (ell + 1) <= entries:
        ell += 1
    return ell


def _det_of_minor(A, ell, rows, cols, signed):
    if len(rows) == 1:
        return A[rows[0] * ell + cols[0]]
    terms = [
        A[rows[0] * ell + c] * _det_of_minor(A, ell, rows[1:], cols[:j] + cols[j + 1 :], signed)
        for j, c in enumerate(cols)
    ]
    total = terms[0]  # GradBench adds the first to a zero: the same number
    for j, term in enumerate(terms[1:], start=1):
        total = total - term if signed and j % 2 else total + term
    return total


def det_args(size=None):
    (ell,) = size or (4,)
    return (draw(ell * ell),)


def det_gradient(A):
    """The cofactor matrix, row-major: ``C_ij = (-1)**(i+j) det(minor_ij)``, in exact rational
    arithmetic from the float64 entries (`oracles.exact_cofactors`), rounded once."""
    return oracles.exact_cofactors(A)


def det_value_magnitude(A):
    """The sum of |terms| the determinant adds: the permanent of ``|A|``, where the terms cancel
    (for the default 4 x 4 draw, 2.07 for a determinant of 0.0156)."""
    ell = isqrt(A.shape[0])
    return _det_of_minor(np.abs(A), ell, tuple(range(ell)), tuple(range(ell)), signed=False)


def det_magnitude(A):
    """The sum of |terms| behind each cofactor: the permanent of ``|minor_ij|``."""
    ell = isqrt(A.shape[0])
    absolute = np.abs(A)
    every = tuple(range(ell))
    return np.array(
        [
            _det_of_minor(absolute, ell, every[:i] + every[i + 1 :], every[:j] + every[j + 1 :], signed=False)
            if ell > 1
            else 1.0
            for i in every
            for j in every
        ]
    )


# --- ode: Runge-Kutta, a vector-valued function -------------------------------------------------------


def ode(xp, x, steps, shift, first):
    """``y(t_f)`` for ``y' = f(x, y)``, ``f_0 = x_0``, ``f_i = x_i y_{i-1}``, ``y(0) = 0``, by
    classical Runge-Kutta with the step sizes ``steps`` (GradBench: ``s`` steps of ``t_f / s``,
    ``t_f = 2``), the stages in GradBench's order. ``f`` is ``x * (shift @ y + first)``, with
    ``shift`` the n x n subdiagonal of ones and ``first`` the unit vector e_0 (data, from
    `ode_args`): exact in floating point (each row sums one nonzero product), and no index
    assignment, which JAX arrays lack."""
    y = 0 * x
    for k in range(steps.shape[0]):
        h = steps[k]

        def f(y):
            return x * (shift @ y + first)

        k1 = f(y)
        k2 = f(y + h * k1 / 2)
        k3 = f(y + h * k2 / 2)
        k4 = f(y + h * k3)
        y = y + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6
    return y


def ode_args(size=None):
    n, s = size or (8, 2)
    return draw(n), np.full(s, 2.0 / s), np.eye(n, k=-1), np.eye(n)[0]


def ode_coefficients(steps, n: int) -> np.ndarray:
    """``q_0 .. q_n`` of ``prod_k P(h_k u)``, ``P(u) = 1 + u + u**2/2 + u**3/6 + u**4/24``: one RK4
    step of a linear system ``w' = M w`` is ``P(h M)``. Here ``w = (1, y)`` and ``M`` is the
    subdiagonal matrix of ``x``, nilpotent, with ``M**j e_0 = (x_0 ... x_{j-1}) e_j``; so
    ``y_i(t_f) = q_{i+1} x_0 ... x_i`` exactly (and ``t_f**(i+1) / (i+1)!`` for the ODE's own
    solution, which RK4 reaches only while n <= 4, P's degree). ``q`` has degree 4s: from
    ``y_{4s}`` on, RK4's ``y`` and its Jacobian are exactly 0."""
    q = np.zeros(n + 1)
    q[0] = 1.0
    for h in steps:
        step = np.array([1.0, h, h**2 / 2, h**3 / 6, h**4 / 24])
        q = np.convolve(q, step)[: n + 1]
    return q


def ode_jacobian(x, steps, shift, first):
    """``d y_i / d x_k = q_{i+1} prod_{j <= i, j != k} x_j`` for ``k <= i``, else 0."""
    n = x.shape[0]
    q = ode_coefficients(steps, n)
    J = np.zeros((n, n))
    for i in range(n):
        for k in range(i + 1):
            J[i, k] = q[i + 1] * np.prod(np.delete(x[: i + 1], k))
    return J
