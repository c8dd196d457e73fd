"""The notebook this project grew from, every number it printed, through every backend.

The notebook is a tutorial of ``jax.grad`` (not in this repository): it printed tanh's first
three derivatives at 2.0, a cubic's four derivatives at 1.0, and a logistic loss on 4 x 3 data
with its gradient and a float32 finite-difference check of it, each number below citing the
cell (``In [n]``) that printed it. It printed float32 results with 8 significant digits. Each backend
must reproduce them within the float32 tolerance of the harness (the printed
numbers are themselves float32 results), in float32 and in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import oracles, problems
from harness.target import Target
from harness.validation import tolerances

NOTEBOOK = problems.NOTEBOOK
PRINTED_TANH = {1: 0.070650816, 2: -0.13621868, 3: 0.25265405}  # In [2], In [3]
PRINTED_CUBIC = {1: 4.0, 2: 10.0, 3: 6.0, 4: 0.0}  # In [5]
PRINTED_LOSS = 3.051938533782959  # In [14]
PRINTED_W_GRAD = [-0.16965583, -0.8774644, -1.4901346]  # In [9], [10], [14]
PRINTED_B_GRAD = -0.29227245
PRINTED_B_GRAD_NUMERICAL = -0.29325485  # In [16], float32 central difference, eps = 1e-4
PRINTED_W_GRAD_NUMERICAL = -0.2002716
PRINTED_W_GRAD_DIRECTIONAL = -0.19909117

DTYPES = ("float32", "float64")
PROBLEMS = {p.name: p for p in problems.BUILTIN}


def close_to_printed(value, printed, order: int = 1) -> bool:
    """Within the float32 tolerance for ``order`` (the same rule validate uses)."""
    value, printed = np.asarray(value, np.float64), np.asarray(printed, np.float64)
    rtol = tolerances.tolerance("float32", order)
    scale = np.max(np.abs(printed))
    return bool(np.all(np.abs(value - printed) <= rtol * (np.abs(printed) + scale)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_of_tanh_chain(entry, dtype):
    """In [2]-[3]: grad(tanh)(2.0), grad(grad(tanh))(2.0), grad(grad(grad(tanh)))(2.0)."""
    target = Target(entry, dtype=dtype)
    x = target.array(np.array(2.0))
    for strategy in entry.backend.strategies:
        for order, printed in PRINTED_TANH.items():
            value = target.numpy(target.derivative(PROBLEMS["tanh"], order, strategy)(x))
            assert close_to_printed(value, printed, order), (strategy, order, float(value))


def declared(entry, problem: str, strategy: str, dtype: str, order: int) -> str | None:
    """The outcome the backend's expected-outcomes file declares for an eager check, if any."""
    return next(
        (e.outcome for e in entry.expected if e.matches(problem, strategy, "eager", dtype, order)), None
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_cubic_derivatives_are_exact(entry, dtype):
    """In [5]: 4.0, 10.0, 6.0, 0.0 at x = 1.0, exactly, as nested derivatives give them.

    Taylor mode (jet) rescales by factorials and lands within a few ulps instead. An order
    the backend's expected-outcomes file declares ``unsupported`` or ``error`` (TensorFlow's
    fourth forward-mode level) must raise, as declared, instead.
    """
    target = Target(entry, dtype=dtype)
    x = target.array(np.array(1.0))
    for strategy in entry.backend.strategies:
        got = {}
        for n in PRINTED_CUBIC:
            outcome = declared(entry, "cubic", strategy, dtype, n)
            if outcome in ("unsupported", "error"):
                with pytest.raises(NotImplementedError if outcome == "unsupported" else Exception):
                    target.numpy(target.derivative(PROBLEMS["cubic"], n, strategy)(x))
                continue
            got[n] = float(target.numpy(target.derivative(PROBLEMS["cubic"], n, strategy)(x)))
        printed = {n: v for n, v in PRINTED_CUBIC.items() if n in got}
        assert len(printed) >= 3, (strategy, got)  # at least the notebook's first three
        if strategy == "taylor":
            assert all(abs(got[n] - v) <= tolerances.tolerance(dtype, n) * 10 for n, v in printed.items()), (
                got
            )
        else:
            assert got == printed, strategy


def notebook_args(target):
    return target.array(problems.notebook_args())


@pytest.mark.parametrize("dtype", DTYPES)
def test_logistic_gradient_by_argnums(entry, dtype):
    """In [9]: grad(loss, argnums=0), grad(loss, 1) and grad(loss, (0, 1))."""
    target = Target(entry, dtype=dtype)
    args = notebook_args(target)
    problem = PROBLEMS["logistic-notebook"]
    _, W_grad = target.numpy(target.value_and_grad(problem, 0)(*args))
    _, b_grad = target.numpy(target.value_and_grad(problem, 1)(*args))
    _, (W_grad2, b_grad2) = target.numpy(target.value_and_grad(problem, (0, 1))(*args))
    assert W_grad.shape == (3,) and b_grad.shape == ()
    assert close_to_printed(W_grad, PRINTED_W_GRAD) and close_to_printed(W_grad2, PRINTED_W_GRAD)
    assert close_to_printed(b_grad, PRINTED_B_GRAD) and close_to_printed(b_grad2, PRINTED_B_GRAD)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logistic_gradient_of_dict_pytree(entry, dtype):
    """In [10]: grad(loss2)({'W': W, 'b': b}) is a dict shaped like its argument."""
    target = Target(entry, dtype=dtype)
    args = target.array(problems.notebook_dict_args())
    _, grads = target.numpy(target.value_and_grad(PROBLEMS["logistic-notebook-dict"])(*args))
    assert set(grads) == {"W", "b"}
    assert close_to_printed(grads["W"], PRINTED_W_GRAD)
    assert close_to_printed(grads["b"], PRINTED_B_GRAD)


@pytest.mark.parametrize("dtype", DTYPES)
def test_value_and_grad(entry, dtype):
    """In [14]: value_and_grad(loss, (0, 1)) gives the loss and both gradients in one call."""
    target = Target(entry, dtype=dtype)
    value, (W_grad, b_grad) = target.numpy(
        target.value_and_grad(PROBLEMS["logistic-notebook"])(*notebook_args(target))
    )
    assert close_to_printed(value, PRINTED_LOSS, order=0)
    assert close_to_printed(W_grad, PRINTED_W_GRAD) and close_to_printed(b_grad, PRINTED_B_GRAD)


def test_notebooks_finite_difference_check_done_both_ways(entry):
    """In [16], reproduced, then done right.

    The notebook's check, float32 central differences with eps = 1e-4, lands
    within a few float32 rounding quanta of its printed numbers on every
    backend -- and is off from the true gradient by about 3e-3 relative. The
    harness's float64 oracle agrees with the backends' gradients to 1e-9.
    """
    target = Target(entry, dtype="float32")
    xp, eps = entry.backend.namespace(), np.float32(1e-4)
    W, b, inputs, targets = (np.asarray(a, np.float32) for a in problems.notebook_args())
    unit = NOTEBOOK["direction"] / np.linalg.norm(NOTEBOOK["direction"])

    def loss32(W_, b_):
        args = target.array((W_, b_, inputs, targets))
        return float(target.numpy(problems.logistic_loss(xp, *args)))

    b_numerical = (loss32(W, b + eps / 2) - loss32(W, b - eps / 2)) / eps
    W_numerical = (
        loss32(W + eps / 2 * unit.astype(np.float32), b) - loss32(W - eps / 2 * unit.astype(np.float32), b)
    ) / eps
    quantum = np.spacing(np.float32(PRINTED_LOSS)) / eps  # one rounding step of the loss, over eps
    assert abs(b_numerical - PRINTED_B_GRAD_NUMERICAL) <= 3 * quantum
    assert abs(W_numerical - PRINTED_W_GRAD_NUMERICAL) <= 3 * quantum

    _, (W_grad, b_grad) = target.numpy(
        target.value_and_grad(PROBLEMS["logistic-notebook"])(*notebook_args(target))
    )
    assert close_to_printed(W_grad @ unit, PRINTED_W_GRAD_DIRECTIONAL)
    assert abs(b_numerical - b_grad) / abs(b_grad) > 1e-3  # the pitfall: float32 FD is off

    data64 = tuple(np.asarray(a, np.float64) for a in (W, b, inputs, targets))
    F, theta = oracles.of_flat_parameters(problems.logistic_loss, np, data64, (0, 1))
    fd, _ = oracles.central_difference(F, theta, np.eye(theta.size))
    assert np.allclose(fd, np.append(*problems.logistic_gradient(*data64)), rtol=1e-9, atol=0)
    assert close_to_printed(np.append(W_grad, b_grad), fd)
