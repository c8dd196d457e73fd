"""The execution layer (`harness.execution.runner`): time limits that end whole process groups, interrupts
that leave no process behind, the same checks isolated or not, progress, and destinations.

The hang tests use backends that hang on purpose (`faulty.HangWithHelper` starts a helper
process that inherits the child's output, then hangs). No test waits on a healthy backend
against a short clock: where a limit must pass before something happens, the test retries
with a longer one, so a loaded machine only makes it slower.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from faulty import (
    PIDS_ENV,
    harness_cli,
    harness_in_terminal,
    inner_of,
    install,
    kept_on_interrupt,
    pids_of,
    wait_gone,
)

from harness import plugins
from harness.cli import output
from harness.cli.main import main
from harness.execution import runner
from harness.jobs import Job
from harness.problems import NestedProblem
from harness.results import files

LIMITS = (5, 20, 80)
"""Time limits tried in turn, until the hanging child got as far as starting its helper."""


@pytest.fixture(scope="module")
def hanging(tmp_path_factory, registry) -> tuple[dict, Path]:
    inner = inner_of(registry)
    if inner is None:
        pytest.skip("neither autograd nor jax is installed")
    path = tmp_path_factory.mktemp("hanging")
    env = install(path, inner, {"helper": "HangWithHelper", "honest": "Wrapper"})
    return env, path


# --- Time limits ------------------------------------------------------------------------------------


def test_a_hang_with_a_helper_is_a_timeout_within_the_limit_and_leaves_nothing(hanging, tmp_path):
    env, path = hanging
    for limit in LIMITS:
        pids = tmp_path / f"pids-{limit}"
        run = harness_cli(
            "validate",
            "-b",
            "helper",
            "-p",
            "tanh",
            "-o",
            "1",
            "--dtype",  # one job: `validate` runs a job (and a time limit) per backend and dtype
            "float64",
            "--format",
            "json",
            "--timeout",
            str(limit),
            env={**env, PIDS_ENV: str(pids)},
            cwd=path,
            timeout=limit + 300,
        )
        if pids_of(pids):  # the child got as far as its helper before the limit
            break
    else:
        pytest.fail(f"the hanging child never started its helper within {LIMITS[-1]} s")
    assert run.code == output.EXIT_FAIL, run
    [record] = run.checks
    assert (record["status"], record["classification"]) == ("error", "timeout"), record
    assert f"no result within {limit} s" in record["message"]
    assert "process group was killed" in record["message"]
    assert limit <= record["seconds"] <= limit + 5, record  # measured by the runner itself
    assert wait_gone(pids_of(pids).values()) == [], "the child or its helper outlived the timeout"


# --- Interrupts -------------------------------------------------------------------------------------


def interrupt(command: list[str], env: dict, cwd: Path, pids: Path, signum: int, group: bool):
    """Start ``python -m harness COMMAND`` as a terminal would (its own process group), wait until
    the hanging backend's helper runs, send ``signum`` to the group (Ctrl-C) or the parent alone."""
    proc = harness_in_terminal(command, {**env, PIDS_ENV: str(pids)}, cwd)
    try:
        deadline = time.monotonic() + 300  # a safety net, not a race: it only waits
        while len(pids_of(pids)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(pids_of(pids)) == 2, "the hanging backend never started"
        if group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out, err


@pytest.mark.parametrize(
    ("command", "signum", "group"),
    [
        (
            ["validate", "-b", "honest,helper", "-p", "tanh", "-o", "1-2", "--dtype", "float64"],
            signal.SIGINT,
            True,
        ),
        (
            [
                "validate",
                "-b",
                "honest,helper",
                "-p",
                "tanh",
                "-o",
                "1-2",
                "--dtype",
                "float64",
                "--format",
                "json",
            ],
            signal.SIGTERM,
            False,
        ),
        (["compare", "-b", "helper"], signal.SIGINT, False),
        (["compare", "-b", "helper", "--format", "json"], signal.SIGTERM, True),
    ],
    ids=["validate-SIGINT-group", "validate-SIGTERM", "compare-SIGINT", "compare-SIGTERM-group"],
)
def test_an_interrupt_ends_every_process_and_keeps_what_finished(hanging, tmp_path, command, signum, group):
    env, path = hanging
    env = {**env, files.FALLBACK_ENV: str(tmp_path / "kept")}
    pids = tmp_path / "pids"
    code, out, err = interrupt(command, env, path, pids, signum, group)
    assert code == 128 + signum, (code, out, err)
    assert "Traceback" not in err, err
    assert wait_gone(pids_of(pids).values()) == [], "a child or helper outlived the interrupt"
    if command[0] == "validate":
        kept, count = kept_on_interrupt(err, signum)
        assert len(kept) == count  # the line counts every check kept, agreement checks too
        assert {c["backend"] for c in kept} <= {"honest"}
        if "--format" in command:
            assert json.loads(out)["checks"] == kept  # the report of what finished
    else:  # nothing was timed: nothing saved, and the message says why
        assert "no case was timed, so no run is saved" in err, err
        assert not (tmp_path / "kept").exists() or not list((tmp_path / "kept").iterdir())


# --- Same plan, same checks -------------------------------------------------------------------------


def check_list(report: dict) -> list[tuple]:
    return [
        (
            c["backend"],
            c["device"],
            c["dtype"],
            c["mode"],
            c["strategy"],
            c["problem"],
            c["order"],
            c["oracle"],
            c["status"],
            c["classification"],
        )
        for c in report["checks"]
    ]


def test_isolated_and_in_process_runs_give_the_same_checks_on_every_problem(capsys, installed):
    fast = next((e for e in installed if e.name == "autograd"), installed[0])
    # Eager: isolation is what differs here. torch.compile's jit rows, in a pytest process that
    # had compiled much before, once errored in-process on sigmoid (forward, order 2), alone not.
    # Every problem but the nested optimizations (particle, saddle), whose derivative checks take
    # a minute per backend and are tested in test_particle_saddle.py. float64 alone: a second dtype runs
    # the same code through the same isolation (TensorFlow alone in its env: 133 s with both, 107 s).
    names = {n for n, p in plugins.load().problems.items() if not isinstance(p, NestedProblem)}
    plan = [
        "-b",
        fast.name,
        "-p",
        ",".join(sorted(names)),
        "-o",
        "1-2",
        "--mode",
        "eager",
        "--dtype",
        "float64",
        "--format",
        "json",
    ]
    reports = []
    for isolation in ("--isolate", "--no-isolate"):
        main(["validate", *plan, isolation])
        reports.append(json.loads(capsys.readouterr().out))
    isolated, here = map(check_list, reports)
    assert isolated == here
    problems = {c[5] for c in isolated}
    assert problems == names
    # logistic-large's gradient is too large to print, yet takes part in agreement checks
    large = [c for c in isolated if c[5] == "logistic-large" and c[7].startswith("agreement")]
    assert large


# --- Progress ---------------------------------------------------------------------------------------


def on_a_terminal(args: list[str], env: dict | None = None) -> tuple[int, str, str]:
    """Run ``python -m harness ARGS`` with stderr on a pseudo-terminal: (exit code, stdout, stderr).

    stdout goes to a file, not a pipe: a report larger than a pipe's buffer would block the
    child while this reads the terminal."""
    master, slave = os.openpty()
    with tempfile.TemporaryFile() as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", *args], stdout=stdout, stderr=slave, env=env
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait()
        os.close(master)
        stdout.seek(0)
        out = stdout.read()
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal_and_clean_json_on_stdout(installed):
    fast = next((e for e in installed if e.name == "autograd"), installed[0])
    args = ["validate", "-b", fast.name, "-p", "tanh", "-o", "1-3", "--dtype", "float64"]
    code, out, err = on_a_terminal([*args, "--format", "json"])
    assert code == output.EXIT_OK, err
    json.loads(out, parse_constant=pytest.fail)  # stdout holds the report and nothing else
    plain = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", err)
    assert fast.name in plain and "left" in plain
    assert re.search(r"\d+/\d+", plain)
    assert re.search(r"tanh \S+ order [123]", plain)  # what runs now
    assert "done:" in plain

    code, out, err = on_a_terminal([*args, "--quiet"])
    assert code == output.EXIT_OK
    assert "all passed" in out and err == ""


def test_no_progress_when_stderr_is_not_a_terminal(capfd, installed):
    fast = next((e for e in installed if e.name == "autograd"), installed[0])
    assert main(["validate", "-b", fast.name, "-p", "tanh", "-o", "1", "--dtype", "float64"]) == 0
    assert capfd.readouterr().err == ""


# --- Destinations -----------------------------------------------------------------------------------


@pytest.fixture
def readonly(tmp_path) -> Path:
    """A folder this user cannot create files in (root ignores permission bits: then /sys)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o500)
    if files.unwritable(folder, folder=True) is None:
        folder = Path("/sys")
    assert files.unwritable(folder, folder=True), "no unwritable folder to test with"
    return folder


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if any job starts: destinations are checked before work."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the destination was checked")

    monkeypatch.setattr(runner, "run_jobs", refuse)


LONG = "x" * 300


@pytest.mark.parametrize("case", ["folder", "readonly", "long"])
def test_an_unwritable_destination_is_a_usage_error_before_work(capsys, tmp_path, readonly, no_work, case):
    where = {"folder": tmp_path, "readonly": readonly / "report.json", "long": tmp_path / f"{LONG}.json"}[
        case
    ]
    commands = [
        ["validate", "-b", "autograd", "--output", str(where)],
        ["compare", "--run-to", str(where)],
        ["compare", "--save", "--results", str(where if case != "folder" else tmp_path / "f.json")],
        ["compare", "--plot", str(where if case != "folder" else tmp_path / "f.json")],
    ]
    (tmp_path / "f.json").write_text("{}")
    for command in commands:
        assert main(command) == output.EXIT_USAGE, command
        err = capsys.readouterr().err
        assert err.startswith("error: cannot write") and err.count("\n") == 1, err


def test_a_write_that_fails_at_the_end_keeps_the_run_in_a_named_file(
    capsys, monkeypatch, tmp_path, installed
):
    fast = next((e for e in installed if e.name == "autograd"), installed[0])
    monkeypatch.setenv(files.FALLBACK_ENV, str(tmp_path / "kept"))
    target = tmp_path / "report.json"
    real = files.write_text

    def full_disk(path, text, **kwargs):
        if Path(path) == target:
            raise OSError(28, "No space left on device")
        return real(path, text, **kwargs)

    monkeypatch.setattr(files, "write_text", full_disk)
    code = main(
        ["validate", "-b", fast.name, "-p", "tanh", "-o", "1", "--format", "json", "--output", str(target)]
    )
    assert code == output.EXIT_FAIL
    err = capsys.readouterr().err
    match = re.search(
        r"could not write (\S+) \(OSError: .*No space left on device\); "
        r"the run is kept in (\S+)",
        err,
    )
    assert match and match[1] == str(target), err
    kept = json.loads(Path(match[2]).read_text())
    assert kept["checks"] and not target.exists()


def test_compare_with_every_backend_failing_saves_no_run(hanging, tmp_path):
    env, path = hanging
    results = tmp_path / "results"
    run = harness_cli(
        "compare",
        "-b",
        "helper",
        "--timeout",
        "5",
        "--save",
        "--results",
        str(results),
        env={**env, PIDS_ENV: str(tmp_path / "pids")},
        cwd=path,
        timeout=600,
    )
    assert run.code == output.EXIT_FAIL, run
    assert "error: helper: no result within 5 s" in run.stderr
    assert "no case was timed, so no run is saved" in run.stderr
    assert not results.exists() or not list(results.iterdir())


def test_runner_refuses_nothing_and_returns_in_order(registry, installed):
    """Jobs come back in the order given, each with its own results, in process or not."""
    names = [e.name for e in installed][:2]
    jobs = [Job("validate", n, ("tanh",), ("float64",), orders=(1,)) for n in names]
    for isolate in (True, False):
        outcomes = runner.run_jobs(jobs, registry, runner.LocalPool(math.inf, parallel=2), isolate=isolate)
        assert [o.job.backend for o in outcomes] == names
        for outcome in outcomes:
            assert outcome.finished and outcome.failure is None
            assert outcome.results and {c.backend for c in outcome.results} == {outcome.job.backend}


def test_a_pool_starts_jobs_in_its_order_and_returns_them_in_the_order_given(registry, installed):
    name = installed[0].name
    jobs = [Job("validate", name, ("tanh",), (dtype,), orders=(1,)) for dtype in ("float32", "float64")]
    started = []

    def listen(outcome, event):
        if event[0] == "start":
            started.append(outcome.job.dtypes)

    pool = runner.LocalPool(math.inf, parallel=1, first=lambda job: job.dtypes != ("float64",))
    outcomes = runner.run_jobs(jobs, registry, pool, listener=listen)
    assert started == [("float64",), ("float32",)]
    assert [o.job.dtypes for o in outcomes] == [("float32",), ("float64",)]
    assert all(o.finished and {c.dtype for c in o.results} == set(o.job.dtypes) for o in outcomes)
