"""`--executor ray` on a real Ray cluster: a head and a worker node, separate processes here.

The cluster is started the way a user starts one (``ray start --head``, then ``ray start
--address`` for the worker), with one CPU per node so that two jobs land on two nodes. The
harness's faulty plugins (`faulty`) are on the nodes' ``PYTHONPATH``, so a crash and a hang
can be planted in jobs that run on the cluster. Skipped where Ray is not installed; tox's
``ray`` env installs it, so the skip never hides these tests in CI.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from faulty import CRASHERS, SMALL, harness_cli, inner_of, install

ray = pytest.importorskip("ray")

ACCEPTANCE = ["-b", "torch,autograd", "-p", "tanh", "-o", "1-2", "--format", "json"]
TIMEOUT = 20.0
"""The hanging job's limit: long enough for a loaded machine to start its child, and bounded."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(*args: str, env: dict) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ray"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, registry):
    """(address, env): a head node and a worker node, one CPU each, with faulty plugins."""
    inner = inner_of(registry)
    if inner is None:
        pytest.skip("neither autograd nor jax is installed")
    faulty = tmp_path_factory.mktemp("faulty")
    env = install(faulty, inner, {"segv": CRASHERS["segv"], "hang": CRASHERS["hang"]})
    env["HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Every process of the cluster, and each driver, authenticates with the same token.
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    temp = Path("/tmp") / f"ray-harness-{os.getpid()}"  # Ray's socket paths must stay short
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats"]
    try:
        ray_cli(
            "start",
            "--head",
            "--port",
            str(port),
            "--temp-dir",
            str(temp),
            "--include-dashboard=false",
            *common,
            env=env,
        )
        ray_cli("start", "--address", address, *common, env=env)
        yield address, env
    finally:
        subprocess.run(
            [str(Path(sys.executable).parent / "ray"), "stop", "--force"], env=env, capture_output=True
        )
        shutil.rmtree(temp, ignore_errors=True)


def comparable(checks: list[dict]) -> list[dict]:
    """Everything but the time a check took."""
    return [{k: v for k, v in c.items() if k != "seconds"} for c in checks]


def test_validate_on_the_cluster_gives_the_same_checks_as_here(cluster, tmp_path):
    address, env = cluster
    here = harness_cli("validate", *ACCEPTANCE, env=env, cwd=tmp_path, timeout=600)
    there = harness_cli(
        "validate", *ACCEPTANCE, "--executor", "ray", "--address", address, env=env, cwd=tmp_path, timeout=600
    )
    assert here.code == 0, here
    assert there.code == 0, there
    assert {c["backend"] for c in there.checks} == {"torch", "autograd"}
    assert comparable(there.checks) == comparable(here.checks)


SPREAD = """
import json, sys
import ray
from harness import plugins, runner
address, names = sys.argv[1], sys.argv[2:]
plan = (("tanh",), ("float64",), ("eager",), ("reverse",), None, (1,))
jobs = [runner.Job("validate", n, *plan) for n in names]
outcomes = runner.run(jobs, plugins.load(), executor="ray", address=address)
ray.init(address=address, log_to_driver=False, configure_logging=False)
alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
print(json.dumps({
    "outcomes": [[o.finished, o.failure, [c.status for c in o.results], o.node] for o in outcomes],
    "alive": alive,
}))
"""


def test_jobs_are_spread_over_both_nodes(cluster, installed, tmp_path):
    """Two jobs, one CPU per node: each runs on a node of its own, and says which (driven
    through `runner.run`, in a process of its own that authenticates like the cluster's)."""
    address, env = cluster
    names = [e.name for e in installed if e.name in ("autograd", "torch", "jax")][:2]
    if len(names) < 2:
        pytest.skip("two of autograd, torch and jax are needed")
    done = subprocess.run(
        [sys.executable, "-c", SPREAD, address, *names],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for finished, failure, statuses, _ in report["outcomes"]:
        assert finished and failure is None and statuses and set(statuses) == {"pass"}, report
    nodes = [node.split()[1] for *_, node in report["outcomes"]]
    assert len(set(nodes)) == 2, nodes
    assert {n[:12] for n in report["alive"]} >= set(nodes)


def test_a_crash_and_a_hang_on_the_cluster_are_classified_as_here(cluster, tmp_path):
    """The segfaulting job is a crash and the hanging one a timeout at its limit, each its own
    backend's error record, with the checks they finished first kept."""
    address, env = cluster
    run = harness_cli(
        "validate",
        "-b",
        "segv,hang",
        *SMALL,
        "--format",
        "json",
        "--executor",
        "ray",
        "--address",
        address,
        "--timeout",
        str(TIMEOUT),
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert run.code == 1, run
    for name, classification, why in (("segv", "crash", "SIGSEGV"), ("hang", "timeout", "no result within")):
        [record] = [c for c in run.of(name) if c["classification"] in ("crash", "timeout")]
        assert record["classification"] == classification, record
        assert why in record["message"], record
        assert [c["order"] for c in run.of(name) if c is not record and c["status"] == "pass"], run


def test_compare_runs_its_quick_benchmark_on_the_cluster(cluster, tmp_path):
    address, env = cluster
    out = tmp_path / "run.json"
    run = harness_cli(
        "compare",
        "-b",
        "autograd",
        "-q",
        "--executor",
        "ray",
        "--address",
        address,
        "--run-to",
        str(out),
        "--format",
        "json",
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    assert run.code == 0, run
    saved = json.loads(out.read_text())
    assert {b["extra_info"]["backend"] for b in saved["benchmarks"]} == {"autograd"}
    assert all(b["extra_info"]["validated"] for b in saved["benchmarks"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--address", "127.0.0.1:1"], "--address names a Ray cluster"),
        (["--executor", "ray", "--no-isolate"], "leave out --no-isolate"),
        (["--executor", "ray", "--address", "127.0.0.1:1"], "no Ray cluster at 127.0.0.1:1"),
    ],
)
def test_executor_usage_errors(args, message, tmp_path):
    env = dict(os.environ, HARNESS_CACHE_DIR=str(tmp_path / "cache"))
    run = harness_cli(
        "validate", "-b", "autograd", "-p", "tanh", "-o", "1", *args, env=env, cwd=tmp_path, timeout=300
    )
    assert run.code == 2, run
    assert message in run.stderr, run
