"""ode: classical Runge-Kutta on a linear chain, a vector-valued function whose full Jacobian is
checked (GradBench asks for its last row)."""

from __future__ import annotations

import functools

import numpy as np

from harness.evals import adapter
from harness.evals.inputs import draw
from harness.problems import JacobianProblem


def primal(xp, x, steps):
    """``y(t_f)`` for ``y' = f(x, y)``, ``f_0 = x_0``, ``f_i = x_i y_{i-1}``, ``y(0) = 0``, by
    classical Runge-Kutta with the step sizes ``steps`` (GradBench: ``s`` steps of ``t_f / s``,
    ``t_f = 2``), the stages in GradBench's order (`step`)."""
    y = 0 * x
    for k in range(steps.shape[0]):
        y = step(xp, x, y, steps[k])
    return y


def step(xp, x, y, h):
    """One Runge-Kutta step of size ``h`` from ``y``. ``f`` is ``x`` times ``y`` shifted down one
    place with a 1 in front: n products, as GradBench's tools form it (not an n x n matrix
    product), and no index assignment, which JAX arrays lack."""
    one = xp.ones_like(x[:1])

    def f(y):
        return x * xp.concatenate([one, y[:-1]])

    k1 = f(y)
    k2 = f(y + h * k1 / 2)
    k3 = f(y + h * k2 / 2)
    k4 = f(y + h * k3)
    return y + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6


def primal_jax(jnp, x, steps):
    """`primal` with its steps in one ``jax.lax.scan``, as GradBench's JAX tool: traced and
    compiled once, not once per step (at n, s = 1000, 10 the first ``jit`` call of the last
    Jacobian row took 2.2 s unrolled). The scan is itself jitted once per process, so that eager
    calls reuse its compiled form too (an eager scan retraces its body every call)."""
    return _scan()(x, steps)


@functools.cache
def _scan():
    import jax
    import jax.numpy as jnp

    def run(x, steps):
        return jax.lax.scan(lambda y, h: (step(jnp, x, y, h), None), 0 * x, steps)[0]

    return jax.jit(run)


def args(size=None):
    n, s = size or (8, 2)
    return draw(n), np.full(s, 2.0 / s)


def coefficients(steps, n: int) -> np.ndarray:
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


def jacobian(x, steps):
    """``d y_i / d x_k = q_{i+1} prod_{j <= i, j != k} x_j`` for ``k <= i``, else 0."""
    n = x.shape[0]
    q = coefficients(steps, n)
    J = np.zeros((n, n))
    for i in range(n):
        for k in range(i + 1):
            J[i, k] = q[i + 1] * np.prod(np.delete(x[: i + 1], k))
    return J


PROBLEMS = (
    JacobianProblem(
        "ode",
        primal,
        args,
        argnums=0,
        description="GradBench's ode: y(2) for y' = f, f_0 = x_0, f_i = x_i y_{i-1}, y(0) = 0, by s "
        "RK4 steps; x: [n] uniform in [0, 1) (seed 31337); output [n]. Its full n x n Jacobian "
        "(GradBench asks for its last row) in closed form: d y_i/d x_k = q_{i+1} prod_{j<=i, "
        "j!=k} x_j, q from RK4's step polynomial. GradBench's sizes n = 1000 ... 100000, "
        "s = 1 ... 100; here (n, s) = (8, 2). Not in the default run: torch.compile of its "
        "Jacobians takes minutes on a cold cache",
        jacobian=jacobian,
        default=False,
        native=(("jax", primal_jax),),
    ),
)


# --- GradBench's protocol (harness.evals.adapter) ----------------------------------------------


def gradbench_input(size=None) -> dict:
    """``{"x": [n], "s": s}``."""
    x, steps = args(size)
    return {"x": x.tolist(), "s": int(steps.size)}


def from_gradbench(input: dict) -> tuple:
    x, s = np.asarray(input["x"], np.float64), int(input["s"])
    return x, np.full(s, 2.0 / s)


def last_row(x, steps):
    """The gradient of ``y_{n-1}`` (GradBench's ode gradient): ``q_n prod_{j != k} x_j``, the last
    row of `jacobian`, by prefix and suffix products (n entries, not n**2)."""
    n = x.shape[0]
    before = np.concatenate(([1.0], np.cumprod(x[:-1])))
    after = np.concatenate((np.cumprod(x[::-1][:-1])[::-1], [1.0]))
    return coefficients(steps, n)[n] * before * after


GRADBENCH = {"primal": adapter.value(), "gradient": adapter.jacobian_row(-1, last_row)}
