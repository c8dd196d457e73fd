"""Check your own function: ``harness.check`` for a function written in a framework (a torch
function or custom ``torch.autograd.Function``, a JAX function with ``custom_vjp`` or
``custom_jvp``, an autograd or TensorFlow function), ``harness.check_xp`` for one written once
against ``xp`` on every installed backend, and ``harness.assert_gradients`` for tests.

Each turns the function into a `harness.problems.GradientProblem` (a scalar result: a loss),
a `JacobianProblem` (a 1-D result) or, for ``check_xp(..., elementwise=True)``, a
`ScalarProblem`, and runs the validation the CLI runs (`harness.validation.checks`): the same
tolerances, verdicts and mismatch report. A framework function needs no second definition: its
oracles evaluate it through its own framework, in float64 (numdifftools' central differences
with Richardson extrapolation and error estimates) and, where it gives the same derivative as
those differences in complex128, by complex step. Second order: each Hessian-vector product
strategy against central differences of the backend's own float64 gradient, and the strategies
against each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from harness import oracles, plugins
from harness.errors import ShapeMismatch, UsageError
from harness.problems import GradientProblem, JacobianProblem, ScalarProblem
from harness.pytree import flatten, leaves, select, substitute, tree_map, unflatten
from harness.strategies import HVP_STRATEGIES
from harness.target import Target
from harness.validation import checks, report, user
from harness.validation.tolerances import FD_RTOL, tolerance
from harness.validation.verdicts import Check, agreement, attempt, error_check, judge

FRAMEWORK_MODULES = {"torch": "torch", "jax": "jax", "jaxlib": "jax", "tensorflow": "tensorflow"}


@dataclass
class CheckReport:
    """What `check` and `check_xp` found: every `Check`, judged as ``validate`` judges them."""

    checks: list[Check]
    arguments: dict[str, Any]
    """Each checked problem's name: the argument (``argnums`` entry) it differentiates."""

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status in ("fail", "error")]

    @property
    def passed(self) -> bool:
        """No check failed or errored, and at least one derivative passed against an oracle (not
        all ``unsupported`` or inconclusive; agreement between strategies alone is no pass)."""
        return not self.failures and any(
            c.status == "pass" and c.order >= 1 and not c.oracle.startswith("agreement:") for c in self.checks
        )

    @property
    def classification(self) -> str | None:
        """The first failure's classification (``wrong derivative``, ...); ``inconclusive`` where
        nothing failed and no oracle could judge; ``None`` if passed."""
        if self.passed:
            return None
        first = next((c.classification or c.status for c in self.failures), None)
        if first is None and any(c.classification == "inconclusive" for c in self.checks):
            return "inconclusive"
        return first

    @property
    def worst(self) -> dict[Any, float]:
        """Per argument, the largest error over the allowed gap (above 1: a failure)."""
        found: dict[Any, float] = {}
        for c in self.checks:
            if c.err_over_allowed is not None:
                argument = self.arguments.get(c.problem, c.problem)
                found[argument] = max(found.get(argument, 0.0), c.err_over_allowed)
        return found

    def text(self) -> str:
        """The summary table and each failure's mismatch report, as ``validate`` prints them."""
        parts = [report.summary(self.checks)] if self.checks else ["no checks ran"]
        parts += [report.mismatch(c) for c in self.failures]
        verdict = (
            "all passed"
            if self.passed
            else f"{len(self.failures)} of {len(self.checks)} checks FAILED"
            if self.failures
            else f"no verdict: no derivative could be judged ({self.classification or 'unsupported'})"
        )
        return "\n\n".join(parts + [verdict])

    __str__ = text


