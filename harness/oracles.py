"""Independent references for derivatives, always computed in float64 or higher.

- exact: polynomial derivatives, and a determinant's gradient (its cofactors), in rational arithmetic;
- mpmath: n-th derivatives of a scalar problem's own definition at 40 digits;
- complex step: ``Im f(x + ih v) / h``, first derivatives to ~1e-16 with no cancellation;
- central differences (numdifftools, Richardson extrapolation, with an error estimate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import cache
from math import isqrt
from typing import Any

import numpy as np

from harness.pytree import flatten, select, substitute, unflatten

MPMATH_DPS = 40
COMPLEX_STEP = 1e-20
FULL_GRADIENT_LIMIT = 32
"""Up to this many parameters the full gradient is checked; beyond, random directions."""
DIRECTIONS = 6


@cache
def _namespace() -> type:
    """`MpmathNamespace`, made on first use: mpmath takes 0.4 s to import, and the oracles of a
    gradient (`harness.check` of a framework function, most of `validate`) need none of it."""
    import mpmath

    class MpmathNamespace:
        """The array-namespace functions scalar problems use, as mpmath functions."""

        tanh = staticmethod(mpmath.tanh)
        exp = staticmethod(mpmath.exp)
        log = staticmethod(mpmath.log)
        log1p = staticmethod(mpmath.log1p)
        sin = staticmethod(mpmath.sin)
        cos = staticmethod(mpmath.cos)
        sqrt = staticmethod(mpmath.sqrt)

        @staticmethod
        def sum(x):
            return x

    return MpmathNamespace


def __getattr__(name: str) -> Any:
    if name == "MpmathNamespace":
        return _namespace()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def exact_polynomial(coefficients: Sequence[int], points: np.ndarray, order: int) -> np.ndarray:
    """The ``order``-th derivative of ``sum(c[k] x**k)`` at ``points``, in exact rational arithmetic."""
    coeffs = [Fraction(c) for c in coefficients]
    for _ in range(order):
        coeffs = [k * c for k, c in enumerate(coeffs)][1:]

    def horner(x: float) -> float:
        total = Fraction(0)
        for c in reversed(coeffs):
            total = total * Fraction(x) + c
        return float(total)

    return np.array([horner(float(x)) for x in np.ravel(points)]).reshape(np.shape(points))


def exact_cofactors(entries: np.ndarray) -> np.ndarray:
    """The gradient of the determinant of a square matrix given by its ``entries`` (row-major):
    its cofactors ``(-1)**(i+j) det(minor_ij)``, row-major, each computed exactly in rational
    arithmetic from the float64 entries (`fractions.Fraction`, Gaussian elimination) and rounded
    once to float64."""
    values = [Fraction(float(a)) for a in np.ravel(entries)]
    ell = isqrt(len(values))
    if ell * ell != len(values):
        raise ValueError(f"{len(values)} entries make no square matrix")
    matrix = [values[i * ell : (i + 1) * ell] for i in range(ell)]
    cofactors = []
    for i in range(ell):
        for j in range(ell):
            minor = [row[:j] + row[j + 1 :] for k, row in enumerate(matrix) if k != i]
            cofactors.append(float((-1) ** (i + j) * _exact_determinant(minor)))
    return np.array(cofactors)


def _exact_determinant(matrix: list[list[Fraction]]) -> Fraction:
    """Gaussian elimination over the rationals (a row swap for a zero pivot flips the sign)."""
    rows = [list(row) for row in matrix]
    result = Fraction(1)
    for col in range(len(rows)):
        pivot = next((r for r in range(col, len(rows)) if rows[r][col] != 0), None)
        if pivot is None:
            return Fraction(0)
        if pivot != col:
            rows[col], rows[pivot] = rows[pivot], rows[col]
            result = -result
        result *= rows[col][col]
        for r in range(col + 1, len(rows)):
            factor = rows[r][col] / rows[col][col]
            rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return result


def mpmath_derivative(fn: Callable, points: np.ndarray, order: int) -> np.ndarray:
    """The ``order``-th derivative of elementwise ``fn(xp, x)`` at ``points``, via ``mpmath.diff``.

    ``mpmath.diff`` differences at extra precision; where ``fn`` saturates (tanh
    at x = 200 is 1 - 2e-174) 40 digits cancel to nothing, so the precision is
    doubled until two successive nonzero results agree to 30 digits (a true zero,
    such as tanh's second derivative at 0, goes through every precision).
    """
    return np.array([_mpmath_diff(fn, float(x), order) for x in np.ravel(points)]).reshape(np.shape(points))


def _mpmath_diff(fn: Callable, x: float, order: int) -> float:
    import mpmath

    namespace = _namespace()
    if not np.isfinite(x):
        return float("nan")
    previous = None
    for dps in (MPMATH_DPS, 2 * MPMATH_DPS, 4 * MPMATH_DPS, 8 * MPMATH_DPS, 16 * MPMATH_DPS):
        with mpmath.workdps(dps):
            value = mpmath.diff(lambda t: fn(namespace, t), mpmath.mpf(x), order)
            if (
                previous is not None
                and value != 0
                and abs(value - previous) <= mpmath.mpf(10) ** -30 * abs(value)
            ):
                return float(value)
            previous = value
    return float(previous)


def remainder_slope(
    fn: Callable, x: float, order: int, claimed: float, steps: Sequence[float] = (1e-2, 1e-3, 1e-4)
) -> float:
    """How fast ``|F(x+h) - F(x) - h * claimed|`` falls with h, F the exact (order-1)-th derivative.

    The log-log slope is 2 when ``claimed`` is F'(x) (the remainder is h**2 F''/2)
    and 1 when it is not (the remainder is h times the error): a diagnosis that
    needs no tolerance. F comes from mpmath at `MPMATH_DPS` digits.
    """
    import mpmath

    namespace = _namespace()
    with mpmath.workdps(MPMATH_DPS):

        def F(t):
            return mpmath.diff(lambda u: fn(namespace, u), t, order - 1) if order > 1 else fn(namespace, t)

        x0 = mpmath.mpf(float(x))
        base = F(x0)
        gaps = [abs(F(x0 + h) - base - h * mpmath.mpf(float(claimed))) for h in steps]
    logs = np.log([max(float(g), 1e-300) for g in gaps])
    return float(np.polyfit(np.log(steps), logs, 1)[0])


def central_derivative(fn: Callable, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First derivative of elementwise numpy ``fn`` at ``points``, with numdifftools' error estimate.

    Six steps from 1e-3 down by halves (13 calls of ``fn``; the default takes 31)
    keep the error near 1e-13 on smooth functions: ``fn`` is often a costly
    nested derivative.
    """
    import numdifftools  # here, not at the top: it imports scipy, 1-2 s, and `list` needs neither

    steps = numdifftools.MinStepGenerator(base_step=1e-3, num_steps=6, step_ratio=2)
    result = numdifftools.Derivative(fn, n=1, step=steps, full_output=True)(np.asarray(points, np.float64))
    return np.asarray(result.estimate), np.asarray(result.error_estimate)


def step_gaps(
    fn: Callable, points: np.ndarray, claimed: np.ndarray, steps: Sequence[float]
) -> list[np.ndarray]:
    """``claimed`` minus plain central differences of elementwise ``fn`` at ``points``, one signed
    array per step size: what `harness.validation.verdicts.sweep` extrapolates to a zero step."""
    x = np.asarray(points, np.float64)
    return [np.asarray(claimed - (fn(x + h) - fn(x - h)) / (2 * h), np.float64) for h in steps]


# --- Gradients of a problem's loss w.r.t. its selected arguments -----------------------------------


def of_flat_parameters(
    fn: Callable, xp: Any, args: tuple, argnums: int | tuple[int, ...]
) -> tuple[Callable[[np.ndarray], Any], np.ndarray]:
    """``F(theta) = fn(xp, *args)`` with the selected arguments read from the flat vector ``theta``."""
    like = select(args, argnums)

    def F(theta: np.ndarray) -> Any:
        return fn(xp, *substitute(args, argnums, unflatten(theta, like)))

    return F, flatten(like)


def directions(
    size: int, seed: int = 0, count: int = DIRECTIONS, dense: int = FULL_GRADIENT_LIMIT
) -> np.ndarray:
    """Rows to project gradients on: the unit basis up to ``dense`` entries, else ``count``
    seeded random unit vectors."""
    if size <= dense:
        return np.eye(size)
    v = np.random.default_rng(seed).standard_normal((count, size))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def complex_step(F: Callable, theta: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Directional derivatives ``rows @ grad F(theta)`` by complex step (F must be complex-safe).

    For a vector-valued ``F`` (m entries) each row's derivative is a vector: the result is
    ``rows @ J.T``, one column of the Jacobian ``J`` per unit row.
    """
    return np.array([np.imag(F(theta + 1j * COMPLEX_STEP * v)) / COMPLEX_STEP for v in rows])


def central_difference(F: Callable, theta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directional derivatives ``rows @ grad F(theta)`` by numdifftools, with error estimates
    (``rows @ J.T`` and its estimates, shaped alike, for a vector-valued ``F``)."""
    import numdifftools

    values, errors = [], []
    for v in rows:
        result = numdifftools.Derivative(lambda t, v=v: F(theta + t * v), full_output=True)(0.0)
        values.append(np.asarray(result.estimate, np.float64))
        errors.append(np.asarray(result.error_estimate, np.float64))
    return np.array(values), np.array(errors)


SECOND_DIFFERENCE_STEPS = (1e-4, 6)
"""numdifftools' base step and number of steps for `hessian_diagonal`: steps from 3.2e-3 down
by halves (its generator starts 32 base steps up), small enough to stay within one piece of a
piecewise function with a margin (k-means' cost: `harness.evals.kmeans.margin`)."""


def second_difference_steps() -> list[float]:
    """The steps `hessian_diagonal` differences with, largest first."""
    import numdifftools

    base, count = SECOND_DIFFERENCE_STEPS
    steps = numdifftools.MinStepGenerator(base_step=base, num_steps=count, step_ratio=2)
    return [float(h) for h in steps(0.0)]


def hessian_diagonal(F: Callable, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The diagonal of the Hessian of scalar ``F`` at ``theta`` by numdifftools' central second
    differences (``Hessdiag``, Richardson extrapolation), with its error estimate."""
    import numdifftools

    base, count = SECOND_DIFFERENCE_STEPS
    steps = numdifftools.MinStepGenerator(base_step=base, num_steps=count, step_ratio=2)
    result = numdifftools.Hessdiag(lambda t: float(F(t)), step=steps, full_output=True)(theta)
    return np.asarray(result.estimate, np.float64), np.asarray(result.error_estimate, np.float64)


RICHARDSON_STEPS = (1e-3, 1e-4, 1e-5, 1e-7)
"""First steps `richardson_difference` tries along a unit direction, each then halved twice; a
direction whose table does not converge at one (a jump within the step: ``round(x, 3)`` at
1e-3) is tried again at the next, and is unusable after the last."""
RICHARDSON_ENOUGH = 1e-10
"""A converged table whose error estimate is within this much of the derivative ends the search;
one with a larger estimate (steps across the kinks of a piecewise linear ``sort``) is retried at
the next smaller step, and the smallest estimate kept."""
RICHARDSON_LIMIT = 1e-7
"""A direction's difference is usable where its error estimate is within this much of the
largest derivative: enough to resolve an error of 1e-6 relative."""


def richardson(d: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Central differences (or their gaps to a claimed derivative) at steps h, h/2, h/4,
    extrapolated to a zero step twice: ``(once, twice)``, the h^2 term removed from the last two
    steps' values, then the h^4 term from both once-extrapolated values."""
    first = [(4 * d[1] - d[0]) / 3, (4 * d[2] - d[1]) / 3]
    return first[1], (16 * first[1] - first[0]) / 15


def richardson_difference(
    F: Callable, theta: np.ndarray, rows: np.ndarray, floor: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows @ J.T, error, usable)``: directional derivatives of vector-valued ``F`` by central
    differences at steps h, h/2, h/4 extrapolated twice (Richardson, h^2 then h^4), with an
    error estimate (the last extrapolation's change plus float64 rounding over the step) and,
    per row, whether the difference table converged.

    Hand-written rather than numdifftools' `Derivative`: with fewer than six steps its error
    estimate overstates a true 1e-13 error as 7e-4 (exp(sin(3x)) at 0.3, base step 1e-3), and
    at a jump of ``round(x, 3)`` it returns 1.0 with an estimate of 4e-14, so it can neither
    be cheap nor say when its steps cross a discontinuity. Here the table itself decides:
    successive differences of a smooth function shrink about 4x per halving; one that does
    not, or whose estimate exceeds `RICHARDSON_ENOUGH`, is retried at a smaller step
    (`RICHARDSON_STEPS`); the best table is kept, unusable if none converged. Six calls of
    ``F`` per row and step tried (numdifftools' default: 31).
    ``floor``: the function's own derivative scale, added to the largest derivative that a
    row's error estimate is held to (a zero Jacobian's differences are rounding alone).
    """
    eps = np.finfo(np.float64).eps
    values, errors, usable = [], [], []
    for v in rows:
        best = None
        for h in RICHARDSON_STEPS:
            steps = (h, h / 2, h / 4)
            plus = [np.asarray(F(theta + s * v), np.float64) for s in steps]
            minus = [np.asarray(F(theta - s * v), np.float64) for s in steps]
            d = [(p - q) / (2 * s) for p, q, s in zip(plus, minus, steps, strict=True)]
            r1, r2 = richardson(d)
            rounding = 8 * eps * np.max(np.abs(plus + minus), initial=0.0) / steps[-1]
            error = np.abs(r2 - r1) + rounding
            with np.errstate(invalid="ignore"):
                converging = bool(
                    np.all(np.isfinite(r2))
                    and np.all(np.abs(d[1] - d[2]) <= 0.5 * np.abs(d[0] - d[1]) + 2 * rounding)
                )
            worst = float(np.max(error, initial=0.0))
            if best is None or (converging, -worst) > (best[2], -float(np.max(best[1], initial=0.0))):
                best = (r2, error, converging)
            if converging and worst <= RICHARDSON_ENOUGH * (float(np.max(np.abs(r2), initial=0.0)) + floor):
                break
        values.append(best[0])
        errors.append(best[1])
        usable.append(best[2])
    scale = max((float(np.max(np.abs(r), initial=0.0)) for r in values), default=0.0) + floor
    good = np.array([ok and float(np.max(e, initial=0.0)) <= RICHARDSON_LIMIT * scale + 1e-300
                     for ok, e in zip(usable, errors, strict=True)], bool)  # fmt: skip
    return np.array(values), np.array(errors), good
