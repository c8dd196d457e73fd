"""``scripts/gpu-run.sh``, the one offline command for a GPU machine, run on this CPU as its own
test: it installs the harness into a throwaway environment layered over this one's packages
with ``--no-index``, validates, benchmarks and summarizes into the folder it is given."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.runs import load

SCRIPT = Path(__file__).parents[2] / "scripts" / "gpu-run.sh"


@pytest.fixture
def jax_and_torch(installed):
    if {"jax", "torch"} - {e.name for e in installed}:
        pytest.skip("the GPU run is of jax and torch; both must be installed")


def test_the_gpu_run_runs_offline_on_a_cpu(jax_and_torch, tmp_path):
    """Every step of the run, smaller: two problems (tanh has order 3, logistic a gradient) and the
    quick profile's logistic cases (224 s with every default problem and case, 2-core AMD EPYC)."""
    out = tmp_path / "out"
    done = subprocess.run(
        [
            SCRIPT,
            out,
            "--device",
            "cpu",
            "--profile",
            "quick",
            "--top-order",
            "3",
            "--python",
            sys.executable,
            "--wheels",
            tmp_path / "no-wheels",
            "--problems",
            "tanh,logistic",
            "--cases",
            "logistic",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for name in ("validation.json", "validation-top-order.json"):
        report = json.loads((out / name).read_text())
        checks = report["checks"]
        assert checks and {c["backend"] for c in checks} == {"jax", "torch"}
        assert {c["device"] for c in checks} == {"cpu"}
        assert "tanh" in {c["problem"] for c in checks} <= {"tanh", "logistic"}
    top = {c["order"] for c in json.loads((out / "validation-top-order.json").read_text())["checks"]}
    assert 3 in top and top <= {3, None}
    (saved,) = out.glob("2*.json")
    rows = load(saved)
    assert rows and all(r.validated and r.device == "cpu" for r in rows)
    assert {r.backend for r in rows} == {"jax", "torch"}
    summary = (out / "summary.txt").read_text()
    assert "logistic value+grad" in summary
    assert "gpu-run: exit 0" in (out / "log.txt").read_text()


def test_the_gpu_run_refuses_bad_arguments(tmp_path):
    done = subprocess.run([SCRIPT, "--device"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage:" in done.stderr
