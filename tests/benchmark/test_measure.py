"""`harness.benchmark.measure`: calibrate, measure with GC off, and `timed_run`'s round trip
through a saved run (backends that raise or are wrong left out and logged, device clocks)."""

from __future__ import annotations

import gc
import itertools
import json
import time

import pytest
from fakes import Raising, Wrapper, plugin_of
from planted import (
    TANH,
    CountingScaled,
    FailsAfterFirstCall,
    entry_of,
    quick_cases,
)

from harness import plugins
from harness.benchmark import cases, measure
from harness.benchmark.cases import Case
from harness.results import compare, files, gate
from harness.results.runs import load
from harness.target import Target

# --- calibrate and measure ------------------------------------------------------------------------


def test_calibrate_a_fast_call_batches_iterations():
    rounds, iterations = measure.calibrate(lambda: None, 0.01)
    assert 5 <= rounds <= 1000
    assert iterations > 1  # a no-op call is far below ~100 us: several per round


def test_calibrate_a_slow_call():
    rounds, iterations = measure.calibrate(lambda: time.sleep(1e-3), 0.02)
    assert iterations == 1
    assert 5 <= rounds <= 20  # each call takes >= 1 ms: at most 20 fill 0.02 s


@pytest.mark.parametrize("budget", [0.0, 1e-9])
def test_calibrate_never_fewer_than_five_rounds(budget):
    rounds, iterations = measure.calibrate(lambda: time.sleep(1e-3), budget)
    assert rounds >= 5 and iterations >= 1


@pytest.mark.parametrize("enabled", [True, False])
def test_measure_rounds_gc_off_and_restored(enabled):
    seen = []

    def call():
        seen.append(gc.isenabled())

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        times = measure.measure(call, rounds=7, iterations=3)
        after = gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert len(times) == 7 and all(isinstance(t, float) and t > 0 for t in times)
    assert len(seen) == 1 + 7 * 3  # one warm-up call, then rounds x iterations
    assert not any(seen[1:])  # GC off while timing
    assert after is enabled


def test_measure_restores_gc_when_the_call_raises():
    calls = itertools.count()

    def call():
        if next(calls) == 2:
            raise RuntimeError("planted")

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        measure.measure(call, rounds=5, iterations=1)
    assert gc.isenabled()


def test_measure_seconds_per_call():
    times = measure.measure(lambda: time.sleep(2e-3), rounds=5, iterations=2)
    assert all(2e-3 <= t < 0.5 for t in times)  # per call, not per round of two


# --- run ------------------------------------------------------------------------------------------


def test_run_round_trips_through_compare_load(fast, quick_machine, tmp_path):
    found = quick_cases(fast)
    logged = []
    run = measure.timed_run(found, 0.01, logged.append)
    assert logged == []
    json.dumps(run)  # plain JSON: nothing that files.write_json would turn into a string
    path = files.write_json(tmp_path / "run.json", run)
    rows = load(path)
    assert [r.group for r in rows] == [c.group for c in found]
    for row, case, bench in zip(rows, found, run["benchmarks"], strict=True):
        stats = bench["stats"]
        assert row.run == "run" and row.backend == fast.name and row.validated
        assert (row.problem, row.size, row.order, row.dtype) == (
            case.problem.name,
            case.size,
            case.order,
            case.target.dtype,
        )
        assert row.median == stats["median"] > 0 and row.min == stats["min"]
        assert len(row.data) == stats["rounds"] >= 5
        assert row.first_call_s == bench["extra_info"]["first_call_s"]
        assert row.bound == 1.0e10
    assert gate.regressions(rows, rows, "median", 0.1) == []


def test_run_leaves_out_and_logs_a_raising_and_a_wrong_backend(fast, quick_machine):
    raising = entry_of(Raising(fast.backend, "raising"))
    counting = CountingScaled(fast.backend, "wrong")
    wrong = entry_of(counting)
    found = [
        Case(Target(raising, "cpu", "float32"), TANH, (1_000,), 1),
        Case(Target(wrong, "cpu", "float32"), TANH, (1_000,), 1),
        *quick_cases(fast)[:1],
    ]
    logged = []
    run = measure.timed_run(found, 0.01, logged.append)
    assert [b["name"] for b in run["benchmarks"]] == [found[2].name]
    assert len(logged) == 2
    assert logged[0].startswith(f"error: {found[0].name}: RuntimeError: planted failure")
    assert logged[1].startswith(f"wrong: {found[1].name}: disagrees with mpmath")
    assert counting.calls == 1  # a wrong answer is never timed


def test_run_leaves_out_a_backend_that_raises_after_validation(fast, quick_machine):
    flaky = entry_of(FailsAfterFirstCall(fast.backend, "fails-later"))
    found = [Case(Target(flaky, "cpu", "float32"), TANH, (1_000,), 1), *quick_cases(fast)[:1]]
    logged = []
    run = measure.timed_run(found, 0.01, logged.append)
    assert [b["name"] for b in run["benchmarks"]] == [found[1].name]
    assert logged and logged[0].startswith(f"error: {found[0].name}")


class RefusedAtCall(Wrapper):
    """Its derivatives raise NotImplementedError when called, as torch's compiled mode does for a
    nest its compiler cannot take."""

    def derivative(self, f, order, strategy):
        def refused(x):
            raise NotImplementedError("planted: the compiler cannot take this nest")

        return refused


def test_run_logs_a_refusal_at_call_time_as_unsupported_not_an_error(fast, quick_machine):
    refused = entry_of(RefusedAtCall(fast.backend, "refuses"))
    found = [Case(Target(refused, "cpu", "float32"), TANH, (1_000,), 1), *quick_cases(fast)[:1]]
    logged = []
    run = measure.timed_run(found, 0.01, logged.append)
    assert [b["name"] for b in run["benchmarks"]] == [found[1].name]
    assert logged == [f"unsupported: {found[0].name}: planted: the compiler cannot take this nest"]


class HostClock(Wrapper):
    """A backend whose "device clock" is the host's: it times ``launch`` plus the wait itself."""

    def event_times(self, launch, device, rounds):
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            self.block_until_ready(launch())
            times.append(time.perf_counter() - started)
        return times


def test_a_device_clock_is_recorded_beside_the_harness_timing_and_compared(fast, quick_machine, tmp_path):
    clocked = plugins.load(extra=[("clocked", plugin_of(HostClock(fast.backend, "clocked")))]).backends
    found = quick_cases(clocked["clocked"])[:2] + quick_cases(fast)[:1]
    run = measure.timed_run(found, 0.01, print)
    rows = load(files.write_json(tmp_path / "run.json", run))
    assert [r.event_median is not None for r in rows] == [True, True, False]
    text = compare.fidelity(rows)
    assert text.count("clocked") == 2 and fast.name not in text.replace("clocked", "")
    for row in rows[:2]:
        assert f"{row.median / row.event_median:.3f}" in text


def test_no_device_clock_on_a_cpu(installed):
    torch = next((e for e in installed if e.name == "torch"), None)
    if torch is None:
        pytest.skip("torch, the backend with a device clock, is not installed")
    case = Case(Target(torch, "cpu", "float32"), TANH, (), 1)
    assert cases.prepare(case).event_median(3) is None
