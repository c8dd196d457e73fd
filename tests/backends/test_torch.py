"""What the torch backend's compiled mode does its own way: torch.compile, whole graphs or nothing.

Validation covers its numbers on every problem; these tests pin down the mechanics that
validation would only show as a slow row or a dead process: a "jit" row really is compiled,
what TorchDynamo cannot capture whole is unsupported (never silently eager), the nests that
crash torch's compiler are refused before they are compiled, and dynamo's recompile limit does
not turn the many nests of one closure into eager calls.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from conftest import require, tanh_derivative

from harness import problems
from harness.strategies import nest
from harness.target import Target
from harness.validation import tolerances
from harness.validation.checks import Plan, backend_checks
from harness_backends.torch import compile_refusal

PROBLEMS = {p.name: p for p in problems.BUILTIN}
POINTS = np.array([-3.0, -0.5, 0.0, 0.5, 2.0])


@pytest.fixture(scope="module")
def torch_entry(registry):
    return require(registry.backends["torch"])


@pytest.fixture(scope="module")
def torch(torch_entry):
    return torch_entry.backend.torch


def test_a_jit_row_runs_the_compiled_graph(torch_entry, torch):
    """Inside a graph TorchDynamo traced, ``torch.compiler.is_compiling()`` is true: the
    compiled function's answer shows which path ran."""
    backend = torch_entry.backend

    def which(x):
        return x * 2 if torch.compiler.is_compiling() else x * 3

    x = torch.ones(3)
    assert backend.compile(which, "jit")(x).tolist() == [2.0, 2.0, 2.0]
    assert which(x).tolist() == [3.0, 3.0, 3.0]


def test_what_dynamo_cannot_capture_whole_is_unsupported_with_its_reason(torch_entry, torch):
    backend = torch_entry.backend

    def broken(x):
        torch._dynamo.graph_break()
        return x * 2

    with pytest.raises(NotImplementedError, match="cannot capture it whole"):
        backend.compile(broken, "jit")(torch.ones(3))


@pytest.mark.parametrize(
    ("strategy", "order", "refused"),
    [
        ("reverse", 4, None),
        ("reverse", 9, None),
        ("reverse", 10, "internal compiler error"),
        ("forward", 2, None),
        ("forward-over-reverse", 2, None),
        ("forward", 3, "SIGSEGV"),
        ("forward-over-reverse", 3, "SIGSEGV"),
        ("forward-over-reverse", 8, "SIGSEGV"),
    ],
)
def test_nests_that_crash_the_compiler_are_refused_before_compiling(torch_entry, strategy, order, refused):
    """Three or more nested transforms with a jvp killed the process (SIGSEGV) when compiled
    with torch 2.13, and ten nested reverse levels crashed g++: those are refused as unsupported
    without calling torch.compile (a refused call returns at once)."""
    backend = torch_entry.backend
    nested = nest(backend, partial(PROBLEMS["tanh"].fn, backend.namespace()), order, strategy)
    jvps = 0 if strategy == "reverse" else order - (strategy == "forward-over-reverse")
    assert nested.nesting == (order, jvps)
    reason = compile_refusal(nested.nesting)
    if refused is None:
        assert reason is None
    else:
        assert refused in reason
        with pytest.raises(NotImplementedError, match=refused):
            backend.compile(nested, "jit")(backend.asarray(POINTS, "float64", "cpu"))


def test_a_refused_nest_is_an_unsupported_check_not_an_error(torch_entry):
    plan = Plan([torch_entry], [PROBLEMS["tanh"]], ("float64",), ("jit",), ("forward",), ("cpu",), (3,))
    checks = list(backend_checks(torch_entry, plan, lambda event: None))
    assert [c.status for c in checks] == ["unsupported"]
    assert "SIGSEGV" in checks[0].message


