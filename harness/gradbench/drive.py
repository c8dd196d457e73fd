"""GradBench's intermediary: run a tool as a child process and put messages to it, one at a time.

As GradBench's Rust CLI does: the command is split as a shell would (``shlex``) and run without a
shell, in its own process group, stdin and stdout piped; each response has a time limit, after
which the whole group is killed. A tool that closes its stdout, answers late, out of order or
with a line that is not a response raises a `ToolFailure` naming what happened (its
``classification``: ``crash``, ``timeout`` or ``protocol``) and the tail of its stderr.
`intermediary` pipes an eval program to a tool (GradBench's ``gradbench run``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from harness.errors import ProtocolError, ToolFailure
from harness.gradbench import protocol

STDERR_TAIL = 800
"""Characters of a failed tool's stderr quoted in its failure."""


def _start(command: str, **kwargs) -> subprocess.Popen:
    argv = shlex.split(command)
    if not argv:
        raise ValueError("the command is empty: give the program to run, e.g. 'python run.py'")
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, **kwargs
    )


def _lines(stream: IO[bytes]) -> queue.Queue:
    """A queue fed with ``stream``'s lines by a daemon thread, then ``None`` at its end."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in iter(stream.readline, b""):
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class Tool:
    """A GradBench tool process; `ask` one message, get its `protocol.Response`."""

    def __init__(self, command: str, timeout: float | None = None, cpus: list[int] | None = None) -> None:
        self.command, self.timeout = command, timeout
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close)
        try:
            self.process = _start(command, stderr=self.stderr)
        except OSError as exc:
            raise ToolFailure("crash", f"could not start {command!r}: {exc}") from None
        try:
            if cpus:  # its main thread, just started: the threads a framework starts later inherit it
                os.sched_setaffinity(self.process.pid, cpus)
        except OSError as exc:
            _kill(self.process)
            raise ToolFailure("crash", f"could not pin {command!r} to CPUs {cpus}: {exc}") from None
        self.lines = _lines(self.process.stdout)

    def ask(self, message: dict) -> protocol.Response:
        try:
            self.process.stdin.write((protocol.dumps(message) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._crashed("closed its stdin") from None
        try:
            line = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            _kill(self.process)
            raise ToolFailure(
                "timeout",
                f"no answer to the {message['kind']} message within {self.timeout:g} s: its process "
                f"group was killed{self._tail()}",
            ) from None
        if line is None:
            raise self._crashed(f"closed its stdout instead of answering the {message['kind']} message")
        try:
            return protocol.parse_response(line, message)
        except ProtocolError as exc:
            raise ToolFailure("protocol", str(exc)) from None

    def _crashed(self, what: str) -> ToolFailure:
        try:
            status = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill(self.process)
            status = self.process.returncode
        return ToolFailure("crash", f"the tool {what} (exit status {status}){self._tail()}")

    def _tail(self) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace").strip()
        return f"; its stderr ends: {text[-STDERR_TAIL:]}" if text else ""

    def close(self) -> None:
        """End the session: close its stdin, give it a moment, then kill its process group."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        _kill(self.process)
        self.stderr.close()

    def __enter__(self) -> Tool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


OUTCOMES = {"success": 0, "error": 1, "undefined": 2, "failure": 3, "invalid": 4, "timeout": 5}
"""GradBench's outcomes of a session and the exit codes ``gradbench run`` gives them."""


def intermediary(
    eval_command: str,
    tool_command: str,
    timeout: float | None = None,
    record: Callable[[str, Any], None] | None = None,
    cpus: list[int] | None = None,
) -> tuple[str, str, dict[str, int]]:
    """Pipe an eval program's messages to a tool (pinned to ``cpus``, if given) and the tool's
    answers back, as GradBench's ``gradbench run`` does; ``record(side, obj)`` sees each message
    and response. Returns the
    outcome (a key of `OUTCOMES`, in GradBench's precedence), why (for an error or a timeout)
    and the counts behind it."""
    counts = {"evaluate": 0, "undefined": 0, "failure": 0, "invalid": 0, "valid": 0}
    evaluator = _start(eval_command)
    eval_lines = _lines(evaluator.stdout)
    outcome, why = None, ""
    try:
        with Tool(tool_command, timeout, cpus) as tool:
            while (line := eval_lines.get()) is not None:
                try:
                    message = protocol.parse_message(line)
                except ProtocolError as exc:
                    outcome, why = "error", f"the eval sent {exc}"
                    break
                (record or _ignore)("message", message)
                try:
                    response = tool.ask(message)
                except ToolFailure as exc:
                    outcome, why = ("timeout" if exc.classification == "timeout" else "error"), str(exc)
                    break
                if response.not_finite:
                    outcome, why = "error", f"the tool answered {', '.join(response.not_finite)}: not JSON"
                    break
                (record or _ignore)("response", response.data)
                _count(counts, message, response)
                evaluator.stdin.write((protocol.dumps(response.data) + "\n").encode())
                evaluator.stdin.flush()
    except (BrokenPipeError, OSError) as exc:
        outcome, why = "error", f"the eval went away ({exc})"
    finally:
        status = _finish(evaluator)
    if outcome is None:
        outcome = next((k for k in ("undefined", "failure", "invalid") if counts[k]), None)
    if outcome is None and status:  # it crashed (an import, a missing file): no success
        outcome, why = "error", f"the eval exited with status {status}"
    outcome = outcome or "success"
    return outcome, why, counts


def _count(counts: dict[str, int], message: dict, response: protocol.Response) -> None:
    kind = message["kind"]
    if kind == "define" and not response.success:
        counts["undefined"] += 1
    elif kind == "evaluate":
        counts["evaluate"] += 1
        counts["failure"] += not response.success
    elif kind == "analysis":
        counts["valid" if message["valid"] else "invalid"] += 1


def _finish(process: subprocess.Popen) -> int:
    """End the eval (its stdin closed, 10 s to go, then killed); its exit status, 0 where it was
    killed here after saying all it had to."""
    with contextlib.suppress(OSError):
        process.stdin.close()
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    status = process.poll()
    _kill(process)
    return status or 0


def _ignore(side: str, obj: Any) -> None:
    pass
