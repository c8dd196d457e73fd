"""particle: a charged particle's Euler trajectory, steered by argmin over w, the acceleration
``-grad_x p`` a derivative inside the objective (Pearlmutter and Siskind's nested-AD benchmark)."""

from __future__ import annotations

from functools import partial

import numpy as np

from harness.evals import adapter, gd
from harness.problems import NestedProblem
from harness.strategies import NESTED_PAIRS

START = (0.0, 8.0)
"""``x(0)``; ``xdot(0) = (0.75, 0)``; Euler's step 0.1 (GradBench's tools/*/particle.cpp)."""
VELOCITY = (0.75, 0.0)
DT = 0.1
MAX_STEPS = 1_000_000
EXPECTED = (0.2071918746486116,)
"""GradBench's expected output (``evals/particle/run.py``), for w = 0."""
COMPLEX_STEP = 1e-20


def potential(xp, position, w):
    """``p(x; w) = 1/|x - (10, 10 - w)| + 1/|x - (10, 0)|``."""
    x1, x2 = position
    return 1 / ((10 - x1) ** 2 + (10 - w - x2) ** 2) ** 0.5 + 1 / ((10 - x1) ** 2 + (0 - x2) ** 2) ** 0.5


def euler_step(xp, inner, state, w):
    """One Euler step of ``xddot = -grad_x p(x; w)`` from ``state = (x1, x2, v1, v2)``, the force by
    the ``inner`` operator: the unit a compiled mode compiles (`landing`'s loop stays in Python)."""
    x1, x2, v1, v2 = state
    a1, a2 = inner(lambda position: potential(xp, position, w))((x1, x2))
    return (x1 + DT * v1, x2 + DT * v2, v1 - DT * a1, v2 - DT * a2)


def landing(step, w):
    """``x_1(t_f)``: Euler ``step``s from ``x(0)``, stopping before the step that takes ``x_2``
    below 0, then a straight line to ``x_2 = 0``, as GradBench's tools do."""
    state = (START[0] + 0 * w, START[1] + 0 * w, VELOCITY[0] + 0 * w, VELOCITY[1] + 0 * w)
    for _ in range(MAX_STEPS):
        moved = step(state, w)
        if bool(moved[1] < 0):
            break
        state = moved
    x1, x2, v1, v2 = state
    return x1 + (-x2 / v2) * v1


def objective(step, point):
    """The outer objective ``x_1(t_f)**2`` at ``point = (w,)``."""
    (w,) = point
    x = landing(step, w)
    return x * x


def units_of_work(xp, inner, compiled=lambda f: f):
    """The unit of work a compiled mode compiles: the Euler step with the ``inner`` operator's
    force (`harness.target.Target.nested` builds it once and hands it to `primal` and the probes)."""
    return compiled(partial(euler_step, xp, inner))


def primal(xp, outer, inner, w0, *, units=None):
    """``(w*,)``: gd.hpp's argmin over ``w`` from ``w0``, by the ``outer`` operator, each Euler
    step `units_of_work`'s."""
    step = units or partial(euler_step, xp, inner)
    return gd.argmin(lambda point: objective(step, point), outer, (w0,))


def inner_probe(xp, inner, w0, *, units=None):
    """The inner derivative where the particle starts: ``grad_x p(x(0); w0)``."""
    return inner(lambda position: potential(xp, position, w0))((START[0] + 0 * w0, START[1] + 0 * w0))


def outer_probe(xp, outer, inner, w0, *, units=None):
    """The outer derivative of the objective at ``w0``, through the inner derivative."""
    step = units or partial(euler_step, xp, inner)
    return outer(lambda point: objective(step, point))((w0,))


# --- The float64 reference: the potential's gradient in closed form ------------------------------


