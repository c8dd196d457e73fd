"""Check your own function: ``harness.check`` for a function written in a framework (a torch
function or custom ``torch.autograd.Function``, a JAX function with ``custom_vjp`` or
``custom_jvp``, an autograd or TensorFlow function), ``harness.check_xp`` for one written once
against ``xp`` on every installed backend, and ``harness.assert_gradients`` for tests.

Each turns the function into a `harness.problems.GradientProblem` (a scalar result: a loss),
a `JacobianProblem` (a 1-D result) or, for ``check_xp(..., elementwise=True)``, a
`ScalarProblem`, and goes through the one way into validation that the CLI takes
(`harness.validation.session.validate`): the same tolerances, verdicts and mismatch report. A
framework function needs no second definition: its oracles evaluate it through its own
framework, in float64 (numdifftools' central differences with Richardson extrapolation and error
estimates) and, where it gives the same derivative as those differences in complex128, by
complex step. Second order: each Hessian-vector product strategy against differences of the
backend's own float64 gradient (`harness.validation.hessians.gradient_differences`), and for
``check_xp`` the strategies and backends against each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness import oracles, plugins
from harness.errors import UsageError
from harness.problems import GradientProblem, JacobianProblem, ScalarProblem
from harness.pytree import leaves, tree_map
from harness.target import Target
from harness.validation import checks, report, session, user
from harness.validation.verdicts import Check

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
        verdict = (
            "all passed"
            if self.passed
            else f"{len(self.failures)} of {len(self.checks)} checks FAILED"
            if self.failures
            else f"no verdict: no derivative could be judged ({self.classification or 'unsupported'})"
        )
        return report.text(self.checks, verdict)

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
    registry = _registry()
    entry = _backend(registry, backend or _framework_of(args))
    title = name or _name(fn)
    chosen = _chosen(args, argnums, order)
    args64 = _as_numpy(registry, args, chosen)
    arguments = {_label(title, argnums, a): a for a in chosen}
    target = Target(entry, device, dtype)

    def run(on_check) -> tuple[list[Check], None]:
        limit = _tuple(strategies)
        found = [user.checks(target, fn, args64, a, order, limit, _label(title, argnums, a)) for a in chosen]
        return [c for checks_ in found for c in checks_], None

    return CheckReport(session.validate(run).checks, arguments)


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
        return CheckReport(_validated(plan), {title: 0})
    return _run(registry, fn, args, argnums, entries, order, dtype, strategies, title)


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


def _backend(registry: plugins.Registry, name: str) -> plugins.BackendEntry:
    (entry,) = registry.select_backends([name])
    if entry.unavailable:
        raise UsageError(f"backend {name!r} is unavailable: {entry.unavailable}")
    return entry


def _as_numpy(registry: plugins.Registry, args: tuple, keep: tuple[int, ...] | None = None) -> tuple:
    """The arguments as numpy pytrees (a framework's arrays through its backend's ``to_numpy``):
    contiguous float64 copies, except that where ``keep`` names the differentiated positions the
    others' integer, boolean and complex leaves (indices, masks) keep their dtype."""

    def leaf(a: Any, differentiated: bool) -> np.ndarray:
        framework = FRAMEWORK_MODULES.get(type(a).__module__.split(".")[0])
        if framework is not None:
            a = registry.backends[framework].backend.to_numpy(a)
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


def _chosen(args: tuple, argnums: int | tuple[int, ...], order: int) -> tuple[int, ...]:
    """The differentiated positions, or a `UsageError` for them or for ``order``."""
    if order not in (1, 2):
        raise UsageError(f"order {order}: check takes order 1 or 2 (elementwise check_xp goes higher)")
    chosen = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    bad = [a for a in chosen if not 0 <= a < len(args)]
    if bad:
        raise UsageError(f"argnums {bad[0]} is out of range for {len(args)} argument(s)")
    return chosen


def _label(title: str, argnums: int | tuple[int, ...], a: int) -> str:
    """A checked problem's name: the function's, and the argument where several are checked."""
    return title if isinstance(argnums, int) else f"{title}[arg {a}]"


def _validated(*plans: checks.Plan) -> list[Check]:
    """The checks of each plan in turn, in this process, then each backend's against the others'."""

    def run(on_check) -> tuple[list[Check], None]:
        return [c for plan in plans for e in plan.backends for c in checks.backend_checks(e, plan)], None

    return session.validate(run, agreement=True).checks


def _complex_safe(F: Callable, theta: np.ndarray) -> bool:
    """Whether the complex step serves as an oracle (`user.complex_step_refusal`), probed along a
    seeded direction against numdifftools' central difference."""
    v = np.random.default_rng(1).standard_normal(theta.size)
    v /= np.linalg.norm(v) or 1.0

    def central() -> tuple:
        values, errors = oracles.central_difference(F, theta, v[None])
        return values[0], errors[0]

    return user.complex_step_refusal(F, theta, v, central) is None


def _run(registry, fn, args, argnums, entries, order, dtype, strategies, title) -> CheckReport:
    chosen = _chosen(args, argnums, order)
    args64 = _as_numpy(registry, args)
    value = np.asarray(fn(np, *args64))
    if value.ndim > 1:
        raise UsageError(
            f"{title} returns shape {value.shape}: check takes a scalar (a loss) or a 1-D array; ravel it"
        )
    if order == 2 and value.ndim == 1:
        raise UsageError(
            f"order 2 takes a scalar result; {title} returns a 1-D array (its Jacobian is order 1)"
        )
    plans, arguments = [], {}
    for a in chosen:
        label = _label(title, argnums, a)
        arguments[label] = a
        F, theta = oracles.of_flat_parameters(fn, np, args64, a)
        kind = JacobianProblem if value.ndim == 1 else GradientProblem
        problem = kind(label, fn, lambda size=None: args64, a, complex_step=_complex_safe(F, theta))
        # Order 2: Hessian-vector products against differences of each backend's own gradient.
        plans.append(checks.Plan(entries, [problem], (dtype,), ("eager",), _tuple(strategies), None,
                                 (1, 2) if order == 2 else (1,), gradient_differences=True))  # fmt: skip
    return CheckReport(_validated(*plans), arguments)


__all__ = ["CheckReport", "assert_gradients", "check", "check_xp"]
