"""det: the determinant by expansion in minors (from cmpad), ell! products; its gradient is the
cofactor matrix, computed exactly in rational arithmetic."""

from __future__ import annotations

from math import isqrt

import numpy as np

from harness import oracles
from harness.evals import adapter
from harness.evals.inputs import draw
from harness.problems import GradientProblem


def primal(xp, A):
    """The determinant of the ell x ell matrix ``A`` (ell**2 entries, row-major), expanded in
    minors along the first row, recursively, as GradBench's ``det_of_minor`` (from cmpad): ell!
    products, no pivoting, no memo."""
    ell = _side(A.shape[0])
    return _det_of_minor(A, ell, tuple(range(ell)), tuple(range(ell)), signed=True)


def _side(entries) -> int:
    """``isqrt(entries)`` by comparisons alone: torch.compile may trace a shape as a symbol, which
    compares (guarded) but does not pass through ``math.isqrt``."""
    ell = 0
    while (ell + 1) * (ell + 1) <= entries:
        ell += 1
    return ell


def _det_of_minor(A, ell, rows, cols, signed):
    if len(rows) == 1:
        return A[rows[0] * ell + cols[0]]
    terms = [
        A[rows[0] * ell + c] * _det_of_minor(A, ell, rows[1:], cols[:j] + cols[j + 1 :], signed)
        for j, c in enumerate(cols)
    ]
    total = terms[0]  # GradBench adds the first to a zero: the same number
    for j, term in enumerate(terms[1:], start=1):
        total = total - term if signed and j % 2 else total + term
    return total


def args(size=None):
    (ell,) = size or (4,)
    return (draw(ell * ell),)


def gradient(A):
    """The cofactor matrix, row-major: ``C_ij = (-1)**(i+j) det(minor_ij)``, in exact rational
    arithmetic from the float64 entries (`oracles.exact_cofactors`), rounded once."""
    return oracles.exact_cofactors(A)


def value_magnitude(A):
    """The sum of |terms| the determinant adds: the permanent of ``|A|``, where the terms cancel
    (for the default 4 x 4 draw, 2.07 for a determinant of 0.0156)."""
    ell = isqrt(A.shape[0])
    return _det_of_minor(np.abs(A), ell, tuple(range(ell)), tuple(range(ell)), signed=False)


def magnitude(A):
    """The sum of |terms| behind each cofactor: the permanent of ``|minor_ij|``."""
    ell = isqrt(A.shape[0])
    absolute = np.abs(A)
    every = tuple(range(ell))
    return np.array(
        [
            _det_of_minor(absolute, ell, every[:i] + every[i + 1 :], every[:j] + every[j + 1 :], signed=False)
            if ell > 1
            else 1.0
            for i in every
            for j in every
        ]
    )


PROBLEMS = (
    GradientProblem(
        "det",
        primal,
        args,
        argnums=0,
        description="GradBench's det: the determinant of A: [ell^2] (row-major, uniform in [0, 1), "
        "seed 31337) by expansion in minors along the first row (ell! products); gradient "
        "[ell^2], the cofactors, computed exactly in rational arithmetic. GradBench's sizes "
        "ell = 5 ... 11; here ell = 4",
        gradient=gradient,
        magnitude=magnitude,
        gradient_oracle="exact",
        value_magnitude=value_magnitude,
    ),
)


# --- GradBench's protocol (harness.evals.adapter) ----------------------------------------------


def gradbench_input(size=None) -> dict:
    """``{"A": [ell**2], "ell": ell}``, row-major."""
    (A,) = args(size)
    return {"A": A.tolist(), "ell": isqrt(A.size)}


def from_gradbench(input: dict) -> tuple:
    A, ell = np.asarray(input["A"], np.float64), int(input["ell"])
    if A.size != ell * ell:
        raise ValueError(f"det's A has {A.size} entries, not ell**2 = {ell * ell}")
    return (A,)


GRADBENCH = {"primal": adapter.value(), "gradient": adapter.gradient()}
