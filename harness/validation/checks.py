"""Check every backend x device x dtype x mode x strategy x problem x order against the oracles.

Each check compares a backend's result with a float64 (or higher) reference:

``|value - reference| <= rtol * |reference| + rtol * S``, with ``S`` the largest
``|reference|`` over the problem's points (so zeros, such as tanh's even
derivatives at 0, need no special case). ``rtol`` comes from `TOLERANCES`; it
grows with the order and with looser dtypes and is never scaled by array size.
Finite-difference oracles add their own error estimate to the allowed gap.

Each result is judged and classified by `harness.validation.verdicts`. Full Jacobians of
vector-valued problems are checked in `harness.validation.jacobians`, Hessian-vector products in
`harness.validation.hessians`, gradients with their Hessian's diagonal in
`harness.validation.diagonals`, nested optimizations (particle, saddle) in
`harness.validation.nested`, by the same rule. `harness.validation.session` turns the checks
into a run's verdict and report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from harness import oracles
from harness.errors import ShapeMismatch
from harness.hookspecs import DTYPES
from harness.plugins import BackendEntry
from harness.problems import GradientProblem, JacobianProblem, NestedProblem, Problem, ScalarProblem
from harness.pytree import flatten, select, structure, tree_map
from harness.strategies import HVP_STRATEGIES
from harness.target import Target
from harness.validation import hessians
from harness.validation.diagonals import diagonal_checks
from harness.validation.jacobians import jacobian_checks
from harness.validation.nested import nested_checks
from harness.validation.tolerances import FD_RTOL, tolerance
from harness.validation.verdicts import (
    Check,
    Head,
    agreement,
    attempt,
    error_check,
    head,
    judge,
    remainder,
    sweep,
    target_head,
)

SELF_CONSISTENCY_ORDERS = 6
"""Highest order checked against a central difference of the order below: the difference
costs 13 calls of a graph that grows exponentially with the order, and mpmath is exact anyway."""
DEFAULT_ORDERS = {"float64": tuple(range(1, 7)), "float32": tuple(range(1, 5))}


@dataclass
class Plan:
    """What to validate; ``None`` means everything the backend offers (orders: `DEFAULT_ORDERS`)."""

    backends: list[BackendEntry]
    problems: list[Problem]
    dtypes: tuple[str, ...] = DTYPES
    modes: tuple[str, ...] | None = None
    strategies: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    orders: tuple[int, ...] | None = None
    gradient_differences: bool = False
    """Check the Hessian-vector products of a problem with no closed form against differences
    of the backend's own gradient (`hessians.gradient_differences`: a user's function)."""


def check_plan(plan: Plan) -> Iterator[Check]:
    """Yield checks as they complete, then the backend-vs-backend agreement checks."""
    results: list[Check] = []
    for entry in plan.backends:
        for check in backend_checks(entry, plan):
            results.append(check)
            yield check
    yield from agreement(results)


Progress = Callable[[tuple], None]
"""Receives ``("total", n)`` once (the number of cases), ``("current", label)`` as work starts
on a case or order, and ``("advance",)`` after each case (the CLI's progress shows them)."""


def _ignore(event: tuple) -> None:
    pass


def backend_checks(entry: BackendEntry, plan: Plan, progress: Progress = _ignore) -> Iterator[Check]:
    """One backend's checks (none if it is unavailable), in this process."""
    if entry.unavailable:
        return
    with np.errstate(all="ignore"):  # overflow is classified, not warned about
        yield from _backend_checks(entry, plan, progress)


@dataclass(frozen=True)
class _TargetChecks:
    """One backend on one device, dtype and mode, with what validation needs besides."""

    target: Target
    devices: tuple[str, ...]
    self_consistency: bool
    """Run the self-consistency oracle here (float64, once per backend: in its last mode)."""
    progress: Progress = _ignore

    def current(self, what: str) -> None:
        t = self.target
        self.progress(("current", f"{t.device} {t.dtype} {t.mode} {what}"))

    def head(self, strategy: str, problem: str) -> Head:
        return target_head(self.target, problem, strategy)

    def unoffered(self, strategy: str | None) -> str | None:
        """Why the backend does not offer this target (and ``strategy``), or ``None``."""
        t, b = self.target, self.target.backend
        for what, value, offered in (
            ("device", t.device, self.devices),
            ("dtype", t.dtype, b.dtypes),
            ("mode", t.mode, b.modes),
            ("strategy", strategy, b.strategies),
        ):
            if value is not None and value not in offered:
                return f"{b.name} does not offer {what} {value!r} (offers {', '.join(offered)})"
        return None

    def offered(self, problem: str, strategies, chosen, order: int, what: str, label=str):
        """``(strategy, head, unsupported)`` for each of ``strategies`` that ``chosen`` selects (all
        where ``None``), named current in progress; ``unsupported`` is the Check to give instead
        where the target is not offered. ``label(strategy)`` names the head's strategy."""
        for strategy in strategies:
            if chosen is None or strategy in chosen:
                head = self.head(label(strategy), problem)
                self.current(f"{problem} {what} {strategy}")
                reason = self.unoffered(None)
                yield strategy, head, reason and head(order, "-", "unsupported", message=reason)


def _backend_checks(entry: BackendEntry, plan: Plan, progress: Progress) -> Iterator[Check]:
    backend = entry.backend
    try:
        devices = tuple(backend.devices())
    except Exception as exc:
        progress(("total", 0))
        unknown = dict(device="-", dtype="-", mode="-", strategy="-", problem="-")
        yield error_check(head(backend=entry.name, version=entry.version, **unknown), 0, exc)
        return
    modes = plan.modes or backend.modes
    cases = []  # listed first, so that progress knows the total
    for device in plan.devices or devices:
        for dtype in plan.dtypes:
            for mode in modes:
                job = _TargetChecks(
                    Target(entry, device, dtype, mode),
                    devices,
                    self_consistency=dtype == "float64" and mode == modes[-1],
                    progress=progress,
                )
                for problem in plan.problems:
                    if isinstance(problem, GradientProblem | JacobianProblem | NestedProblem):
                        cases.append((job, problem, None))
                    else:
                        cases += [(job, problem, s) for s in plan.strategies or backend.strategies]
    progress(("total", len(cases)))
    for job, problem, strategy in cases:
        dtype = job.target.dtype
        if isinstance(problem, JacobianProblem):
            yield from _guarded(
                jacobian_checks(job, problem, plan.orders, plan.strategies), job.head("-", problem.name)
            )
        elif isinstance(problem, NestedProblem):
            yield from _guarded(
                nested_checks(job, problem, plan.orders, plan.strategies), job.head("-", problem.name)
            )
        elif strategy is None:
            job.current(f"{problem.name} value+grad")
            yield from _guarded(
                _gradient_checks(job, problem, plan.orders), job.head("reverse", problem.name)
            )
            yield from _guarded(_hvp_checks(job, problem, plan), job.head("-", problem.name))
            yield from _guarded(
                diagonal_checks(job, problem, plan.orders, plan.strategies), job.head("-", problem.name)
            )
        else:
            yield from _guarded(
                _scalar_checks(job, strategy, problem, plan.orders or DEFAULT_ORDERS[dtype]),
                job.head(strategy, problem.name),
            )
        progress(("advance",))


def _guarded(checks: Iterator[Check], head: Head) -> Iterator[Check]:
    """``checks``, with anything a backend raises between checks turned into an error check."""
    try:
        yield from checks
    except Exception as exc:
        yield error_check(head, 0, exc)


def _scalar_checks(job: _TargetChecks, strategy: str, problem: ScalarProblem, orders) -> Iterator[Check]:
    target = job.target
    head = job.head(strategy, problem.name)
    reason = job.unoffered(strategy)
    if reason:
        for order in orders:
            yield head(order, "-", "unsupported", message=reason)
        return
    points = np.asarray(problem.points, dtype=target.dtype)
    x64 = points.astype(np.float64)
    try:
        x = target.array(points)
        lower = {0: target.compiled(target.function(problem))}
    except Exception as exc:
        yield error_check(head, 0, exc)
        return
    for order in orders:
        job.current(f"{problem.name} {strategy} order {order}")

        def twice(order=order):
            d = target.derivative(problem, order, strategy)
            return d, *(_shaped(target.numpy(d(x)), points.shape) for _ in range(2))

        outcome, seconds = attempt(head, order, twice)
        if isinstance(outcome, Check):
            yield outcome
            continue
        d, first, second = outcome
        rtol = tolerance(target.dtype, order)
        if problem.polynomial is not None:
            reference = oracles.exact_polynomial(problem.polynomial, x64, order)
            oracle = "exact"
        else:
            reference = oracles.mpmath_derivative(problem.fn, x64, order)
            oracle = f"mpmath({oracles.MPMATH_DPS} digits)"
        check = judge(
            head(order, oracle, "pass", points=x64.tolist(), seconds=seconds), first, second, reference, rtol
        )
        if check.classification == "wrong derivative":
            check = remainder(check, problem, x64, order, first, reference)
        yield check
        exact = check
        lower[order] = d
        if job.self_consistency and order <= SELF_CONSISTENCY_ORDERS:
            check = head(order, "self-consistency", "pass", points=x64.tolist())
            try:
                previous = lower.get(order - 1) or target.derivative(problem, order - 1, strategy)
            except Exception as exc:
                yield error_check(head, order, exc)
                continue
            yield _self_consistency(check, target, previous, x64, first, second, rtol, exact)


def _shaped(value: np.ndarray, shape: tuple) -> np.ndarray:
    if value.shape != shape:
        raise ShapeMismatch(f"derivative has shape {value.shape}, expected {shape}")
    return value


def _self_consistency(check, target: Target, previous, x64, first, second, rtol, exact: Check) -> Check:
    """Order n against a central difference of the backend's own order n-1 (float64 only).
    ``exact``: the same result's check against the exact or multiprecision oracle."""

    def lower(t):
        return _shaped(target.numpy(previous(target.array(t))), np.shape(t))

    finite = np.isfinite(x64)  # a NaN or inf point has no difference: its reference is NaN
    reference, error = np.full_like(x64, np.nan), np.zeros_like(x64)
    try:
        if finite.any():
            reference[finite], error[finite] = oracles.central_derivative(lower, x64[finite])
    except Exception as exc:
        return replace(
            check, status="error", classification="exception", message=f"{type(exc).__name__}: {exc}"
        )
    check = judge(check, first, second, reference, max(rtol, FD_RTOL), slack=4 * error)
    if check.classification == "wrong derivative":
        check = sweep(check, lower, x64, first, exact)
    return check


def _gradient_checks(job: _TargetChecks, problem: GradientProblem, orders) -> Iterator[Check]:
    target = job.target
    head = job.head("reverse", problem.name)
    if orders is not None and 1 not in orders:
        return
    reason = job.unoffered(None)
    if reason:
        yield head(1, "-", "unsupported", message=reason)
        return
    args64 = problem.make_args(problem.size)
    rounded = tree_map(lambda a: np.asarray(a, dtype=target.dtype).astype(np.float64), args64)

    def twice():
        args, vg = target.array(args64), target.value_and_grad(problem)
        results = [target.numpy(vg(*args)) for _ in range(2)]
        expected = structure(select(rounded, problem.argnums))
        if structure(results[0][1]) != expected:
            raise ShapeMismatch(f"gradient has structure {structure(results[0][1])}, expected {expected}")
        return results

    outcome, seconds = attempt(head, 1, twice)
    if isinstance(outcome, Check):
        yield outcome
        return
    (v1, g1), (v2, g2) = outcome

    value_slack = (
        tolerance(target.dtype, 0) * problem.value_magnitude(*rounded) if problem.value_magnitude else 0.0
    )
    yield judge(
        head(0, "numpy-float64", "pass", points="loss value", seconds=seconds),
        v1,
        v2,
        np.asarray(problem.fn(np, *rounded), np.float64),
        tolerance(target.dtype, 0),
        slack=value_slack,
    )
    rtol = tolerance(target.dtype, 1)
    g, g_again = flatten(g1), flatten(g2)
    magnitude = flatten(problem.magnitude(*rounded)) if problem.magnitude else np.zeros_like(g)
    exact = []
    if problem.gradient is not None:
        exact.append(
            judge(
                head(1, problem.gradient_oracle, "pass", points="full gradient"),
                g,
                g_again,
                flatten(problem.gradient(*rounded)),
                rtol,
                slack=rtol * magnitude,
            )
        )
        yield exact[-1]
    F, theta = oracles.of_flat_parameters(problem.fn, np, rounded, problem.argnums)
    rows = oracles.directions(theta.size)
    where = (
        "full gradient"
        if theta.size <= oracles.FULL_GRADIENT_LIMIT
        else f"{len(rows)} seeded random directions"
    )
    claimed, claimed_again = rows @ g, rows @ g_again
    slack = rtol * (np.abs(rows) @ magnitude)
    if problem.complex_step:
        exact.append(
            judge(
                head(1, "complex-step", "pass", points=where),
                claimed,
                claimed_again,
                oracles.complex_step(F, theta, rows),
                rtol,
                slack=slack,
            )
        )
        yield exact[-1]
    reference, error = oracles.central_difference(F, theta, rows)
    check = judge(
        head(1, "central-difference", "pass", points=where),
        claimed,
        claimed_again,
        reference,
        max(rtol, FD_RTOL),
        slack=slack + 4 * error,
    )
    if check.classification == "wrong derivative":

        def along(t):
            return np.array([F(theta + ti * v) for ti, v in zip(t, rows, strict=True)])

        check = sweep(check, along, np.zeros(len(rows)), claimed, *exact)
    yield check


def _hvp_checks(job: _TargetChecks, problem: GradientProblem, plan: Plan) -> Iterator[Check]:
    """Hessian-vector products (`harness.validation.hessians`) against the closed forms, or
    where the problem has none and the plan asks, differences of the backend's gradient."""
    if plan.orders is not None and 2 not in plan.orders:
        return
    if problem.hvp is not None:
        references = hessians.closed_form
    elif plan.gradient_differences:
        references = hessians.gradient_differences
    else:
        return
    offered = job.offered(problem.name, HVP_STRATEGIES, plan.strategies, 2, "hvp")
    args = problem.make_args(problem.size)
    yield from hessians.hvp_checks(job.target, problem, args, offered, references)