def check(
    fn: Callable,
    *args: Any,
    argnums: int | tuple[int, ...] = 0,
    backend: str | None = None,
    order: int = 1,
    dtype: str = "float64",
    device: str = "cpu",
    strategies: Iterable[str] | None = None,
    name: str | None = None,
) -> CheckReport:
    """Check the derivatives of ``fn(*args)``, written in ``backend``'s framework.

    ``fn`` may return a tensor of any shape, a number, or a pytree (tuples, lists, dicts) of them:
    its Jacobian (`harness.outputs`: complex outputs as real and imaginary parts, integer ones
    left out) is checked by forward and by reverse mode (`harness.validation.user`), and for
    ``order`` 2 the Hessian-vector products of the output (along a seeded random cotangent where
    it has more than one entry). ``args`` are numpy arrays, numbers or the framework's arrays
    (pytrees of them), checked as contiguous float64 copies; ``backend`` defaults to the
    framework of the first framework array among them. ``strategies`` limits the Jacobian and
    HVP strategies (default: every one the backend offers). No failure of ``fn`` or of an oracle
    escapes: each is a check with its classification.
    """
    entry = _backend(backend or _framework_of(args))
    title = name or _name(fn)
    args64, chosen = _arguments(args, argnums, order)
    found, arguments = [], {}
    target = Target(entry, device, dtype)
    for a in chosen:
        label = title if isinstance(argnums, int) else f"{title}[arg {a}]"
        arguments[label] = a
        checks_, function = user.function_checks(target, fn, args64, a, _tuple(strategies), label)
        found += checks_
        if order == 2 and function is not None and function.layout.size and function.theta.size:
            problem = GradientProblem(label, _scalarized(function), lambda size=None: args64, a)
            try:
                found += _hessian_checks(target, problem, strategies)
            except Exception as exc:
                found.append(error_check(user.head_for(target, label)("-"), 2, exc))
    return CheckReport(found, arguments)


def _scalarized(function: user.Function) -> Callable:
    """The problem function ``f(xp, *args)`` of a scalar: ``fn``'s flat output itself where it has
    one entry, else its inner product with a seeded random unit cotangent."""
    size = function.layout.size
    u = np.ones(1) if size == 1 else oracles.directions(size, seed=5, count=1, dense=0)[0]

    def scalar(xp: Any, *args: Any) -> Any:
        flat = function.layout.flat(xp, function.fn(*args))
        if size == 1:
            return xp.sum(flat)
        # In the checked dtype, so that the float64 oracle weighs by the same (rounded) numbers.
        target = function.target
        return xp.sum(flat * target.backend.asarray(u, target.dtype, target.device))

    return scalar


def check_xp(
    fn: Callable,
    *args: Any,
    argnums: int | tuple[int, ...] = 0,
    backends: Iterable[str] | None = None,
    order: int = 1,
    dtype: str = "float64",
    elementwise: bool = False,
    strategies: Iterable[str] | None = None,
    name: str | None = None,
) -> CheckReport:
    """Check ``fn(xp, *args)``, written once against the array namespace ``xp``, on every
    installed backend (or those named), each against numpy float64 oracles and against the others.

    ``elementwise=True``: ``fn(xp, x)`` maps points to values, and its derivatives of orders 1 to
    ``order`` are checked at the points ``args[0]`` by every strategy, against mpmath at 40
    digits (``fn`` may use the functions of `harness.oracles.MpmathNamespace`).
    """
    registry = _registry()
    entries = [e for e in registry.select_backends(backends) if not e.unavailable]
    if not entries:
        raise UsageError("no backend is installed (python -m harness list shows what to install)")
    title = name or _name(fn)
    if elementwise:
        points = tuple(float(p) for p in np.ravel(np.asarray(args[0], np.float64)))
        plan = checks.Plan(entries, [ScalarProblem(title, fn, points)], (dtype,), ("eager",),
                           _tuple(strategies), None, tuple(range(1, order + 1)))  # fmt: skip
        found = [c for e in entries for c in checks.backend_checks(e, plan)]
        return CheckReport(found + list(agreement(found)), {title: 0})
    return _run(fn, args, argnums, entries, order, dtype, None, strategies, title)


