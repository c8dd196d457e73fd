"""The measurement protocol: validate before timing, calibrate, measure with GC off, `timed_run` round trip.

Wrappers here (subclasses of ``fakes.Wrapper``) are registered the way a
third-party plugin would register them (``plugins.load(extra=[(name, plugin)])``).
The "do-nothing" backend (``fakes.DoNothing``) meets the spec with numpy and an
identity derivative: it exercises the call path with no framework, and its
(wrong) answers must be caught by validation.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import threading
import time

import numpy as np
import pytest
from fakes import DoNothing, Raising, Wrapper, plugin_of

from harness import hookspecs, machine, plugins, problems
from harness.benchmark import cases, measure
from harness.benchmark.cases import Case
from harness.results import compare, files, gate
from harness.results import runs as results
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


# --- Fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def fast(installed) -> plugins.BackendEntry:
    """One installed built-in backend, the quickest to run (autograd has no compile step)."""
    return next((e for e in installed if e.name == "autograd"), installed[0])


@pytest.fixture
def quick_machine(monkeypatch):
    """`machine.info` without its 256 MiB copy loops (seconds each): a fixed bandwidth instead."""
    monkeypatch.setattr(machine, "host_copy_bandwidth", lambda *a, **k: 1.0e10)
    monkeypatch.setattr(machine, "cuda_copy_bandwidth", lambda *a, **k: None)


def quick_cases(entry: plugins.BackendEntry) -> list[Case]:
    return [
        Case(Target(entry, "cpu", "float32"), TANH, (1_000,), 2),
        Case(Target(entry, "cpu", "float64"), TANH, (), 1),
        Case(Target(entry, "cpu", "float32"), LOGISTIC, (64, 4)),
    ]


# --- prepare --------------------------------------------------------------------------------------


def test_do_nothing_meets_the_spec():
    backend = DoNothing()
    assert isinstance(backend, hookspecs.Backend)
    assert plugins.spec_violation(backend) is None


def test_correct_backend_is_validated_in_every_mode(entry):
    for mode in entry.backend.modes:
        for case in (
            Case(Target(entry, "cpu", "float32", mode), TANH, (1_000,), 2),
            Case(Target(entry, "cpu", "float64", mode), TANH, (), 3),
            Case(Target(entry, "cpu", "float32", mode), LOGISTIC, (64, 4)),
        ):
            prepared = cases.prepare(case)
            assert prepared.validated, f"{case.name}: {prepared.detail}"
            assert prepared.first_call_s > 0


def test_planted_wrong_backend_is_not_validated(entry):
    wrong = entry_of(Scaled(entry.backend, f"scaled-{entry.name}"))
    for mode in wrong.backend.modes:
        for case in (
            Case(Target(wrong, "cpu", "float32", mode), TANH, (1_000,), 2),
            Case(Target(wrong, "cpu", "float64", mode), TANH, (), 1),
            Case(Target(wrong, "cpu", "float32", mode), LOGISTIC, (64, 4)),
        ):
            prepared = cases.prepare(case)
            assert not prepared.validated, case.name


def test_prepare_calls_once_and_validates_that_call(fast):
    counting = Counting(fast.backend, "counting")
    entry = entry_of(counting)
    prepared = cases.prepare(Case(Target(entry, "cpu", "float32"), TANH, (1_000,), 1))
    assert counting.calls == 1
    assert prepared.validated
    prepared.call()
    assert counting.calls == 2  # the prepared call runs the same function again


def test_do_nothing_backend_runs_the_call_path_and_is_caught_by_validation():
    entry = entry_of(DoNothing())
    for size in ((), (100,)):
        prepared = cases.prepare(Case(Target(entry, "cpu", "float64"), TANH, size, 1))
        assert not prepared.validated  # the identity is not tanh'
        assert "mpmath" in prepared.detail
        expected = 2.0 if size == () else np.linspace(-3.0, 3.0, size[0])
        np.testing.assert_array_equal(prepared.call(), expected)  # the call returns fn(x) = x


@pytest.mark.parametrize("size, order", [((1_000,), 3), ((), 1), ((64, 4), 1)])
def test_extra_info_fields(fast, size, order):
    dtype = "float64" if size == () else "float32"
    problem = LOGISTIC if len(size) == 2 else TANH
    case = Case(Target(fast, "cpu", dtype), problem, size, order)
    info = cases.prepare(case).extra_info()
    assert not EXTRA_KEYS - set(info), f"missing {EXTRA_KEYS - set(info)}"
    json.dumps(info)  # pytest-benchmark writes it as JSON: plain values only
    assert info["harness_format"] == results.FORMAT_VERSION
    assert (
        info["backend"],
        info["version"],
        info["device"],
        info["dtype"],
        info["mode"],
        info["strategy"],
        info["problem"],
    ) == (fast.name, fast.version, "cpu", dtype, "eager", "reverse", problem.name)
    assert info["size"] == list(size) and info["order"] == order
    assert info["validated"] is True
    assert isinstance(info["first_call_s"], float) and info["first_call_s"] > 0
    itemsize = np.dtype(dtype).itemsize
    if problem is LOGISTIC:
        assert info["bytes"] == 2.0 * 64 * 4 * itemsize and info["flops"] == 4.0 * 64 * 4
    else:
        assert info["bytes"] == 2.0 * int(np.prod(size)) * itemsize and info["flops"] is None


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


# --- machine --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cores", [1, 3])
def test_the_copy_bandwidth_copies_the_whole_array_on_every_core_at_once(monkeypatch, cores):
    """One slice per core this process may use, together the whole array, each copied on a
    thread of its own (the warm-up round, then each timed round)."""
    copied: list[tuple[int, str]] = []
    real = np.copyto

    def copyto(dst, src):
        copied.append((src.size, threading.current_thread().name))
        real(dst, src)

    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(machine.np, "copyto", copyto)
    rate = machine.host_copy_bandwidth(nbytes=3 * 2**20, repeats=2)
    assert rate > 0 and np.isfinite(rate)
    assert len(copied) == 3 * cores  # warm-up and two timed rounds
    for start in range(0, len(copied), cores):
        rounds = copied[start : start + cores]
        assert sum(size for size, _ in rounds) == 3 * 2**20 // 8
    assert threading.main_thread().name not in {name for _, name in copied}


# --- run ------------------------------------------------------------------------------------------


def test_run_round_trips_through_compare_load(fast, quick_machine, tmp_path):
    found = quick_cases(fast)
    logged = []
    run = measure.timed_run(found, 0.01, logged.append)
    assert logged == []
    json.dumps(run)  # plain JSON: nothing that files.write_json would turn into a string
    path = files.write_json(tmp_path / "run.json", run)
    rows = results.load(path)
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
    rows = results.load(files.write_json(tmp_path / "run.json", run))
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


def test_a_backends_known_failures_do_not_cover_its_hand_written_or_value_cases(installed):
    """autograd declares tanh order 6+ wrong in float32 for its own strategies; the hand-written
    derivative on its arrays is right there, and the function alone has no order to fail at."""
    autograd = next((e for e in installed if e.name == "autograd"), None)
    if autograd is None:
        pytest.skip("autograd, the backend with declared failures, is not installed")
    target = Target(autograd, "cpu", "float32")
    own = Case(target, TANH, (10_000,), 6, "reverse")
    assert cases.known_failure(own) is not None and not cases.prepare(own).validated
    for case in (
        Case(target, TANH, (10_000,), 6, cases.HAND_WRITTEN),
        Case(target, TANH, (10_000,), 0, cases.VALUE),
    ):
        assert cases.known_failure(case) is None and cases.prepare(case).validated, case


def test_cases_that_share_arguments_follow_each_other_and_draw_them_once(installed):
    """The gpu profile's 4M x 256 arguments are 8 GB: every target's case of one problem and
    size comes in one block, and the block draws the arguments (and their rounding) once."""
    found = cases.cases(installed, "quick")
    blocks = [(c.problem.name, c.size) for c in found]
    starts = [k for i, k in enumerate(blocks) if i == 0 or blocks[i - 1] != k]
    assert len(starts) == len(set(starts))  # no problem and size comes back after another
    big = [c for c in found if c.problem.name == "logistic" and c.size == (100_000, 64)]
    assert len(big) >= 2
    assert big[0].arguments() is big[-1].arguments()
    assert big[0].rounded() is big[1].rounded()  # same dtype: float32


def test_float32_matmuls_are_float32_in_jax_unless_the_user_says_otherwise(installed):
    """JAX's default would let a GPU compute float32 products in TensorFloat-32."""
    entry = next((e for e in installed if e.name == "jax"), None)
    if entry is None:
        pytest.skip("jax is not installed")
    expected = os.environ.get("JAX_DEFAULT_MATMUL_PRECISION") or "highest"
    assert entry.backend.jax.config.jax_default_matmul_precision == expected
