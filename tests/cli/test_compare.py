"""``compare``: reading saved runs (and refusing bad ones by name), the CLI, the regression gate, plots.

Synthetic runs are built like `measure.timed_run` builds real ones (pytest-benchmark
``Stats`` over a list of per-call times), from seeded lognormal samples, so the
gate's verdicts here are deterministic. One check times a real backend.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from synthetic_runs import CASES, REMEDY, bench, compare_cli, run_of, save, synthetic

import harness
from harness import machine, plugins, problems
from harness.benchmark import conditions, measure
from harness.benchmark.cases import Case
from harness.errors import RunError
from harness.results import compare, runs
from harness.results.gate import parse_threshold, regressions
from harness.strategies import derivative
from harness.target import Target

PNG = b"\x89PNG\r\n\x1a\n"
PROBLEMS = {p.name: p for p in problems.BUILTIN}


@pytest.fixture(autouse=True)
def no_backends_env(monkeypatch):
    monkeypatch.delenv(plugins.BACKENDS_ENV, raising=False)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """The table at its full width, whatever terminal runs the tests; the fitting tests pass a width."""
    monkeypatch.setenv("COLUMNS", "1000")


@pytest.fixture
def quick_machine(monkeypatch):
    """`machine.info` without its 256 MiB copy loops (seconds each): a fixed bandwidth instead."""
    monkeypatch.setattr(machine, "host_copy_bandwidth", lambda *a, **k: 1.0e10)
    monkeypatch.setattr(machine, "cuda_copy_bandwidth", lambda *a, **k: None)


@pytest.fixture
def good(tmp_path) -> Path:
    return save(tmp_path, "good", synthetic(seed=1))


@pytest.fixture
def fast(installed) -> plugins.BackendEntry:
    """One installed built-in backend, the quickest to run (autograd has no compile step)."""
    return next((e for e in installed if e.name == "autograd"), installed[0])


# --- load -----------------------------------------------------------------------------------------


def test_load_a_valid_synthetic_run(good):
    rows = runs.load(good)
    assert [(r.problem, r.size, r.order) for r in rows] == [c[:3] for c in CASES]
    doc = json.loads(good.read_text())
    for row, b in zip(rows, doc["benchmarks"], strict=True):
        assert row.run == "good" and row.group == b["group"] and row.validated
        assert row.median == b["stats"]["median"] and row.data == b["stats"]["data"]
        assert row.bound == 1.0e10 and row.gbps == row.bytes / row.median / 1e9


def test_load_a_valid_timed_run(fast, quick_machine, tmp_path):
    found = [
        Case(Target(fast, "cpu", "float32"), PROBLEMS["tanh"], (1_000,), 1),
        Case(Target(fast, "cpu", "float64"), PROBLEMS["tanh"], (), 2),
        Case(Target(fast, "cpu", "float32"), PROBLEMS["logistic"], (16, 3)),
    ]
    path = save(tmp_path, "timed", measure.timed_run(found, 0.01, log=pytest.fail))
    rows = runs.load(path)
    assert [r.group for r in rows] == [c.group for c in found]
    assert all(r.validated and r.median > 0 and r.backend == fast.name for r in rows)


def truncated(path: Path, good: Path):
    text = good.read_text()
    path.write_text(text[: len(text) // 2])


def random_bytes(path: Path, good: Path):
    # Seeded; 0xff never occurs in UTF-8, so this cannot decode by chance.
    path.write_bytes(b"\xff" + np.random.default_rng(7).bytes(4096))


def foreign(path: Path, good: Path):
    doc = json.loads(good.read_text())
    for b in doc["benchmarks"]:  # a pytest-benchmark run from another project: its own extra_info
        b["extra_info"] = {"note": "not ours"}
    path.write_text(json.dumps(doc))


def future(path: Path, good: Path):
    doc = json.loads(good.read_text())
    doc["benchmarks"][0]["extra_info"]["harness_format"] = runs.FORMAT_VERSION + 1
    path.write_text(json.dumps(doc))


def json_list(path: Path, good: Path):
    path.write_text(json.dumps(json.loads(good.read_text())["benchmarks"]))


def damaged_benchmark(path: Path, good: Path):
    doc = json.loads(good.read_text())
    del doc["benchmarks"][1]["stats"]["median"]
    path.write_text(json.dumps(doc))


BAD_FILES = [truncated, foreign, future, damaged_benchmark, random_bytes, json_list]


@pytest.mark.parametrize("make", BAD_FILES)
def test_bad_file_is_a_run_error_naming_the_file_and_what_to_do(make, good, tmp_path):
    path = tmp_path / f"{make.__name__}.json"
    make(path, good)
    with pytest.raises(RunError) as info:
        runs.load(path)
    message = str(info.value)
    assert str(path) in message
    assert REMEDY.search(message), message


@pytest.mark.parametrize("make", [truncated, random_bytes, foreign, future, json_list, damaged_benchmark])
def test_bad_file_is_a_run_error_naming_the_file(make, good, tmp_path):
    path = tmp_path / f"{make.__name__}.json"
    make(path, good)
    with pytest.raises(RunError, match=re.escape(str(path))):
        runs.load(path)


def test_future_format_names_both_versions(good, tmp_path):
    path = tmp_path / "future.json"
    future(path, good)
    with pytest.raises(RunError, match=f"format {runs.FORMAT_VERSION + 1}.*up to {runs.FORMAT_VERSION}"):
        runs.load(path)


@pytest.mark.parametrize(
    "doc",
    [
        {"machine_info": {}, "benchmarks": [{"extra_info": None}]},
        {"machine_info": {}, "benchmarks": [{"extra_info": {"harness_format": "1"}}]},
        {"machine_info": {"harness": None}, "benchmarks": [{"extra_info": {"harness_format": 1}}]},
    ],
    ids=["null-extra-info", "string-format", "null-machine-harness"],
)
def test_damaged_fields_are_run_errors(doc, tmp_path):
    path = tmp_path / "damaged.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(RunError, match=re.escape(str(path))):
        runs.load(path)


# --- The CLI --------------------------------------------------------------------------------------


def test_cli_good_and_corrupt(capsys, good, tmp_path):
    corrupt = tmp_path / "corrupt.json"
    truncated(corrupt, good)
    assert compare_cli(capsys, good)[0] == 0  # the good run alone passes ...
    code, out, err = compare_cli(capsys, good, corrupt)
    assert code == 1  # ... so exit 1 is the corrupt file's
    for row in runs.load(good):
        assert any(row.group in line and "good" in line and row.label in line for line in out.splitlines())
    assert str(corrupt) in err and "error:" in err
    assert "corrupt" not in out


def test_cli_missing_run_name_lists_the_runs(capsys, good, tmp_path):
    save(tmp_path, "other", synthetic(seed=2))
    code, out, err = compare_cli(capsys, "missing-name", "--results", tmp_path)
    assert code == 2
    assert "missing-name" in err and "good" in err and "other" in err
    assert out == ""


def test_cli_run_by_name_in_results(capsys, good, tmp_path):
    code, out, _ = compare_cli(capsys, "goo", "--results", tmp_path)
    assert code == 0 and "good" in out


def test_cli_format_md(capsys, good):
    code, out, _ = compare_cli(capsys, good, "--format", "md")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[1].startswith("|---")
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert len(lines) == 2 + len(CASES)
    assert [c.strip() for c in lines[0].strip("|").split("|")] == compare.COLUMNS


def test_cli_format_csv(capsys, good):
    code, out, _ = compare_cli(capsys, good, "--format", "csv")
    assert code == 0
    parsed = list(csv.DictReader(io.StringIO(out)))
    rows = runs.load(good)
    assert len(parsed) == len(rows)
    medians = {r.group: r.median for r in rows}
    for record in parsed:
        assert float(record["median_s"]) == medians[record["group"]]
        assert record["validated"] == "True" and record["run"] == "good"


def strict_json(text: str):
    """``text`` parsed as RFC 8259 JSON: a bare NaN, Infinity or -Infinity is an error."""

    def refuse(word):
        raise ValueError(f"{word} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_cli_format_json(capsys, good):
    code, out, _ = compare_cli(capsys, good, "--format", "json")
    assert code == 0
    parsed = strict_json(out)
    rows = runs.load(good)
    assert len(parsed) == len(rows)
    by_group = {r.group: r for r in rows}
    for record in parsed:
        row = by_group[record["group"]]
        assert record["median"] == row.median and record["size"] == list(row.size)
        assert "data" not in record and record["x_fastest"] == 1.0


def test_format_json_is_strict(tmp_path):
    # A failed validation can record a NaN error, and a cost model over a tiny median an infinite
    # rate: both are null in the JSON, which Python's json.dumps would write as bare NaN/Infinity.
    path = save(
        tmp_path,
        "odd",
        run_of(
            [
                bench([1e-12] * 10, bytes=1e308, validated=False, validation_error=float("nan")),
                bench([1e-3] * 10, "tanh", (10_000,), 2),
            ]
        ),
    )
    rows = runs.load(path)
    assert rows[0].gbps == float("inf")
    with pytest.raises(ValueError, match="NaN"):
        strict_json(json.dumps([r.validation_error for r in rows]))  # the check can fail
    parsed = strict_json(compare.table(rows, "json"))
    odd = next(record for record in parsed if record["order"] == 1)
    assert odd["validation_error"] is None and odd["gbps"] is None and odd["of_bound"] is None
    assert odd["median"] == 1e-12 and odd["x_fastest"] == 1.0


# --- The table's width, and its legend -------------------------------------------------------------


COMMITTED = sorted((Path(__file__).parents[2] / "results").glob("*.json"))
"""The runs committed in results/: realistic rows (124 and 134 of them, on a 2-core CPU)."""


@pytest.fixture(scope="module")
def committed() -> list[list[compare.Row]]:
    assert COMMITTED, "results/ holds no committed run"
    return [runs.load(path) for path in COMMITTED]


def widest(text: str) -> int:
    return max(map(len, text.splitlines()))


def test_table_fits_100_and_80_columns(committed):
    for rows in committed:
        assert widest(compare.table(rows, width=0)) > 150  # the full table is too wide
        for width in (100, 80):
            text = compare.table(rows, width=width)
            assert widest(text) <= width, text
    assert widest(compare.table([r for rows in committed for r in rows], width=100)) <= 100


def test_fitted_table_keeps_every_row(committed):
    rows = committed[0]
    text = compare.table(rows, width=80)
    lines = text.splitlines()
    for group in {r.group for r in rows}:  # each group's name on a line above its rows
        assert any(line == f"{group}:" or line.startswith(f"{group} (") for line in lines), group
    for row in rows:
        assert compare.format_seconds(row.median) in text
        assert all(word in text for word in row.label.replace("-", " ").split())
    assert sum(line.endswith((" yes", " NO")) for line in lines) == len(rows)
    assert rows[0].run not in text  # one run: no run column


def test_fitted_table_keeps_the_run_for_several_runs(committed):
    rows = [r for rows in committed for r in rows]
    text = compare.table(rows, width=100)
    stems = {r.run.rsplit("_", 1)[0] for r in rows}  # a run's name, its random suffix left out
    assert len(stems) == len(committed) and all(stem in text for stem in stems)
    assert sum(line.endswith((" yes", " NO")) for line in text.splitlines()) == len(rows)


def blocks(text: str):
    """Each group of a fitted table: (its heading, its header lines, its rows split into cells)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line and set(line) <= {"-", " "} and "--" in line:  # the rule under a group's header
            spans, at = [], 0
            for dashes in line.split("  "):
                spans.append((at, at + len(dashes)))
                at += len(dashes) + 2
            top = i - 1
            while lines[top - 1] and not lines[top - 1].endswith(":"):
                top -= 1
            body = []
            for row in lines[i + 1 :]:
                if not row or row.startswith("("):
                    break
                body.append([row[a:b].strip() for a, b in spans])
            yield lines[top - 1], lines[top:i], body


