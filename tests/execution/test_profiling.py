"""``HARNESS_PROFILE``: each isolated child writes a cProfile of its job in CPU seconds, which
``scripts/profile-validate.py`` groups into imports, compiles, oracles and checks."""

from __future__ import annotations

import importlib.util
import json
import math
import pstats
from pathlib import Path

from harness.execution import child, runner
from harness.jobs import Job

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "profile-validate.py"


def test_each_child_writes_a_profile_of_its_job_that_the_script_reads(
    registry, installed, tmp_path, monkeypatch
):
    monkeypatch.setenv(child.PROFILE_ENV, str(tmp_path))
    name = installed[0].name
    job = Job("validate", name, ("tanh",), ("float64",), orders=(1,))
    (outcome,) = runner.run_jobs([job], registry, runner.LocalPool(math.inf), isolate=True)
    assert outcome.finished and outcome.results
    (path,) = tmp_path.glob(f"validate-{name}-*.prof")
    functions = {fn for (_file, _line, fn) in pstats.Stats(str(path)).stats}
    assert "backend_checks" in functions
    spec = importlib.util.spec_from_file_location("profile_validate", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    groups = script.grouped(str(path))
    checks_seconds, calls = groups["all checks"]
    assert calls >= 1 and 0 < checks_seconds <= groups["child total"][0]
    assert groups["oracles"][1] >= 1  # mpmath's reference for tanh, at least
    used = json.loads(path.with_suffix(".cpu").read_text())  # the child's CPU and wall seconds
    assert used["cpu"] > 0 and used["wall"] > 0


def test_without_the_variable_a_child_writes_no_profile(registry, installed, tmp_path, monkeypatch):
    monkeypatch.delenv(child.PROFILE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    job = Job("validate", installed[0].name, ("tanh",), ("float64",), orders=(1,))
    (outcome,) = runner.run_jobs([job], registry, runner.LocalPool(math.inf), isolate=True)
    assert outcome.finished
    assert not list(tmp_path.rglob("*.prof"))
