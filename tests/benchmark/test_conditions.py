"""Timings you can trust on a shared machine: the contention arithmetic (on fake ``/proc``
readings), the flags, the gate's inconclusive rows, the machine's state and the new row fields
through a saved run, peak memory, and ``--threads`` reaching the child before its framework.

No test here races a wall clock: the probes are fed made-up readings, and the one real run
checks what was recorded, never how fast anything was."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from synthetic_runs import CASES, bench, compare_cli, run_of, save, synthetic

from harness import threads
from harness.benchmark import conditions, measure
from harness.cli.main import main
from harness.cli.output import EXIT_INCONCLUSIVE
from harness.errors import RunError
from harness.results import compare, runs, soundness
from harness.results.gate import gate_rules

STAT = """cpu  500 0 100 1000 0 0 0 0 0 0
cpu0 100 0 20 500 7 1 2 3 0 0
cpu1 200 5 30 500 0 0 0 0 0 0
cpu2 50 0 0 900 0 0 0 0 0 0
intr 12345
"""


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")


# --- contention arithmetic -------------------------------------------------------------------------


def test_busy_ticks_sum_the_busy_fields_of_the_allowed_cpus_only():
    # cpu0: user 100 + system 20 + irq 1 + softirq 2 + steal 3 (idle and iowait are not busy)
    assert conditions.busy_ticks(STAT, [0]) == 126
    assert conditions.busy_ticks(STAT, [0, 1]) == 126 + 235
    assert conditions.busy_ticks(STAT, [0, 7]) is None  # a CPU the file does not list


def test_contention_is_others_busy_time_over_the_cpus_and_the_wall_time():
    # 300 ticks at 100 Hz on 2 CPUs over 1 s: 3 CPU-seconds busy, 0.5 of them ours
    before = conditions.Sample(wall=10.0, busy=1000, own=2.0)
    after = conditions.Sample(wall=11.0, busy=1300, own=2.5)
    assert conditions.contention(before, after, cpus=2, hz=100) == pytest.approx(1.0)  # clipped
    after = conditions.Sample(wall=11.0, busy=1200, own=2.5)
    assert conditions.contention(before, after, cpus=2, hz=100) == pytest.approx(0.75)
    alone = conditions.Sample(wall=11.0, busy=1050, own=2.5)  # all the busy time was ours
    assert conditions.contention(before, alone, cpus=2, hz=100) == 0.0
    unread = conditions.Sample(wall=11.0, busy=None, own=2.5)
    assert conditions.contention(before, unread, cpus=2, hz=100) is None


def test_a_sample_reads_proc_stat_and_every_threads_schedstat():
    def fake(path):
        return STAT if path == conditions.STAT_FILE else "5000 250000000 9\n"

    taken = conditions.sample([0, 1], read=fake)
    threads_now = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 0
    assert taken.busy == 126 + 235
    if threads_now:  # 0.25 s of waiting per thread found
        assert taken.waited == pytest.approx(0.25 * threads_now, rel=0.5)
    unreadable = conditions.sample([0, 1], read=lambda path: None)
    assert unreadable.busy is None and unreadable.waited is None


def test_run_queue_wait_is_the_second_field_summed_and_never_negative():
    assert conditions.run_queue_wait(["1 2000000000 3", "1 500000000 3", None]) == pytest.approx(2.5)
    assert conditions.run_queue_wait([None, ""]) is None
    before = conditions.Sample(wall=0.0, busy=0, own=0.0, waited=3.0)
    assert conditions.waiting(before, conditions.Sample(2.0, 0, 0.0, 4.0)) == pytest.approx(0.5)
    # a thread that ended took its waits with it: less than before reads as no wait
    assert conditions.waiting(before, conditions.Sample(2.0, 0, 0.0, 1.0)) == 0.0
    assert conditions.waiting(before, conditions.Sample(2.0, 0, 0.0, None)) is None


@pytest.mark.parametrize(
    ("others", "waited", "iqr", "expected"),
    [
        (0.9, 0.05, 0.1, []),  # others busy on CPUs we did not need: not our harm
        (0.5, 0.6, 0.1, ["contended"]),
        (0.05, 0.9, 0.1, []),  # our threads waited for each other, nobody else was there
        (0.5, None, 0.1, ["contended"]),  # no schedstat: others' share decides
        (0.1, None, 0.1, []),
        (None, None, 0.6, []),
        (None, None, 1.5, ["spread"]),
        (0.3, 0.9, 2.0, ["contended", "spread"]),
    ],
)
def test_flags(others, waited, iqr, expected):
    assert conditions.flags(others, waited, median=1.0, iqr=iqr) == expected


def test_thresholds_sit_between_the_measured_quiet_and_loaded_readings():
    # README: run-queue wait 0.01-0.06 quiet, 0.58-1.34 beside numpy loops
    assert 0.06 < conditions.WAITED < 0.58
    assert 0.01 < conditions.CONTENDED < 0.52  # others' share: idle median, loaded median
    assert 0.5 < conditions.SPREAD < 4.3  # idle rows: 18 above 0.5; loaded rows reach 4.3


# --- peak memory ---------------------------------------------------------------------------------

needs_clear_refs = pytest.mark.skipif(
    not os.access(conditions.CLEAR_REFS, os.W_OK), reason="no /proc/self/clear_refs to reset the peak"
)


@needs_clear_refs
def test_peak_rss_counts_what_a_call_allocates():
    n = 4_000_000  # 32 MB of float64 made and touched by the call
    added = conditions.peak_rss_added(lambda: np.ones(n))
    assert 0.9 * 8 * n <= added <= 2 * 8 * n
    assert conditions.peak_rss_added(lambda: None) < 8 * n / 4


# --- threads -------------------------------------------------------------------------------------


def test_thread_environment_sets_every_framework_and_keeps_other_xla_flags():
    env = threads.environment(2, {"XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=true"})
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "2"
    assert env["TF_NUM_INTRAOP_THREADS"] == "2"
    flags = env["XLA_FLAGS"].split()
    assert "--xla_dump_to=/tmp/x" in flags and "intra_op_parallelism_threads=2" in flags
    assert [f for f in flags if f.startswith("--xla_cpu_multi_thread_eigen")] == [
        "--xla_cpu_multi_thread_eigen=true"
    ]
    assert "--xla_cpu_multi_thread_eigen=false" in threads.environment(1, {})["XLA_FLAGS"]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="whole number"):
            threads.environment(bad, {})


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_threads_option_refuses_a_bad_count(capsys, bad):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--threads", bad])
    assert exc.value.code == 2 and "whole number of 1 or more" in capsys.readouterr().err


def test_threads_reach_the_child_before_its_framework_and_the_run_records_them(capsys, tmp_path):
    """A real quick run of autograd in its child process, ``--threads 1``: the saved run
    records the request, the child's environment, torch's pool (imported after the setting),
    the machine's state before and after, and each row's probes."""
    pytest.importorskip("autograd")
    out = tmp_path / "run.json"
    code, text, _ = compare_cli(capsys, "-b", "autograd", "--threads", "1", "--run-to", out, "-q")
    assert code in (0, 1), text  # 1 only if a row failed validation, which the table shows
    info = json.loads(out.read_text())["machine_info"]["harness"]
    assert info["threads_requested"] == 1
    child = info["threads_by_backend"]["autograd"]
    assert child["env"]["OMP_NUM_THREADS"] == "1"
    assert "intra_op_parallelism_threads=1" in child["env"]["XLA_FLAGS"]
    if "torch" in child:  # the host's copy-bandwidth probe imports torch where it is installed
        assert child["torch"]["intra_op"] == 1
    for key in ("state_before", "state_after"):
        assert len(info[key]["load_average"]) == 3 and info[key]["cpus_allowed"]
    rows = runs.load(out)
    assert rows and all(r.contention is not None and r.run_queue_wait is not None for r in rows)
    assert all(r.peak_memory is not None for r in rows) or not os.access(conditions.CLEAR_REFS, os.W_OK)
    assert "what the machine was doing" in text and "1 for every backend" in text


# --- saved saved, the table, the gate -------------------------------------------------------------


def flagged_run(seed: int, flags: list[str], slowdown: float = 1.0) -> dict:
    """`test_compare.synthetic`'s cases with the new fields; ``flags`` on the first case only."""
    rng = np.random.default_rng(seed)
    return run_of(
        [
            bench(
                median * slowdown * rng.lognormal(0.0, 0.05, 30),
                problem,
                size,
                order,
                contention=0.7,
                run_queue_wait=0.9 if i == 0 and flags else 0.02,
                flags=flags if i == 0 else [],
                peak_memory_bytes=1e6 * (i + 1),
            )
            for i, (problem, size, order, median) in enumerate(CASES)
        ]
    )


