"""Benchmarks: every backend x device x mode x strategy on the notebook's problems, scaled up,
and on every problem a plugin registers.

Run with ``pytest --benchmark-only`` (or ``tox run -e bench``). The cases, the options and
the saved run come from the gradient-harness pytest plugin (`harness.benchmark.pytest_plugin`). Each
case is validated before it is timed; a wrong result fails the case and is not timed; a
case the backend does not support (`NotImplementedError`) is skipped with its reason.
"""

import pytest

from harness.benchmark import cases, measure


def test_benchmark(harness_benchmark, harness_profile, harness_case):
    case = harness_case
    try:
        prepared = cases.prepare(case)
    except NotImplementedError as exc:  # unsupported, as validate reports it: not timed, not failed
        pytest.skip(f"unsupported: {exc}")
    harness_benchmark.extra_info.update(prepared.extra_info())
    known = cases.known_failure(case)
    if known and not prepared.validated:
        pytest.xfail(f"{known.source}: {known.reason}")
    assert not known, f"{case.name} validated, but {known.source} says it fails: update that file"
    assert prepared.validated, f"{case.name}: result disagrees with {prepared.detail}; not timed"
    floor = case.min_rounds or harness_profile.get("min_rounds", measure.MIN_ROUNDS)
    rounds, iterations = measure.calibrate(prepared.call, harness_profile["budget"], floor)
    harness_benchmark.pedantic(prepared.call, rounds=rounds, iterations=iterations, warmup_rounds=1)
    events = prepared.event_median(rounds)  # the device's own clock, where the backend has one
    if events is not None:
        harness_benchmark.extra_info["event_median_s"] = events
    harness_benchmark.extra_info["peak_memory_bytes"] = measure.peak_memory(prepared)
