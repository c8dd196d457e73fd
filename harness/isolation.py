"""Run one backend's validation in a child interpreter with a time limit.

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
from collections.abc import Sequence

from harness.plugins import BackendEntry
from harness.validate import Check


def child_command(name: str, options: Sequence[str]) -> list[str]:
    """The command that validates backend ``name`` alone, one JSON check per output line."""
    return [sys.executable, "-m", "harness", "validate", "--backend", name, "--no-isolate",
            "--no-agreement", "--format", "jsonl", *options]


def validate_in_child(entry: BackendEntry, options: Sequence[str], timeout: float) -> list[Check]:
    """``entry``'s checks, run by a child interpreter; a crash or hang becomes an error check."""
    proc = subprocess.Popen(child_command(entry.name, options), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        timed_out = True
    checks = []
    for line in out.splitlines():
        try:
            checks.append(Check.from_json(json.loads(line)))
        except (ValueError, TypeError):
            break  # the line the child was writing when it died, or not a check at all
    failure = _failure(proc.returncode, timed_out, timeout, err, len(checks))
    if failure:
        classification, message = failure
        checks.append(Check(entry.name, entry.version, "-", "-", "-", "-", "-", 0, "-", "error",
                            classification=classification, message=message))
    return checks


def _failure(code: int, timed_out: bool, timeout: float, err: str, done: int
             ) -> tuple[str, str] | None:
    finished = f"{done} check(s) had finished and are kept"
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
