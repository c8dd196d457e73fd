"""The one way into validation: ``harness.check``, ``python -m harness validate`` and ``gradbench
check`` each reach `harness.validation.session.validate` once, and on the same function (GradBench's
lse, by autograd) give the same verdict."""

from __future__ import annotations

import json
import sys
from functools import partial

import pytest

import harness
from harness import plugins
from harness.cli.main import main
from harness.evals import lse
from harness.validation import session

anp = pytest.importorskip("autograd.numpy")

SERVE = f"{sys.executable} -m harness gradbench serve --backend autograd"


@pytest.fixture
def entries(monkeypatch) -> list[session.Validation]:
    """Every `session.validate` call's result, in order."""
    monkeypatch.delenv(plugins.BACKENDS_ENV, raising=False)
    found, real = [], session.validate

    def spy(run, **options):
        found.append(real(run, **options))
        return found[-1]

    monkeypatch.setattr(session, "validate", spy)
    return found


def first_order(validation: session.Validation) -> set[str]:
    return {c.status for c in validation.checks if c.order == 1}


def test_check_validate_and_gradbench_check_reach_one_validation_with_one_verdict(tmp_path, entries):
    report = harness.check(partial(lse.primal, anp), *lse.args(), backend="autograd")
    assert len(entries) == 1 and report.checks == entries[0].checks

    out = tmp_path / "validate.json"
    argv = ["validate", "--no-isolate", "-q", "-b", "autograd", "-p", "lse", "--dtype", "float64"]
    code = main([*argv, "-o", "1", "--format", "json", "--output", str(out)])
    assert len(entries) == 2
    assert json.loads(out.read_text())["checks"] == [c.to_json() for c in entries[1].checks]

    out = tmp_path / "gradbench.json"
    code_gb = main(["gradbench", "check", "--tool", SERVE, "-p", "lse", "--format=json", f"--output={out}"])
    assert len(entries) == 3
    assert json.loads(out.read_text())["checks"] == [c.to_json() for c in entries[2].checks]

    # One verdict, three doors: every first derivative passes, and none of them fails the run.
    assert report.passed and code == code_gb == 0
    assert [v.failed for v in entries] == [False, False, False]
    assert [first_order(v) for v in entries] == [{"pass"}] * 3
    assert {c.problem for v in entries[1:] for c in v.checks} == {"lse"}


def test_check_loads_the_registry_once_per_call(monkeypatch):
    from harness import api

    loads = []
    real = plugins.load
    monkeypatch.setattr(plugins, "load", lambda *a, **k: loads.append(1) or real(*a, **k))
    monkeypatch.setattr(api, "_REGISTRIES", {})
    reads = []
    registry = api._registry
    monkeypatch.setattr(api, "_registry", lambda: reads.append(1) or registry())
    harness.check(lambda x: anp.sum(anp.sin(x)), lse.args()[0], backend="autograd")
    assert (len(loads), len(reads)) == (1, 1)