def test_new_fields_round_trip_and_old_runs_load_without_them(tmp_path):
    rows = runs.load(save(tmp_path, "new", flagged_run(1, ["contended", "spread"])))
    assert rows[0].flags == ("contended", "spread") and rows[1].flags == ()
    assert rows[0].run_queue_wait == 0.9 and rows[0].contention == 0.7 and rows[2].peak_memory == 3e6
    old = runs.load(save(tmp_path, "old", synthetic(seed=1)))
    assert all(r.flags == () and r.contention is None and r.peak_memory is None for r in old)
    assert soundness.flag_warning(old) == "" and soundness.machine_lines("old", {"cpu_model": "x"}) == []


def test_a_damaged_flags_field_is_a_run_error(tmp_path):
    doc = run_of([bench([1e-3] * 10, flags="contended")])
    with pytest.raises(RunError, match="extra_info.flags"):
        runs.load(save(tmp_path, "bad", doc))


def test_the_table_marks_flagged_rows_and_a_warning_says_what_to_do(capsys, tmp_path):
    code, out, err = compare_cli(capsys, save(tmp_path, "r", flagged_run(1, ["contended", "spread"])))
    assert code == 0
    marked = [line for line in out.splitlines() if " CS " in line]
    assert len(marked) == 1 and "tanh d^1" in marked[0]
    assert "warning: 1 of 3 rows are flagged" in err and "--threads 1" in err and "quiet machine" in err
    records = json.loads(compare.table(runs.load(tmp_path / "r.json"), "json"))
    assert [r["flags"] for r in records].count(["contended", "spread"]) == 1
    assert all("run_queue_wait" in r and "memory_x_value" in r for r in records)