def assert_gradients(fn: Callable, *args: Any, xp: bool = False, **options: Any) -> CheckReport:
    """`check` (or, with ``xp=True``, `check_xp`) that raises `AssertionError` with the mismatch
    report when a check fails; returns the report when all pass."""
    found = (check_xp if xp else check)(fn, *args, **options)
    if not found.passed:
        raise AssertionError(found.text())
    return found


# --- Building the problems --------------------------------------------------------------------


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _tuple(values: Iterable[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values is not None else None


def _framework_of(args: tuple) -> str:
    for leaf in leaves(args):
        framework = FRAMEWORK_MODULES.get(type(leaf).__module__.split(".")[0])
        if framework:
            return framework
    raise UsageError(
        "no framework array among the arguments: name the framework fn is written in, "
        "e.g. backend='autograd' (python -m harness list shows the backends)"
    )


_REGISTRIES: dict[str | None, plugins.Registry] = {}


def _registry() -> plugins.Registry:
    """`plugins.load`'s registry, loaded once per value of `plugins.BACKENDS_ENV` (loading reads
    every entry point's metadata: 25 ms, more than a small function's whole check)."""
    key = os.environ.get(plugins.BACKENDS_ENV)
    if key not in _REGISTRIES:
        _REGISTRIES[key] = plugins.load()
    return _REGISTRIES[key]


def _backend(name: str) -> plugins.BackendEntry:
    registry = _registry()
    (entry,) = registry.select_backends([name])
    if entry.unavailable:
        raise UsageError(f"backend {name!r} is unavailable: {entry.unavailable}")
    return entry


def _as_numpy(args: tuple, keep: tuple[int, ...] | None = None) -> tuple:
    """The arguments as numpy pytrees (a framework's arrays through its backend's ``to_numpy``):
    contiguous float64 copies, except that where ``keep`` names the differentiated positions the
    others' integer, boolean and complex leaves (indices, masks) keep their dtype."""

    def leaf(a: Any, differentiated: bool) -> np.ndarray:
        framework = FRAMEWORK_MODULES.get(type(a).__module__.split(".")[0])
        if framework is not None:
            a = _registry().backends[framework].backend.to_numpy(a)
        a = np.asarray(a)
        if differentiated and np.iscomplexobj(a):
            raise UsageError(
                "a differentiated argument is complex: pass its real and imaginary parts as real "
                "arguments and combine them inside fn"
            )
        return np.array(a, np.float64) if differentiated or a.dtype.kind == "f" else a.copy()

    return tuple(
        tree_map(lambda a, d=keep is None or i in keep: leaf(a, d), arg) for i, arg in enumerate(args)
    )


def _arguments(args: tuple, argnums: int | tuple[int, ...], order: int) -> tuple[tuple, tuple[int, ...]]:
    """The arguments as numpy (`_as_numpy`) and the differentiated positions, or a `UsageError`."""
    chosen = _chosen(args, argnums, order)
    return _as_numpy(args, chosen), chosen


def _chosen(args: tuple, argnums: int | tuple[int, ...], order: int) -> tuple[int, ...]:
    """The differentiated positions, or a `UsageError` for them or for ``order``."""
    if order not in (1, 2):
        raise UsageError(f"order {order}: check takes order 1 or 2 (elementwise check_xp goes higher)")
    chosen = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    bad = [a for a in chosen if not 0 <= a < len(args)]
    if bad:
        raise UsageError(f"argnums {bad[0]} is out of range for {len(args)} argument(s)")
    return chosen


def _complex_safe(F: Callable, theta: np.ndarray) -> bool:
    """Whether the complex step along a seeded direction gives the central differences'
    derivative: ``F`` takes complex input and is analytic there."""
    v = np.random.default_rng(1).standard_normal(theta.size)
    v /= np.linalg.norm(v) or 1.0
    try:
        with np.errstate(all="ignore"):
            stepped = oracles.complex_step(F, theta, v[None])
    except Exception:
        return False
    central, error = oracles.central_difference(F, theta, v[None])
    gap = np.abs(stepped - central)
    return bool(
        np.all(np.isfinite(stepped)) and np.all(gap <= user.PROBE_RTOL * np.abs(central) + 4 * error + 1e-300)
    )


def _run(fn, args, argnums, entries, order, dtype, devices, strategies, title) -> CheckReport:
    chosen = _chosen(args, argnums, order)
    args64 = _as_numpy(args)
    value = np.asarray(fn(np, *args64))
    if value.ndim > 1:
        raise UsageError(
            f"{title} returns shape {value.shape}: check takes a scalar (a loss) or a 1-D array; ravel it"
        )
    if order == 2 and value.ndim == 1:
        raise UsageError(
            f"order 2 takes a scalar result; {title} returns a 1-D array (its Jacobian is order 1)"
        )
    found, arguments = [], {}
    for a in chosen:
        label = title if isinstance(argnums, int) else f"{title}[arg {a}]"
        arguments[label] = a
        F, theta = oracles.of_flat_parameters(fn, np, args64, a)
        kind = JacobianProblem if value.ndim == 1 else GradientProblem
        problem = kind(label, fn, lambda size=None: args64, a, complex_step=_complex_safe(F, theta))
        plan = checks.Plan(entries, [problem], (dtype,), ("eager",), _tuple(strategies), devices, (1,))
        for entry in entries:
            found += checks.backend_checks(entry, plan)
            if order == 2 and kind is GradientProblem:
                for device in devices or entry.backend.devices():
                    found += _hessian_checks(Target(entry, device, dtype), problem, strategies)
    return CheckReport(found + list(agreement(found)), arguments)


def _hessian_checks(target: Target, problem: GradientProblem, strategies) -> list[Check]:
    """Each HVP strategy against Richardson differences of the backend's float64 gradient
    (`oracles.richardson_difference`: a direction whose table does not converge at any step
    makes the check inconclusive)."""
    oracle_target = Target(target.entry, target.device, "float64")
    args64 = problem.make_args()
    chosen = select(args64, problem.argnums)
    theta = flatten(chosen)
    gradient = oracle_target.value_and_grad(problem)

    def G(t: np.ndarray) -> np.ndarray:
        moved = substitute(args64, problem.argnums, unflatten(t, chosen))
        return flatten(oracle_target.numpy(gradient(*oracle_target.array(moved))[1]))

    rows = oracles.directions(theta.size)
    reference, error, usable = oracles.richardson_difference(G, theta, rows)
    rtol = max(tolerance(target.dtype, 2), FD_RTOL)
    found = []
    for strategy in HVP_STRATEGIES:
        if strategies is not None and strategy not in strategies:
            continue
        head = user.head_for(target, problem.name)(strategy)

        def twice(strategy=strategy):
            product, args = target.hvp(problem, strategy), target.array(args64)
            vectors = [target.array(unflatten(v, chosen)) for v in rows]
            results = [
                np.stack([flatten(target.numpy(product(v, *args))) for v in vectors]) for _ in range(2)
            ]
            if results[0].shape != reference.shape:
                raise ShapeMismatch(f"Hessian-vector products have shape {results[0].shape}")
            return results

        outcome, seconds = attempt(head, 2, twice)
        if isinstance(outcome, Check):
            found.append(outcome)
            continue
        where = f"{len(rows)} Hessian-vector products"
        first, second = (o[usable] for o in outcome)
        check = judge(
            head(2, "central-difference(gradient)", "pass", points=where, seconds=seconds),
            first,
            second,
            reference[usable],
            rtol,
            slack=4 * error[usable],
        )
        if not usable.all() and check.status == "pass":  # as `user`'s first-order checks
            check = replace(check, status="unsupported", classification="inconclusive",
                            message="the differences of the gradient did not converge along "
                            f"{int((~usable).sum())} of {len(rows)} directions: no verdict")  # fmt: skip
        found.append(check)
    return found


__all__ = ["CheckReport", "assert_gradients", "check", "check_xp"]
