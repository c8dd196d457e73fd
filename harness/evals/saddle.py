"""saddle: argmin over p1 of the max over p2 of ``|p1|**2 - |p2|**2``, both by gd.hpp's descent,
the inner argmax run (and differentiated through) inside the outer objective."""

from __future__ import annotations

from functools import partial

import numpy as np

from harness.evals import adapter, gd
from harness.problems import NestedProblem
from harness.strategies import NESTED_PAIRS

EXPECTED = (8.246324826140356e-06,) * 4
"""GradBench's expected output (``evals/saddle/run.py``) for start (1, 1)."""
CURVATURE = 2.0
"""Both descents' objectives, ``|p1|**2 + c`` and ``|p2|**2 - c``, have Hessian 2 I."""


def f(p1, p2):
    """GradBench's ``saddle::objective(x1, y1, x2, y2) = (x1**2 + y1**2) - (x2**2 + y2**2)``, at
    ``(x1, y1) = p1`` and ``(x2, y2) = p2`` as its tools call it."""
    return (p1[0] * p1[0] + p1[1] * p1[1]) - (p2[0] * p2[0] + p2[1] * p2[1])


def units_of_work(xp, inner, compiled=lambda f: f) -> tuple:
    """The inner argmax's units of work: its descent's objective ``-f`` and that objective's
    gradient in p2 by the ``inner`` operator, as functions of ``(p1, p2)``, and the descent's
    arithmetic between them (`gd.trial`), each ``compiled``
    (`harness.target.Target.nested` builds them once and hands them to `primal` and the probes)."""
    return compiled(_negated), compiled(partial(_negated_gradient, inner)), compiled(gd.trial)


def _negated(p1, p2):
    return -f(p1, p2)


def _negated_gradient(inner, p1, p2):
    return inner(lambda q: -f(p1, q))(p2)


def outer_objective(units, p1, start):
    """``max over p2 of f(p1, p2)``: gd.hpp's argmax from ``start`` (its descent on ``-f``), by
    the `units_of_work`."""
    value, gradient, step = units
    p2 = gd.descend(lambda p2: value(p1, p2), lambda p2: gradient(p1, p2), start, step)[0]
    return f(p1, p2)


def primal(xp, outer, inner, s1, s2, *, units=None):
    """``(p1*, p2*)``: the argmin over p1 of `outer_objective` by the ``outer`` operator, then the
    argmax over p2 of ``f(p1*, p2)`` by the outer operator too (GradBench's README: step 2 uses
    step 1's mode), both from the start ``(s1, s2)``."""
    start, units = (s1, s2), units or units_of_work(xp, inner)
    p1 = gd.argmin(lambda p: outer_objective(units, p, start), outer, start)
    p2 = gd.argmax(lambda p: f(p1, p), outer, start)
    return (*p1, *p2)


def inner_probe(xp, inner, s1, s2, *, units=None):
    """The inner derivative at the start: ``grad_p2 f(s, s) = -2 s``."""
    return inner(lambda p2: f((s1, s2), p2))((s1, s2))


def outer_probe(xp, outer, inner, s1, s2, *, units=None):
    """The outer derivative at the start, through the inner argmax: ``2 s`` (the inner descent's
    path does not depend on p1, so differentiating through it adds nothing)."""
    units = units or units_of_work(xp, inner)
    return outer(lambda p: outer_objective(units, p, (s1, s2)))((s1, s2))


def reference(s1, s2):
    """``(answer, gap)``: the same descents in float64 numpy with the closed-form gradients
    (``2 p1`` outer, ``-2 p2`` inner), and the gap their stopping rule allows (`gd.stopping_gap`
    at curvature 2, the larger of the two descents')."""
    start = (float(s1), float(s2))

    def up(p):
        return lambda p2: (-2 * p2[0], -2 * p2[1])  # grad of f(p, .)

    def objective(p):
        return f(p, gd.argmax(lambda p2: f(p, p2), lambda g: up(p), start))

    p1, eta1 = gd.descend(objective, lambda p: (2 * p[0], 2 * p[1]), start)
    p2, eta2 = gd.descend(lambda p: -f(p1, p), lambda p: (2 * p[0], 2 * p[1]), start)
    gap = max(gd.stopping_gap(eta1, CURVATURE), gd.stopping_gap(eta2, CURVATURE))
    return np.array((*p1, *p2), np.float64), gap


INPUT = {"start": [1.0, 1.0]}
"""GradBench's evaluate input (its run.py sends the same for each of rr, ff, fr, rf)."""


def args(size=None):
    return from_gradbench(INPUT)


def gradbench_input(size=None) -> dict:
    return {"start": list(INPUT["start"])}


def from_gradbench(input: dict) -> tuple:
    s1, s2 = input["start"]
    return np.array(float(s1)), np.array(float(s2))


PROBLEMS = (
    NestedProblem(
        "saddle",
        primal,
        args,
        description="GradBench's saddle: p1* = argmin over p1 of max over p2 of f, f(p1, p2) = "
        "|p1|^2 - |p2|^2, then p2* = argmax over p2 of f(p1*, p2), each by gd.hpp's descent from "
        "start (1, 1), the inner argmax differentiated through. Input start [2]; output [p1*, p2*] "
        "[4] (GradBench expects 8.246324826140356e-06 each). Pairs rr ff fr rf (outer, inner mode). "
        "Fixed size. Checked: grad_p2 f = -2 s at the start, the outer objective's derivative 2 s "
        "there through the inner argmax (closed forms), and the answer against the same descents in "
        "float64 numpy within twice 1e-5 / (eta 2) (the stopping rule at curvature 2). Not in the "
        "default run: each pair runs ~300 inner argmaxes of ~150 steps",
        inner_probe=inner_probe,
        outer_probe=outer_probe,
        units=units_of_work,
        inner_reference=lambda s1, s2: (-2 * float(s1), -2 * float(s2)),
        outer_reference=lambda s1, s2: (2 * float(s1), 2 * float(s2)),
        reference=reference,
        expected=EXPECTED,
        default=False,
    ),
)

GRADBENCH = {pair: adapter.nested(pair, (4,)) for pair in NESTED_PAIRS}
"""GradBench's ``rr ff fr rf``: the answer ``[x1, x2, y1, y2]`` in that mode pair (outer, inner)."""
