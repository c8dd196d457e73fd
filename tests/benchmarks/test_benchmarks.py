"""Benchmarks: every backend x device x mode x strategy on the notebook's problems, scaled up.

Run with ``pytest --benchmark-only`` (or ``tox run -e bench``). Each case is
validated before it is timed; a wrong result fails the case and is not timed.
"""

import pytest

from harness import timing


def test_benchmark(benchmark, case, request):
    prepared = timing.prepare(case)
    benchmark.group = case.group
    benchmark.extra_info.update(prepared.extra_info())
    known = timing.known_failure(case)
    if known and not prepared.validated:
        pytest.xfail(f"{known.source}: {known.reason}")
    assert not known, f"{case.name} validated, but {known.source} says it fails: update that file"
    assert prepared.validated, f"{case.name}: result disagrees with {prepared.detail}; not timed"
    spec = timing.PROFILES[request.config.harness_profile]
    rounds, iterations = timing.calibrate(prepared.call, spec["budget"],
                                          spec.get("min_rounds", timing.MIN_ROUNDS))
    benchmark.pedantic(prepared.call, rounds=rounds, iterations=iterations, warmup_rounds=1)
