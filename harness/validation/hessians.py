"""Order 2: Hessian-vector products, one check for every problem, judged against the oracles its
caller passes in.

A registered problem brings its own (`closed_form`): the closed-form product, and a complex step
of its closed-form gradient; with few parameters, the full Hessian (one product per basis
vector). A user's function (`harness.check`, `harness.check_xp`) has neither, so its products are
held to a second oracle (`gradient_differences`): Richardson differences of the backend's own
float64 gradient (`oracles.richardson_difference`), where a direction whose table does not
converge at any step makes a passing check inconclusive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness import oracles
from harness.errors import ShapeMismatch
from harness.problems import GradientProblem
from harness.pytree import flatten, select, substitute, tree_map, unflatten
from harness.target import Target
from harness.validation.tolerances import FD_RTOL, tolerance
from harness.validation.verdicts import Check, Head, attempt, inconclusive, judge


@dataclass(frozen=True)
class Reference:
    """One oracle's products along the check's directions (one row each)."""

    oracle: str
    values: np.ndarray
    rtol: float
    slack: Any = 0.0
    usable: np.ndarray | None = None
    """The directions whose reference converged (``None``: all); only they are judged."""


Oracles = Callable[[Target, GradientProblem, tuple, np.ndarray], tuple[np.ndarray, str, list[Reference]]]
"""``(target, problem, args, theta)`` to ``(directions, where, references)``."""


def closed_form(target: Target, problem: GradientProblem, args: tuple, theta: np.ndarray):
    """The closed-form products and a complex step of the closed-form gradient (`Oracles`)."""
    chosen = select(args, problem.argnums)
    full = theta.size <= oracles.FULL_GRADIENT_LIMIT
    rows = np.eye(theta.size) if full else oracles.directions(theta.size)[:2]
    where = f"full Hessian ({theta.size} products)" if full else f"{len(rows)} seeded directions"
    exact = np.stack([flatten(problem.hvp(unflatten(v, chosen), *args)) for v in rows])

    def gradient(v: np.ndarray) -> np.ndarray:
        moved = substitute(args, problem.argnums, unflatten(theta + 1j * oracles.COMPLEX_STEP * v, chosen))
        return flatten(problem.gradient(*moved), complex)

    stepped = np.stack([gradient(v) for v in rows]).imag / oracles.COMPLEX_STEP
    rtol = tolerance(target.dtype, 2)
    return rows, where, [Reference("closed-form", exact, rtol), Reference("complex-step", stepped, rtol)]


def gradient_differences(target: Target, problem: GradientProblem, args: tuple, theta: np.ndarray):
    """Richardson differences of the backend's own float64 gradient (`Oracles`): the oracle of a
    function nobody wrote a Hessian for."""
    oracle_target = Target(target.entry, target.device, "float64")
    chosen = select(args, problem.argnums)
    gradient = oracle_target.value_and_grad(problem)

    def G(t: np.ndarray) -> np.ndarray:
        moved = substitute(args, problem.argnums, unflatten(t, chosen))
        return flatten(oracle_target.numpy(gradient(*oracle_target.array(moved))[1]))

    rows = oracles.directions(theta.size)
    values, error, usable = oracles.richardson_difference(G, theta, rows)
    rtol = max(tolerance(target.dtype, 2), FD_RTOL)
    reference = Reference("central-difference(gradient)", values, rtol, 4 * error, usable)
    return rows, f"{len(rows)} Hessian-vector products", [reference]


def hvp_checks(
    target: Target,
    problem: GradientProblem,
    args: tuple,
    offered: Iterable[tuple[str, Head, Check | None]],
    references: Oracles,
) -> Iterator[Check]:
    """Each strategy of ``offered`` (``(strategy, head, unsupported)``: the `Check` to give
    instead where the target does not offer it) computes the products twice, each result judged
    against every one of ``references`` at ``args`` (float64, rounded to the target's dtype)."""
    rounded = tree_map(lambda a: np.asarray(a, dtype=target.dtype).astype(np.float64), args)
    chosen = select(rounded, problem.argnums)
    theta = flatten(chosen)
    rows, where, found = references(target, problem, rounded, theta)
    shape = found[0].values.shape
    for strategy, head, unsupported in offered:
        if unsupported:
            yield unsupported
            continue

        def twice(strategy=strategy):
            args, product = target.array(rounded), target.hvp(problem, strategy)
            vectors = [target.array(unflatten(v, chosen)) for v in rows]
            results = [
                np.stack([flatten(target.numpy(product(v, *args))) for v in vectors]) for _ in range(2)
            ]
            if results[0].shape != shape:
                raise ShapeMismatch(
                    f"Hessian-vector products have shape {results[0].shape[1:]}, expected {shape[1:]}"
                )
            return results

        outcome, seconds = attempt(head, 2, twice)
        if isinstance(outcome, Check):
            yield outcome
            continue
        for reference in found:
            usable = np.ones(len(rows), bool) if reference.usable is None else reference.usable
            first, second = (o[usable] for o in outcome)
            slack = reference.slack[usable] if np.ndim(reference.slack) else reference.slack
            check = judge(
                head(2, reference.oracle, "pass", points=where, seconds=seconds),
                first,
                second,
                reference.values[usable],
                reference.rtol,
                slack=slack,
            )
            yield inconclusive(check, usable, "the differences of the gradient did not converge along "
                               "{bad} of {total} directions")  # fmt: skip
            seconds = None  # the products' time goes with the first oracle's check
