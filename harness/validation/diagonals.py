"""The gradient with the diagonal of the Hessian (`harness.strategies.hessian_diagonal`; k-means'
``dir`` is the one over the other), for problems that give the diagonal in closed form
(`harness.problems.GradientProblem.hessian_diagonal`), by each Hessian-vector product strategy.

Checks are labelled ``<strategy>-diagonal`` (``reverse-diagonal``,
``forward-over-reverse-diagonal``), apart from the Hessian-vector products of the same strategy,
so that each takes part in the backend-vs-backend agreement on its own. Order 1: the gradient
that came with the diagonal, against the closed form and a complex step of the loss. Order 2:
the diagonal against the closed form, a complex step of the closed-form gradient along each
unit vector, and numdifftools' second differences of the loss (`oracles.hessian_diagonal`, its
error estimate added to the allowed gap). The tolerance rule is the scalar one at orders 1 and 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from harness import oracles
from harness.errors import ShapeMismatch
from harness.problems import GradientProblem
from harness.pytree import flatten, select, substitute, tree_map, unflatten
from harness.strategies import HVP_STRATEGIES, diagonal_probes
from harness.validation.tolerances import FD_RTOL, tolerance
from harness.validation.verdicts import Check, attempt, judge

LABEL = "{}-diagonal"
"""A diagonal check's strategy label, from its Hessian-vector product strategy."""


def diagonal_checks(job: Any, problem: GradientProblem, orders, strategies) -> Iterator[Check]:
    """``problem``'s diagonal-Hessian checks on ``job`` (a `checks._TargetChecks`), for the HVP
    strategies in ``strategies`` (``None``: both)."""
    if problem.hessian_diagonal is None or (orders is not None and not {1, 2} & set(orders)):
        return
    target = job.target
    rounded = tree_map(
        lambda a: np.asarray(a, dtype=target.dtype).astype(np.float64), problem.make_args(problem.size)
    )
    chosen = select(rounded, problem.argnums)
    F, theta = oracles.of_flat_parameters(problem.fn, np, rounded, problem.argnums)
    probes = diagonal_probes(chosen, problem.diagonal_hessian)
    where = (
        "Hessian diagonal, one product along ones (the Hessian is diagonal)"
        if problem.diagonal_hessian
        else f"Hessian diagonal, {theta.size} unit-vector products"
    )
    references: dict[str, Any] = {}

    def reference(name: str) -> Any:
        if name not in references:
            references[name] = _reference(name, problem, rounded, F, theta)
        return references[name]

    for strategy, head, unsupported in job.offered(
        problem.name, HVP_STRATEGIES, strategies, 2, "hessian diagonal", label=LABEL.format
    ):
        if unsupported:
            yield unsupported
            continue

        def twice(strategy=strategy):
            diag = target.hessian_diagonal(problem, strategy)
            args, on_backend = target.array(rounded), target.array(probes)
            results = [
                tuple(flatten(part) for part in target.numpy(diag(on_backend, *args))) for _ in range(2)
            ]
            if any(part.shape != theta.shape for part in results[0]):
                raise ShapeMismatch(
                    f"gradient and diagonal have {results[0][0].size} and {results[0][1].size} "
                    f"entries, expected {theta.size} each"
                )
            return results

        outcome, seconds = attempt(head, 2, twice)
        if isinstance(outcome, Check):
            yield outcome
            continue
        (g1, d1), (g2, d2) = outcome
        if orders is None or 1 in orders:
            rtol = tolerance(target.dtype, 1)
            magnitude = flatten(problem.magnitude(*rounded)) if problem.magnitude else 0.0
            oracle, values = (
                (problem.gradient_oracle, reference("gradient"))
                if problem.gradient is not None
                else ("complex-step", reference("complex-step gradient"))
            )
            yield judge(
                head(1, oracle, "pass", points="gradient beside the diagonal", seconds=seconds),
                g1,
                g2,
                values,
                rtol,
                slack=rtol * magnitude,
            )
        if orders is not None and 2 not in orders:
            continue
        rtol = tolerance(target.dtype, 2)
        yield judge(head(2, "closed-form", "pass", points=where), d1, d2, reference("closed-form"), rtol)
        if problem.gradient is not None:
            stepped = reference("complex-step")
            yield judge(head(2, "complex-step", "pass", points=where), d1, d2, stepped, rtol)
        central, error = reference("central-difference")
        yield judge(
            head(2, "central-difference", "pass", points=where),
            d1,
            d2,
            central,
            max(rtol, FD_RTOL),
            slack=4 * error,
        )


def _reference(name: str, problem: GradientProblem, rounded: tuple, F, theta: np.ndarray) -> Any:
    chosen = select(rounded, problem.argnums)
    if name == "gradient":
        return flatten(problem.gradient(*rounded))
    if name == "complex-step gradient":
        return oracles.complex_step(F, theta, np.eye(theta.size))
    if name == "closed-form":
        return flatten(problem.hessian_diagonal(*rounded))
    if name == "complex-step":  # d g_i / d theta_i: the closed-form gradient along e_i
        return np.array(
            [
                flatten(
                    problem.gradient(
                        *substitute(
                            rounded, problem.argnums, unflatten(theta + 1j * oracles.COMPLEX_STEP * e, chosen)
                        )
                    ),
                    complex,
                )[i].imag
                / oracles.COMPLEX_STEP
                for i, e in enumerate(np.eye(theta.size))
            ]
        )
    return oracles.hessian_diagonal(F, theta)