@pytest.mark.parametrize("width", [100, 80])
def test_fitted_groups_have_one_line_labels_and_no_empty_columns(committed, width):
    for rows in committed:
        text = compare.table(rows, width=width)
        assert widest(text) <= width
        by_group = defaultdict(list)
        for r in rows:
            by_group[r.group].append(r)
        seen = 0
        for heading, header, body in blocks(text):
            group = next(g for g in by_group if heading == f"{g}:" or heading.startswith(f"{g} ("))
            members = by_group[group]
            assert len(body) == len(members)  # one line a row: no label wrapped over lines
            assert all(cells[0] for cells in body)
            for column in range(1, len(body[0])):  # no column holds only "-" in its group
                assert any(cells[column] not in ("-", "") for cells in body), (heading, header)
            for part in ("dtype", "device"):  # said once in the heading where every row shares it
                if len({getattr(r, part) for r in members}) == 1:
                    assert getattr(members[0], part) in heading and part not in " ".join(header)
            seen += len(body)
        assert seen == len(rows)


def test_a_group_with_a_column_of_dashes_leaves_it_out(committed):
    (rows,) = [rows for rows in committed if rows[0].run.endswith("_gradbench_4027a747")]
    group = [r for r in rows if r.group.startswith("ba jacobian")]
    assert all(r.gbps is None and r.of_bound is None for r in group)  # no cost model: nothing
    assert compare.table(rows, width=0).count(" - ") >= 2 * len(group)
    text = compare.table(rows, width=100)
    start = text.index("ba jacobian 5x50x100 (eager float64 cpu):\n")
    block = text[start : text.index("\n\n", start)]
    assert "GB/s" not in block and "bound" not in block and "x value" in block


