"""Nested optimizations with a derivative inside (`harness.problems.NestedProblem`: GradBench's
particle and saddle), in each of the four mode pairs (`harness.strategies.NESTED_PAIRS`).

Per pair, three checks against float64 references computed in numpy with closed-form
derivatives, independent of the backends:

- order 1: the inner derivative where the descent starts (``inner_probe``), at the tolerance of
  a first derivative;
- order 2: the outer derivative there, taken through the inner one (``outer_probe``), at the
  tolerance of a second derivative: a planted relative error in either mode shows here;
- order 0 (the answer, only when no orders are asked for: it runs the whole descent): against
  the same descent in numpy, and against GradBench's expected answer, within the gap the
  descent's stopping rule allows (`harness.evals.gd.stopping_gap`), written as a relative
  tolerance ``gap / S`` (``S`` the largest |reference|), so that the allowed gap of every entry
  is at least ``gap`` and the pairs' and backends' agreement checks allow twice it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from harness.errors import ShapeMismatch
from harness.problems import NestedProblem
from harness.strategies import NESTED_PAIRS
from harness.validation.tolerances import tolerance
from harness.validation.verdicts import Check, attempt, judge

ANSWER_ORDER, INNER_ORDER, OUTER_ORDER = 0, 1, 2
PARTS = ("answer", "inner", "outer")
"""What each order checks (`harness.target.Target.nested`'s parts)."""


def nested_checks(job: Any, problem: NestedProblem, orders, strategies) -> Iterator[Check]:
    """``problem``'s checks on ``job`` (a `checks._TargetChecks`), for the pairs in ``strategies``
    (``None``: all four) and the orders in ``orders`` (``None``: 0, 1 and 2)."""
    target = job.target
    wanted = (ANSWER_ORDER, INNER_ORDER, OUTER_ORDER) if orders is None else tuple(orders)
    args64 = tuple(np.asarray(a, np.float64) for a in problem.make_args(problem.size))
    references = {
        INNER_ORDER: lambda: np.asarray(problem.inner_reference(*args64), np.float64),
        OUTER_ORDER: lambda: np.asarray(problem.outer_reference(*args64), np.float64),
    }
    solved: list = []  # the numpy descent, run once, when the first answer needs it

    def expected(order: int) -> tuple[np.ndarray, float]:
        """The reference of ``order`` and its relative tolerance."""
        if order != ANSWER_ORDER:
            return references[order](), tolerance(target.dtype, order)
        if not solved:
            solved.append(answer_reference(problem, args64))
        return solved[0]

    for pair in NESTED_PAIRS:
        if strategies is not None and pair not in strategies:
            continue
        head = job.head(pair, problem.name)
        reason = job.unoffered(None)
        for order in (INNER_ORDER, OUTER_ORDER, ANSWER_ORDER):
            if order not in wanted:
                continue
            job.current(f"{problem.name} {pair} {PARTS[order]}")
            if reason:
                yield head(order, "-", "unsupported", message=reason)
                continue
            reference, rtol = expected(order)
            outcome, seconds = attempt(
                head,
                order,
                lambda order=order, pair=pair, n=reference.size: _run(target, problem, pair, order, n),
            )
            if isinstance(outcome, Check):
                yield outcome
                continue
            if order != ANSWER_ORDER:
                oracle = "closed-form" if order == INNER_ORDER else problem.outer_oracle
                where = f"{PARTS[order]} gradient at the start"
                yield judge(
                    head(order, oracle, "pass", points=where, seconds=seconds),
                    outcome,
                    outcome,
                    reference,
                    rtol,
                )
                continue
            where = f"the answer; the stopping rule allows {rtol * np.max(np.abs(reference)):.3g}"
            yield judge(
                head(order, "reference-descent", "pass", points=where, seconds=seconds),
                outcome,
                outcome,
                reference,
                rtol,
            )
            if problem.expected is not None:
                yield judge(
                    head(order, "gradbench", "pass", points=where), outcome, outcome, problem.expected, rtol
                )


def answer_reference(problem: NestedProblem, args64: tuple) -> tuple[np.ndarray, float]:
    """``(answer, rtol)``: the numpy descent's answer at float64 ``args64`` and the gap its stopping
    rule allows, as a relative tolerance ``gap / S`` (``S`` the largest |answer|)."""
    answer, gap = problem.reference(*args64)
    answer = np.asarray(answer, np.float64)
    return answer, gap / max(float(np.max(np.abs(answer))), np.finfo(float).tiny)


def _run(target: Any, problem: NestedProblem, pair: str, order: int, size: int) -> np.ndarray:
    """One pair's probe (order 1 or 2) or answer (order 0) on the target, as float64 numpy:
    ``size`` numbers, else `ShapeMismatch`."""
    result = target.nested(problem, pair, PARTS[order])(*target.array(problem.make_args(problem.size)))
    if not isinstance(result, tuple | list):
        raise ShapeMismatch(f"a nested problem returns a tuple of scalars, got {type(result).__name__}")
    numbers = [np.asarray(v) for v in target.numpy(tuple(result))]
    if len(numbers) != size or any(v.size != 1 for v in numbers):
        shapes = [v.shape for v in numbers]
        raise ShapeMismatch(
            f"{PARTS[order]}: {len(numbers)} values of shapes {shapes}, expected {size} scalars"
        )
    return np.array([float(v) for v in numbers], np.float64)
