"""``python -m harness scale`` (`harness.distributed`): every engine validated and timed, planted wrong
reductions that fail, a dead or hung process that becomes an ``error`` record within the time limit
and leaves no process behind, and scale runs read by ``compare``.

The worlds are small (64 x 3 float64, world 1 and 2) so each costs its processes' start-up
(imports) and little else. No test races a clock on a healthy world: the only limit that must pass
is the hang's, retried with a longer one until the hanging process had started.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import require

from harness import problems
from harness.cli import output
from harness.cli.main import main
from harness.distributed import data, faults, plan, records
from harness.errors import RunError, UsageError
from harness.results import compare, gate, plots
from harness.results.runs import document, load, save

SMALL = ["--size", "64x3", "--dtype", "float64", "--format", "json", "-q"]
LIMITS = (10, 40, 120)
"""Time limits tried in turn by the hang test, until the hanging process got as far as its hang."""


def run_scale(capsys, *args: str) -> tuple[int, list[dict]]:
    code = main(["scale", *args, *SMALL])
    return code, json.loads(capsys.readouterr().out)["records"]


def engines_of(registry, backend: str) -> tuple[str, ...]:
    require(registry.backends[backend])
    return plan.ENGINES[backend]


def group_left(pgid: int, within: float = 30.0) -> list[int]:
    """Pids still in process group ``pgid`` after up to ``within`` s (zombies count as gone)."""
    deadline = time.monotonic() + within
    while True:
        left = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                left.append(int(entry.name))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def pids_of(path: Path) -> dict[int, tuple[int, int]]:
    """Rank to (pid, process group) from the file the world's processes append to."""
    if not path.exists():
        return {}
    lines = [line.split() for line in path.read_text().splitlines()]
    return {int(rank): (int(pid), int(pgid)) for rank, pid, pgid in lines}


# --- Whole worlds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "worlds"), [("jax", [1, 2]), ("torch", [2])])
def test_every_engine_passes_and_is_timed(capsys, registry, backend, worlds):
    """torch at world 2 only: its processes take seconds each to import torch."""
    engines = engines_of(registry, backend)
    code, found = run_scale(capsys, "-b", backend, "--world", ",".join(map(str, worlds)))
    assert code == output.EXIT_OK, found
    assert [(r["engine"], r["world"]) for r in found] == [(e, w) for e in engines for w in worlds]
    for r in found:
        assert r["status"] == "pass", r
        assert r["size"] == [64, 3] and r["dtype"] == "float64" and r["scaling"] == "strong"
        assert r["max_rel_err"] <= r["tolerance"] == 1e-13
        assert r["median_s"] > 0 and r["first_call_s"] > 0
        processes = 1 if r["engine"] == "jax.sharding" else r["world"]
        assert (r["processes"], r["devices"]) == (processes, r["world"])
        if 1 in worlds:
            assert r["efficiency"] == pytest.approx(r["speedup"] / r["world"])
            assert r["speedup"] == 1.0 or r["world"] > 1
        else:
            assert r["speedup"] is None  # no world 1 to compare with
    assert "device_count" not in os.environ.get("XLA_FLAGS", "")  # set for the world's processes only


@pytest.mark.parametrize("fault", ["mean", "drop"])
@pytest.mark.parametrize("engine", ["jax.sharding", "torch.distributed"])
def test_a_wrong_reduction_fails_and_is_not_timed(capsys, monkeypatch, registry, engine, fault):
    """mean: the shards' mean, not their sum; drop: shard 1 left out of the sum. (jax.distributed
    reduces with the same function as jax.sharding.)"""
    require(registry.backends[engine.split(".")[0]])
    monkeypatch.setenv(faults.FAULT_ENV, fault)
    code, [r] = run_scale(capsys, "--engine", engine, "--world", "2")
    assert code == output.EXIT_FAIL
    assert (r["status"], r["classification"]) == ("fail", "wrong value and gradient"), r
    assert r["max_rel_err"] > 0.1  # half the sum, or one shard of two missing
    assert r["median_s"] is None and r["speedup"] is None


@pytest.mark.parametrize("engine", ["jax.distributed", "torch.distributed"])
def test_a_process_that_dies_is_an_error_record_at_once_and_leaves_no_process(
    capsys, monkeypatch, registry, tmp_path, engine
):
    require(registry.backends[engine.split(".")[0]])
    pids = tmp_path / "pids"
    monkeypatch.setenv(faults.FAULT_ENV, "exit")
    monkeypatch.setenv(faults.PIDS_ENV, str(pids))
    code, [record] = run_scale(capsys, "--engine", engine, "--world", "2", "--timeout", "600")
    assert code == output.EXIT_FAIL
    assert (record["status"], record["classification"]) == ("error", "crash"), record
    assert "process 1 of 2 exited with code 3" in record["message"]
    assert record["seconds"] < 600  # ended when the process died, not at the limit
    pid, pgid = pids_of(pids)[1]
    assert group_left(pgid) == [], "a process of the world outlived it"


