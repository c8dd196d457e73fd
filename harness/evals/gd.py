"""GradBench's gradient descent (``cpp/gradbench/gd.hpp``), the solver particle and saddle nest,
written once for any array namespace: the point is a tuple of scalars, the derivative an operator
``grad(f)`` (a function of the point returning its gradient, a tuple like it) supplied by whoever
calls, a backend's own forward or reverse mode or a float64 closed form.

The rule, as gd.hpp fixes it: the step size ``eta`` starts at 1e-5; stop when ``|grad| <= 1e-5``
or when the next step would move the point by ``<= 1e-5``; a step that lowers the objective is
taken (after 10 in a row ``eta`` doubles), one that does not halves ``eta``. Its decisions are
Python ``bool``s of the backend's own scalars, so a backend that traces a derivative through the
descent (saddle's outer derivative runs through its inner argmax) must let values be read while
it differentiates: eager JAX, autograd, ``torch.func`` and TensorFlow's tapes do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TOLERANCE = 1e-5
"""gd.hpp's two stopping thresholds: on the gradient's norm and on a step's length."""
START_ETA = 1e-5
RUN = 10
"""Accepted steps in a row after which ``eta`` doubles."""

Point = tuple[Any, ...]
Grad = Callable[[Callable[[Point], Any]], Callable[[Point], Point]]
"""A derivative operator: ``grad(f)(x)`` is the gradient of scalar ``f`` at ``x``."""


def norm(v: Point) -> Any:
    return sum(a * a for a in v) ** 0.5


def argmin(f: Callable[[Point], Any], grad: Grad, start: Point) -> Point:
    """The point where gd.hpp's descent on ``f`` from ``start`` stops (``multivariate_argmin``)."""
    return descend(f, grad(f), start)[0]


def trial(x: Point, gx: Point, eta: Any) -> tuple[Any, Point, Any]:
    """What a step decides on, computed together: ``(|gx|, the point one step of size eta along
    -gx, that step's length)``. `descend`'s arithmetic between the objective's and the gradient's
    calls, so that a caller can compile it as one unit (saddle's `units_of_work`)."""
    moved = tuple(a - eta * g for a, g in zip(x, gx, strict=True))
    return norm(gx), moved, norm(tuple(a - b for a, b in zip(x, moved, strict=True)))


def descend(
    f: Callable[[Point], Any], gradient: Callable[[Point], Point], start: Point, step: Callable = trial
) -> tuple[Point, Any]:
    """``(point, eta)``: where the descent on ``f`` stops and its step size there, ``gradient`` its
    gradient as a function of the point (``grad(f)``, or a compiled form of it), ``step`` `trial`
    or a compiled form of it."""
    x, fx, gx = tuple(start), f(tuple(start)), gradient(tuple(start))
    eta, run = START_ETA, 0
    while True:
        size, moved, length = step(x, gx, eta)
        if bool(size <= TOLERANCE):
            return x, eta
        if run == RUN:
            eta, run = eta * 2, 0
            continue
        if bool(length <= TOLERANCE):
            return x, eta
        f_moved = f(moved)
        if bool(f_moved < fx):
            x, fx, gx, run = moved, f_moved, gradient(moved), run + 1
        else:
            eta, run = eta / 2, 0


def argmax(f: Callable[[Point], Any], grad: Grad, start: Point) -> Point:
    """gd.hpp's ``multivariate_argmax``: the descent on ``-f``."""
    return argmin(lambda x: -f(x), grad, start)


def stopping_gap(eta: float, curvature: float) -> float:
    """How far apart two stops of this rule may lie near a minimizer x* of an objective whose
    Hessian's smallest eigenvalue is ``curvature``: a stop has ``|g| <= 1e-5`` or ``eta |g| <=
    1e-5``, and ``|x - x*| ~ |g| / curvature``, so ``|x - x*| <= 1e-5 / (min(eta, 1) curvature)``
    with ``eta`` the step size at the stop (the reference's); two stops, the reference's and a
    backend's, differ by at most twice that."""
    return 2 * TOLERANCE / (min(eta, 1.0) * curvature)
