"""The checks `harness.check` runs on a user's function, written in a framework: its Jacobian by
forward and by reverse mode (`harness.strategies.jacobian`) against a complex step or Richardson
differences of the same function, evaluated through its own framework in float64.

Whatever the function returns is one flat real vector (`harness.outputs.Layout`), m entries;
the differentiated arguments are n. Up to `DENSE_LIMIT` inputs the Jacobian is
checked column by column (``J e_k``, one ``jvp`` each), beyond along `PROJECTIONS` seeded
random sign vectors ``V`` (entries +-1, so that each input moves by the whole step and the
differences resolve ``J V`` as well as a column); up to as many outputs the reverse rows are
the unit cotangents', beyond seeded random unit ones ``U`` (``U^T J``, n entries each). Forward
mode is judged on ``J V``, reverse on ``U^T J V``, each against the oracle's ``J V`` (``U^T`` of
it), and the two against each other; at order 2 (`checks`), Hessian-vector products of the
output (`harness.validation.hessians`). Memory is O((m + n) x directions): no dense m x n matrix
beyond the limits.

The allowed gap is `tolerances.allowed_gap`'s, plus three terms for a function nobody on the
project wrote: an absolute floor for references all or partly (near) zero (``rtol`` times the
function's own scale, ``max|f| / max(1, max|x|)``), the difference's error estimate, and a
conditioning allowance: how far the strategy's own derivative moves when each input moves by
16 units in the last place, the rounding the derivative is sensitive to (one more call per
strategy, made only where a check fails without it). Nondeterminism: each strategy's first
direction is computed twice (one more call per strategy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from harness import oracles
from harness.outputs import Layout
from harness.problems import GradientProblem
from harness.pytree import flatten, select, substitute, tree_map, unflatten
from harness.strategies import HVP_STRATEGIES, JACOBIAN_STRATEGIES, jacobian, jacobian_matrix
from harness.target import Target
from harness.validation import hessians
from harness.validation.tolerances import FD_RTOL, tolerance
from harness.validation.verdicts import (
    AGREEMENT_FACTOR,
    Check,
    Head,
    attempt,
    error_check,
    inconclusive,
    judge,
    target_head,
)

PROBE_RTOL = 1e-6
"""The complex step is used as an oracle where it agrees with the differences this well along a
probe direction (a function with ``abs`` or a branch on values does not)."""
DENSE_LIMIT, PROJECTIONS = 8, 4
"""Up to `DENSE_LIMIT` inputs (outputs) the Jacobian is checked by columns (rows), beyond along
`PROJECTIONS` seeded random directions: each strategy's cost is then a few passes whatever
the size, as gradcheck's fast mode. The cost in detection: an error confined to one entry
``J_ij`` shows in forward mode's ``(J v)_i`` whole (``v_j = +-1``), against a tolerance on the
sum of row i's entries, and in reverse mode's ``u^T J v`` scaled by ``u_i`` (about
``1/sqrt(m)``); an error of the whole Jacobian (a rule scaled by 1 + eps) is caught as by dense
Jacobians."""
PERTURBATION_ULPS = 16
"""The conditioning allowance: the derivative's change when each input moves this many units in
the last place."""


class Function:
    """``fn(*args)`` with ``args[argnums]`` read from a flat float64 vector, evaluated on the host
    through the framework (``at``) and inside a framework's trace (``traced``)."""

    def __init__(self, target: Target, fn: Callable, args64: tuple, argnums: int | tuple[int, ...]):
        self.target, self.fn, self.args64, self.argnums = target, fn, args64, argnums
        self.like = select(args64, argnums)
        self.theta = flatten(self.like)
        self.first = self.evaluate(self.theta)
        self.layout = Layout.of(self.first)
        marks = getattr(target.backend, "differentiable_outputs", None)
        if marks is not None:
            self.layout = self.layout.without(marks(fn, self.arrays(args64, "float64"), argnums))

    def evaluate(self, theta: np.ndarray) -> Any:
        """``fn`` at ``theta`` in float64 (complex128 for a complex ``theta``), as numpy leaves."""
        backend = self.target.backend
        dtype = "complex128" if np.iscomplexobj(theta) else "float64"
        moved = substitute(self.args64, self.argnums, unflatten(theta, self.like))
        result = backend.block_until_ready(self.fn(*self.arrays(moved, dtype)))
        return tree_map(lambda y: np.asarray(backend.to_numpy(y)) if hasattr(y, "shape") else y, result)

    def arrays(self, args: tuple, dtype: str) -> tuple:
        """``args`` as the framework's arrays: the differentiated ones in ``dtype``, the others'
        real floating leaves in the checked dtype, and their integer, boolean and complex leaves
        (indices, masks, constants) in their own."""
        t = self.target
        chosen = {self.argnums} if isinstance(self.argnums, int) else set(self.argnums)

        def leaf(a: Any, differentiated: bool) -> Any:
            a = np.asarray(a)
            own = dtype if differentiated else t.dtype if a.dtype.kind == "f" else str(a.dtype)
            return t.backend.asarray(a, own, t.device)

        return tuple(tree_map(lambda a, d=i in chosen: leaf(a, d), arg) for i, arg in enumerate(args))

    def at(self, theta: np.ndarray) -> np.ndarray:
        return self.layout.flat_numpy(self.evaluate(theta), keep_complex=np.iscomplexobj(theta))

    def traced(self, *args: Any) -> Any:
        return self.layout.flat(self.target.backend.namespace(), self.fn(*args))

    def scalar(self) -> Callable:
        """The problem function ``f(xp, *args)`` of a scalar, whose Hessian order 2 checks: the
        flat output itself where it has one entry, else its inner product with a seeded random
        unit cotangent."""
        size = self.layout.size
        u = np.ones(1) if size == 1 else oracles.directions(size, seed=5, count=1, dense=0)[0]

        def scalar(xp: Any, *args: Any) -> Any:
            flat = self.layout.flat(xp, self.fn(*args))
            if size == 1:
                return xp.sum(flat)
            # In the checked dtype, so that the float64 oracle weighs by the same (rounded) numbers.
            t = self.target
            return xp.sum(flat * t.backend.asarray(u, t.dtype, t.device))

        return scalar