def test_a_process_that_hangs_is_a_timeout_within_the_limit_and_leaves_no_process(
    capsys, monkeypatch, registry, tmp_path
):
    require(registry.backends["jax"])
    monkeypatch.setenv(faults.FAULT_ENV, "hang")
    for limit in LIMITS:
        pids = tmp_path / f"pids-{limit}"
        monkeypatch.setenv(faults.PIDS_ENV, str(pids))
        code, [record] = run_scale(
            capsys, "--engine", "jax.distributed", "--world", "2", "--timeout", str(limit)
        )
        if 1 in pids_of(pids):  # the hanging process had started before the limit
            break
    else:
        pytest.fail(f"the hanging process never started within {LIMITS[-1]} s")
    assert code == output.EXIT_FAIL
    assert (record["status"], record["classification"]) == ("error", "timeout"), record
    assert f"no result within {limit} s" in record["message"]
    assert limit <= record["seconds"] <= limit + 5, record
    assert all(group_left(pgid) == [] for _, pgid in pids_of(pids).values())


# --- The pieces, in this process --------------------------------------------------------------------


def test_every_world_sees_the_same_rows_and_the_reference_is_the_closed_form():
    W, b = data.weights(3)
    n = data.BLOCK + 100  # two blocks; a shard boundary inside the first
    x, t = data.rows(0, n, W, b)
    cut = data.BLOCK - 7
    halves = [data.rows(0, cut, W, b), data.rows(cut, n, W, b)]
    np.testing.assert_array_equal(np.concatenate([h[0] for h in halves]), x)
    np.testing.assert_array_equal(np.concatenate([h[1] for h in halves]), t)
    ref = data.reference((n, 3), "float64")
    dW, db = problems.logistic_gradient(W, b, x, t)
    np.testing.assert_allclose(ref["gradient"], np.append(dW, db), rtol=1e-12)
    np.testing.assert_allclose(ref["value"], problems.logistic_loss(np, W, b, x, t), rtol=1e-12)


def test_speedup_is_throughput_against_world_1():
    def record(world, scaling, median):
        return records.Record(
            "jax",
            None,
            "jax.sharding",
            scaling,
            world,
            1,
            world,
            "cpu",
            [8, 2],
            "float32",
            "pass",
            median_s=median,
        )

    found = [
        record(1, "strong", 4.0),
        record(4, "strong", 2.0),
        record(1, "weak", 4.0),
        record(4, "weak", 8.0),
    ]
    records.add_speedups(found)
    assert [(r.speedup, r.efficiency) for r in found] == [(1.0, 1.0), (2.0, 0.5), (1.0, 1.0), (2.0, 0.5)]


def test_weak_scaling_grows_n_and_strong_scaling_needs_n_to_split_evenly(registry):
    entries = [registry.backends["jax"]]
    jobs = plan.world_jobs(entries, ["jax.sharding"], [1, 2], (10, 3), ["weak"], ["float32"])
    assert [(j.world, j.size, j.scaling) for j in jobs] == [(1, (10, 3), "weak"), (2, (20, 3), "weak")]
    with pytest.raises(UsageError, match="N = 10 does not split evenly over world size 3, 4"):
        plan.world_jobs(entries, ["jax.sharding"], [1, 3, 4], (10, 3), ["strong"], ["float32"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--world", "0"], "'0' is not a world size"),
        (["--world", "x"], "'x' is not a world size"),
        (["--size", "64"], "'64' is not a size"),
        (["--size", "0x3"], "'0x3' is not a size"),
        (["--timeout", "0"], "'0' is not a time limit"),
        (["-b", "nope"], "unknown backend 'nope'"),
        (["-b", "autograd"], "autograd has no distributed engine"),
        (["--size", "10x3", "--world", "1,4"], "does not split evenly over world size 4"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(capsys, args, message):
    try:
        code = main(["scale", *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == output.EXIT_USAGE
    assert message in err


def test_a_saved_scale_run_is_read_compared_gated_and_plotted(tmp_path):
    def record(world, median):
        times = [median * f for f in (0.9, 1.0, 1.1, 1.0, 1.05)]
        return records.Record(
            "torch",
            "2",
            "torch.distributed",
            "strong",
            world,
            world,
            world,
            "cpu",
            [64, 3],
            "float32",
            "pass",
            max_rel_err=1e-7,
            first_call_s=0.5,
            median_s=median,
            times=times,
        )

    found = [record(1, 0.02), record(2, 0.012)]
    records.add_speedups(found)
    path = save(document([r.benchmark() for r in found], {}), tmp_path, "scale")
    rows = load(path)
    assert [(r.world, r.scaling, r.mode, r.validated) for r in rows] == [
        (1, "strong", "torch.distributed", True),
        (2, "strong", "torch.distributed", True),
    ]
    assert len({r.key for r in rows}) == 2  # each world its own group: the gate compares like with like
    assert "world 2" in compare.table(rows)
    assert gate.regressions(rows, rows, "median", 0.1) == []
    written = plots.plot(rows, tmp_path / "plots")
    assert [p.name for p in written] == ["scaling-strong-cpu.png"]


def test_a_scale_run_with_a_world_of_0_is_damaged(tmp_path):
    record = records.Record(
        "jax",
        None,
        "jax.sharding",
        "strong",
        1,
        1,
        1,
        "cpu",
        [4, 3],
        "float32",
        "pass",
        median_s=0.1,
        times=[0.1],
    )
    bench = record.benchmark()
    bench["extra_info"]["world"] = 0
    path = save(document([bench], {}), tmp_path, "scale")
    with pytest.raises(RunError, match="extra_info.world is 0"):
        load(path)
