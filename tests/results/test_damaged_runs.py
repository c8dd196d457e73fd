"""``compare`` on damaged saved runs and damaged results folders (issue #9).

A statistic that is NaN, infinite, negative or a zero median, a size or order of the wrong
type, JSON nested too deeply: each is a `harness.errors.RunError` naming the file, the benchmark and
the field, never a traceback or a nonsense number in the table. A results folder with a link
loop, a broken link or a writer's temporary files still resolves to its good runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
from synthetic_runs import CASES, REMEDY, compare_cli, save, synthetic

from harness.errors import RunError
from harness.results import runs

BENCHMARK = 1
"""The benchmark the tests damage (the second: its neighbours are good)."""


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """The table at its full width (the run column in every row), whatever terminal runs the tests."""
    monkeypatch.setenv("COLUMNS", "1000")


@pytest.fixture
def good(tmp_path) -> Path:
    return save(tmp_path, "good", synthetic(seed=1))


def damaged(folder: Path, change, name: str = "damaged") -> Path:
    """A good run with ``change(benchmark)`` applied to one benchmark, written as json.dumps does
    (NaN and Infinity as bare words, which Python's json reads back)."""
    doc = synthetic(seed=1)
    change(doc["benchmarks"][BENCHMARK])
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def refused(path: Path, *fragments: str) -> str:
    """The `RunError` message for ``path``, checked to name the file, each fragment and a remedy."""
    with pytest.raises(RunError) as info:
        runs.load(path)
    message = str(info.value)
    assert str(path) in message and REMEDY.search(message), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def stats(key, value):
    def change(bench):
        bench["stats"][key] = value

    return change


def extra(key, value):
    def change(bench):
        bench["extra_info"][key] = value

    return change


# --- Statistics -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["median", "iqr", "q1", "q3", "min"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), -1e9, -1e-6])
def test_non_finite_or_negative_statistic_is_refused(key, value, tmp_path):
    path = damaged(tmp_path, stats(key, value))
    name = json.loads(path.read_text(), parse_constant=float)["benchmarks"][BENCHMARK]["name"]
    refused(path, name, f"stats.{key}", repr(value))


@pytest.mark.parametrize("key", ["median", "min"])
def test_zero_time_is_refused(key, tmp_path):
    # A timed call cannot take 0 s; a zero median divided `table` (x fastest) and `regressions`.
    refused(damaged(tmp_path, stats(key, 0.0)), f"stats.{key}", "above 0")


def test_zero_spread_is_not_damage(tmp_path):
    rows = runs.load(damaged(tmp_path, stats("iqr", 0.0)))
    assert rows[BENCHMARK].iqr == 0.0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 0.0, "1e-3", None, True])
def test_bad_sample_in_data_is_refused(value, tmp_path):
    def change(bench):
        bench["stats"]["data"][3] = value

    refused(damaged(tmp_path, change), "stats.data[3]")


@pytest.mark.parametrize(
    "value",
    ["1e-3", None, True, [1e-3], {"s": 1e-3}, 10**400],
    ids=["text", "null", "true", "list", "object", "huge-integer"],
)
def test_non_numeric_statistic_is_refused(value, tmp_path):
    refused(damaged(tmp_path, stats("median", value)), "stats.median")


def test_missing_statistic_names_it(tmp_path):
    def change(bench):
        del bench["stats"]["q3"]

    refused(damaged(tmp_path, change), "stats", "'q3'")


# --- Other fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["10000", 10_000, [1.5], [True], ["3"], [-1], None, {"n": 1}])
def test_size_that_is_not_a_list_of_whole_numbers_is_refused(value, tmp_path):
    refused(damaged(tmp_path, extra("size", value)), "extra_info.size")


@pytest.mark.parametrize("value", ["2", 2.0, None, True, [2]])
def test_order_that_is_not_whole_is_refused(value, tmp_path):
    refused(damaged(tmp_path, extra("order", value)), "extra_info.order")


@pytest.mark.parametrize("key", ["backend", "mode", "strategy", "dtype", "device", "problem"])
def test_label_field_that_is_not_text_is_refused(key, tmp_path):
    refused(damaged(tmp_path, extra(key, 5)), f"extra_info.{key}")


@pytest.mark.parametrize(
    "key, value",
    [
        ("first_call_s", float("nan")),
        ("bytes", -8.0),
        ("flops", "many"),
        ("validated", "yes"),
        ("validation_error", "small"),
    ],
)
def test_bad_optional_field_is_refused(key, value, tmp_path):
    refused(damaged(tmp_path, extra(key, value)), f"extra_info.{key}")


def test_nan_validation_error_is_a_finding_not_damage(tmp_path):
    # A backend that returns NaN fails validation with a NaN error: the run is still readable.
    path = damaged(tmp_path, extra("validation_error", float("nan")))
    row = runs.load(path)[BENCHMARK]
    assert row.validation_error != row.validation_error


@pytest.mark.parametrize("value", [-1.0, 0.0, float("nan"), "fast"])
def test_bad_copy_bandwidth_is_refused(value, tmp_path):
    doc = synthetic(seed=1)
    doc["machine_info"]["harness"]["host_copy_bandwidth"] = value
    path = save(tmp_path, "bandwidth", doc)
    refused(path, "machine_info.harness.host_copy_bandwidth")


@pytest.mark.parametrize("value", ["1", 1.5, None, True])
def test_bad_format_version_is_refused(value, tmp_path):
    refused(damaged(tmp_path, extra("harness_format", value)), "harness_format")


