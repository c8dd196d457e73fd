"""A GradBench tool held to the harness's oracles: each eval's inputs sent, each output judged.

One tool process per eval, as GradBench runs them (`drive.Tool`): ``start``, ``define``, then
an ``evaluate`` per function of the eval (`harness.evals.adapter`: ``GRADBENCH``) at the chosen
size, each output judged against every oracle of that function by the tolerance rule, as
``validate`` judges a backend (`harness.validation.verdicts.judge`: the same `Check` records and
classifications), and an ``analysis`` sent back with the verdict. What goes wrong is a check:
an undefined eval is ``unsupported``; ``success: false`` an ``exception``; the wrong structure
``wrong shape``; NaN or infinity (which Python's json reads) ``overflow/nan``; a crash, a hang
or an answer out of order ends that eval's session as ``crash``, ``timeout`` or ``protocol``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from harness.errors import ShapeMismatch, ToolFailure
from harness.evals.adapter import Function
from harness.gradbench import problem_of
from harness.gradbench.drive import Tool
from harness.validation.verdicts import Check, Head, head, judge


@dataclass
class Session:
    """What a check of one tool found: its name, its checks and every timing it reported."""

    tool: str
    version: str | None = None
    checks: list[Check] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)


def check_tool(
    command: str,
    chosen: list[tuple[str, ModuleType, tuple | None]],
    timeout: float | None,
    min_runs: int = 1,
    min_seconds: float = 0.0,
    on_check: Callable[[Check], None] | None = None,
) -> Session:
    """Run ``command`` as a GradBench tool on each ``(eval name, module, size)`` of ``chosen``."""
    session = Session(tool=command)
    for name, module, size in chosen:
        for check in _eval_checks(session, command, name, module, size, timeout, (min_runs, min_seconds)):
            session.checks.append(check)
            if on_check:
                on_check(check)
    return session


def _head(session: Session, name: str, function: str, description: str) -> Head:
    return head(backend=session.tool, version=session.version, device="-", dtype="float64",
                mode="gradbench", strategy=function, problem=name, points=description)  # fmt: skip


def _eval_checks(session, command, name, module, size, timeout, runs) -> Iterator[Check]:
    problem = problem_of(module)
    missing = problem.unavailable() if getattr(problem, "unavailable", None) else None
    if missing:  # its inputs are data that is absent here (ht's)
        yield _head(session, name, "-", "-")(0, "-", "unsupported", message=missing)
        return
    input = module.gradbench_input(size)
    args = module.from_gradbench(input)
    description = ", ".join(f"{k}={v}" for k, v in _sizes(input).items())
    ids = iter(range(1 << 62))
    try:
        tool = Tool(command, timeout)
    except ToolFailure as exc:
        yield _head(session, name, "-", description)(
            0, "-", "error", classification=exc.classification, message=str(exc)
        )
        return
    where = "start"
    try:
        with tool:
            started = tool.ask({"id": next(ids), "kind": "start", "eval": name})
            if isinstance(started.data.get("tool"), str) and session.tool == command:
                session.tool = started.data["tool"]
            config = started.data.get("config")
            if isinstance(config, dict) and isinstance(config.get("version"), str):
                session.version = config["version"]
            where = "define"
            defined = tool.ask({"id": next(ids), "kind": "define", "module": name})
            if not defined.success:
                why = defined.data.get("error") or "no reason given"
                yield _head(session, name, "-", description)(
                    0, "-", "unsupported", message=f"undefined: {why}"
                )
                return
            for function_name, function in module.GRADBENCH.items():
                where = function_name
                head = _head(session, name, function_name, description)
                message = {
                    "id": next(ids),
                    "kind": "evaluate",
                    "module": name,
                    "function": function_name,
                    "input": input | {"min_runs": runs[0], "min_seconds": runs[1]},
                    "description": description,
                }
                response = tool.ask(message)
                session.timings.append(
                    {
                        "eval": name,
                        "function": function_name,
                        "description": description,
                        "timings": response.timings(),
                    }
                )
                checks = list(_judged(head, function, problem, args, response, description))
                yield from checks
                failed = [c for c in checks if c.status != "pass"]
                tool.ask(
                    {"id": next(ids), "kind": "analysis", "of": message["id"], "valid": not failed}
                    | ({"error": f"{failed[0].oracle}: {failed[0].classification}"} if failed else {})
                )
    except ToolFailure as exc:
        head = _head(session, name, where if where in module.GRADBENCH else "-", description)
        yield head(0, "-", "error", classification=exc.classification, message=f"at {where}: {exc}")


def _sizes(input: dict) -> dict:
    return {k: len(v) if isinstance(v, list) else v for k, v in input.items() if not isinstance(v, dict)}


def _judged(head, function: Function, problem, args: tuple, response, description: str) -> Iterator[Check]:
    if not response.success:
        why = response.data.get("error") or "no reason given"
        yield head(function.order, "-", "error", classification="exception", message=f"success: false: {why}")
        return
    evaluate = response.seconds("evaluate")
    seconds = round(float(np.mean(evaluate)), 9) if evaluate else None
    oracles = function.oracles(problem, args)
    first = oracles[0]
    shape = first.reference.shape if first.along is None else (first.along.shape[1],)
    try:
        value = function.parse(response.data["output"], shape)
    except ShapeMismatch as exc:
        yield head(
            function.order, "-", "error", classification="wrong shape", message=str(exc), seconds=seconds
        )
        return
    note = (
        f"the tool wrote {', '.join(sorted(set(response.not_finite)))} in its JSON "
        "(GradBench's intermediary refuses the line)"
        if response.not_finite
        else ""
    )
    flat = value.ravel()
    for oracle in oracles:
        claimed = flat if oracle.along is None else oracle.along @ flat
        check = judge(
            head(
                function.order,
                oracle.name,
                "pass",
                points=f"{description}: {oracle.points}" if oracle.points else description,
                seconds=seconds,
            ),
            claimed,
            claimed,
            oracle.reference.ravel(),
            oracle.rtol,
            slack=oracle.slack,
        )
        if note and check.status != "pass":
            check.message = "; ".join(filter(None, (check.message, note)))
        yield check