def test_growth_table_fits_100_and_80_columns_and_keeps_its_figures():
    (path,) = (Path(__file__).parents[2] / "results").glob("20261126T190017Z_scaling_*.json")
    rows = runs.load(path)
    full = compare.growth(rows, width=0)
    assert widest(full) > 100  # too wide as it was
    for width in (100, 80):
        text = compare.growth(rows, width=width)
        assert widest(text) <= width, text
        for line in full.splitlines()[2:]:
            backend, mode, strategy, dtype, device, *figures = line.split()
            assert f"{backend} {dtype} {device}:" in text
            assert [mode, strategy, *figures] in [fitted.split() for fitted in text.splitlines()]
    assert compare.growth(rows, "md") == compare.growth(rows, "md", width=80)  # md unchanged


@pytest.mark.parametrize("width", ["100", "80"])
def test_compare_of_every_committed_run_fits_the_terminal(capsys, monkeypatch, width):
    monkeypatch.setenv("COLUMNS", width)
    for path in COMMITTED:
        code, out, _ = compare_cli(capsys, path)
        assert code == 0 and widest(out) <= int(width), path.name


def test_wide_table_is_unchanged(committed):
    rows = committed[0]
    text = compare.table(rows, width=260)
    assert text == compare.table(rows, width=0) and widest(text) <= 260
    lines = text.splitlines()
    assert lines[0].split("  ")[0].strip() == "group" and len(lines) == 2 + len(rows)
    assert all(r.run in line for r, line in zip(rows, lines[2:], strict=True))