def test_benchmark_that_is_not_an_object_is_refused(tmp_path):
    doc = synthetic(seed=1)
    doc["benchmarks"].append(5)
    path = save(tmp_path, "extra", doc)
    refused(path, f"benchmark #{len(CASES) + 1}")


# --- Structure ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["[" * 200_000 + "]" * 200_000, '{"benchmarks": ' + "[" * 200_000 + "]" * 200_000 + "}"],
    ids=["bare", "inside-a-run"],
)
def test_deeply_nested_json_is_refused(text, tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(text)
    refused(path, "nested too deeply")


def test_a_byte_order_mark_is_accepted(tmp_path):
    """A run saved by an editor that starts UTF-8 with a byte-order mark (issue #26)."""
    plain = save(tmp_path, "plain", synthetic(seed=1))
    marked = tmp_path / "marked.json"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    rows = runs.load(marked)
    assert [dataclasses.replace(r, run="plain") for r in rows] == runs.load(plain)


def test_cli_compares_a_run_with_a_byte_order_mark(capsys, good, tmp_path):
    marked = tmp_path / "marked.json"
    marked.write_bytes(b"\xef\xbb\xbf" + good.read_bytes())
    code, out, err = compare_cli(capsys, good, marked)
    assert code == 0, err
    assert len([line for line in out.splitlines() if " marked " in line]) == len(CASES)


# --- The CLI --------------------------------------------------------------------------------------


def test_cli_prints_good_runs_and_names_the_damaged_one(capsys, good, tmp_path):
    nan = damaged(tmp_path, stats("median", float("nan")), "nan")
    negative = damaged(tmp_path, stats("min", -1e9), "negative")
    code, out, err = compare_cli(capsys, good, nan, negative)
    assert code == 1
    assert "nan" not in out.lower() and "-1e+09" not in out
    assert len([line for line in out.splitlines() if " good " in line]) == len(CASES)
    for path, field in ((nan, "stats.median"), (negative, "stats.min")):
        assert str(path) in err and field in err
    assert "Traceback" not in err


def test_cli_zero_median_baseline_is_an_error_not_a_traceback(capsys, good, tmp_path):
    zero = damaged(tmp_path, stats("median", 0.0), "zero")
    code, out, err = compare_cli(capsys, good, "--baseline", zero, "--fail-on", "median:10%")
    assert code == 2
    assert str(zero) in err and "stats.median" in err and "Traceback" not in err


# --- resolve: a damaged results folder ------------------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> list[Path]:
    """Two good runs, the second the newest."""
    made = [save(tmp_path, name, synthetic(seed=i)) for i, name in enumerate(["older", "newer"])]
    for age, path in enumerate(made):
        os.utime(path, (1_700_000_000 + age, 1_700_000_000 + age))
    return made


def newest(path: Path) -> Path:
    os.utime(path, (1_800_000_000, 1_800_000_000))
    return path


def test_latest_skips_a_link_to_itself(saved, tmp_path):
    (tmp_path / "loop.json").symlink_to("loop.json")
    assert runs.resolve(["latest"], tmp_path) == [saved[1]]
    assert runs.resolve(["old"], tmp_path) == [saved[0]]
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "loop.json"))) as info:
        runs.resolve(["loop"], tmp_path)
    assert "symbolic links" in str(info.value)


def test_latest_skips_a_loop_of_two_links(saved, tmp_path):
    (tmp_path / "a.json").symlink_to("b.json")
    (tmp_path / "b.json").symlink_to("a.json")
    assert runs.resolve(["latest"], tmp_path) == [saved[1]]
    for name in ("a", "b.json", str(tmp_path / "a.json")):
        with pytest.raises(FileNotFoundError, match="not a saved run"):
            runs.resolve([name], tmp_path)


def test_latest_skips_a_broken_link_and_a_folder(saved, tmp_path):
    (tmp_path / "gone.json").symlink_to("missing.json")
    (tmp_path / "folder.json").mkdir()
    newest(tmp_path / "folder.json")
    assert runs.resolve(["latest"], tmp_path) == [saved[1]]
    with pytest.raises(FileNotFoundError, match="broken symbolic link"):
        runs.resolve(["gone"], tmp_path)
    with pytest.raises(FileNotFoundError, match="not a regular file"):
        runs.resolve(["folder"], tmp_path)


def test_latest_follows_a_good_link(saved, tmp_path):
    link = tmp_path / "pinned.json"
    link.symlink_to(saved[0].name)
    assert runs.resolve(["pinned"], tmp_path) == [link]


@pytest.mark.parametrize("name", [".newer.json.k2j4x9.tmp", ".hidden.json", ".json"])
def test_hidden_files_are_never_runs(name, saved, tmp_path):
    # An interrupted `files.write_text` leaves `.NAME.json.XXXX.tmp`: complete JSON, maybe, but not a run.
    newest(save(tmp_path, "x", synthetic(seed=5)).rename(tmp_path / name))
    assert runs.resolve(["latest"], tmp_path) == [saved[1]]
    with pytest.raises(FileNotFoundError, match="runs: newer, older"):
        runs.resolve([".hidden"], tmp_path)


def test_cli_latest_with_a_link_loop(capsys, saved, tmp_path):
    (tmp_path / "loop.json").symlink_to("loop.json")
    code, out, err = compare_cli(capsys, "latest", "--results", tmp_path)
    assert code == 0, err
    assert " newer " in out and "Traceback" not in err
    code, out, err = compare_cli(capsys, "loop", "--results", tmp_path)
    assert code == 2 and "loop.json" in err and out == ""
