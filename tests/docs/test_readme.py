"""The README and the docs run as written and their figures come from the runs they name.

The README keeps the two commands and an excerpt; the rest of its text moved into ``docs/``, and
these checks moved with it, page by page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results import compare
from harness.results.runs import load

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def page(name: str) -> str:
    """The docs page ``docs/<name>.md``."""
    return (ROOT / "docs" / f"{name}.md").read_text()


def section(heading: str, text: str) -> str:
    """``text`` from ``heading`` to the next heading (or the end)."""
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end >= 0 else len(text)]


def run_rows(stem: str):
    (path,) = (ROOT / "results").glob(f"{stem}_*.json")
    return load(path)


# --- The example test for another project, as written ----------------------------------------------


def test_the_example_for_another_project_runs_as_written(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("autograd")
    text = section("## The benchmark suite in another project", page("benchmarking"))
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    (tmp_path / "test_example.py").write_text(code)

    def run_example(profile: str, *cases: str) -> str:
        """The example's tests for ``cases`` under ``profile``: pytest's output (it must pass)."""
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rsx"]
            + ["--harness-results", str(tmp_path / "results"), "--harness-profile", profile]
            + [f"test_example.py::test_mine[{case}]" for case in cases],
            cwd=tmp_path,
            env={**os.environ, "HARNESS_BACKENDS": "torch,autograd"},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    # A case the backend refuses (a torch.compile nest measured to crash) is skipped, another timed.
    out = run_example(
        "quick",
        "tanh d^4 over 10000 points | torch jit forward float32 cpu",
        "tanh d^2 over 10000 points | autograd eager reverse float32 cpu",
    )
    assert "1 passed, 1 skipped" in out and "unsupported: torch.compile" in out
    (saved,) = (tmp_path / "results").glob("*.json")
    assert [r.backend for r in load(saved)] == ["autograd"]
    # A failure the backend declares (autograd's nested tanh in float32) is an expected failure.
    out = run_example("cpu", "tanh d^6 over 10000 points | autograd eager reverse float32 cpu")
    assert "1 xfailed" in out and "autograd.expected" in out


# --- Figures against the runs they name ---------------------------------------------------------------


def test_the_growth_table_is_computed_from_the_runs_it_names():
    benchmarking = page("benchmarking")
    text = section("The fitted growth per order", benchmarking)
    table = [line for line in text.splitlines() if line.startswith("|")]
    epyc = compare.growth(run_rows("20261126T052338Z_scaling"), "md").splitlines()
    xeon = compare.growth(run_rows("20261126T190017Z_scaling"), "md").splitlines()
    assert table[:2] == epyc[:2]  # the header
    body = table[2:]
    jit = [row for row in body if re.match(r"\| torch +\| jit ", row)]
    assert [row for row in body if row not in jit] == epyc[2:]
    assert jit and all(row in xeon for row in jit)
    assert "AMD EPYC" in text or "AMD EPYC" in benchmarking[benchmarking.index("cost against order") - 600 :]


def test_the_width_runs_noise_is_what_the_run_holds():
    rows = [r for r in run_rows("20261127T002215Z_cpu") if r.mode == "eager"]
    worst = max(rows, key=lambda r: r.iqr / r.median)
    match = re.search(
        r"the IQR up to (\d+)% of the median: (\w+)'s eager (\S+) x (\d+) (\w+),\s+"
        r"median ([\d.]+) ms, IQR ([\d.]+) ms",
        " ".join(page("benchmarking").split()),
    )
    assert match, "the width run's noise is no longer quoted as the test expects"
    percent, backend, n, d, strategy, median, iqr = match.groups()
    assert int(percent) == round(100 * worst.iqr / worst.median)
    assert (backend, strategy) == (worst.backend, worst.strategy)
    assert (n.replace("M", "000000"), int(d)) == (str(worst.size[0]), worst.size[1])
    assert (float(median), float(iqr)) == (round(worst.median * 1e3, 1), round(worst.iqr * 1e3, 1))


# --- Checking your own function, and problems from a file, as written ----------------------------------


def test_the_check_example_runs_as_written_and_prints_the_report_shown(tmp_path):
    pytest.importorskip("torch")
    text = page("checking")
    example, fixture = re.findall(r"```python\n(.*?)```", text, re.S)
    (shown,) = re.findall(r"```\n(FAIL .*?)```", text, re.S)
    done = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert shown.strip() in done.stdout
    (tmp_path / "test_mine.py").write_text(fixture)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def test_the_detection_tables_harness_row_is_measured():
    pytest.importorskip("torch")
    text = page("checking")
    command = "python scripts/detection.py"
    assert command in text
    done = subprocess.run(
        [
            sys.executable,
            "scripts/detection.py",
            "--tool",
            "harness-torch",
            "--dtype",
            "float64",
            "--order",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("| harness-torch")]
    assert row in text


def test_the_problems_file_example_runs_as_written(tmp_path):
    pytest.importorskip("autograd")
    text = section("# Writing problems and evals", page("problems"))
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", text, re.S) if "PROBLEMS = [" in c]
    (tmp_path / "my_problems.py").write_text(code)
    (command,) = [line.strip() for line in text.splitlines() if "--problems my_problems.py -p" in line]
    argv = command.split()
    assert argv[:2] == ["python", "-m"]
    done = subprocess.run(
        [sys.executable, *argv[1:], "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "HARNESS_BACKENDS"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("bump", "quadratic", "softsign"):
        assert re.search(rf"autograd .* {name} ", done.stdout)


# --- The README: a front door -------------------------------------------------------------------------


def test_the_readme_starts_with_the_two_commands_and_stays_short():
    commands = [
        "pip install -c constraints.txt '.[all]' && python -m harness compare",
        "pip install tox && tox run",
    ]
    assert README.startswith("# gradient-harness\n\n```sh\n" + "\n".join(commands) + "\n```\n")
    assert len(README.splitlines()) <= 200


def test_the_readme_links_to_pages_that_exist():
    links = re.findall(r"\]\(((?:docs/)?[\w.-]+\.md)(?:#[\w-]+)?\)", README)
    assert "docs/checking.md" in links and "CONTRIBUTING.md" in links
    assert all((ROOT / link).is_file() for link in links), links


def test_the_excerpts_are_what_compare_prints_at_100_columns():
    """The README's and the benchmarking page's excerpts of the committed CPU run, as printed now."""
    printed = compare.table(run_rows("20261126T152556Z_cpu"), width=100)
    for text in (README, page("benchmarking")):
        words = " ".join(text.split())  # the machine it was measured on is named beside it
        assert "compare 20261126T152556Z_cpu" in words and "2-core Intel Xeon" in words
        excerpt = re.search(r"```\n(logistic value\+grad 1000000x64 .*?)```", text, re.S).group(1)
        for part in excerpt.split("\n...\n"):
            assert part.strip() in printed, part