def test_table_width_defaults_to_the_terminal(committed, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert widest(compare.table(committed[0])) <= 100


def test_md_keeps_every_column_unwrapped(committed):
    rows = committed[0]
    lines = compare.table(rows, "md", width=80).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == compare.COLUMNS
    assert len(lines) == 2 + len(rows) and all(line.count("|") == len(compare.COLUMNS) + 1 for line in lines)


COLUMN_WORDS = {
    "median": "median",
    "IQR": "interquartile",
    "x fastest": "fastest round",
    "first call": "compile",
    "GB/s": "cost model",
    "of bound": "copy bandwidth",
    "x value": "function alone",
    "x hand-written": "by hand",
    "validated": "oracle",
}


def test_legend_explains_every_column():
    lines = compare.legend().splitlines()
    for column, words in COLUMN_WORDS.items():
        line = next(i for i, text in enumerate(lines) if text.startswith(f"{column}  ") or text == column)
        assert words in " ".join(lines[line : line + 2])
        assert column in compare.COLUMNS
    assert "N x D" in compare.legend() and widest(compare.legend()) <= 80


def test_help_columns_is_one_paragraph_for_argparse():
    for column, words in COLUMN_WORDS.items():
        assert column in compare.HELP_COLUMNS and words in compare.HELP_COLUMNS
    assert "\n" not in compare.HELP_COLUMNS and "%" not in compare.HELP_COLUMNS


def test_a_run_in_memory_reads_as_its_saved_file(tmp_path):
    """`compare`'s quick run is shown from memory (`runs.from_text`), as its saved file would be
    read (`runs.read`, one parse for rows and machine)."""
    run = synthetic(seed=3)
    run["machine_info"]["harness"] = {"threads": {"omp": 2}}
    saved = runs.read(save(tmp_path, "quick", run))
    here = runs.from_text(runs.text(run), "quick")
    assert here == saved and here.machine == {"threads": {"omp": 2}} and here.rows


def test_a_run_in_memory_that_is_damaged_names_the_run(tmp_path):
    with pytest.raises(RunError, match="^quick: not valid JSON"):
        runs.from_text("{", "quick")


# --- The regression gate --------------------------------------------------------------------------


def gate(capsys, folder: Path, current: dict, baseline: dict, fail_on="median:10%"):
    cur, base = save(folder, "current", current), save(folder, "baseline", baseline)
    return compare_cli(capsys, cur, "--baseline", base, "--fail-on", fail_on)


@pytest.mark.parametrize("rule", ["", "  "])
def test_an_empty_gate_rule_is_a_usage_error_before_any_work(capsys, tmp_path, rule):
    """``--fail-on ''`` is no rule: exit 2 and one error line naming the empty value, not the
    default rule silently (the gate ran and exited 0 before)."""
    code, out, err = gate(capsys, tmp_path, synthetic(seed=2), synthetic(seed=1), fail_on=rule)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: --fail-on is empty ({rule!r}): give STAT:N% with STAT median or min, e.g. median:10%"
    ]