def test_memory_over_the_functions_own_beside_x_value(tmp_path):
    value = bench([1e-5] * 10, strategy="value", peak_memory_bytes=2e6)
    grad = bench([3e-5] * 10, peak_memory_bytes=5e6)
    rows = runs.load(save(tmp_path, "m", run_of([value, grad])))
    record = next(r for r in json.loads(compare.table(rows, "json")) if r["strategy"] == "reverse")
    assert record["memory_x_value"] == pytest.approx(2.5) and record["x_value"] == pytest.approx(3.0)
    assert "5 MB" in compare.table(rows) and "2.50" in compare.table(rows)


def test_ratios_are_of_fastest_rounds_so_a_passing_load_moves_them_least(tmp_path):
    """A backend whose later rounds a load slowed: its median doubled, its fastest round did
    not. x fastest and x value compare fastest rounds (README: the drift measurement)."""
    quiet = bench([1e-4] * 10, backend="a")
    slowed = bench([2e-4] * 6 + [1e-3] * 10, backend="b")  # median 1e-3, fastest 2e-4
    value = bench([1e-4] * 6 + [5e-4] * 10, backend="b", strategy="value")
    rows = runs.load(save(tmp_path, "r", run_of([quiet, slowed, value])))
    records = {(r["backend"], r["strategy"]): r for r in json.loads(compare.table(rows, "json"))}
    assert records["b", "reverse"]["median"] == pytest.approx(1e-3)
    assert records["b", "reverse"]["x_fastest"] == pytest.approx(2.0)
    assert records["b", "reverse"]["x_value"] == pytest.approx(2.0)


