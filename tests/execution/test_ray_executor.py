"""`--executor ray` on a real Ray cluster: a head and a worker node, separate processes here.

The cluster is started the way a user starts one (``ray start --head``, then ``ray start
--address`` for the worker), with one CPU and no GPU per node, so that two jobs land on two
nodes and a GPU job has nowhere to go. The harness's faulty plugins (`faulty`) are on the
nodes' ``PYTHONPATH``, so a crash and a hang can be planted in jobs that run on the cluster.
Skipped where Ray is not installed; tox's ``ray`` env installs it, so the skip never hides
these tests in CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from faulty import (
    CRASHERS,
    PIDS_ENV,
    SMALL,
    harness_cli,
    harness_in_terminal,
    inner_of,
    install,
    kept_on_interrupt,
    pids_of,
    wait_gone,
)

from harness.results import files

ray = pytest.importorskip("ray")

ACCEPTANCE = ["-b", "torch,autograd", "-p", "tanh", "-o", "1-2", "--format", "json"]
TIMEOUT = 20.0
"""The hanging job's limit: long enough for a loaded machine to start its child, and bounded."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_start(*args: str, env: dict) -> int:
    """``ray start ARGS`` in a process group of its own, which the node's processes stay in
    (Ray starts them without a session of their own): the group's id."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-4000:]
    return proc.pid


def end_groups(pgids: list[int]) -> list[int]:
    """SIGTERM the process groups, then SIGKILL what is left of them: those not gone. (Not
    ``ray stop``: that ends every Ray process of this user on the machine, other clusters'
    too.)"""

    def gone(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    for signum, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 30)):
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signum)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not all(map(gone, pgids)):
            time.sleep(0.1)
        pgids = [g for g in pgids if not gone(g)]
    return pgids


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, registry):
    """(address, env): a head node and a worker node, one CPU each, with faulty plugins; the
    hanging backend with a helper writes its pids to the file named by env's $FAULTY_PIDS."""
    inner = inner_of(registry)
    if inner is None:
        pytest.skip("neither autograd nor jax is installed")
    faulty = tmp_path_factory.mktemp("faulty")
    planted = {name: CRASHERS[name] for name in ("segv", "hang", "helper")}
    env = install(faulty, inner, {**planted, "honest": "Wrapper"})
    env[PIDS_ENV] = str(faulty / "pids")  # the nodes' processes inherit it from 'ray start'
    env["HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Every process of the cluster, and each driver, authenticates with the same token.
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray's socket paths must stay short
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats"]
    groups = []
    try:
        head = ["--head", "--port", str(port), "--temp-dir", str(temp), "--include-dashboard=false"]
        groups.append(ray_start(*head, *common, env=env))
        groups.append(ray_start("--address", address, *common, env=env))
        yield address, env
    finally:
        left = end_groups(groups)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"processes of the cluster's groups {left} outlived SIGKILL"


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
from harness import plugins
from harness.execution import runner
from harness.execution.ray_executor import RayPool
from harness.jobs import Job
address, tests, names = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path.insert(0, tests)
from fakes import DoNothing, plugin_of
registry = plugins.load(extra=[("in-process", plugin_of(DoNothing()))])
plan = (("tanh",), ("float64",), ("eager",), ("reverse",), None, (1,))
jobs = [Job("validate", n, *plan) for n in [*names, DoNothing.name]]
outcomes = runner.run_jobs(jobs, registry, RayPool(3600.0, address))
timed = runner.run_jobs(
    [Job("benchmark", n, profile="quick") for n in names], registry, RayPool(3600.0, address)
)
ray.init(address=address, log_to_driver=False, configure_logging=False)
alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
print(json.dumps({
    "outcomes": [[o.finished, o.failure, [c.status for c in o.results], o.node] for o in outcomes],
    "timed": [[o.finished, o.failure, len(o.results), o.node] for o in timed],
    "alive": alive,
}))
"""


def test_jobs_are_spread_over_both_nodes_and_in_process_plugins_run_here(cluster, registry, tmp_path):
    """Two jobs, one CPU per node: each runs on a node of its own, and says which (driven
    through `runner.run_jobs`, in a process of its own that authenticates like the cluster's). A
    third job's backend is registered in that process, so no node could load it: it runs
    there, as the local executor runs it. Benchmark jobs run in turn on one node instead."""
    address, env = cluster
    names = [inner_of(registry)[0], "honest"]  # honest: that backend renamed, installed on the nodes
    done = subprocess.run(
        [sys.executable, "-c", SPREAD, address, str(Path(__file__).parents[1]), *names],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    *on_nodes, (finished, failure, statuses, node) = report["outcomes"]
    assert finished and failure is None and statuses and node is None, report  # ran here
    for finished, failure, statuses, _ in on_nodes:
        assert finished and failure is None and statuses and set(statuses) == {"pass"}, report
    nodes = [node.split()[1] for *_, node in on_nodes]
    assert len(set(nodes)) == 2, nodes
    assert {n[:12] for n in report["alive"]} >= set(nodes)
    for finished, failure, timed, _ in report["timed"]:
        assert finished and failure is None and timed, report
    assert len({node.split()[1] for *_, node in report["timed"]}) == 1, report["timed"]


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


def test_a_backend_the_nodes_lack_is_that_jobs_error(cluster, registry, tmp_path):
    """A backend installed where the driver runs but on no node: its job is an ``exception``
    record that says so, not a crash."""
    address, env = cluster
    only_here = tmp_path / "only-here"
    install(only_here, inner_of(registry), {"only-here": "Wrapper"}, distribution="only_here")
    env = {**env, "PYTHONPATH": os.pathsep.join([str(only_here), env["PYTHONPATH"]])}
    args = ["-b", "only-here", *SMALL, "--format", "json", "--executor", "ray", "--address", address]
    run = harness_cli("validate", *args, env=env, cwd=tmp_path, timeout=600)
    assert run.code == 1, run
    [record] = run.of("only-here")
    assert (record["status"], record["classification"]) == ("error", "exception"), record
    assert "backend only-here is not installed on Ray node" in record["message"], record


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


def interrupt(args: list[str], env: dict, cwd: Path, pids: Path, signum: int, group: bool):
    """Start ``python -m harness ARGS`` (its own process group, as from a terminal) streaming
    JSON lines; once the hanging backend's helper runs on its node and the honest backend's
    checks have come back, send ``signum`` to the group (Ctrl-C) or to the driver alone."""
    proc = harness_in_terminal(args, env, cwd)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300  # a safety net, not a race: it only waits
        while (len(pids_of(pids)) < 2 or not lines) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(pids_of(pids)) == 2 and lines, ("the jobs never got that far", lines, proc.poll())
        time.sleep(1.0)  # the rest of the honest job's lines (replayed together)
        (os.killpg if group else os.kill)(proc.pid, signum)
        err = proc.stderr.read()
        proc.wait(timeout=120)
        reader.join(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, [json.loads(line) for line in lines], err


@pytest.mark.parametrize(("signum", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_an_interrupt_cancels_the_tasks_and_keeps_what_finished(cluster, tmp_path, signum, group):
    """As locally (tests/execution/test_runner.py): the exit code, what finished kept, and the hanging
    job's child and its helper ended on their node (the task is interrupted there, and its
    runner ends the job's process group, helper and all)."""
    address, env = cluster
    pids = Path(env[PIDS_ENV])
    pids.unlink(missing_ok=True)
    env = {**env, files.FALLBACK_ENV: str(tmp_path / "kept")}
    args = ["validate", "-b", "honest,helper", *SMALL, "--format", "jsonl", "--executor", "ray"]
    code, streamed, err = interrupt([*args, "--address", address], env, tmp_path, pids, signum, group)
    assert code == 128 + signum, (code, streamed, err)
    assert "Traceback" not in err, err
    assert wait_gone(pids_of(pids).values()) == [], "the hanging job's child or helper outlived it"
    kept, count = kept_on_interrupt(err, signum)
    own = [c for c in kept if not c["oracle"].startswith("agreement")]
    assert own == [c for c in streamed if not c["oracle"].startswith("agreement")]
    assert len(kept) == count > 0  # every check kept, agreement checks too
    assert {c["backend"] for c in own} == {"honest"}  # the hanging job has no record: interrupted


def test_a_job_no_node_can_take_is_refused_before_anything_runs(cluster, tmp_path):
    """No node has a GPU: Ray would keep a cuda job waiting forever; the harness says so."""
    address, env = cluster
    args = ["-b", "autograd", "-p", "tanh", "-o", "1", "--device", "cuda:0", "--executor", "ray"]
    run = harness_cli("validate", *args, "--address", address, env=env, cwd=tmp_path, timeout=300)
    assert run.code == 2, run
    assert "autograd on cuda:0 needs 1 CPU and 1 GPU on one node" in run.stderr, run
    assert "its nodes: 1 CPU, 0 GPU; 1 CPU, 0 GPU" in run.stderr, run


@pytest.fixture
def not_ray(tmp_path):
    """HOST:PORT of a server that answers, but is not Ray (an HTTP server's reply)."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed
                return
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--address", "127.0.0.1:1"], "--address names a Ray cluster"),
        (["--executor", "ray", "--no-isolate"], "leave out --no-isolate"),
        (["--executor", "ray", "--address", "127.0.0.1:1"], "no Ray cluster at 127.0.0.1:1"),
        (["--executor", "ray", "--address", "ray://127.0.0.1:1"], "is not the head node's HOST:PORT"),
        (["--executor", "ray", "--address", "NOT_RAY"], "something answers there, but not a Ray head"),
    ],
)
def test_executor_usage_errors(args, message, tmp_path, not_ray):
    """Each a usage error before anything runs, named (an address that answers but is not Ray
    too: Ray itself would retry it for many minutes)."""
    env = dict(os.environ, HARNESS_CACHE_DIR=str(tmp_path / "cache"))
    args = [not_ray if a == "NOT_RAY" else a for a in args]
    run = harness_cli(
        "validate", "-b", "autograd", "-p", "tanh", "-o", "1", *args, env=env, cwd=tmp_path, timeout=300
    )
    assert run.code == 2, run
    assert message in run.stderr, run
    assert "Traceback" not in run.stderr, run


def test_a_ray_address_from_the_environment_is_probed_too(tmp_path):
    env = dict(os.environ, HARNESS_CACHE_DIR=str(tmp_path / "cache"), RAY_ADDRESS="127.0.0.1:1")
    args = ["-b", "autograd", "-p", "tanh", "-o", "1", "--executor", "ray"]
    run = harness_cli("validate", *args, env=env, cwd=tmp_path, timeout=300)
    assert run.code == 2, run
    assert "no Ray cluster at 127.0.0.1:1 (RAY_ADDRESS)" in run.stderr, run


def test_without_ray_installed_the_executor_is_a_usage_error(tmp_path):
    """A ``ray`` package that fails to import stands in for a missing Ray."""
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    env = dict(os.environ, HARNESS_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(tmp_path))
    run = harness_cli(
        "validate", "-b", "autograd", "-p", "tanh", "-o", "1", "--executor", "ray", env=env, cwd=tmp_path
    )
    assert run.code == 2, run
    message = "--executor ray needs Ray, which is not installed: pip install 'gradient-harness[ray]'"
    assert message in run.stderr, run
    assert "Traceback" not in run.stderr, run
