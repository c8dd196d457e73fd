"""``gradbench``: speak GradBench's protocol both ways.

``serve``: a backend as a GradBench tool on stdin/stdout (`harness.gradbench.serve`). ``check``:
a GradBench tool, any language, held to the harness's oracles, reported as ``validate`` reports
(`harness.gradbench.judge`). ``run``: an eval program piped to a tool, as GradBench's own
``gradbench run`` does (`harness.gradbench.drive.intermediary`), for GradBench's Python evals.
``race``: that for several tools in turn, round after round, and what each cost
(`harness.gradbench.race`).
"""

from __future__ import annotations

import json
import os
import sys
import time

from harness import plugins
from harness.cli import options
from harness.cli.output import EXIT_FAIL, EXIT_OK, check_destination, deliver
from harness.errors import UsageError
from harness.gradbench import eval_modules, problem_of, protocol
from harness.hookspecs import MODES
from harness.problems import NestedProblem
from harness.validation import session


def add_parser(sub) -> None:
    gb = sub.add_parser("gradbench", help="speak GradBench's protocol: serve a backend, check a tool")
    commands = gb.add_subparsers(dest="gradbench_command", required=True)

    serve = commands.add_parser("serve", help="a backend as a GradBench tool on stdin/stdout")
    serve.add_argument("--backend", required=True, help="the backend to serve, e.g. jax")
    serve.add_argument("--mode", choices=MODES, default="eager", help="execution mode (default: eager)")
    serve.add_argument("--device", type=_device, default="cpu", help="cpu or cuda:N (default: cpu)")
    serve.add_argument(
        "--log", help="keep the session (messages, answers, GradBench's verdicts) here, as JSON lines"
    )
    serve.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="time the first call as a run, compile and warm-up included, as GradBench's own Python "
        "tools do (default: it is timed apart, as first-call, and not counted as a run); the backend "
        "itself is warmed either way, by one untimed gradient of a 3-element function",
    )
    serve.set_defaults(handler=_serve)

    check = commands.add_parser("check", help="hold a GradBench tool to the harness's oracles")
    check.add_argument("--tool", required=True, help='the tool\'s command, e.g. "python tools/jax/run.py"')
    check.add_argument(
        "-p",
        "--problem",
        type=options.names,
        action="extend",
        help="evals to send (default: every one the harness has but particle and saddle, whose "
        "whole descents take minutes per pair)",
    )
    check.add_argument(
        "--size",
        type=_size,
        action="append",
        metavar="EVAL=N[,M]",
        help="an eval's size as its args take it (lse=N, llsq=N,M, det=ELL, ode=N,S, kmeans=K,N,D, "
        "gmm=D,K,N, lstm=L,C,B, ba=N,M,P, ht=I); default: the harness's",
    )
    check.add_argument("--min-runs", type=int, default=1, help="min_runs sent with each input (default 1)")
    check.add_argument("--min-seconds", type=float, default=0.0, help="min_seconds sent (default 0)")
    options.add_timeout(
        check, 600.0, "seconds the tool may take to answer one message; then its process group is killed"
    )
    check.add_argument(
        "--format",
        choices=("table", "json", "jsonl"),
        default="table",
        help="json: validate's document plus the tool's timings; jsonl: one check per line, as each finishes",
    )
    check.add_argument("--output", help="write the report to this file (atomically) not stdout")
    check.set_defaults(handler=_check)

    run = commands.add_parser(
        "run", help="pipe a GradBench eval program to a tool (GradBench's `gradbench run`)"
    )
    run.add_argument(
        "--eval", required=True, help='the eval\'s command, e.g. "python -m gradbench.evals.lse.run -n 100"'
    )
    run.add_argument(
        "--tool",
        required=True,
        help='the tool\'s command, e.g. "python -m harness gradbench serve --backend jax"',
    )
    options.add_timeout(run, 600.0, "seconds the tool may take to answer one message")
    run.add_argument("-o", "--log", help="write the session in GradBench's log format (JSON lines) here")
    run.set_defaults(handler=_run)

    race = commands.add_parser(
        "race", help="pipe an eval to several tools in turn, round after round, and compare their costs"
    )
    race.add_argument("--eval", required=True, help="the eval's command, as for run")
    race.add_argument(
        "--tool",
        required=True,
        action="append",
        help="a tool's command; give --tool once per tool (the first is what the others are divided by)",
    )
    race.add_argument("--rounds", type=int, default=3, help="sessions per tool, alternating (default 3)")
    race.add_argument(
        "--cpus",
        type=_cpus,
        help="pin every tool to these CPUs, e.g. 0 or 0,1 (default: not pinned; GradBench's JAX tool "
        "pins itself)",
    )
    options.add_timeout(race, 1800.0, "seconds a tool may take to answer one message")
    race.add_argument("--format", choices=("table", "json"), default="table")
    race.add_argument("--output", help="write the race (JSON: every session too) to this file, atomically")
    race.set_defaults(handler=_race)


def _device(text: str) -> str:
    (device,) = options.devices(text)[:1]
    return device


def _cpus(text: str) -> list[int]:
    try:
        cpus = sorted({int(n) for n in options.names(text)})
    except ValueError:
        cpus = []
    allowed = sorted(os.sched_getaffinity(0))
    if not cpus or not set(cpus) <= set(allowed):
        raise options.argparse.ArgumentTypeError(
            f"{text!r}: give CPU numbers this process may use ({','.join(map(str, allowed))}), e.g. 0"
        )
    return cpus


