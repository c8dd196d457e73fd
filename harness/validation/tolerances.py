"""The tolerance rule: how far a derivative computed in a dtype may lie from its float64 reference.

``|value - reference| <= rtol * |reference| + rtol * S``, with ``S`` the largest
``|reference|`` over the problem's points (so zeros, such as tanh's even derivatives
at 0, need no special case). ``rtol`` comes from `TOLERANCES`; it grows with the
order and with looser dtypes and is never scaled by array size. Validation, timing
and the distributed runs all judge by this one rule.
"""

from __future__ import annotations

import math

import numpy as np

TOLERANCES: dict[str, tuple[float, float]] = {
    # dtype: (rtol at order 1, growth factor per further order). Measured on CPU, nested
    # float64 errors grow about 4x per order (2e-16 at order 1, 6e-11 at order 10), so the
    # margin is about 500x at every order.
    "float64": (1e-13, 4.0),
    "float32": (4e-6, 4.0),
}
FD_RTOL = 1e-8
"""Floor of the relative tolerance against float64 finite differences (self-consistency, gradients,
Jacobians): their own error estimate is added to the allowed gap besides."""
GROWTH_ORDERS = 10
"""The tolerance stops growing here: only Taylor mode goes higher, and its error does not
compound per order (about 1e-14 relative at order 20)."""


def tolerance(dtype: str, order: int) -> float:
    """The relative tolerance for an ``order``-th derivative computed in ``dtype`` (order 0: the value)."""
    base, growth = TOLERANCES[dtype]
    return base * growth ** (min(max(order, 1), GROWTH_ORDERS) - 1)


def allowed_gap(reference: np.ndarray, rtol: float, slack=0.0) -> np.ndarray:
    """``rtol * |reference| + rtol * S + slack`` elementwise, ``S`` the largest ``|reference|``."""
    reference = np.abs(np.asarray(reference, np.float64))
    return rtol * (reference + np.max(reference, initial=0.0)) + slack


def agrees(value, reference, dtype: str, order: int, magnitude=0.0) -> bool:
    """Whether ``value`` is finite and within the ``dtype``/``order`` tolerance of ``reference``.

    ``magnitude``: summed |terms| behind each entry (see `GradientProblem.magnitude`).
    """
    value, rtol = np.asarray(value, np.float64), tolerance(dtype, order)
    gap = np.abs(value - np.asarray(reference, np.float64))
    allowed = allowed_gap(reference, rtol, rtol * np.asarray(magnitude))
    return bool(np.all(np.isfinite(value)) and np.all(gap <= allowed))


def relative_error(claimed, reference) -> float:
    """Largest |claimed - reference| over the largest |reference| (inf if not finite)."""
    claimed, reference = np.asarray(claimed, np.float64), np.asarray(reference, np.float64)
    scale = float(np.max(np.abs(reference), initial=0.0)) or 1.0
    with np.errstate(invalid="ignore"):
        error = float(np.max(np.abs(claimed - reference), initial=0.0)) / scale
    return error if math.isfinite(error) else math.inf
