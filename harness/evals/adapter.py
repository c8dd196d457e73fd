"""GradBench's function names mapped to computations on a backend and to float64 oracles.

An eval module speaks GradBench's protocol (`harness.gradbench`) through three names:

- ``gradbench_input(size=None) -> dict``: GradBench's ``evaluate`` input at ``size`` (the
  module's ``args`` size tuple), without ``min_runs``/``min_seconds``, drawn as GradBench
  draws it.
- ``from_gradbench(input) -> tuple``: the arguments its functions take (float64 numpy) from
  such an input, GradBench's or the harness's own: the problem's (ba's: its observations with
  integer indices).
- ``GRADBENCH``: ``{function name: Function}``, one `Function` per GradBench function of the eval
  (``primal``/``gradient``; ode's ``gradient`` is the gradient of ``y_{n-1}``; particle's and
  saddle's ``rr ff fr rf`` their answers in those mode pairs), each built here (`value`,
  `gradient`, `jacobian_row`, `jacobian`, `nested`) or by the module for a shape of its own
  (kmeans's ``dir``, gmm's dict, ba's golden cuts).

A `Function` says how a backend computes it (``prepare``: through `harness.target.Target` and
`harness.strategies`, so a third-party backend serves it unchanged), how the result becomes
GradBench's JSON output (``output``), how a tool's JSON output reads back (``parse``) and which
float64 oracles judge it (``oracles``), by the tolerance rule of `harness.validation.tolerances`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness import strategies
from harness.errors import ShapeMismatch
from harness.oracles import (
    FULL_GRADIENT_LIMIT,
    central_difference,
    complex_step,
    directions,
    of_flat_parameters,
)
from harness.pytree import flatten, select
from harness.validation.nested import answer_reference
from harness.validation.tolerances import FD_RTOL, tolerance


@dataclass(frozen=True)
class Oracle:
    """A float64 reference for a function's result: ``along`` projects the flat result first
    (``None``: compared entry by entry); the allowed gap is the tolerance rule's plus ``slack``."""

    name: str
    reference: np.ndarray
    rtol: float
    slack: Any = 0.0
    along: np.ndarray | None = None
    points: str = ""


def to_json(result: Any) -> Any:
    """A float64 numpy result as GradBench's JSON: a number, or (nested) lists of numbers."""
    array = np.asarray(result, np.float64)
    return float(array) if array.ndim == 0 else array.tolist()


def numbers(output: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A tool's JSON output read as float64 of ``shape`` (``()``: one number); `ShapeMismatch`
    naming what it is instead. NaN and infinity pass through (they are judged, not refused)."""

    def ok(item: Any, depth: int) -> bool:
        if depth == len(shape):
            return isinstance(item, int | float) and not isinstance(item, bool)
        return isinstance(item, list) and len(item) == shape[depth] and all(ok(i, depth + 1) for i in item)

    if not ok(output, 0):
        raise ShapeMismatch(f"expected {_describe(shape)}, got {_summary(output)}")
    return np.asarray(output, np.float64)


def _describe(shape: tuple[int, ...]) -> str:
    return "a number" if not shape else "an array of shape " + " x ".join(map(str, shape))


def _summary(output: Any) -> str:
    if isinstance(output, list):
        inner = f" of {_summary(output[0])}" if output else ""
        return f"a list of {len(output)}{inner}"
    return f"{type(output).__name__} {output!r}"[:80]


@dataclass(frozen=True)
class Function:
    """One GradBench function of an eval.

    ``order`` (0 the value, 1 a derivative) and ``strategy`` name it in checks and expected
    outcomes. ``prepare(target, problem, args)`` returns a callable on the backend's arrays of
    ``from_gradbench``'s arguments (``args``: them in float64 numpy, for what depends on their
    sizes, or all a function needs: ba's ignore the backend's arrays);
    ``oracles(problem, args)`` the references for float64 ``args`` (the first one's shape, or
    its ``along``'s columns, is the output's shape); ``output`` turns the numpy result into
    GradBench's JSON and ``parse(output, shape)`` reads a tool's JSON back.
    """

    order: int
    strategy: str
    prepare: Callable[[Any, Any, tuple], Callable]
    oracles: Callable[[Any, tuple], list[Oracle]]
    output: Callable[[Any], Any] = to_json
    parse: Callable[[Any, tuple], np.ndarray] = field(default=numbers)
    unoffered: Callable[[str], str | None] = field(default=lambda mode: None)
    """Why it cannot run in an execution mode (``None``: it can)."""


# --- primal: the function's value ------------------------------------------------------------------


def _value_oracles(problem, args: tuple) -> list[Oracle]:
    rtol = tolerance("float64", 0)
    slack = rtol * problem.value_magnitude(*args) if getattr(problem, "value_magnitude", None) else 0.0
    reference = np.asarray(problem.fn(np, *args), np.float64)
    return [Oracle("numpy-float64", reference, rtol, slack, points="value")]


def value() -> Function:
    """``primal``: the problem's function (a number, or a vector for a Jacobian problem)."""
    return Function(0, "-", lambda target, problem, args: target.value(problem), _value_oracles)