def test_the_gate_calls_a_row_flagged_on_either_side_inconclusive(capsys, tmp_path):
    base = save(tmp_path, "base", flagged_run(1, []))
    # a planted 2x slowdown, the first row flagged: it is inconclusive, the others regressions
    slow = save(tmp_path, "slow", flagged_run(2, ["contended"], slowdown=2.0))
    code, _, err = compare_cli(capsys, slow, "--baseline", base)
    assert code == 1
    assert len([line for line in err.splitlines() if line.startswith("REGRESSION")]) == len(CASES) - 1
    inconclusive = [line for line in err.splitlines() if line.startswith("INCONCLUSIVE")]
    assert len(inconclusive) == 1 and "contended in slow" in inconclusive[0]
    # no regression, but a flagged row: neither a regression nor an all-clear (exit 3)
    same = save(tmp_path, "same", flagged_run(3, []))
    flagged_base = save(tmp_path, "fbase", flagged_run(1, ["spread"]))
    code, _, err = compare_cli(capsys, same, "--baseline", flagged_base)
    assert code == EXIT_INCONCLUSIVE and "1 row(s) inconclusive" in err and "spread in fbase" in err
    rows, old = runs.load(same), runs.load(flagged_base)
    assert sum(gate_rules(rows, old).values()) == len(CASES) - 1  # judged rows only


def test_interleaved_passes_pool_each_cases_rounds_and_keep_every_flag():
    def entry(name, times, **extra):
        return runs.entry(
            "g", name, {"contention": 0.1, "run_queue_wait": 0.0, "flags": [], **extra}, times, 1
        )

    quiet, loaded = [1.0e-3] * 10, [4.0e-3] * 10
    passes = [
        entry("a", quiet, peak_memory_bytes=10),
        entry("b", quiet),
        entry("a", loaded, run_queue_wait=0.8, flags=["contended"], peak_memory_bytes=30),
        entry("b", loaded),
        entry("c", quiet),  # timed in one pass only (failed in the other): kept as it is
    ]
    merged = measure.merge_passes(passes)
    assert [m["name"] for m in merged] == ["a", "b", "c"]
    a, b = merged[0], merged[1]
    assert len(a["stats"]["data"]) == 20 and a["extra_info"]["pass_medians"] == [1.0e-3, 4.0e-3]
    assert a["extra_info"]["run_queue_wait"] == 0.8 and a["extra_info"]["peak_memory_bytes"] == 30
    assert "contended" in a["extra_info"]["flags"] and "contended" not in b["extra_info"]["flags"]
    # the pooled rounds straddle a load that came mid-run: their spread says so
    assert "spread" in b["extra_info"]["flags"]
    assert merged[2] is passes[4]


def test_on_a_device_the_backends_allocator_gives_the_peak():
    from types import SimpleNamespace

    def prepared(backend, device="cuda:0"):
        target = SimpleNamespace(device=device, backend=backend)
        return SimpleNamespace(case=SimpleNamespace(target=target), call=lambda: None)

    class Allocator:
        def peak_memory(self, call, device):
            call()
            return 4096.0

    class NoAllocator:
        def peak_memory(self, call, device):
            raise NotImplementedError("no allocator")

    assert measure.peak_memory(prepared(Allocator())) == 4096
    assert measure.peak_memory(prepared(NoAllocator())) is None
    assert measure.peak_memory(prepared(object())) is None  # the method is optional