def checks(
    target: Target, fn: Callable, args64: tuple, argnums: int, order: int, strategies, name: str
) -> list[Check]:
    """`function_checks`, and at ``order`` 2 the Hessian-vector products of `Function.scalar`
    against differences of the backend's own float64 gradient (`hessians.gradient_differences`)."""
    found, F = function_checks(target, fn, args64, argnums, strategies, name)
    if order == 2 and F is not None and F.layout.size and F.theta.size:
        problem = GradientProblem(name, F.scalar(), lambda size=None: args64, argnums)
        offered = ((s, target_head(target, name, s), None) for s in HVP_STRATEGIES
                   if strategies is None or s in strategies)  # fmt: skip
        try:
            products = hessians.hvp_checks(target, problem, args64, offered, hessians.gradient_differences)
            found += list(products)
        except Exception as exc:
            found.append(error_check(target_head(target, name, "-"), 2, exc))
    return found


def function_checks(
    target: Target, fn: Callable, args64: tuple, argnums: int | tuple[int, ...], strategies, name: str
) -> tuple[list[Check], Function | None]:
    """The checks of ``fn``'s Jacobian w.r.t. ``args64[argnums]`` on ``target`` (eager), and the
    `Function` (``None`` where ``fn`` raised at the point)."""
    head = partial(target_head, target, name)
    try:
        with np.errstate(all="ignore"):
            F = Function(target, fn, args64, argnums)
    except Exception as exc:
        found = error_check(head("-"), 1, exc)
        found.message = f"{name} raised at the checked point (float64): {found.message}"
        return [found], None
    m, n = F.layout.size, F.theta.size
    if m == 0 or n == 0:
        message = (f"a {m} x {n} Jacobian has no entry that could be wrong: trivially right "
                   f"({F.layout.describe()}; {n} input entries)")  # fmt: skip
        return [head("-")(1, "-", "pass", points=f"empty Jacobian {m} x {n}", message=message)], F
    with np.errstate(all="ignore"):
        return _checks(F, head, strategies), F