# --- gradient: of a scalar loss, or of one entry of a vector function ------------------------------


def _derivative_oracles(F: Callable, theta: np.ndarray, exact: list[Oracle], magnitude) -> list[Oracle]:
    """``exact`` plus a complex step and central differences of ``F`` at ``theta``, along the unit
    basis up to `harness.oracles.FULL_GRADIENT_LIMIT` entries, else along seeded random directions."""
    rtol = tolerance("float64", 1)
    rows = directions(theta.size)
    where = "full gradient" if theta.size <= FULL_GRADIENT_LIMIT else f"{len(rows)} directions"
    slack = rtol * (np.abs(rows) @ magnitude)
    central, error = central_difference(F, theta, rows)
    return exact + [
        Oracle("complex-step", complex_step(F, theta, rows), rtol, slack, rows, where),
        Oracle("central-difference", central, max(rtol, FD_RTOL), slack + 4 * error, rows, where),
    ]


def _gradient_oracles(problem, args: tuple) -> list[Oracle]:
    rtol = tolerance("float64", 1)
    F, theta = of_flat_parameters(problem.fn, np, args, problem.argnums)
    magnitude = flatten(problem.magnitude(*args)) if problem.magnitude else np.zeros_like(theta)
    exact = []
    if problem.gradient is not None:
        closed = flatten(problem.gradient(*args))
        exact.append(Oracle(problem.gradient_oracle, closed, rtol, rtol * magnitude, points="full gradient"))
    return _derivative_oracles(F, theta, exact, magnitude)


def _gradient_prepare(target, problem, args: tuple) -> Callable:
    value_and_grad = target.value_and_grad(problem)
    return lambda *args: value_and_grad(*args)[1]


def gradient() -> Function:
    """``gradient``: a scalar loss's gradient w.r.t. its selected arguments, by reverse mode
    (`Target.value_and_grad`), flattened as GradBench's ``[n]``."""
    return Function(1, "reverse", _gradient_prepare, _gradient_oracles, output=lambda g: to_json(flatten(g)))


def jacobian_row(row: int, closed_form: Callable | None = None) -> Function:
    """``gradient`` of entry ``row`` of a vector function: one row of its Jacobian, by the reverse
    strategy of `harness.strategies.jacobian` (one vector-Jacobian product, the unit cotangent
    passed in as data). ``closed_form(*args)``, when given, is that row in float64."""

    def prepare(target, problem, args: tuple) -> Callable:
        f = target.function(problem)
        rows = target.compiled(strategies.jacobian(target.backend, f, problem.argnums, "reverse"))
        outputs = np.size(problem.fn(np, *args))
        basis = target.array((np.eye(outputs)[row],))
        return lambda *backend_args: rows(basis, *backend_args)[1][0]

    def oracles(problem, args: tuple) -> list[Oracle]:
        F, theta = of_flat_parameters(problem.fn, np, args, problem.argnums)
        exact = []
        if closed_form is not None:
            reference = np.asarray(closed_form(*args), np.float64)
            exact.append(Oracle("closed-form", reference, tolerance("float64", 1), points=f"row {row}"))
        return _derivative_oracles(lambda t: F(t)[row], theta, exact, np.zeros_like(theta))

    return Function(1, "reverse", prepare, oracles, output=lambda g: to_json(flatten(g)))


