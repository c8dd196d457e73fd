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

from backends.torch import compile_refusal
from harness import problems
from harness.strategies import nest
from harness.target import Target
from harness.validation import checks as validate
from harness.validation import tolerances

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
    plan = validate.Plan(
        [torch_entry], [PROBLEMS["tanh"]], ("float64",), ("jit",), ("forward",), ("cpu",), (3,)
    )
    checks = list(validate.backend_checks(torch_entry, plan, lambda event: None))
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
