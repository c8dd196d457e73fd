"""The harness's own cost per timed call, the floor under every other benchmark.

`cases.prepare` builds ``call = lambda: backend.block_until_ready(fn(*args))``
for each case; here the backend (``fakes.DoNothing``) does nothing (the derivative
is the identity, ``block_until_ready`` returns its argument), so what is timed is
the closure, the argument unpacking and two backend method calls: the harness,
not a framework.
It needs no framework installed. Run with ``pytest tests/benchmarks/test_overhead.py --benchmark-only``.

No test here takes an argument named ``harness_case``: the harness's pytest plugin parametrizes those.
"""

from __future__ import annotations

from fakes import DoNothing

import harness
from harness import plugins, problems
from harness.benchmark import cases
from harness.target import Target

ROUNDS = 200
ITERATIONS = 1000


class Plugin:
    @harness.hookimpl
    def harness_register_backends(self, register):
        register(DoNothing())


def test_harness_overhead(harness_benchmark):
    benchmark = harness_benchmark
    registry = plugins.load(extra=[("do-nothing", Plugin())], entry_points=False)
    assert registry.errors == []
    entry = registry.backends["do-nothing"]
    tanh = next(p for p in problems.BUILTIN if p.name == "tanh")
    timed = cases.Case(Target(entry, "cpu", "float64", "eager"), tanh, (), 1)
    prepared = cases.prepare(timed)
    # The oracle rejects the identity (it is not tanh'), which shows prepare() ran the real call path.
    assert not prepared.validated

    benchmark.group = "harness overhead"
    benchmark.extra_info.update(
        {
            **timed.extra_info(),
            "first_call_s": prepared.first_call_s,
            # The do-nothing backend computes nothing, so there is no derivative to validate: the
            # oracle's "wrong" above is about the identity, not about the overhead timed here. Marked
            # validated so `compare` shows this row and does not fail the run over it.
            "validated": True,
            "validation": "none: the do-nothing backend has nothing to validate",
            # Nothing is read or written per call: no bandwidth to report.
            "bytes": None,
            "flops": None,
        }
    )
    result = benchmark.pedantic(prepared.call, rounds=ROUNDS, iterations=ITERATIONS, warmup_rounds=1)
    assert float(result) == 2.0  # the identity gave back the scalar-latency point, x = 2.0
