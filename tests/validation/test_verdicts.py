"""`verdicts.sweep`: a miss against finite differences is ``oracle noise`` only where the gap,
extrapolated to a zero step (Richardson), vanishes; a real error on a curved function is not."""

from __future__ import annotations

import numpy as np

from harness.validation.verdicts import Check, sweep

X = np.linspace(-1.0, 2.0, 5)


def curved(x):
    return np.exp(np.sin(3 * x))


def derivative(x):
    return 3 * np.cos(3 * x) * curved(x)


def missed(claimed) -> Check:
    check = Check("b", None, "cpu", "float64", "eager", "reverse", "p", 1, "central-difference", "fail")
    check.classification, check.tolerance = "wrong derivative", 1e-8
    return check


def test_a_right_derivative_missed_by_a_coarse_difference_is_oracle_noise():
    found = sweep(missed(derivative(X)), curved, X, derivative(X))
    assert found.classification == "oracle noise"
    assert "converges to zero" in found.message and len(found.sweep) == 3
    assert found.sweep[0][1] > 1e-6  # one plain difference at h = 1e-3 is off by far more than 1e-8


def test_an_error_of_1e_6_on_a_curved_function_is_no_oracle_noise():
    claimed = derivative(X) * (1 + 1e-6)
    found = sweep(missed(claimed), curved, X, claimed)
    assert found.classification == "wrong derivative"
    assert "independent of the step" in found.message
