"""`harness.hookspecs` is the whole contract: the backend in its docstring, run from that text
alone, validates on every default problem; a backend with only the required methods loads."""

from __future__ import annotations

import re
import textwrap
import types

import pytest

from harness import hookspecs, plugins
from harness.hookspecs import REQUIRED_METHODS
from harness.validation.checks import Plan, check_plan


def docstring_example() -> types.ModuleType:
    """The code block of `harness.hookspecs`'s docstring, run as a plugin module."""
    text = hookspecs.__doc__.split("A complete backend", 1)[1].split("::\n", 1)[1]
    block = textwrap.dedent(re.split(r"\n(?=\S)", text, maxsplit=1)[0])
    module = types.ModuleType("docstring_example")
    exec(compile(block, "harness/hookspecs.py (docstring)", "exec"), module.__dict__)
    return module


def test_the_docstring_backend_validates_with_nothing_else(registry):
    if registry.backends["jax"].unavailable:
        pytest.skip(registry.backends["jax"].unavailable)
    module = docstring_example()
    loaded = plugins.load(extra=[("docstring-example", module)], entry_points=False)
    assert loaded.errors == []
    entry = loaded.backends["mini-jax"]
    backend = entry.backend
    assert not any(hasattr(backend, m) for m in ("derivative", "compile"))  # optional, left out
    checks = list(check_plan(Plan(backends=[entry], problems=loaded.select_problems())))
    assert checks
    bad = [
        (c.problem, c.strategy, c.dtype, c.order, c.oracle, c.status, c.message[:60])
        for c in checks
        if c.status != "pass"
    ]
    assert bad == []
    assert {c.strategy for c in checks} >= {"reverse", "forward", "forward-over-reverse"}
    assert {c.problem for c in checks} == {p.name for p in loaded.select_problems()}


@pytest.mark.parametrize("missing", REQUIRED_METHODS)
def test_each_required_method_is_required(missing):
    module = docstring_example()
    backend = module.MiniJax()
    setattr(type(backend), missing, None)
    assert f"missing {missing}" in plugins.spec_violation(backend)


def test_a_compiled_mode_needs_compile():
    backend = docstring_example().MiniJax()
    backend.modes = ("eager", "jit")
    assert "need a compile method" in plugins.spec_violation(backend)
    backend.compile = lambda fn, mode: fn
    assert plugins.spec_violation(backend) is None


def test_the_names_a_backend_may_use_live_in_the_spec():
    assert set(hookspecs.MODES) == {"eager", "jit"}
    assert set(hookspecs.DTYPES) == {"float32", "float64"}
    assert set(hookspecs.STRATEGIES) == {"reverse", "forward", "forward-over-reverse", "taylor"}
    assert "ones_like" in hookspecs.NAMESPACE