def test_gate_rerun_is_quiet(capsys, tmp_path):
    code, _, err = gate(capsys, tmp_path, synthetic(seed=2), synthetic(seed=1))
    assert code == 0
    assert "REGRESSION" not in err and "0 regression(s) beyond median:10%" in err


def test_gate_catches_a_planted_2x_slowdown(capsys, tmp_path):
    code, _, err = gate(capsys, tmp_path, synthetic(seed=2, slowdown=2.0), synthetic(seed=1))
    assert code == 1
    flagged = [line for line in err.splitlines() if line.startswith("REGRESSION")]
    assert len(flagged) == len(CASES)
    assert all("x1.9" in line or "x2.0" in line or "x2.1" in line for line in flagged), flagged
    assert f"{len(CASES)} regression(s)" in err


def test_gate_ignores_5_percent_under_10_percent(capsys, tmp_path):
    code, _, err = gate(capsys, tmp_path, synthetic(seed=2, slowdown=1.05), synthetic(seed=1))
    assert code == 0 and "REGRESSION" not in err


def test_gate_catches_5_percent_under_2_percent(capsys, tmp_path):
    # The same 5% is not invisible to the gate: a tighter threshold flags it.
    code, _, err = gate(capsys, tmp_path, synthetic(seed=2, slowdown=1.05), synthetic(seed=1), "median:2%")
    assert code == 1 and "REGRESSION" in err


def test_gate_min_statistic(capsys, tmp_path):
    code, _, err = gate(capsys, tmp_path, synthetic(seed=2, slowdown=2.0), synthetic(seed=1), "min:50%")
    assert code == 1 and "min " in err


def test_gate_noise_is_not_a_regression(tmp_path):
    # The median is 14% slower, but the samples interleave: Mann-Whitney does not call it a slowdown.
    old = runs.load(save(tmp_path, "old", run_of([bench(np.arange(1.0, 7.0) * 1e-3)])))
    new = runs.load(save(tmp_path, "new", run_of([bench(np.arange(1.5, 7.5) * 1e-3)])))
    assert new[0].median / old[0].median > 1.1
    assert regressions(new, old, "median", 0.1) == []
    # Without samples the quartiles decide, and they overlap too.
    old[0].data = new[0].data = None
    assert regressions(new, old, "median", 0.1) == []


