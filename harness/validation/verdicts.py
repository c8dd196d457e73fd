"""Verdicts: a `Check` (one backend result against one oracle) judged against its reference
and classified, and the backend-vs-backend agreement checks.

A failing check is classified: ``overflow/nan`` (the value is not finite where
the reference is), ``nondeterministic`` (two calls disagree beyond the
tolerance), ``oracle noise`` (the gap to a finite difference follows the step
size, and no exact oracle finds the same result wrong) or ``wrong derivative``.
An erroring check is ``exception`` (the backend raised), ``wrong shape`` (a
result of the wrong shape or structure), or, from the execution layer, ``crash``
or ``timeout``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from harness import oracles
from harness.errors import ShapeMismatch
from harness.problems import ScalarProblem
from harness.validation.tolerances import allowed_gap

AGREEMENT_FACTOR = 2.0
"""Backend-vs-backend checks allow the error of both sides."""
VALUE_LIMIT = 1000
"""Values and references are written out for results up to this many elements."""
STATUSES = ("pass", "fail", "unsupported", "error")
SWEEP_STEPS = (1e-3, 5e-4, 2.5e-4)
"""The sweep's steps, halving: the gap to plain central differences at each, extrapolated to a
zero step twice (Richardson: the h^2 term, then the h^4 term)."""


@dataclass
class Check:
    """One comparison of a backend's result with one oracle; a JSON record of ``validate``."""

    backend: str
    version: str | None
    device: str
    dtype: str
    mode: str
    strategy: str
    problem: str
    order: int
    oracle: str
    status: str
    classification: str | None = None
    value: list | float | None = None
    reference: list | float | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    tolerance: float | None = None
    err_over_allowed: float | None = None
    points: list | str | None = None
    message: str = ""
    seconds: float | None = None
    sweep: list | None = None
    remainder_slope: float | None = None
    """At the worst point: the Taylor remainder falls as h**slope (2: right, 1: wrong)."""
    expected: bool = False
    """The backend's expected-outcomes file lists this failure (`harness.expected`)."""
    _raw: Any = field(default=None, repr=False, compare=False)
    _slack: Any = field(default=0.0, repr=False, compare=False)
    """The absolute slack its oracle allowed beyond the relative tolerance (cancellation in the
    function's own terms: `harness.problems.GradientProblem.value_magnitude`)."""

    def to_json(self) -> dict:
        """The check as strict JSON data (RFC 8259 has no NaN or infinity): each non-finite
        number becomes ``null``, and ``not_finite`` maps where it stood (``"value[3]"``,
        ``"max_abs_err"``) to what it was (``"nan"``, ``"inf"``, ``"-inf"``)."""
        record = asdict(self)
        record.pop("_raw")
        record.pop("_slack")
        found: dict[str, str] = {}
        record = {name: _finite(item, name, found) for name, item in record.items()}
        record["not_finite"] = found
        return record


def _finite(item: Any, where: str, found: dict[str, str]) -> Any:
    if isinstance(item, float) and not math.isfinite(item):
        found[where] = str(item)
        return None
    if isinstance(item, list | tuple):
        return [_finite(v, f"{where}[{i}]", found) for i, v in enumerate(item)]
    return item


def judge(check: Check, value, second, reference, rtol: float, slack=0.0) -> Check:
    """Fill in errors, status and classification of ``check`` from two calls' values."""
    value, second = np.asarray(value, np.float64), np.asarray(second, np.float64)
    reference = np.asarray(reference, np.float64)
    scale = float(np.max(np.abs(reference), initial=0.0))
    allowed = allowed_gap(reference, rtol, slack)
    error = np.abs(value - reference)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(reference != 0, error / np.abs(reference), error / (scale or 1.0))
    finite = bool(np.all(np.isfinite(value)))
    within = finite and bool(np.all(error <= allowed))
    check.max_abs_err = float(np.max(error, initial=0.0))
    check.max_rel_err = float(np.max(relative, initial=0.0))
    check.tolerance = rtol
    check._slack = slack
    with np.errstate(divide="ignore", invalid="ignore"):
        check.err_over_allowed = (
            float(np.max(np.where(error > 0, error / allowed, 0.0), initial=0.0)) if finite else math.inf
        )
    check._raw = value
    if value.size <= VALUE_LIMIT:
        check.value, check.reference = value.tolist(), reference.tolist()
    repeatable = np.array_equal(value, second, equal_nan=True) or bool(
        np.all(np.abs(value - second) <= allowed)
    )
    if not repeatable:
        check.status, check.classification = "fail", "nondeterministic"
    elif not within:
        check.status = "fail"
        if not finite:
            check.classification = "overflow/nan"
        elif not np.all(np.isfinite(reference)):
            check.classification = "overflow/nan"
            check.message = f"the {check.oracle} reference is not finite"
        else:
            check.classification = "wrong derivative"
    return check


def remainder(check: Check, problem: ScalarProblem, x64, order, value, reference) -> Check:
    """Add the Taylor-remainder slope at the worst point to a wrong derivative's report."""
    worst = int(np.argmax(np.abs(value - reference)))
    try:
        slope = oracles.remainder_slope(problem.fn, x64[worst], order, value[worst])
    except Exception:  # a diagnosis only: never let it break the run
        return check
    check.remainder_slope = slope
    verdict = "the value is the derivative" if slope > 1.5 else "the value is not the derivative"
    check.message = (
        f"Taylor remainder at x = {x64[worst]:g} falls as h^{slope:.2f}: {verdict} (h^2: right, h^1: wrong)"
    )
    return check


