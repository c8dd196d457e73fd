"""Full Jacobians of vector-valued problems (`harness.problems.JacobianProblem`), by each strategy
of `harness.strategies.jacobian`, against float64 references.

For each strategy: the function's value (order 0) against numpy float64, and the Jacobian
(order 1) against the closed form where the problem gives one, a complex step (numpy complex128
evaluation of the same ``xp`` definition, one column per input) and float64 central differences
(numdifftools, its error estimate added to the allowed gap). Beyond `oracles.FULL_GRADIENT_LIMIT`
inputs, the complex step and the differences check the Jacobian along seeded random directions.

The tolerance rule is the scalar one (`harness.validation.tolerances`) at order 1, with ``S``
the largest ``|reference|`` over the whole Jacobian: an entry may be off by
``rtol * |reference| + rtol * S``, so entries far smaller than the largest (a Jacobian's
zeros, a product's small partials) need no case of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from harness import oracles
from harness.errors import ShapeMismatch
from harness.problems import JacobianProblem
from harness.pytree import select, tree_map
from harness.strategies import JACOBIAN_STRATEGIES, jacobian_basis, jacobian_matrix
from harness.validation.tolerances import FD_RTOL, tolerance
from harness.validation.verdicts import Check, attempt, judge, sweep


def jacobian_checks(job: Any, problem: JacobianProblem, orders, strategies) -> Iterator[Check]:
    """``problem``'s checks on ``job`` (a `checks._TargetChecks`: its target, ``head``, ``current``
    and ``unoffered``), for the strategies in ``strategies`` (``None``: both)."""
    if orders is not None and 1 not in orders:
        return
    missing = problem.unavailable() if problem.unavailable else None
    if missing:
        for strategy in JACOBIAN_STRATEGIES:
            if strategies is None or strategy in strategies:
                yield job.head(strategy, problem.name)(1, "-", "unsupported", message=missing)
        return
    target = job.target
    rounded = tree_map(
        lambda a: np.asarray(a, dtype=target.dtype).astype(np.float64), problem.make_args(problem.size)
    )
    F, theta = oracles.of_flat_parameters(problem.fn, np, rounded, problem.argnums)
    value64 = np.asarray(F(theta), np.float64)
    if value64.ndim != 1:
        raise ValueError(
            f"{problem.name} returns shape {value64.shape}; a JacobianProblem returns a 1-D array"
        )
    shape = (value64.size, theta.size)
    rows = oracles.directions(theta.size)
    full = theta.size <= oracles.FULL_GRADIENT_LIMIT
    where = f"full Jacobian {shape[0]} x {shape[1]}, by rows"
    along = (
        where
        if full
        else f"{shape[0]} x {shape[1]} Jacobian along {len(rows)} seeded random directions, by rows"
    )
    references: dict[str, Any] = {}  # computed once, for the first strategy that gets a result

    def reference(name: str) -> Any:
        if name not in references:
            if name == "closed-form":
                references[name] = np.asarray(problem.jacobian(*rounded), np.float64).ravel()
            elif name == "complex-step":
                references[name] = oracles.complex_step(F, theta, rows).T.ravel()
            else:
                references[name] = tuple(a.T.ravel() for a in oracles.central_difference(F, theta, rows))
        return references[name]

    for strategy, head, unsupported in job.offered(
        problem.name, JACOBIAN_STRATEGIES, strategies, 1, "jacobian"
    ):
        if unsupported:
            yield unsupported
            continue

        def twice(strategy=strategy):
            jac = target.jacobian(problem, strategy)
            basis = target.array(jacobian_basis(strategy, select(rounded, problem.argnums), shape[0]))
            args = target.array(rounded)
            results = [jacobian_matrix(strategy, *target.numpy(jac(basis, *args))) for _ in range(2)]
            if results[0][0].shape != value64.shape or results[0][1].shape != shape:
                raise ShapeMismatch(
                    f"value and Jacobian have shapes {results[0][0].shape} and {results[0][1].shape}, "
                    f"expected {value64.shape} and {shape}"
                )
            return results

        outcome, seconds = attempt(head, 1, twice)
        if isinstance(outcome, Check):
            yield outcome
            continue
        (v1, J1), (v2, J2) = outcome
        yield judge(
            head(0, "numpy-float64", "pass", points="value", seconds=seconds),
            v1,
            v2,
            value64,
            tolerance(target.dtype, 0),
            slack=tolerance(target.dtype, 0) * np.asarray(problem.value_magnitude(*rounded), np.float64)
            if problem.value_magnitude
            else 0.0,
        )
        rtol = tolerance(target.dtype, 1)
        exact = []
        if problem.jacobian is not None:
            closed = reference("closed-form")
            exact.append(
                judge(head(1, "closed-form", "pass", points=where), J1.ravel(), J2.ravel(), closed, rtol)
            )
            yield exact[-1]
        claimed, again = (J1 @ rows.T).ravel(), (J2 @ rows.T).ravel()  # m x directions, by rows
        if problem.complex_step:
            stepped = reference("complex-step")
            exact.append(judge(head(1, "complex-step", "pass", points=along), claimed, again, stepped, rtol))
            yield exact[-1]
        central, error = reference("central-difference")
        check = judge(
            head(1, "central-difference", "pass", points=along),
            claimed,
            again,
            central,
            max(rtol, FD_RTOL),
            slack=4 * error,
        )
        if check.classification == "wrong derivative":
            check = sweep(
                check, _along_directions(F, theta, rows, shape[0]), np.zeros(claimed.size), claimed, *exact
            )
        yield check


def _along_directions(F: Callable, theta: np.ndarray, rows: np.ndarray, outputs: int) -> Callable:
    """``G(t)``: entry (i, j) of ``F`` moved along direction j by ``t[i, j]``, raveled by rows --
    what `verdicts.sweep` differences against the claimed ``J @ rows.T``."""

    def moved(t: np.ndarray) -> np.ndarray:
        t = np.reshape(t, (outputs, len(rows)))
        return np.array(
            [[F(theta + t[i, j] * v)[i] for j, v in enumerate(rows)] for i in range(outputs)]
        ).ravel()

    return moved