def _checks(F: Function, head, strategies) -> list[Check]:
    target, m, n = F.target, F.layout.size, F.theta.size
    y0 = F.layout.flat_numpy(F.first)
    # The function's own derivative scale, max|f| / max(1, max|x|): what a zero derivative's
    # rounding residue is measured against (softmax(x + b) w.r.t. b: exactly zero, residue 8e-17).
    scale = float(np.max(np.abs(y0), initial=0.0)) / max(1.0, float(np.max(np.abs(F.theta), initial=0.0)))
    floor = tolerance(target.dtype, 1) * scale
    V = oracles.directions(n, count=PROJECTIONS, dense=DENSE_LIMIT)
    if n > DENSE_LIMIT:
        V = np.sign(V)
    U = oracles.directions(m, seed=1, count=PROJECTIONS, dense=DENSE_LIMIT)
    oracle = _oracle(F, V, scale)
    if isinstance(oracle, Exception):
        found = error_check(head("-"), 1, oracle)
        found.message = f"no oracle: {found.message}"
        return [found]
    name, R, error, usable, note = oracle
    if F.layout.notes:  # complex parts, integer or undifferentiated outputs: say what was checked
        note = f"{F.layout.describe()}; {note}" if note else F.layout.describe()
    what = "gradient" if m == 1 else f"{m} x {n} Jacobian"
    where = f"full {what}" if n <= DENSE_LIMIT else f"{what} along {len(V)} seeded random sign vectors"
    found, projected = [], {}
    rtol = tolerance(target.dtype, 1)
    if name != "complex-step":
        rtol = max(rtol, FD_RTOL)
    for strategy in JACOBIAN_STRATEGIES:
        if strategies is not None and strategy not in strategies:
            continue
        h = head(strategy)
        basis = V if strategy == "forward" else U
        outcome, seconds = attempt(h, 1, lambda s=strategy, b=basis, h=h: _run(F, s, b, y0, h))
        if isinstance(outcome, Check):
            found.append(outcome)
            continue
        value_check, claimed, differs, moved = outcome
        found.append(replace(value_check, seconds=seconds))
        if strategy == "forward":  # J V, m x k
            reference, slack, C = R, error, claimed
        else:  # (U^T J) V against U^T (J V)
            reference, slack, C = U @ R, np.abs(U) @ error, claimed @ V.T
        projected[strategy] = (C if strategy == "reverse" else U @ C, moved)
        # Only the directions whose differences converged are judged; the others make the check
        # inconclusive where those pass (never a pass, never a failure of its own).
        check = _judge(
            lambda h=h: h(1, name, "pass", points=where, message=note), C[:, usable], reference[:, usable],
            rtol, (4 * slack + floor)[:, usable], moved,
        )  # fmt: skip
        if differs:
            check = replace(check, status="fail", classification="nondeterministic", message=differs)
        else:
            why = "the differences did not converge along {bad} of {total} directions at any step"
            check = inconclusive(check, usable, why + " (a discontinuity at the point?)")
        found.append(check)
    if len(projected) == 2:
        (forward, moved_f), (reverse, moved_r) = projected["forward"], projected["reverse"]
        t = target
        label = f"agreement:{t.entry.name}/{t.mode}/forward"
        found.append(_judge(
            lambda: head("reverse")(1, label, "pass", points=where), reverse, forward,
            AGREEMENT_FACTOR * tolerance(t.dtype, 1), AGREEMENT_FACTOR * floor, lambda: moved_f() + moved_r(),
        ))  # fmt: skip
    return found


def _judge(
    make: Callable[[], Check], claimed, reference, rtol: float, slack, moved: Callable[[], float]
) -> Check:
    """`judge` with the conditioning allowance (``moved()``, one more call of the strategy)
    measured only where the check fails without it."""
    check = judge(make(), claimed.ravel(), claimed.ravel(), reference.ravel(), rtol, slack=np.ravel(slack))
    if check.status != "fail":
        return check
    try:
        allowance = moved()
    except Exception:  # an allowance only: the failure stands as it is
        return check
    return judge(make(), claimed.ravel(), claimed.ravel(), reference.ravel(), rtol,
                 slack=np.ravel(slack) + allowance)  # fmt: skip


def _oracle(F: Function, V: np.ndarray, scale: float):
    """``(name, J V, error, usable, note)``: the complex step where it applies, else Richardson
    differences; an `Exception` where ``fn`` fails at every difference step."""
    try:
        probe = oracles.directions(F.theta.size, seed=7, count=1, dense=0)[0]
        central, error, ok = oracles.richardson_difference(F.at, F.theta, probe[None], scale)
    except Exception as exc:
        return exc
    why = (
        _complex_step_refusal(F, probe, central[0], error[0]) if ok[0] else "the differences did not converge"
    )
    if why is None:
        try:
            stepped = oracles.complex_step(F.at, F.theta, V)
            if np.all(np.isfinite(stepped)):
                return "complex-step", stepped.T, np.zeros_like(stepped.T), np.ones(len(V), bool), ""
            why = "the complex step is not finite along every direction"
        except Exception as exc:
            why = f"the complex step raised {type(exc).__name__}: {exc}"
    try:
        values, errors, usable = oracles.richardson_difference(F.at, F.theta, V, scale)
    except Exception as exc:
        return exc
    return "central-difference", values.T, errors.T, usable, f"no complex step: {why}"