def _size(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, numbers = text.partition("=")
    try:
        size = tuple(int(n) for n in numbers.split(","))
    except ValueError:
        size = ()
    if not sep or not name.strip() or not size or min(size) < 1:
        raise options.argparse.ArgumentTypeError(
            f"{text!r}: give EVAL=N or EVAL=N,M with positive integers, e.g. lse=100"
        )
    return name.strip(), size


def _serve(args) -> int:
    from harness.gradbench.serve import serve

    if args.log:
        check_destination(args.log, "--log")
    (entry,) = plugins.load().select_backends([args.backend])
    return serve(entry, args.mode, args.device, args.log, args.warmup)


def _check(args) -> int:
    from harness.gradbench.judge import check_tool

    modules = eval_modules()
    names = args.problem or [n for n, m in modules.items() if not isinstance(problem_of(m), NestedProblem)]
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise UsageError(f"no eval {', '.join(map(repr, unknown))} here (the evals: {', '.join(modules)})")
    sizes = dict(args.size or ())
    stray = [n for n in sizes if n not in names]
    if stray:
        raise UsageError(
            f"--size names {', '.join(stray)}, which is not among the evals sent ({', '.join(names)})"
        )
    if args.min_runs < 1 or args.min_seconds < 0:
        raise UsageError("--min-runs must be >= 1 and --min-seconds >= 0")
    check_destination(args.output, "--output")
    stream = args.format == "jsonl" and not args.output

    def emit(check) -> None:
        if stream:
            print(json.dumps(check.to_json(), allow_nan=False), flush=True)

    tool = None  # the session with the tool, once it ran

    def run(on_check) -> tuple[list, None]:
        nonlocal tool
        chosen = [(n, modules[n], sizes.get(n)) for n in names]
        try:
            tool = check_tool(args.tool, chosen, args.timeout, args.min_runs, args.min_seconds, on_check)
        except ValueError as exc:  # an empty command, an eval's bad size
            raise UsageError(str(exc)) from None
        return tool.checks, None

    found = session.validate(run, emit=emit)
    document = found.document({"tool": tool.tool, "command": args.tool}, {"timings": tool.timings})
    text = found.render(args.format, document, _timing_text(tool.timings))
    code = EXIT_FAIL if found.failed else EXIT_OK
    if args.output:
        return deliver(args.output, text + "\n", "gradbench", code)
    if not stream:
        print(text)
    return code


def _timing_text(timings: list[dict]) -> str:
    lines = ["the tool's own timings (mean of its evaluate timings, and any others it reported):"]
    for t in timings:
        names = sorted({x["name"] for x in t["timings"]})
        parts = []
        for name in names:
            ns = [x["nanoseconds"] for x in t["timings"] if x["name"] == name]
            parts.append(f"{name} {sum(ns) / len(ns) / 1e6:.3g} ms" + (f" x{len(ns)}" if len(ns) > 1 else ""))
        lines.append(f"  {t['eval']} {t['function']} ({t['description']}): {', '.join(parts) or 'none'}")
    return "\n".join(lines)


def _run(args) -> int:
    from harness.gradbench.drive import OUTCOMES, intermediary

    log = open(args.log, "w", buffering=1) if args.log else None  # noqa: SIM115
    began = time.perf_counter_ns()

    def record(side: str, obj) -> None:
        if log:
            log.write(protocol.log_line(time.perf_counter_ns() - began, side, obj) + "\n")
        if side == "message" and obj.get("kind") == "analysis" and not obj.get("valid"):
            print(f"invalid: message {obj.get('of')}: {obj.get('error', '')[:2000]}", file=sys.stderr)

    try:
        outcome, why, counts = intermediary(args.eval, args.tool, args.timeout, record)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if log:
            log.close()
    print(
        f"{outcome}: {counts['evaluate']} evaluations, {counts['valid']} valid, {counts['invalid']} invalid, "
        f"{counts['failure']} failed, {counts['undefined']} undefined" + (f"; {why}" if why else ""),
        file=sys.stderr,
    )
    return OUTCOMES[outcome]


def _race(args) -> int:
    from harness import machine
    from harness.gradbench import race
    from harness.gradbench.drive import OUTCOMES

    if args.rounds < 1:
        raise UsageError("--rounds must be at least 1")
    check_destination(args.output, "--output")
    before = machine.state()

    def said(session: race.Session) -> None:
        valid = sum(e.valid is True for e in session.evaluations)
        print(
            f"round {session.round + 1}, {session.name or session.tool}: {session.outcome}, "
            f"{valid}/{len(session.evaluations)} valid, {session.seconds:.1f} s"
            + (f"; {session.why}" if session.why else ""),
            file=sys.stderr,
        )

    try:
        sessions = race.race(args.eval, args.tool, args.rounds, args.timeout, args.cpus, said)
    except ValueError as exc:  # an empty command
        raise UsageError(str(exc)) from None
    conditions = {
        "cpus_pinned": args.cpus,
        "rounds": args.rounds,
        "cpu_model": machine.cpu_model(),
        **machine.around(before),
    }
    document = race.document(sessions, args.tool, args.eval, conditions)
    text = json.dumps(document, indent=2) if args.format == "json" or args.output else race.text(document)
    worst = max((OUTCOMES[s.outcome] for s in sessions), default=0)
    if args.output:
        print(race.text(document))
        return deliver(args.output, text + "\n", "gradbench-race", worst)
    print(text)
    return worst