def test_the_gate_says_which_rule_judged_the_rows(capsys, tmp_path):
    # With 3 rounds a side the test cannot reach p < 0.01 (its smallest p is 1/20): the quartiles
    # judge those rows, and the gate says so; a clear 2x slowdown is still caught by them.
    code, _, err = gate(capsys, tmp_path, synthetic(seed=2, slowdown=2.0, samples=3), synthetic(seed=1))
    assert code == 1 and f"{len(CASES)} regression(s)" in err
    assert "quartiles apart" in err
    assert f"rows judged: 0 by a one-sided Mann-Whitney test (p < 0.01), {len(CASES)} by quartiles" in err
    code, _, err = gate(capsys, tmp_path, synthetic(seed=4, samples=5), synthetic(seed=3, samples=5))
    assert code == 0 and f"rows judged: {len(CASES)} by a one-sided Mann-Whitney test" in err


def test_parse_threshold():
    assert parse_threshold("median:10%") == ("median", 0.10)
    assert parse_threshold(" min:2.5% ") == ("min", 0.025)
    for bad in ("mean:10%", "median:10", "median:-5%", "10%"):
        with pytest.raises(ValueError, match="STAT:N%"):
            parse_threshold(bad)


class Slowed:
    """The backend ``inner`` under its own name, but every derivative call also sleeps ``pause`` seconds.

    Set ``pause`` to three times the baseline's median and each call takes at least that plus its
    own work: a 4x slowdown that CPU contention from other processes cannot hide (computing twice
    can be hidden by a baseline measured while the CPUs were busy; a pause of one median was too, once,
    at a load of about 10: Mann-Whitney's p stayed above 0.01).
    """

    def __init__(self, inner):
        self.inner, self.pause = inner, 0.0
        for attribute in ("name", "requires", "install_hint", "strategies", "modes", "dtypes"):
            setattr(self, attribute, getattr(inner, attribute))

    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)

        def slowed(x):
            time.sleep(self.pause)
            return d(x)

        return slowed

    def __getattr__(self, name):  # the rest of the spec: delegated
        return getattr(self.inner, name)


def plugin_of(backend):
    class Plugin:
        @harness.hookimpl
        def harness_register_backends(self, register):
            register(backend)

    return Plugin()


def test_gate_on_real_timings(entry, quick_machine, capsys, tmp_path, monkeypatch):
    # Registered without the entry points, the slowed wrapper takes the real backend's name, so its
    # rows have the same keys as the real backend's. The rows are not flagged, whatever the machine
    # is doing (the suite runs beside numpy loops too): this is the gate's judgement of real times;
    # flagged rows are test_conditions.py's.
    monkeypatch.setattr(conditions, "flags", lambda *args: [])
    slower = Slowed(entry.backend)
    registry = plugins.load(extra=[("slowed", plugin_of(slower))], entry_points=False)
    assert registry.errors == []
    slowed = registry.backends[entry.name]
    assert slowed.backend is slower

    def timed(e):
        # A cheap case (17 us to 1.3 ms a call on an idle 2-core CPU) so the budget buys a dozen
        # rounds at least, even on a busy machine: with calibrate's floor of 5, Mann-Whitney reaches
        # p < 0.01 only if the two samples barely overlap, and one outlier hides a 2x slowdown.
        return measure.timed_run(
            [Case(Target(e, "cpu", "float32"), PROBLEMS["tanh"], (1_000,), 1)], 0.2, log=pytest.fail
        )

    base = save(tmp_path, "base", timed(entry))
    slower.pause = 3 * runs.load(base)[0].median
    slow = save(tmp_path, "slow", timed(slowed))
    assert min(len(runs.load(path)[0].data) for path in (base, slow)) >= 10
    ratio = runs.load(slow)[0].median / runs.load(base)[0].median
    assert ratio > 1.3, f"the slowed backend was only x{ratio:.2f} slower"

    code, out, err = compare_cli(capsys, slow, "--baseline", base, "--fail-on", "median:10%")
    assert code == 1, err
    assert sum(line.startswith("REGRESSION") for line in err.splitlines()) == 1
    assert "1 regression(s)" in err

    code, out, err = compare_cli(capsys, base, "--baseline", base, "--fail-on", "median:10%")
    assert code == 0 and "REGRESSION" not in err and "0 regression(s)" in err
    assert regressions(runs.load(base), runs.load(base), "median", 0.10) == []


