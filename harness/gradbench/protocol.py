"""GradBench's protocol: JSON lines between an eval (which asks) and a tool (which answers).

Messages carry an ``id`` (increasing from 0) and a ``kind``: ``start``, ``define`` (a
``module``), ``evaluate`` (``module``, ``function``, ``input`` with ``min_runs`` and
``min_seconds``) and ``analysis`` (``of``, ``valid``, ``error``). Every response carries the
message's ``id``; ``define`` and ``evaluate`` responses say ``success``, an ``evaluate`` that
succeeded its ``output`` and ``timings`` (``{"name", "nanoseconds"}``, one ``evaluate`` per run).
This module reads and checks both sides' lines as GradBench's intermediary does (its Rust
``protocol.rs``), and writes strict JSON (no NaN: RFC 8259 has none).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ProtocolError

KINDS = ("start", "define", "evaluate", "analysis")
REQUIRED = {
    "start": (),
    "define": ("module",),
    "evaluate": ("module", "function", "input"),
    "analysis": ("of", "valid"),
}
"""The fields each kind of message must carry besides ``id`` and ``kind``."""


def dumps(obj: Any) -> str:
    """One protocol line (no newline): compact, strict JSON."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_message(line: str | bytes) -> dict:
    """An eval's message as a dict; `ProtocolError` saying what is wrong with it."""
    try:
        message = json.loads(line, parse_constant=_refuse)
    except ValueError as exc:
        raise ProtocolError(f"a message that is not JSON ({exc}): {_short(line)}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"a message must be a JSON object, got {_short(line)}")
    if not _integer(message.get("id")):
        raise ProtocolError(f"a message needs an integer id, got {_short(line)}")
    kind = message.get("kind")
    missing = [name for name in REQUIRED.get(kind, ()) if name not in message]
    if missing:
        raise ProtocolError(f"a {kind} message needs {', '.join(missing)}: {_short(line)}")
    return message


def _refuse(constant: str) -> float:
    raise ValueError(f"{constant} is not JSON")


def _short(line: str | bytes, limit: int = 200) -> str:
    text = line.decode(errors="replace") if isinstance(line, bytes) else line
    text = text.rstrip("\n")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def runs(input: Any) -> tuple[int, float]:
    """``(min_runs, min_seconds)`` of an evaluate input; `ProtocolError` when they are malformed
    (GradBench's evals always send both; absent, they mean one run)."""
    if not isinstance(input, dict):
        return 1, 0.0
    min_runs, min_seconds = input.get("min_runs", 1), input.get("min_seconds", 0.0)
    if not _integer(min_runs) or min_runs < 1:
        raise ProtocolError(f"min_runs must be an integer >= 1, got {min_runs!r}")
    if not isinstance(min_seconds, int | float) or isinstance(min_seconds, bool) or not min_seconds >= 0:
        raise ProtocolError(f"min_seconds must be a number >= 0, got {min_seconds!r}")
    return min_runs, float(min_seconds)


def timing(name: str, seconds: float) -> dict:
    return {"name": name, "nanoseconds": max(0, round(seconds * 1e9))}


@dataclass
class Response:
    """A tool's response, checked against the message it answers. ``not_finite`` lists the
    non-JSON constants (``NaN``, ``Infinity``) it held: Python's json reads them, GradBench's
    intermediary refuses the line."""

    data: dict
    not_finite: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return bool(self.data.get("success"))

    def timings(self) -> list[dict]:
        return list(self.data.get("timings") or [])

    def seconds(self, name: str = "evaluate") -> list[float]:
        return [t["nanoseconds"] / 1e9 for t in self.timings() if t["name"] == name]


def parse_response(line: str | bytes, message: dict) -> Response:
    """A tool's answer to ``message``; `ProtocolError` when it is not one: not a JSON object, a
    different ``id`` (out of order), ``success`` missing or not a bool, a success without an
    ``output`` or with an ``error``, malformed timings."""
    found: list[str] = []

    def constant(name: str) -> float:
        found.append(name)
        return float(name.replace("Infinity", "inf"))

    try:
        data = json.loads(line, parse_constant=constant)
    except ValueError as exc:
        raise ProtocolError(f"an answer that is not JSON ({exc}): {_short(line)}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"an answer must be a JSON object, got {_short(line)}")
    if data.get("id") != message["id"]:
        raise ProtocolError(
            f"answered id {data.get('id')!r} to message id {message['id']} ({message['kind']}): out of order"
        )
    kind = message["kind"]
    if kind in ("define", "evaluate"):
        if not isinstance(data.get("success"), bool):
            raise ProtocolError(f"a {kind} answer needs success: true or false, got {_short(line)}")
        if data["success"] and "error" in data:
            raise ProtocolError(f"a {kind} answer has success: true and an error: {_short(line)}")
    if kind == "evaluate" and data["success"] and "output" not in data:
        raise ProtocolError(f"an evaluate answer with success: true needs an output: {_short(line)}")
    timings = data.get("timings", [])
    if not isinstance(timings, list) or not all(_timing(t) for t in timings):
        raise ProtocolError(
            f"timings must be a list of {{name: string, nanoseconds: integer >= 0}}, got {timings!r}"[:300]
        )
    return Response(data, found)


def _timing(t: Any) -> bool:
    return (
        isinstance(t, dict)
        and isinstance(t.get("name"), str)
        and _integer(t.get("nanoseconds"))
        and t["nanoseconds"] >= 0
    )


def finite_json(obj: Any) -> bool:
    """Whether ``obj`` (a JSON value) holds no NaN or infinity."""
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, list):
        return all(finite_json(v) for v in obj)
    if isinstance(obj, dict):
        return all(finite_json(v) for v in obj.values())
    return True


def log_line(elapsed_ns: int, side: str, obj: Any) -> str:
    """A line of GradBench's log format (``gradbench run -o``): ``side`` is ``message`` or
    ``response``."""
    return json.dumps({"elapsed": {"nanoseconds": elapsed_ns}, side: obj}, allow_nan=False)
