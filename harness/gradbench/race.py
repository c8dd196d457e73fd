"""Race GradBench tools on one eval: the same eval program piped to each tool in turn
(`harness.gradbench.drive.intermediary`), round after round, and per tool and function what
GradBench judged and what it cost.

Each round runs every tool once, in the order given on even rounds and reversed on odd ones
(A B, B A, A B, ...), so that neither side always runs first on a machine that warms up or
loads up. A tool may be pinned to CPUs (`Session` records which): every tool then runs on the
same ones. Per evaluate message the race keeps:

- the **round trip**, from the message handed to the tool to its answer read back: what a user
  waits for. An answer is serialised JSON, so asynchronous dispatch is paid for here even where a
  tool's own timings do not wait (GradBench's JAX tool never blocks: its ``evaluate`` timings
  measure dispatch only);
- the tool's own ``evaluate`` timings: the **first** (a compile, a warm-up: a ``first-call``
  timing where the tool reports one apart, as ``serve`` does by default) and the **fastest**;
- GradBench's verdict (``analysis``).

`summary` sums each over a session's evaluations of a function and takes the median over rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from tabulate import tabulate

from harness.gradbench import drive


@dataclass
class Evaluation:
    """One evaluate message and its answer."""

    function: str
    description: str | None
    round_trip: float
    first: float | None = None
    fastest: float | None = None
    runs: int = 0
    success: bool = False
    valid: bool | None = None


@dataclass
class Session:
    """One tool's session with the eval, in one round."""

    tool: str
    round: int
    outcome: str = ""
    why: str = ""
    name: str | None = None
    """What the tool called itself in its ``start`` answer."""
    evaluations: list[Evaluation] = field(default_factory=list)
    seconds: float = 0.0


def session(
    eval_command: str, tool: str, round: int, timeout: float | None, cpus: list[int] | None
) -> Session:
    """One session: the eval piped to ``tool`` (pinned to ``cpus``), every evaluation kept."""
    found = Session(tool, round)
    sent: dict[object, tuple[int, dict]] = {}
    by_id: dict[object, Evaluation] = {}

    def record(side: str, obj: dict) -> None:
        now = time.perf_counter_ns()
        if side == "message":
            sent[obj.get("id")] = (now, obj)
            if obj.get("kind") == "analysis" and obj.get("of") in by_id:
                by_id[obj["of"]].valid = bool(obj.get("valid"))
            return
        started, message = sent.get(obj.get("id"), (now, {}))
        if message.get("kind") == "start":
            found.name = obj.get("tool")
        if message.get("kind") != "evaluate":
            return
        timings = obj.get("timings") or []
        runs = [t["nanoseconds"] / 1e9 for t in timings if t.get("name") == "evaluate"]
        warm = [t["nanoseconds"] / 1e9 for t in timings if t.get("name") == "first-call"]
        evaluation = Evaluation(
            function=str(message.get("function")),
            description=message.get("description"),
            round_trip=(now - started) / 1e9,
            first=(warm or runs or [None])[0],
            fastest=min(runs) if runs else None,
            runs=len(runs),
            success=bool(obj.get("success")),
        )
        by_id[message.get("id")] = evaluation
        found.evaluations.append(evaluation)

    began = time.perf_counter()
    found.outcome, found.why, _ = drive.intermediary(eval_command, tool, timeout, record, cpus=cpus)
    found.seconds = time.perf_counter() - began
    return found


def race(
    eval_command: str,
    tools: list[str],
    rounds: int,
    timeout: float | None = None,
    cpus: list[int] | None = None,
    on_session: Callable[[Session], None] | None = None,
) -> list[Session]:
    """Every tool's sessions, ``rounds`` each, alternating (see the module's docstring)."""
    sessions = []
    for round in range(rounds):
        for tool in tools if round % 2 == 0 else tools[::-1]:
            sessions.append(session(eval_command, tool, round, timeout, cpus))
            if on_session:
                on_session(sessions[-1])
    return sessions


def summary(sessions: list[Session], tools: list[str]) -> list[dict]:
    """Per tool and function (in the order the eval sent them): evaluations judged valid of those
    sent, and the medians over rounds of the per-session sums of round trips, first runs and
    fastest runs (``None`` where a session has no such timing), each also over the first tool's."""
    rows, baseline = [], {}
    functions = list(dict.fromkeys(e.function for s in sessions for e in s.evaluations))
    for tool in tools:
        mine = [s for s in sessions if s.tool == tool]
        for function in functions:
            per_session = [[e for e in s.evaluations if e.function == function] for s in mine]
            every = [e for evaluations in per_session for e in evaluations]
            if not every:
                continue
            row = {
                "tool": tool,
                "name": next((s.name for s in mine if s.name), None),
                "function": function,
                "valid": sum(e.valid is True for e in every),
                "evaluations": len(every),
                "failed": sum(not e.success for e in every),
            }
            for key in ("round_trip", "first", "fastest"):
                row[key] = _median_of_sums(per_session, key)
                base = baseline.setdefault((function, key), row[key])
                row[f"{key}_ratio"] = row[key] / base if row[key] is not None and base else None
            rows.append(row)
    return rows


def _median_of_sums(per_session: list[list[Evaluation]], key: str) -> float | None:
    sums = []
    for evaluations in per_session:
        values = [getattr(e, key) for e in evaluations]
        if evaluations and all(v is not None for v in values):
            sums.append(sum(values))
    return statistics.median(sums) if sums else None


def document(sessions: list[Session], tools: list[str], eval_command: str, conditions: dict) -> dict:
    """The race as JSON: the commands, the machine's conditions, the summary and every session."""
    return {
        "eval": eval_command,
        "tools": tools,
        "conditions": conditions,
        "summary": summary(sessions, tools),
        "sessions": [asdict(s) for s in sessions],
    }


def text(document: dict) -> str:
    """`document` as a table, the conditions above it."""

    def cost(row: dict, key: str) -> str:
        value, ratio = row[key], row[f"{key}_ratio"]
        if value is None:
            return "-"
        return f"{value:.4g} s" + (f" ({ratio:.2f}x)" if ratio is not None else "")

    tools = document["tools"]
    rows = [
        [
            f"#{tools.index(row['tool']) + 1} {row['name'] or ''}".strip(),
            row["function"],
            f"{row['valid']}/{row['evaluations']}" + (f", {row['failed']} failed" if row["failed"] else ""),
            cost(row, "round_trip"),
            cost(row, "first"),
            cost(row, "fastest"),
        ]
        for row in document["summary"]
    ]
    conditions = document["conditions"]
    load = [(s["load_average"] or ["?"])[0] for s in (conditions["state_before"], conditions["state_after"])]
    head = (
        f"{document['eval']}: {conditions['rounds']} rounds per tool, alternating; pinned to CPUs "
        f"{conditions['cpus_pinned'] or 'none'}; load {load[0]} before, {load[1]} after; "
        f"{conditions['cpu_model']}\n"
        "each cost: the median over rounds of its sum over a session's evaluations (x: over #1's)\n"
        + "".join(f"#{i}: {command}\n" for i, command in enumerate(tools, 1))
    )
    headers = ["tool", "function", "valid", "round trip", "first run", "fastest run"]
    return head + tabulate(rows, headers=headers, disable_numparse=True)
