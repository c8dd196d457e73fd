"""Benchmarks: every backend x device x mode x strategy on the notebook's problems, scaled up.

Run with ``pytest --benchmark-only`` (or ``tox run -e bench``). Each case is
validated before it is timed; a wrong result fails the case and is not timed.
"""

from harness import timing


def test_benchmark(benchmark, case, request):
    prepared = timing.prepare(case)
    benchmark.group = case.group
    benchmark.extra_info.update(prepared.extra_info())
    assert prepared.validated, f"{case.name}: result disagrees with {prepared.detail}; not timed"
    budget = timing.PROFILES[request.config.harness_profile]["budget"]
    rounds, iterations = timing.calibrate(prepared.call, budget)
    benchmark.pedantic(prepared.call, rounds=rounds, iterations=iterations, warmup_rounds=1)