# --- Plots ----------------------------------------------------------------------------------------


def test_plot_writes_pngs(capsys, tmp_path):
    rng = np.random.default_rng(3)
    benchmarks = []
    for device in ("cpu", "cuda:0"):
        for backend in ("fake", "other"):
            benchmarks += [
                bench(1e-5 * order * rng.lognormal(0, 0.05, 10), "tanh", (10_000,), order, backend, device)
                for order in range(1, 5)
            ]
            benchmarks += [
                bench(1e-9 * n * d * rng.lognormal(0, 0.05, 10), "logistic", (n, d), 1, backend, device)
                for n, d in ((4, 3), (1_000, 8), (100_000, 64))
            ]
            benchmarks.append(
                bench(rng.lognormal(-11, 0.05, 10), "tanh", (), 1, backend, device, dtype="float64")
            )
    path = save(tmp_path, "plotted", run_of(benchmarks))
    out_dir = tmp_path / "figures"
    code, _, err = compare_cli(capsys, path, "--plot", out_dir)
    assert code == 0
    written = sorted(out_dir.iterdir())
    assert [p.name for p in written] == [
        "time-vs-order-cpu.png",
        "time-vs-order-cuda-0.png",
        "time-vs-size-cpu.png",
        "time-vs-size-cuda-0.png",
    ]
    for png in written:
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 1000
        assert f"wrote {png}" in err


def test_plots_on_a_full_disk_are_an_error_and_leave_no_half_written_figure(
    capsys, tmp_path, good, monkeypatch
):
    real = os.write

    def full(fd, data):  # every write to the figures' folder fails as on a full file system
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path / "figures")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", full)
    code, out, err = compare_cli(capsys, good, "--plot", tmp_path / "figures")
    assert code == 1 and "Traceback" not in err
    assert "error: could not write the figures to" in err and "No space left on device" in err
    assert out  # the table was shown before the figures failed
    assert [p for p in (tmp_path / "figures").rglob("*") if p.is_file()] == []


# --- resolve --------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> dict[str, Path]:
    names = [
        "20260101T000000Z_cpu_aaaa1111",
        "20260102T000000Z_cpu_bbbb2222",
        "20260102T000000Z_gpu_cccc3333",
    ]
    made = {}
    for age, name in enumerate(names):
        made[name] = save(tmp_path, name, synthetic(seed=age))
        stamp = 1_700_000_000 + 1000 * (3 - age)  # the oldest name is the newest file
        os.utime(made[name], (stamp, stamp))
    return made


def test_resolve_stem_name_prefix_and_latest(saved, tmp_path):
    first, second, third = saved.values()
    assert runs.resolve([first.stem], tmp_path) == [first]
    assert runs.resolve([second.name], tmp_path) == [second]
    assert runs.resolve(["20260101"], tmp_path) == [first]
    assert runs.resolve(["20260102T000000Z_g"], tmp_path) == [third]
    assert runs.resolve(["latest"], tmp_path) == [first]  # by modification time, not by name
    assert runs.resolve([str(third)], tmp_path / "elsewhere") == [third]  # a path is a path


def test_resolve_ambiguous_prefix(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match="matches several") as info:
        runs.resolve(["20260102"], tmp_path)
    assert all(path.stem in str(info.value) for path in saved.values())


def test_resolve_missing_name(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match="'nope' is neither a file nor a run") as info:
        runs.resolve(["nope"], tmp_path)
    assert all(path.stem in str(info.value) for path in saved.values())


def test_resolve_latest_with_no_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"runs: none"):
        runs.resolve(["latest"], tmp_path)
