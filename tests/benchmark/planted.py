"""Backends with planted faults (wrappers of an installed built-in, `fakes.Wrapper`) and the quick
cases the benchmark layer's tests time: shared by `test_cases` and `test_measure`.

Wrappers here are registered the way a third-party plugin would register them
(``plugins.load(extra=[(name, plugin)])``).
"""

from __future__ import annotations

import itertools

from fakes import Wrapper, plugin_of

from harness import plugins, problems
from harness.benchmark.cases import Case
from harness.strategies import derivative
from harness.target import Target

PROBLEMS = {p.name: p for p in problems.BUILTIN}
TANH, LOGISTIC = PROBLEMS["tanh"], PROBLEMS["logistic"]
EXTRA_KEYS = {
    "backend",
    "version",
    "device",
    "dtype",
    "mode",
    "strategy",
    "problem",
    "size",
    "order",
    "first_call_s",
    "bytes",
    "flops",
    "validated",
    "harness_format",
}


# --- Backends (planted faults on top of fakes.Wrapper) -----------------------------------------


class Scaled(Wrapper):
    """Every derivative and gradient is 1.01 times the right one: far outside any tolerance."""

    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)
        return lambda x: d(x) * 1.01

    def value_and_grad(self, f, argnums):
        vg = self.inner.value_and_grad(f, argnums)

        def scaled(*args):
            value, grads = vg(*args)
            return value, tuple(g * 1.01 for g in grads)

        return scaled


class Counting(Wrapper):
    """Counts the calls of every derivative function it hands out."""

    def __init__(self, inner, name: str):
        super().__init__(inner, name)
        self.calls = 0

    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)

        def counted(x):
            self.calls += 1
            return d(x)

        return counted


class CountingScaled(Counting):
    def derivative(self, f, order, strategy):
        d = super().derivative(f, order, strategy)
        return lambda x: d(x) * 1.01


class FailsAfterFirstCall(Wrapper):
    """Right on the first call (the validated one), raises on every later call."""

    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)
        calls = itertools.count()

        def once(x):
            if next(calls):
                raise RuntimeError("planted failure after the first call")
            return d(x)

        return once


def entry_of(backend) -> plugins.BackendEntry:
    """``backend`` registered as a third-party plugin would be, without the entry points."""
    registry = plugins.load(extra=[("thirdparty", plugin_of(backend))], entry_points=False)
    assert registry.errors == []
    return registry.backends[backend.name]


def quick_cases(entry: plugins.BackendEntry) -> list[Case]:
    return [
        Case(Target(entry, "cpu", "float32"), TANH, (1_000,), 2),
        Case(Target(entry, "cpu", "float64"), TANH, (), 1),
        Case(Target(entry, "cpu", "float32"), LOGISTIC, (64, 4)),
    ]
