"""Whether a benchmark case's first result is right, before it is timed: one oracle per kind of
problem, at the tolerance of `harness.validation.tolerances` (`assess`, called by
`harness.benchmark.cases.prepare`). ``python -m harness validate`` runs the fuller checks with
several oracles; this is the one a timing rests on."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness import oracles, strategies
from harness.problems import GradientProblem, JacobianProblem, NestedProblem
from harness.pytree import flatten
from harness.results.runs import VALUE
from harness.validation import tolerances

SAMPLES = 16
"""Points of an elementwise derivative that are validated against mpmath before timing."""


def assess(case: Any, result: Any) -> tuple[bool, str, float]:
    """(agrees with the oracle?, which oracle, largest error relative to the largest |reference|)
    for ``case`` (a `harness.benchmark.cases.Case`) and its first result as float64 numpy."""
    dtype = case.target.dtype
    rounded = case.rounded()
    problem = case.problem
    if isinstance(problem, NestedProblem):  # as harness.validation.nested, order 2
        claimed = np.array([float(np.asarray(v)) for v in result], np.float64)
        reference = np.asarray(problem.outer_reference(*rounded), np.float64)
        ok = claimed.shape == reference.shape and tolerances.agrees(claimed, reference, dtype, 2)
        return ok, f"{problem.outer_oracle} outer gradient", tolerances.relative_error(claimed, reference)
    if case.strategy == VALUE:
        reference = np.asarray(problem.fn(np, *rounded), dtype=np.float64)
        cancelled = getattr(problem, "value_magnitude", None)
        magnitude = np.asarray(cancelled(*rounded), np.float64) if cancelled else 0.0
        ok = tolerances.agrees(result, reference, dtype, 1, magnitude)
        return ok, "float64 numpy", tolerances.relative_error(result, reference)
    if isinstance(problem, JacobianProblem):  # as harness.validation.jacobians, one oracle
        J = strategies.jacobian_matrix(case.strategy, *result)[1]
        if problem.jacobian is not None:
            reference = np.asarray(problem.jacobian(*rounded), np.float64)
            ok = tolerances.agrees(J, reference, dtype, 1)
            return ok, "closed-form Jacobian", tolerances.relative_error(J, reference)
        F, theta = oracles.of_flat_parameters(problem.fn, np, rounded, problem.argnums)
        rows = oracles.directions(theta.size)
        claimed, reference = rows @ J.T, oracles.complex_step(F, theta, rows)
        ok = tolerances.agrees(claimed, reference, dtype, 1)
        return ok, f"complex step along {len(rows)} directions", tolerances.relative_error(claimed, reference)
    if case.strategy.endswith("-diagonal"):  # the gradient with the Hessian's diagonal
        claimed, reference = flatten(result[1]), flatten(problem.hessian_diagonal(*rounded))
        ok = tolerances.agrees(claimed, reference, dtype, 2) and tolerances.agrees(
            flatten(result[0]),
            flatten(problem.gradient(*rounded)),
            dtype,
            1,
            flatten(problem.magnitude(*rounded)),
        )
        return ok, "closed-form gradient and diagonal", tolerances.relative_error(claimed, reference)
    if isinstance(problem, GradientProblem):
        grad = flatten(result[1])
        magnitude = flatten(problem.magnitude(*rounded)) if problem.magnitude else np.zeros_like(grad)
        if problem.gradient is not None:
            reference = flatten(problem.gradient(*rounded))
            ok = tolerances.agrees(grad, reference, dtype, 1, magnitude)
            return ok, "closed-form gradient", tolerances.relative_error(grad, reference)
        F, theta = oracles.of_flat_parameters(problem.fn, np, rounded, problem.argnums)
        rows = oracles.directions(theta.size)
        claimed, reference = rows @ grad, oracles.complex_step(F, theta, rows)
        ok = tolerances.agrees(claimed, reference, dtype, 1, np.abs(rows) @ magnitude)
        return ok, f"complex step along {len(rows)} directions", tolerances.relative_error(claimed, reference)
    x = rounded[0]
    pick = np.linspace(0, x.size - 1, min(SAMPLES, x.size)).astype(int) if x.ndim else ()
    sample, claimed = (x[pick], result[pick]) if x.ndim else (x, result)
    reference = oracles.mpmath_derivative(problem.fn, sample, case.order)
    ok = tolerances.agrees(claimed, reference, dtype, case.order)
    return ok, f"mpmath at {np.size(sample)} points", tolerances.relative_error(claimed, reference)