def _complex_step_refusal(F: Function, probe: np.ndarray, central, error) -> str | None:
    """Why the complex step cannot serve as the oracle, or ``None``."""
    if F.layout.has_complex:
        return "the function returns complex values (its real and imaginary parts are checked)"
    return complex_step_refusal(F.at, F.theta, probe, lambda: (central, error))


def complex_step_refusal(F: Callable, theta: np.ndarray, probe: np.ndarray, differences) -> str | None:
    """Why the complex step of ``F`` at ``theta`` cannot serve as its oracle, or ``None``: along
    the unit direction ``probe`` it must take complex input and, where finite, give the
    derivative that ``differences()`` gives (``(derivative, error estimate)`` along ``probe``,
    asked only once the step ran) within `PROBE_RTOL` (a function with ``abs`` or a branch on
    values does not)."""
    try:
        with np.errstate(all="ignore"):
            stepped = oracles.complex_step(F, theta, probe[None])[0]
    except Exception as exc:  # no complex input, or another shape under it (torch.stft)
        return f"given complex input it raised {type(exc).__name__}: {str(exc)[:200]}"
    central, error = differences()
    gap = np.abs(stepped - central)
    if not (
        np.all(np.isfinite(stepped)) and np.all(gap <= PROBE_RTOL * np.abs(central) + 4 * error + 1e-300)
    ):
        return "along a probe direction it disagrees with the differences (not analytic: abs, a branch)"
    return None


def _run(F: Function, strategy: str, basis: np.ndarray, y0: np.ndarray, head: Head):
    """One strategy's value check, its projections (``J V`` or ``U^T J``), whether a second call
    along the first direction differs (nondeterminism), and how far a mix of the directions
    (weighted by seeded normal numbers) moves when each input moves by `PERTURBATION_ULPS`
    (conditioning: ``moved()``, one call, made only where a check needs it)."""
    target = F.target
    jac = jacobian(target.backend, F.traced, F.argnums, strategy)
    forward = strategy == "forward"
    directions = [unflatten(v, F.like) for v in basis] if forward else list(basis)
    args = F.arrays(F.args64, target.dtype)

    def run(rows, arguments) -> tuple[np.ndarray, np.ndarray]:
        return jacobian_matrix(strategy, *target.numpy(jac(target.array(tuple(rows)), *arguments)))

    value, claimed = run(directions, args)
    _, again = run(directions[:1], args)
    first = claimed[:, :1] if forward else claimed[:1]
    gap = float(np.max(np.abs(again - first), initial=0.0))
    repeat = tolerance(target.dtype, 1) * 2 * float(np.max(np.abs(first), initial=0.0))
    differs = None if gap <= repeat else f"a second call along the first direction differs by {gap:.3g}"
    cache: list[float] = []

    def moved() -> float:
        """How far a mix of the directions moves with the inputs perturbed (memoized)."""
        if not cache:
            signs = np.random.default_rng(4).standard_normal(len(basis))
            mix = signs @ basis
            eps = np.finfo(np.dtype(target.dtype)).eps
            ulps = np.random.default_rng(3).choice([-1.0, 1.0], F.theta.size) * PERTURBATION_ULPS * eps
            moved_args = substitute(F.args64, F.argnums, unflatten(F.theta * (1 + ulps), F.like))
            _, shifted = run(
                [unflatten(mix, F.like)] if forward else [mix], F.arrays(moved_args, target.dtype)
            )
            combined = claimed @ signs if forward else signs @ claimed
            cache.append(float(np.max(np.abs(shifted.ravel() - combined), initial=0.0)))
        return cache[0]

    expected = y0 if forward else basis @ y0
    rtol0 = tolerance(target.dtype, 0)
    check = judge(head(0, "numpy-float64", "pass", points="value"), value, value, expected, rtol0,
                  slack=rtol0 * float(np.max(np.abs(y0), initial=0.0)))  # fmt: skip
    return check, claimed, differs, moved
