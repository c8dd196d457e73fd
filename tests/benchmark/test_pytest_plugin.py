"""The benchmark suite as a pytest plugin (``pytest11``), and problems from plugins benchmarked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import harness
from harness import plugins
from harness.benchmark import cases, measure
from harness.problems import GradientProblem, ScalarProblem
from harness.results import compare
from harness.results.runs import load, save


def softsign(xp, x):
    return x / (1 + (x * x) ** 0.5)


def quadratic(xp, w, data):
    return xp.sum((data @ w) ** 2)


def quadratic_args(size=None):
    rng = np.random.default_rng(1)
    n, d = size or (200, 8)
    return rng.standard_normal(d), rng.standard_normal((n, d))


@harness.hookimpl
def harness_register_problems(register):
    register(ScalarProblem("softsign", softsign, points=(-2.0, 0.5, 3.0)))
    register(
        GradientProblem(
            "quadratic",
            quadratic,
            quadratic_args,
            argnums=0,
            cost=lambda args, itemsize: (7.0 * args[1].size * itemsize, None),
        )
    )


def test_a_plugin_problem_is_benchmarked_with_its_own_cost_model(fast, tmp_path):
    plugin = types.SimpleNamespace(harness_register_problems=harness_register_problems)
    registry = plugins.load(extra=[("extra-problems", plugin)])
    assert registry.errors == []
    found = cases.cases([registry.backends[fast.name]], "quick", registered=registry.problems.values())
    mine = [c for c in found if c.problem.name in ("softsign", "quadratic") and c.target.mode == "eager"]
    assert {c.problem.name for c in mine} == {"softsign", "quadratic"}
    run = measure.timed_run([c for c in mine if c.order in (1, 2)], 0.01, log=print, min_rounds=3)
    timed = {(b["extra_info"]["problem"], b["extra_info"]["order"]): b for b in run["benchmarks"]}
    assert ("quadratic", 1) in timed and ("softsign", 1) in timed
    quad = timed[("quadratic", 1)]["extra_info"]
    assert quad["validated"] is True  # no closed form: checked by complex step before timing
    assert quad["validation"].startswith("complex step")
    assert quad["bytes"] == 7.0 * 200 * 8 * 4  # its own model: float32, data 200 x 8
    soft = timed[("softsign", 1)]["extra_info"]
    assert soft["bytes"] == 2.0 * 10_000 * 4  # the default: points read, derivative written
    rows = load(save(run, tmp_path, "quick"))
    assert any(r.problem == "quadratic" and r.of_bound for r in rows)
    assert "quadratic value+grad" in compare.table(rows, "md")


def pytest_in(folder, *args: str) -> subprocess.CompletedProcess:
    """``python -m pytest ARGS`` run in ``folder``, as another project would."""
    command = [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-q"]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)


def test_the_options_and_saving_work_in_any_project(tmp_path):
    """A project that only installs gradient-harness: the plugin's options exist and a session
    that used ``harness_benchmark`` is saved where --harness-results says."""
    (tmp_path / "test_elsewhere.py").write_text(
        "def test_timed(harness_benchmark):\n    harness_benchmark(sum, [1, 2])\n"
    )
    out = tmp_path / "runs"
    done = pytest_in(
        tmp_path,
        "test_elsewhere.py",
        "--benchmark-only",
        "--harness-profile",
        "quick",
        "--harness-results",
        str(out),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [saved] = out.iterdir()
    run = json.loads(saved.read_text())
    assert len(run["benchmarks"]) == 1 and run["machine_info"]["harness"]["cpu_model"]
    assert f"saved this run to {saved}" in done.stdout


def test_a_benchmark_session_stopped_by_sigterm_saves_what_it_timed(fast, tmp_path):
    """A time limit's SIGTERM, sent once two cases have passed (read from pytest's progress,
    not guessed from a clock; the first is recorded when its fixture ends, before the second
    starts): the session ends early and saves the rows it timed."""
    out = tmp_path / "runs"
    bench = Path(__file__).parents[1] / "benchmarks" / "test_benchmarks.py"
    command = [sys.executable, "-m", "pytest", str(bench), "--benchmark-only", "-q", "-p", "no:cacheprovider"]
    command += ["--harness-profile", "quick", "--harness-results", str(out)]
    env = {**os.environ, "HARNESS_BACKENDS": fast.name, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True) as child:
        seen = ""
        while seen.split("\n")[-1].count(".") < 2:  # the passed cases' dots
            char = child.stdout.read(1)
            assert char, f"pytest ended before a case passed: {seen}"
            seen += char
        child.send_signal(signal.SIGTERM)
        rest, _ = child.communicate(timeout=300)
    assert "stopped by signal 15" in rest and child.returncode == pytest.ExitCode.INTERRUPTED, seen + rest
    [saved] = out.iterdir()
    rows = load(saved)
    total = len(cases.cases([fast], "quick", registered=plugins.load().problems.values()))
    assert 1 <= len(rows) < total and all(r.validated for r in rows)


def test_an_unwritable_results_folder_is_a_usage_error(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    (tmp_path / "file").write_text("")
    done = pytest_in(tmp_path, "test_x.py", "--harness-results", str(tmp_path / "file"))
    assert done.returncode == 4, done.stdout + done.stderr
    assert "--harness-results" in done.stderr and "not a folder" in done.stderr