def sweep(check: Check, fn, points, claimed, *exact: Check) -> Check:
    """Reclassify a miss against a finite difference: does the gap converge to zero with the step?

    The gap between the claimed derivative and central differences at h, h/2, h/4 is
    extrapolated to h = 0 (Richardson, twice). Where the limit is within the check's relative
    tolerance of the claimed value, the difference was off (``oracle noise``); where it is not,
    the derivative is: an error of 1e-6 on a curved function is no noise, however much the
    truncation of one difference moves with the step. Never ``oracle noise`` when an exact (or
    multiprecision, closed-form, complex-step) oracle also finds the derivative wrong.
    """
    gaps = oracles.step_gaps(fn, points, claimed, SWEEP_STEPS)
    _, limit = oracles.richardson(gaps)
    claimed = np.abs(np.asarray(claimed, np.float64))
    allowed = check.tolerance * (claimed + np.max(claimed, initial=0.0))
    largest = [float(np.max(np.abs(g), initial=0.0)) for g in gaps]
    check.sweep = [[h, gap] for h, gap in zip(SWEEP_STEPS, largest, strict=True)]
    converges = bool(np.all(np.isfinite(limit)) and np.all(np.abs(limit) <= allowed))
    confirmed = [c.oracle for c in exact if c.classification == "wrong derivative"]
    if converges and not confirmed:
        check.classification = "oracle noise"
    steps = ", ".join(f"{gap:.3g} at h={h:g}" for h, gap in check.sweep)
    check.message = f"gap {steps}, extrapolated to h=0: {float(np.max(np.abs(limit), initial=0.0)):.3g}: " + (
        "converges to zero with the step" if converges else "independent of the step"
    )
    check.message += (
        f"; {', '.join(confirmed)} also finds it wrong, so this is no oracle noise"
        if confirmed
        else " (the oracle is off)"
        if converges
        else ""
    )
    return check


def agreement(results: list[Check]) -> Iterator[Check]:
    """Each result against the first passing one for the same device, dtype, problem, order and
    shape.

    Only a combination's first check (its primary oracle) takes part, so each
    backend, mode and strategy is compared once with the reference per order. Each side may be
    off by its oracle's tolerance and slack (a value that cancels terms far larger than itself:
    TensorFlow's compiled ba residuals differ from its eager ones by 7e-14 of 0.1, within the
    slack of terms near 800), so the agreement allows twice both.
    """
    reference: dict[tuple, Check] = {}
    seen: set[tuple] = set()
    for check in results:
        if check._raw is None:
            continue
        own = (
            check.backend,
            check.mode,
            check.strategy,
            check.device,
            check.dtype,
            check.problem,
            check.order,
        )
        if own in seen:
            continue
        seen.add(own)
        # Results of one shape are one quantity: a Hessian's diagonal is not compared with the
        # products that give the whole Hessian at the same order.
        quantity = (*own[3:], np.shape(check._raw))
        if check.status == "pass":  # a reference must itself agree with its oracle
            reference.setdefault(quantity, check)
        ref = reference.get(quantity)
        if ref is None:
            continue
        if ref is check:
            continue
        label = f"agreement:{ref.backend}/{ref.mode}/{ref.strategy}"
        yield judge(
            replace(
                check, oracle=label, status="pass", classification=None, message="", sweep=None, seconds=None
            ),
            check._raw,
            check._raw,
            ref._raw,
            AGREEMENT_FACTOR * check.tolerance,
            AGREEMENT_FACTOR * np.maximum(check._slack, ref._slack),
        )


Head = Callable[..., Check]
"""Makes a `Check` whose backend, device, dtype, mode, strategy and problem are set:
``head(order, oracle, status, **other_fields)``."""


def head(**known: Any) -> Head:
    """The one maker of heads: each `Check` it makes has the ``known`` fields (backend,
    version, device, dtype, mode, strategy, problem, and defaults such as ``points`` that a check
    may override)."""

    def make(order: int, oracle: str, status: str, **fields: Any) -> Check:
        return Check(order=order, oracle=oracle, status=status, **(known | fields))

    return make


def target_head(target: Any, problem: str, strategy: str) -> Head:
    """The `head` of ``problem``'s checks by ``strategy`` on a `harness.target.Target`."""
    t = target
    return head(backend=t.entry.name, version=t.entry.version, device=t.device, dtype=t.dtype,
                mode=t.mode, strategy=strategy, problem=problem)  # fmt: skip


def inconclusive(check: Check, usable: np.ndarray, why: str) -> Check:
    """A passing ``check`` judged on only the ``usable`` directions (those whose differences
    converged) is no pass: ``unsupported``, classified ``inconclusive``, and never a failure of
    its own. ``why`` says what did not converge, with ``{bad}`` and ``{total}`` directions."""
    if usable.all() or check.status != "pass":
        return check
    message = why.format(bad=int((~usable).sum()), total=len(usable)) + ": no verdict"
    return replace(check, status="unsupported", classification="inconclusive", message=message)


def error_check(head: Head, order: int, exc: Exception) -> Check:
    """The ``error`` check for what a backend raised: ``wrong shape`` or ``exception``."""
    kind = "wrong shape" if isinstance(exc, ShapeMismatch) else "exception"
    return head(order, "-", "error", classification=kind, message=f"{type(exc).__name__}: {exc}")


def attempt(head: Head, order: int, compute) -> tuple[Any, float]:
    """(``compute()``, seconds) -- or, if the backend raised, the ``unsupported`` (for
    `NotImplementedError`) or ``error`` check to report instead of a result."""
    started = time.perf_counter()
    try:
        result = compute()
    except NotImplementedError as exc:
        result = head(order, "-", "unsupported", message=str(exc))
    except Exception as exc:
        result = error_check(head, order, exc)
    return result, time.perf_counter() - started