def test_compiled_nested_derivatives_agree_with_the_closed_form(torch_entry):
    """Reverse nests to order 3, and the jvp nests that compile safely (order 2)."""
    target = Target(torch_entry, "cpu", "float64", "jit")
    x = target.array(POINTS)
    for strategy, orders in (("reverse", 3), ("forward", 2), ("forward-over-reverse", 2)):
        for order in range(1, orders + 1):
            got = target.numpy(target.derivative(PROBLEMS["tanh"], order, strategy)(x))
            assert tolerances.agrees(got, tanh_derivative(POINTS, order), "float64", order), (strategy, order)


def test_many_nests_of_one_closure_all_stay_compiled(torch_entry, torch):
    """Every nested derivative is the same closure around a deeper one: to TorchDynamo one code
    object recompiled, which fullgraph stops after 8 (FailOnRecompileLimitHit, measured with
    torch 2.13: 18 of 140 jit checks errored before the backend raised the limits)."""
    backend = torch_entry.backend

    def wrap(g):
        return lambda x: g(x) + 1

    def base(x):
        return x * 0 if torch.compiler.is_compiling() else x * 0 - 100

    x, f, got = torch.zeros(2), base, []
    for _ in range(10):
        f = wrap(f)
        got.append(backend.compile(f, "jit")(x).tolist())
    assert got == [[float(k)] * 2 for k in range(1, 11)]


# --- reverse mode on autograd's tape -----------------------------------------------------------


def test_reverse_on_the_tape_equals_torch_func_alone_and_nested(torch_entry, torch):
    """The tape's gradient (outside any transform) and torch.func's (inside one) of a pytree
    argument agree to the last bit, and reverse over reverse (a tape pass inside another) gives
    the Hessian-vector product that forward over reverse (torch.func all the way) gives."""
    backend = torch_entry.backend

    def loss(params, x):
        return torch.sum(torch.tanh(params["w"] * x + params["b"]) ** 2)

    params = {
        "w": torch.tensor([0.3, -1.2], dtype=torch.float64),
        "b": torch.tensor(0.7, dtype=torch.float64),
    }
    x = torch.tensor([1.5, 2.0], dtype=torch.float64)
    value, grads = backend.value_and_grad(loss, 0)(params, x)
    reference, functional = torch.func.grad_and_value(loss)(params, x)[::-1]
    assert not value.requires_grad and value == reference
    assert all(torch.equal(grads[k], functional[k]) for k in params)

    def by_tape(v):  # reverse over reverse: the inner pass runs on the outer pass's tape
        return backend.value_and_grad(
            lambda w: torch.dot(backend.value_and_grad(loss, 0)({"w": w, "b": params["b"]}, x)[1]["w"], v), 0
        )(params["w"])[1]

    v = torch.tensor([1.0, -2.0], dtype=torch.float64)
    forward = torch.func.jvp(
        lambda w: torch.func.grad(loss)({"w": w, "b": params["b"]}, x)["w"], (params["w"],), (v,)
    )[1]
    torch.testing.assert_close(by_tape(v), forward, rtol=1e-14, atol=0)


def test_reverse_on_the_tape_past_a_polynomials_degree_is_zero(torch_entry, torch):
    """The fourth and fifth derivatives of x**3 by nested reverse mode: the third is a constant
    that no longer depends on x (no graph to go back through), so the next ones are zeros."""
    x = torch.tensor([0.5, -2.0], dtype=torch.float64)
    for order, expected in ((3, 6.0), (4, 0.0), (5, 0.0)):
        nth = nest(torch_entry.backend, lambda x: x**3, order, "reverse")
        torch.testing.assert_close(nth(x), torch.full_like(x, expected), rtol=0, atol=0)


def test_a_custom_function_as_pytorchs_tutorial_writes_it_has_a_gradient(torch_entry, torch):
    """``forward(ctx, x)`` with ``save_for_backward``, no ``setup_context``: torch.func refuses it,
    the tape takes it (most custom gradients in the wild are written so)."""

    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 3 * x**2 * grad

    x = torch.tensor([0.5, -2.0], dtype=torch.float64)
    value, grad = torch_entry.backend.value_and_grad(lambda x: Cube.apply(x).sum(), 0)(x)
    torch.testing.assert_close(grad, 3 * x**2, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="setup_context"):
        torch.func.grad(lambda x: Cube.apply(x).sum())(x)
