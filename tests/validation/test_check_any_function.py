"""``harness.check`` on whatever a function returns and however it fails: outputs of any shape and
pytrees of them, complex and integer outputs, empty tensors, coverage gaps, functions that raise,
rounding near zero and at large inputs, discontinuities, nondeterminism, big Jacobians. Every
function here is the project's own; planted mistakes are custom rules scaled by 1 + eps."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import harness

torch = pytest.importorskip("torch")
from test_check import sin_second_off  # noqa: E402 (after torch: the helper needs it)

X = np.linspace(-1.0, 2.0, 5)


def scaled(fn, scale: float):
    """``fn`` (one tensor to one tensor) as an autograd.Function whose backward and jvp are the
    true ones times ``scale``."""

    class Scaled(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return fn(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])
            ctx.x = inputs[0]

        @staticmethod
        def backward(ctx, g):
            return torch.func.vjp(fn, ctx.saved_tensors[0])[1](g)[0] * scale

        @staticmethod
        def jvp(ctx, t):
            return torch.func.jvp(fn, (ctx.x,), (t,))[1] * scale

    return Scaled.apply


def outer(x):
    return torch.sin(x)[:, None] * torch.cos(x)


def test_a_2d_output_is_checked_by_both_modes_and_a_planted_error_in_it_caught():
    right = harness.check(outer, torch.asarray(X))
    assert right.passed
    assert {c.strategy for c in right.checks if c.status == "pass"} >= {"forward", "reverse"}
    assert any("25 x 5 Jacobian" in str(c.points) for c in right.checks)
    wrong = harness.check(scaled(outer, 1 + 1e-8), torch.asarray(X))
    assert wrong.classification == "wrong derivative"
    assert {c.strategy for c in wrong.failures} == {"forward", "reverse"}


def test_a_pytree_of_unequal_shapes_with_an_integer_leaf():
    def parts(x):
        return {"mean": x.mean(), "pair": (torch.exp(x[:2]), x[:, None] * x), "where": torch.argmax(x)}

    found = harness.check(parts, torch.asarray(X))
    assert found.passed
    sin = scaled(torch.sin, 1 + 1e-6)  # argmin: no complex step, so the differences judge
    wrong = harness.check(lambda x: (x.sum(), [sin(x), torch.argmin(x)]), torch.asarray(X))
    assert not wrong.passed and wrong.classification == "wrong derivative"


def test_a_complex_output_is_checked_as_real_and_imaginary_parts():
    found = harness.check(lambda x: torch.fft.fft(torch.exp(x)), torch.asarray(X))
    assert found.passed
    judged = [c for c in found.checks if c.order == 1 and not c.oracle.startswith("agreement")]
    assert {c.oracle for c in judged} == {"central-difference"}  # no complex step of a complex output
    assert all("real and imaginary parts" in c.message for c in judged)
    assert any("10 x 5 Jacobian" in str(c.points) for c in judged)  # 5 complex outputs: 10 real ones


@pytest.mark.parametrize(
    "fn, x",
    [
        (lambda x: x[:0] * 2, X),  # an empty output
        (lambda x: x * 2, np.zeros((0, 3))),  # an empty argument
    ],
    ids=["empty output", "empty argument"],
)
def test_a_zero_size_jacobian_is_trivially_right_and_says_so(fn, x):
    found = harness.check(fn, torch.asarray(x))
    assert found.passed
    (only,) = found.checks
    assert "trivially right" in only.message and only.points.startswith("empty Jacobian")


def test_an_output_that_changes_shape_under_complex_input_gets_no_complex_step():
    def shifty(x):
        return torch.exp(x[:2]) if x.is_complex() else torch.exp(x)

    found = harness.check(shifty, torch.asarray(X))
    assert found.passed
    judged = [c for c in found.checks if c.oracle == "central-difference"]
    assert judged and all("of shape (2,) where the point gave (5,)" in c.message for c in judged)


def test_a_torch_func_coverage_gap_is_unsupported_with_torchs_reason():
    found = harness.check(lambda x: torch.tensor_split(x, torch.tensor([1, 3]))[1], torch.asarray(X))
    assert found.passed
    (forward,) = [c for c in found.checks if c.strategy == "forward"]
    assert forward.status == "unsupported" and "storage" in forward.message


def test_a_function_that_raises_is_an_error_check_not_an_exception():
    def broken(x):
        raise ValueError("no such thing")

    found = harness.check(broken, torch.asarray(X))
    assert not found.passed and found.classification == "exception"
    assert "no such thing" in found.failures[0].message


def test_no_false_alarm_from_rounding_at_zero_and_at_large_inputs():
    x = torch.asarray(X)
    shifted = harness.check(lambda b: torch.softmax(x + b, 0), torch.zeros(5, dtype=torch.float64))
    assert shifted.passed  # the derivative w.r.t. a common shift: exactly zero, residue 1e-17
    large = harness.check(lambda x: torch.logcumsumexp(x, 0), torch.asarray(X + 1e4))
    assert large.passed  # float64 rounding of inputs near 1e4: 6e-13 relative in the gradient
    wrong = harness.check(scaled(lambda x: torch.logcumsumexp(x, 0), 1 + 1e-9), torch.asarray(X + 1e4))
    assert wrong.classification == "wrong derivative"  # and the allowance does not hide 1e-9


def test_differences_step_around_a_jump_or_say_inconclusive():
    near = harness.check(lambda x: torch.round(x, decimals=3), torch.asarray(X + 0.1234))
    assert near.passed  # a jump 1e-4 away: the 1e-3 steps crossed it, smaller ones did not
    at = harness.check(lambda x: (x >= 0.5).double() + x, torch.tensor([0.5, 0.25], dtype=torch.float64))
    assert not at.failures and not at.passed  # the jump at the point: no verdict, never pass or fail
    assert at.classification == "inconclusive" and "no verdict" in at.text()
    assert {c.classification for c in at.checks if c.order == 1 and c.status != "pass"} == {"inconclusive"}


def test_no_oracle_noise_for_a_real_error_on_a_curved_function_without_complex_step():
    def curved(x):
        return torch.exp(torch.sin(3 * x)) * torch.abs(x)  # abs: no complex step

    found = harness.check(scaled(curved, 1 + 1e-6), torch.asarray(X + 0.1))
    assert {c.classification for c in found.failures} == {"wrong derivative"}
    assert all(c.oracle == "central-difference" for c in found.failures if not c.oracle.startswith("agree"))


def test_a_backward_that_differs_between_calls_is_nondeterministic():
    class Noisy(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return torch.sin(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            return g * torch.cos(ctx.saved_tensors[0]) * (1 + 1e-6 * torch.rand((), dtype=torch.float64))

    found = harness.check(Noisy.apply, torch.asarray(X), strategies=["reverse"])
    assert found.classification == "nondeterministic"


def test_a_big_jacobian_is_projected_in_bounded_memory_and_an_error_still_caught():
    n = 20_000  # a dense 20000 x 20000 Jacobian would be 3.2 GB
    x = torch.linspace(-1, 2, n, dtype=torch.float64)
    tracemalloc.start()
    found = harness.check(torch.tanh, x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert found.passed and peak < 50e6
    assert any("along 4 seeded random sign vectors" in str(c.points) for c in found.checks)
    assert harness.check(scaled(torch.tanh, 1 + 1e-9), x).classification == "wrong derivative"


def test_an_index_argument_keeps_its_dtype_and_a_vector_output_gets_order_two():
    index = torch.tensor([4, 0, 2])
    found = harness.check(lambda x, i: torch.sin(x[i]) * x[i], torch.asarray(X), index)
    assert found.passed

    sin = sin_second_off(1 + 1e-6)  # its second derivative off
    x = torch.asarray(X)
    assert harness.check(sin, x, strategies=["reverse"]).passed
    second = harness.check(sin, x, order=2, strategies=["reverse"])
    assert {(c.order, c.classification) for c in second.failures} == {(2, "wrong derivative")}


def test_outputs_torch_does_not_differentiate_are_left_out_unless_all_are():
    found = harness.check(lambda x: (torch.sin(x), x.mean().detach()), torch.asarray(X))
    assert found.passed
    assert any("marks not differentiable left out" in c.message for c in found.checks)
    cut = harness.check(lambda x: (2 * x).detach(), torch.asarray(X))  # cut off from its input
    assert cut.classification == "wrong derivative"


def test_torch_to_numpy_takes_zero_tensors_conjugate_and_negative_bits_and_complex32():
    from harness_backends.torch import TorchBackend

    to_numpy = TorchBackend().to_numpy
    zero = torch._efficientzerotensor(3, dtype=torch.float64)  # what autograd gives for abs'' etc.
    assert zero._is_zerotensor() and np.array_equal(to_numpy(zero), np.zeros(3))
    z = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex128)
    assert z.conj().is_conj() and np.array_equal(to_numpy(z.conj()), np.conj(z.numpy()))
    assert z.conj().imag.is_neg() and np.array_equal(to_numpy(z.conj().imag), [-2.0, 4.0])
    half = to_numpy(torch.tensor([1 + 2j], dtype=torch.complex32))
    assert half.dtype == np.complex64 and half[0] == 1 + 2j
    assert np.array_equal(to_numpy(torch.eye(2, dtype=torch.float64).to_sparse()), np.eye(2))


def test_a_dict_argument_of_matrices_is_differentiated_whole():
    params = {"w": torch.asarray(np.outer(X, X[:3])), "b": torch.asarray(X[:3])}
    found = harness.check(lambda p, x: torch.tanh(x @ p["w"] + p["b"]), params, torch.asarray(X))
    assert found.passed
    assert any("3 x 18 Jacobian" in str(c.points) for c in found.checks)  # 15 + 3 parameters