# --- jacobian: a vector function's whole Jacobian ---------------------------------------------------


def jacobian(entries: Callable[[np.ndarray], np.ndarray] = lambda J: J) -> Function:
    """``jacobian``: a vector function's m x n Jacobian w.r.t. its selected arguments, column by
    column in forward mode (`harness.strategies.jacobian`), GradBench's ``[m][n]`` (or what
    ``entries`` picks of it: ht's complicated variant wants each row's own few columns); judged
    against a complex step (where the problem allows one) and central differences along each of
    the n unit vectors, picked alike."""

    def prepare(target, problem, args: tuple) -> Callable:
        columns = target.jacobian(problem, "forward")
        basis = target.array(strategies.jacobian_basis("forward", select(args, problem.argnums), 0))
        return lambda *backend_args: columns(basis, *backend_args)[1]

    def oracles(problem, args: tuple) -> list[Oracle]:
        F, theta = of_flat_parameters(problem.fn, np, args, problem.argnums)
        rows, rtol, where = np.eye(theta.size), tolerance("float64", 1), f"all {theta.size} columns"
        found = []
        if getattr(problem, "complex_step", True):
            stepped = entries(complex_step(F, theta, rows).T)
            found.append(Oracle("complex-step", stepped, rtol, points=where))
        central, error = central_difference(F, theta, rows)
        slack = 4 * entries(error.T).ravel()
        found.append(
            Oracle("central-difference", entries(central.T), max(rtol, FD_RTOL), slack, points=where)
        )
        return found

    def output(parts) -> Any:
        return to_json(entries(np.stack([flatten(column) for column in parts], axis=1)))

    return Function(1, "forward", prepare, oracles, output=output)


# --- a nested optimization's answer, in one mode pair ------------------------------------------------


def nested(pair: str, shape: tuple[int, ...]) -> Function:
    """A `harness.problems.NestedProblem`'s answer in mode ``pair`` (``rr ff fr rf``: outer, inner;
    `harness.target.Target.nested`), GradBench's JSON of ``shape`` (``()``: one number), judged as
    `harness.validation.nested` judges it: against the descent in float64 numpy and, at the
    problem's own arguments, GradBench's expected answer, both within the gap the descent's
    stopping rule allows. In a compiled mode the problem compiles its own units of work (an
    Euler step, an inner descent's objective and gradient); the descents stay in Python."""

    def prepare(target, problem, args: tuple) -> Callable:
        answer = target.nested(problem, pair, "answer")
        return lambda *backend_args: tuple(answer(*backend_args))

    def oracles(problem, args: tuple) -> list[Oracle]:
        reference, rtol = answer_reference(problem, args)
        where = f"the answer; the stopping rule allows {rtol * np.max(np.abs(reference)):.3g}"
        found = [Oracle("reference-descent", reference.reshape(shape), rtol, points=where)]
        own = problem.make_args(problem.size)
        if problem.expected is not None and all(map(np.array_equal, args, own)):
            found.append(Oracle("gradbench", np.reshape(problem.expected, shape), rtol, points=where))
        return found

    return Function(
        0,
        pair,
        prepare,
        oracles,
        output=lambda result: to_json(np.reshape(np.asarray(result, np.float64), shape)),
    )


def finite(result: Any) -> str | None:
    """Why a numpy result (an array or a tuple of them) is no GradBench output (NaN or infinity,
    and where in it flattened), or ``None``."""
    array = flatten(result)
    bad = ~np.isfinite(array)
    if not bad.any():
        return None
    first = int(np.argmax(bad.ravel()))
    return (
        f"{int(bad.sum())} of {array.size} entries are not finite (flat index {first}: {array.flat[first]})"
    )
