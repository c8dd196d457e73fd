"""On a CUDA machine: the harness's timings agree with CUDA-event timings of the same calls.

Skipped without a CUDA device (this is a ratio measured in one run, not a time limit).
"""

from __future__ import annotations

import statistics

import pytest

from harness import problems
from harness.benchmark import cases, measure
from harness.target import Target

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

LOGISTIC = next(p for p in problems.BUILTIN if p.name == "logistic")
ROUNDS = 30


def test_harness_timing_agrees_with_cuda_events(registry):
    case = cases.Case(Target(registry.backends["torch"], "cuda:0", "float32"), LOGISTIC, (4_194_304, 256))
    prepared = cases.prepare(case)
    assert prepared.validated, prepared.detail
    harness = statistics.median(measure.measure(prepared.call, ROUNDS, 1))
    events = prepared.event_median(ROUNDS)
    ratio = harness / events
    assert abs(ratio - 1) < 0.05, f"harness {harness:.6f} s vs CUDA events {events:.6f} s, ratio {ratio:.3f}"
