"""Run one backend's validation, or its quick benchmark, in a child interpreter with a time limit.

A backend that segfaults, hangs, runs out of memory or raises outside a check
takes its own process down, not the run: the parent keeps every check the
child finished (one JSON line each) and adds one ``error`` check saying what
happened (classification ``timeout`` or ``crash``).

Only backends a fresh interpreter can load (those from the ``harness`` entry
points) can be isolated; the cost is one interpreter start and one framework
import per backend, about 1-3 s here, and the children run side by side.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness.plugins import BackendEntry
from harness.validate import Check


def child_command(name: str, options: Sequence[str]) -> list[str]:
    """The command that validates backend ``name`` alone, one JSON check per output line."""
    return [sys.executable, "-m", "harness", "validate", "--backend", name, "--no-isolate",
            "--no-agreement", "--format", "jsonl", *options]


def _run(command: list[str], timeout: float) -> tuple[int, str, str, bool]:
    """(exit code, stdout, stderr, timed out?) of ``command``, killed after ``timeout`` seconds."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err, False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return proc.returncode, out, err, True


def validate_in_child(entry: BackendEntry, options: Sequence[str], timeout: float) -> list[Check]:
    """``entry``'s checks, run by a child interpreter; a crash or hang becomes an error check."""
    code, out, err, timed_out = _run(child_command(entry.name, options), timeout)
    checks = []
    for line in out.splitlines():
        try:
            checks.append(Check.from_json(json.loads(line)))
        except (ValueError, TypeError):
            break  # the line the child was writing when it died, or not a check at all
    failure = _failure(code, timed_out, timeout, err, len(checks))
    if failure:
        classification, message = failure
        checks.append(Check(entry.name, entry.version, "-", "-", "-", "-", "-", 0, "-", "error",
                            classification=classification, message=message))
    return checks


def benchmark_in_child(entry: BackendEntry, profile: str, timeout: float
                       ) -> tuple[dict | None, str | None]:
    """``entry``'s quick benchmark run by a child interpreter: (the run, what went wrong)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.json"
        command = [sys.executable, "-m", "harness", "compare", "--backend", entry.name,
                   "--profile", profile, "--no-isolate", "--run-to", str(path), "--format", "csv"]
        code, _, err, timed_out = _run(command, timeout)
        run = json.loads(path.read_text()) if path.exists() else None
    # compare exits 1 for its own reasons (a case left out); the run file tells success.
    failure = _failure(0 if run is not None and code in (0, 1) else code or 1, timed_out, timeout,
                       err, len(run["benchmarks"]) if run else 0, "benchmark")
    return run, failure[1] if failure else None


def _failure(code: int, timed_out: bool, timeout: float, err: str, done: int,
             noun: str = "check") -> tuple[str, str] | None:
    finished = f"{done} {noun}(s) had finished and are kept"
    if timed_out:
        return "timeout", f"no result within {timeout:g} s: the backend's process was killed; {finished}"
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return "crash", f"the backend's process died with {name}{hint}; {finished}"
    if code != 0:  # the child streams its checks and exits 0; anything else is a death
        tail = " | ".join(err.strip().splitlines()[-3:]) or "no message"
        return "crash", f"the backend's process exited with code {code}: {tail}; {finished}"
    return None