def closed_force(position, w):
    """``grad_x p``: ``-(x - c) / |x - c|**3`` summed over the two charges (numpy; complex too)."""
    x1, x2 = position
    g1 = g2 = 0.0
    for c1, c2 in ((10.0, 10.0 - w), (10.0, 0.0)):
        d1, d2 = x1 - c1, x2 - c2
        cube = (d1 * d1 + d2 * d2) ** 1.5
        g1, g2 = g1 - d1 / cube, g2 - d2 / cube
    return g1, g2


def reference_landing(w) -> complex | float:
    """``x_1(t_f)`` with the closed-form force: numpy, real or complex (the step's test on the real part)."""
    x1, x2, v1, v2 = START[0], START[1], VELOCITY[0], VELOCITY[1]
    for _ in range(MAX_STEPS):
        a1, a2 = closed_force((x1, x2), w)
        moved = (x1 + DT * v1, x2 + DT * v2, v1 - DT * a1, v2 - DT * a2)
        if np.real(moved[1]) < 0:
            break
        x1, x2, v1, v2 = moved
    return x1 + (-x2 / v2) * v1


def reference_gradient(point):
    """The outer objective's derivative by complex step through the closed-form simulation."""
    (w,) = point
    return (np.imag(reference_landing(w + 1j * COMPLEX_STEP) ** 2) / COMPLEX_STEP,)


def reference_objective(point):
    return float(reference_landing(point[0]) ** 2)


def reference(w0):
    """``(answer, gap)``: gd.hpp's descent in float64 numpy with the reference gradient, and the
    gap its stopping rule allows (`gd.stopping_gap`) at the curvature ``phi'' = 2 (dx_1/dw)**2``
    of the true minimizer w* (``x_1(t_f; w*) = 0``, found by Newton's method)."""
    answer, eta = gd.descend(reference_objective, reference_gradient, (float(w0),))
    w = answer[0]
    for _ in range(8):
        slope = np.imag(reference_landing(w + 1j * COMPLEX_STEP)) / COMPLEX_STEP
        w -= float(np.real(reference_landing(w))) / slope
    return np.array(answer, np.float64), gd.stopping_gap(eta, 2 * slope**2)


INPUT = {"w": 0.0}
"""GradBench's evaluate input (its run.py sends the same for each of rr, ff, fr, rf)."""


def args(size=None):
    return from_gradbench(INPUT)


def gradbench_input(size=None) -> dict:
    return dict(INPUT)


def from_gradbench(input: dict) -> tuple:
    return (np.array(float(input["w"])),)


PROBLEMS = (
    NestedProblem(
        "particle",
        primal,
        args,
        description="GradBench's particle: argmin over w of x_1(t_f)^2, x(t) Euler steps (dt 0.1) from "
        "x(0) = (0, 8), xdot(0) = (0.75, 0) under xddot = -grad_x p, p(x; w) = 1/|x - (10, 10 - w)| "
        "+ 1/|x - (10, 0)|, stopped before x_2 < 0 and extended linearly to x_2 = 0; the argmin by "
        "gd.hpp's descent from w = 0. Input w0 (0.0); output w* (GradBench expects 0.2071918746486116). "
        "Pairs rr ff fr rf (outer argmin mode, inner grad_x p mode). Fixed size. Checked: grad_x p at "
        "x(0), the objective's derivative at w0 through it (complex step through the simulation with "
        "the closed-form force), and w* against the same descent in float64 numpy within twice "
        "1e-5 / (eta phi'') (the stopping rule at curvature phi'' = 2 (dx_1/dw)^2). Not in the default "
        "run: each pair runs ~170 simulations of ~80 steps, each step an inner derivative",
        inner_probe=inner_probe,
        outer_probe=outer_probe,
        units=units_of_work,
        inner_reference=lambda w0: closed_force(START, float(w0)),
        outer_reference=lambda w0: reference_gradient((float(w0),)),
        reference=reference,
        expected=EXPECTED,
        outer_oracle="complex-step",
        default=False,
    ),
)

GRADBENCH = {pair: adapter.nested(pair, ()) for pair in NESTED_PAIRS}
"""GradBench's ``rr ff fr rf``: the answer w* (a number) in that mode pair (outer, inner)."""
