"""``python -m harness``: list backends and problems, validate derivatives, compare benchmarks.

Exit codes: 0 everything passed (``unsupported`` is not a failure), 1 a check
failed or errored, 2 a usage error (unknown name, bad order, ...).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from harness import __version__, expected, plugins, progress
from harness import devices as harness_devices
from harness.benchmark import timing
from harness.distributed import scale
from harness.execution import ray_executor, runner
from harness.hookspecs import DTYPES, MODES, STRATEGIES
from harness.plugins import UsageError
from harness.results import compare, files, runs
from harness.validation import report
from harness.validation.checks import STATUSES, Check
from harness.validation.checks import agreement as agreement_checks

MAX_ORDER = 30
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def parse_orders(text: str) -> tuple[int, ...]:
    """``"1-6"``, ``"2,4"`` or ``"3"`` as a tuple of derivative orders in 1..MAX_ORDER."""
    try:
        return tuple(sorted(expected.parse_orders(text, MAX_ORDER)))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _names(text: str) -> list[str]:
    """Comma-separated names; at least one."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing: give one or more names, comma-separated")
    return names


def _devices(text: str) -> list[str]:
    """Device names: ``cpu``, ``cuda`` or ``cuda:N``."""
    names = _names(text)
    bad = [n for n in names if not re.fullmatch(r"cpu|cuda(:\d+)?", n)]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown device {', '.join(map(repr, bad))}; use cpu, cuda or cuda:N"
        )
    return [n if n != "cuda" else "cuda:0" for n in names]


def _choices(allowed):
    def parse(text: str) -> list[str]:
        names = _names(text)
        bad = [n for n in names if n not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, bad))}; choose from {', '.join(allowed)}"
            )
        return names

    return parse


def _seconds(text: str) -> float:
    """A time limit: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time limit: give seconds above 0, e.g. 600")
    return value


MAX_WORLD = 128


def _worlds(text: str) -> list[int]:
    """World sizes: whole numbers from 1 to MAX_WORLD, comma-separated; sorted, each once."""
    names = _names(text)
    bad = [n for n in names if not (re.fullmatch("[0-9]+", n) and 1 <= int(n) <= MAX_WORLD)]
    if bad:
        raise argparse.ArgumentTypeError(
            f"{', '.join(map(repr, bad))} is not a world size: give whole numbers from 1 to "
            f"{MAX_WORLD}, comma-separated, e.g. 1,2,4"
        )
    return sorted({int(n) for n in names})


def _size(text: str) -> tuple[int, int]:
    """``NxD``: N rows of D features, each 1 or more."""
    match = re.fullmatch(r"\s*([0-9]+)\s*[xX]\s*([0-9]+)\s*", text)
    if not match or not (int(match[1]) >= 1 and int(match[2]) >= 1):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: give NxD with N and D 1 or more, e.g. 200000x64"
        )
    return int(match[1]), int(match[2])


def _nonempty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name: give a run's file, name or 'latest'")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Validate and benchmark automatic-differentiation backends.",
        epilog="Exit codes: 0 all checks pass, 1 a check failed or errored, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"gradient-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    lister = sub.add_parser("list", help="backends (availability, version, devices), problems")
    lister.add_argument("--format", choices=("table", "json"), default="table")
    lister.add_argument(
        "--no-devices",
        action="store_true",
        help="skip device detection (it imports each framework in a subprocess)",
    )
    lister.add_argument(
        "--refresh",
        action="store_true",
        help="detect devices again, even if this environment's are remembered",
    )

    val = sub.add_parser("validate", help="check derivatives against oracles and across backends")
    val.add_argument(
        "-b",
        "--backend",
        type=_names,
        action="extend",
        help=f"backends to run, comma-separated (default: ${plugins.BACKENDS_ENV} or all installed)",
    )
    val.add_argument(
        "-p",
        "--problem",
        type=_names,
        action="extend",
        help="problems to run, or 'all' (default: the notebook's and the synthetic "
        "logistic loss; `list` marks them)",
    )
    val.add_argument(
        "-o",
        "--order",
        type=parse_orders,
        help="derivative orders, e.g. 1-10 (default: 1-6 float64, 1-4 float32)",
    )
    val.add_argument(
        "--dtype",
        type=_choices(DTYPES),
        action="extend",
        metavar="DTYPE",
        help=f"{', '.join(DTYPES)}, comma-separated (default: both)",
    )
    val.add_argument(
        "--mode",
        type=_choices(MODES),
        action="extend",
        metavar="MODE",
        help=f"{', '.join(MODES)} (compiled), comma-separated (default: every mode the backend offers)",
    )
    val.add_argument(
        "--strategy",
        type=_choices(tuple(STRATEGIES)),
        action="extend",
        metavar="STRATEGY",
        help=f"n-th derivative strategies: {', '.join(STRATEGIES)} (default: every "
        "one the backend offers; reverse and forward-over-reverse also name the "
        "Hessian-vector products)",
    )
    val.add_argument(
        "--device",
        type=_devices,
        action="extend",
        help="devices such as cpu or cuda:0 (default: every device detected)",
    )
    val.add_argument(
        "--format",
        choices=("table", "json", "jsonl"),
        default="table",
        help="jsonl: one check per line, written as each finishes",
    )
    val.add_argument("--output", help="write the report to this file (atomically) not stdout")
    val.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run each backend in its own process with a time limit, so a crash "
        "or hang is reported and the others go on (default: on)",
    )
    val.add_argument(
        "--timeout",
        type=_seconds,
        default=3600.0,
        help="seconds each isolated backend may take; then its process group is "
        "killed and reported as a timeout (default 3600)",
    )
    _executor_options(val)
    val.add_argument("-q", "--quiet", action="store_true", help="no live progress on the terminal")
    val.add_argument(
        "--agreement",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check backends against each other (default: on)",
    )

    cmp = sub.add_parser(
        "compare",
        help="benchmark side by side: saved runs, or a quick run on this machine",
        description="With no RUN: validate and time the installed backends here (a minute or two). "
        "RUN is a results file, or a run name (stem or unique prefix, or 'latest') "
        "in --results.",
        epilog=compare.HELP_COLUMNS,
    )
    cmp.add_argument("runs", nargs="*", metavar="RUN", type=_nonempty)
    cmp.add_argument("--results", default="results", help="folder of saved runs (default: results)")
    cmp.add_argument("--format", choices=("table", "md", "csv", "json"), default="table")
    cmp.add_argument("--baseline", metavar="RUN", type=_nonempty, help="run to compare against for --fail-on")
    cmp.add_argument(
        "--fail-on",
        default="median:10%",
        metavar="STAT:N%",
        help="with --baseline: exit 1 when STAT (median or min) is slower by more "
        "than N%% and beyond noise (default: median:10%%)",
    )
    cmp.add_argument("--plot", metavar="DIR", help="write PNG figures to DIR")
    cmp.add_argument("--save", action="store_true", help="save the quick run to --results")
    cmp.add_argument(
        "--profile",
        choices=tuple(timing.PROFILES),
        default="quick",
        help="cases for the run without RUN (default quick, a minute or two; "
        "scaling: cost against order 1-10 for every strategy, minutes to tens of minutes: "
        "torch.compile of order 9 alone took 275 s on a 2-core Xeon)",
    )
    cmp.add_argument(
        "-b",
        "--backend",
        type=_names,
        action="extend",
        help="backends for the quick run (default: all installed)",
    )
    cmp.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time each backend in its own process, one after another, with a time limit (default: on)",
    )
    cmp.add_argument(
        "--timeout",
        type=_seconds,
        default=1800.0,
        help="seconds each isolated backend may take (default 1800)",
    )
    _executor_options(cmp)
    cmp.add_argument("-q", "--quiet", action="store_true", help="no live progress on the terminal")
    cmp.add_argument("--run-to", metavar="FILE", help="also write the quick run to FILE")

    scl = sub.add_parser(
        "scale",
        help="distributed value and gradient on each framework's engine: validated, then timed",
        description="The logistic loss's value and gradient with the data sharded over each world "
        "size, on each engine (jax.sharding, jax.distributed, torch.distributed): validated "
        "against the single-device float64 closed form, then timed; speedup and efficiency are "
        "against world 1. Each world runs in its own process group with a time limit.",
    )
    scl.set_defaults(executor="local", address=None)  # its worlds run here: no --executor
    scl.add_argument(
        "-b",
        "--backend",
        type=_names,
        action="extend",
        help=f"backends, comma-separated: {', '.join(scale.ENGINES)} (default: those installed)",
    )
    scl.add_argument(
        "--engine",
        type=_choices(scale.ENGINE_NAMES),
        action="extend",
        metavar="ENGINE",
        help=f"{', '.join(scale.ENGINE_NAMES)}, comma-separated (default: every engine of the backends)",
    )
    scl.add_argument("--world", type=_worlds, default=[1, 2, 4], help="world sizes (default 1,2,4)")
    scl.add_argument(
        "--size",
        type=_size,
        default=(200_000, 64),
        metavar="NxD",
        help="N rows of D features; per process with --scaling weak (default 200000x64)",
    )
    scl.add_argument(
        "--scaling",
        choices=("strong", "weak", "both"),
        default="strong",
        help="strong: the same NxD at every world size; weak: NxD per process (default strong)",
    )
    scl.add_argument(
        "--dtype", type=_choices(DTYPES), action="extend", metavar="DTYPE", help="default float32"
    )
    scl.add_argument("--format", choices=("table", "json"), default="table")
    scl.add_argument("--save", action="store_true", help="save the timed worlds to --results")
    scl.add_argument("--results", default="results", help="folder of saved runs (default: results)")
    scl.add_argument("--plot", metavar="DIR", help="write PNG figures to DIR")
    scl.add_argument(
        "--timeout",
        type=_seconds,
        default=600.0,
        help="seconds each world may take; then its processes are killed and it is an error (default 600)",
    )
    scl.add_argument("-q", "--quiet", action="store_true", help="no live progress on the terminal")
    scl.set_defaults(isolate=True)  # a world's processes need a process group of their own

    sub.add_parser("tolerances", help="the tolerance table by dtype and order")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit codes: see the module docstring; 130 or 143 when SIGINT or SIGTERM stopped the run."""
    args = build_parser().parse_args(argv)
    try:
        _check_executor(args)
        return {
            "list": cmd_list,
            "validate": cmd_validate,
            "compare": cmd_compare,
            "scale": cmd_scale,
            "tolerances": cmd_tolerances,
        }[args.command](args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # outside a run (which reports what it finished): before or after
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


def _check_executor(args) -> None:
    executor = getattr(args, "executor", "local")
    if getattr(args, "address", None) and executor != "ray":
        raise UsageError("--address names a Ray cluster: use it with --executor ray")
    if executor == "ray" and not args.isolate:
        raise UsageError("--executor ray runs every job isolated on a node: leave out --no-isolate")


def _executor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where isolated jobs run: child processes here (local), or Ray tasks on a Ray "
        "cluster's nodes, each job isolated there the same way (ray; needs the [ray] extra). "
        "Under ray, validate's jobs are one per backend and device named with --device (a job "
        "for a cuda device asks Ray for a GPU), or one per backend checking the devices of the "
        "node it lands on; compare's benchmarks run in turn on one node (default: local)",
    )
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        type=_nonempty,
        help="with --executor ray: the head node of the cluster to join (or 'auto'); default: "
        "Ray's own, $RAY_ADDRESS, else a cluster 'ray start' started on this machine, else a "
        "new local Ray instance for this run",
    )


def cmd_list(args) -> int:
    registry = plugins.load()
    entries = list(registry.backends.values())
    devices, no_gpu, detected = (
        ({}, {}, None) if args.no_devices else harness_devices.detect(entries, args.refresh)
    )
    backends = [
        {
            "name": e.name,
            "plugin": e.plugin,
            "available": e.unavailable is None,
            "reason": e.unavailable,
            "version": e.version,
            "devices": devices.get(e.name),
            "no_gpu_reason": no_gpu.get(e.name),
            "strategies": list(e.backend.strategies),
            "modes": list(e.backend.modes),
            "dtypes": list(e.backend.dtypes),
        }
        for e in entries
    ]
    problems = [
        {"name": p.name, "kind": type(p).__name__, "default": p.default, "description": p.description}
        for p in registry.problems.values()
    ]
    errors = [{"plugin": e.plugin, "message": e.message} for e in registry.errors]
    if args.format == "json":
        print(
            json.dumps(
                {
                    "backends": backends,
                    "devices_detected": None if args.no_devices else detected or "now",
                    "problems": problems,
                    "plugin_errors": errors,
                },
                indent=2,
            )
        )
        return EXIT_OK
    rows = [
        [
            b["name"],
            b["version"] or "-",
            "yes" if b["available"] else f"no: {b['reason']}",
            b["devices"] or "-",
            " ".join(b["strategies"]),
            " ".join(b["modes"]),
        ]
        for b in backends
    ]
    print(tabulate(rows, headers=["backend", "version", "available", "devices", "strategies", "modes"]))
    for name, reason in no_gpu.items():
        print(f"\n{name} sees no GPU on this machine, which has one: {reason}")
    if detected:
        print(
            f"\ndevices as detected at {detected} in this same environment (interpreter, "
            "installed packages, GPU nodes, device variables); --refresh detects them again"
        )
    print()
    print(
        tabulate(
            [[p["name"], p["kind"], "yes" if p["default"] else "-", p["description"]] for p in problems],
            headers=["problem", "kind", "default", "description"],
        )
    )
    for error in registry.errors:
        print(f"\nbroken {error}", file=sys.stderr)
    return EXIT_OK


def cmd_validate(args) -> int:
    registry = plugins.load()
    entries = registry.select_backends(args.backend)
    chosen = registry.select_problems(args.problem)
    _check_destination(args.output)
    # Under Ray each named device is a job of its own, placed where that device is.
    per_job = [(d,) for d in args.device] if args.executor == "ray" and args.device else [_tuple(args.device)]
    jobs = [
        runner.Job(
            "validate",
            e.name,
            tuple(p.name for p in chosen),
            tuple(args.dtype or DTYPES),
            _tuple(args.mode),
            _tuple(args.strategy),
            devices,
            args.order,
        )
        for e in entries
        if not e.unavailable
        for devices in per_job
    ]
    stream = args.format == "jsonl" and not args.output

    def emit(check: Check) -> None:
        if stream:
            print(json.dumps(check.to_json(), allow_nan=False), flush=True)

    def on_stop(outcome: runner.Outcome) -> None:
        if outcome.failure:
            emit(_failure_check(registry.backends[outcome.job.backend], outcome))

    started = time.perf_counter()
    outcomes, interrupted = _run(
        jobs, registry, args, parallel=os.cpu_count() or 1, on_result=emit, on_stop=on_stop, stream=stream
    )
    checks = [  # in plan order: each backend's checks, then what stopped it, if anything did
        c
        for o in outcomes
        for c in o.results + ([_failure_check(registry.backends[o.job.backend], o)] if o.failure else [])
    ]
    agreement = list(agreement_checks(checks)) if args.agreement else []
    for check in agreement:
        emit(check)
    checks += agreement
    elapsed = time.perf_counter() - started
    missing = [
        d
        for d in args.device or ()
        if not any(c.device == d and "does not offer device" not in c.message for c in checks)
    ]
    if missing and checks and not interrupted:
        raise UsageError(
            f"no selected backend has device {', '.join(missing)} on this machine "
            "(python -m harness list shows the devices found)"
        )
    unavailable = {e.name: e.unavailable for e in entries if e.unavailable}
    errors = [str(e) for e in registry.errors]
    surprises = [] if interrupted else expected.reconcile(checks, {e.name: e.expected for e in entries})
    # Backends chosen by name must run; a broken plugin fails only an unrestricted run.
    explicit = args.backend is not None or bool(os.environ.get(plugins.BACKENDS_ENV))
    broken = bool(unavailable) if explicit else bool(errors)
    failed = (
        broken or bool(surprises) or any(c.status in ("fail", "error") and not c.expected for c in checks)
    )
    document = {
        "harness": __version__,
        "seconds": round(elapsed, 3),
        "interrupted": signal.Signals(interrupted.signum).name if interrupted else None,
        "unavailable": unavailable,
        "plugin_errors": errors,
        "surprises": surprises,
        "checks": [c.to_json() for c in checks],
    }
    if args.format == "jsonl":
        text = "\n".join(json.dumps(c.to_json(), allow_nan=False) for c in checks)
    elif args.format == "json":
        text = json.dumps(document, indent=2, allow_nan=False)
    else:
        text = _validation_text(checks, surprises, unavailable, errors, elapsed, failed)
    code = EXIT_FAIL if failed else EXIT_OK
    if args.output:
        code = _deliver(args.output, text + "\n", "validate", code)
        kept = args.output
    elif not stream:
        print(text)
    if interrupted:
        if not args.output:
            kept, _ = files.deliver(
                files.fallback_path("validate"),
                json.dumps(document, indent=2, allow_nan=False) + "\n",
                "validate",
            )
        finished = sum(len(o.results) for o in outcomes)
        print(f"interrupted: {finished} checks finished, kept in {kept}", file=sys.stderr)
        return interrupted.exit_code
    return code


def _tuple(values) -> tuple | None:
    return tuple(values) if values else None


def _failure_check(entry: plugins.BackendEntry, outcome: runner.Outcome) -> Check:
    """The one ``error`` check that says a job's process crashed, timed out or failed."""
    classification, message = outcome.failure
    return Check(
        entry.name,
        entry.version,
        "-",
        "-",
        "-",
        "-",
        "-",
        0,
        "-",
        "error",
        classification=classification,
        message=message,
        seconds=round(outcome.seconds, 3),
    )


def _validation_text(checks, surprises, unavailable, errors, elapsed, failed) -> str:
    parts = [report.summary(checks)] if checks else ["no checks ran"]
    parts += [report.mismatch(c) for c in checks if c.status in ("fail", "error")]
    parts += [f"surprise: {s}" for s in surprises]
    parts += [f"unavailable: {name}: {why}" for name, why in unavailable.items()]
    parts += [f"broken {e}" for e in errors]
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    known = sum(c.expected for c in checks)
    parts.append(
        ", ".join(f"{n} {s}" for s, n in counts.items())
        + (f" ({known} of them expected)" if known else "")
        + f" in {elapsed:.1f} s"
        + (": FAILED" if failed else ": all as expected" if known else ": all passed")
    )
    return "\n\n".join(parts)


def _run(jobs, registry, args, *, parallel: int, on_result=None, on_stop=None, stream=False):
    """(outcomes, `runner.Interrupted` or None): the jobs run with live progress on a terminal."""
    display = progress.Display(progress.Display.wanted(args.quiet, stream))

    def listener(outcome: runner.Outcome, event: tuple) -> None:
        display(outcome, event)
        if event[0] == "result" and on_result:
            on_result(event[1])
        elif event[0] == "stop" and on_stop:
            on_stop(outcome)

    with display:
        try:
            return runner.run(
                jobs,
                registry,
                isolate=args.isolate,
                timeout=args.timeout,
                parallel=parallel,
                listener=listener,
                executor=args.executor,
                address=args.address,
            ), None
        except runner.Interrupted as exc:
            return exc.outcomes, exc
        except ray_executor.RayUnavailable as exc:
            raise UsageError(str(exc)) from None


def _check_destination(path, *, folder: bool = False) -> None:
    """A usage error, before any work, if ``path`` cannot be written."""
    if path is None:
        return
    why = files.unwritable(path, folder=folder)
    if why:
        raise UsageError(f"cannot write {'to folder ' if folder else ''}{path}: {why}")


def _deliver(path, text: str, kind: str, code: int, *, overwrite: bool = True) -> int:
    """Write ``text`` to ``path`` or, failing that, to a named fallback file; the exit code."""
    where, why = files.deliver(path, text, kind, overwrite=overwrite)
    if why:
        print(f"error: could not write {path} ({why}); the run is kept in {where}", file=sys.stderr)
        return EXIT_FAIL
    return code


def _benchmark_here(args, registry) -> tuple[dict | None, bool, runner.Interrupted | None]:
    """The quick run of ``compare`` without RUN: (the run, or None if nothing was timed, whether
    a backend failed, the interrupt). Backends are timed one after another, each isolated when
    it can be (side by side they would slow each other)."""
    entries = registry.select_backends(args.backend)
    jobs = [runner.Job("benchmark", e.name, profile=args.profile) for e in entries if not e.unavailable]
    unavailable = [f"{e.name}: {e.unavailable}" for e in entries if e.unavailable]
    outcomes, interrupted = _run(jobs, registry, args, parallel=1)
    failed = False
    for outcome in outcomes:
        if outcome.failure:
            print(f"error: {outcome.job.backend}: {outcome.failure[1]}", file=sys.stderr)
            failed = True
    benchmarks = [b for o in outcomes for b in o.results]
    if not benchmarks:
        why = "; ".join(unavailable) or "every case failed or was interrupted (see above)"
        print(f"error: no case was timed, so no run is saved: {why}", file=sys.stderr)
        return None, True, interrupted
    machine = next((o.machine for o in outcomes if o.machine), {})
    return runs.document(benchmarks, machine), failed, interrupted


def cmd_compare(args) -> int:
    folder = Path(args.results)
    try:
        stat, threshold = compare.parse_threshold(args.fail_on)
        paths = runs.resolve(args.runs, folder)
        base_path = runs.resolve([args.baseline], folder)[0] if args.baseline else None
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    _check_destination(args.plot, folder=True)
    if not paths:
        _check_destination(args.run_to)
        if args.save:
            _check_destination(folder, folder=True)
    failed = False
    rows: list[runs.Row] = []
    if not paths:
        registry = plugins.load()
        run, failed, interrupted = _benchmark_here(args, registry)
        if run is None:
            return interrupted.exit_code if interrupted else EXIT_FAIL
        text = runs.text(run)
        if interrupted:
            kept, _ = files.deliver(files.fallback_path("compare"), text, "compare", overwrite=False)
            print(
                f"interrupted: {len(run['benchmarks'])} benchmarks finished, kept in {kept}", file=sys.stderr
            )
            paths = [kept]
        else:
            code = EXIT_OK
            if args.run_to:
                code = _deliver(args.run_to, text, "compare", code)
            if args.save:
                name = folder / runs.file_name(args.profile)
                where, why = files.deliver(name, text, "compare", overwrite=False)
                if why:
                    print(
                        f"error: could not write {name} ({why}); the run is kept in {where}", file=sys.stderr
                    )
                    code = EXIT_FAIL
                else:
                    print(f"saved this run to {where}", file=sys.stderr)
                paths = [where]
            else:
                with tempfile.TemporaryDirectory() as scratch:  # read back as a saved run would be
                    rows += runs.load(files.write_text(Path(scratch) / f"{args.profile}.json", text))
            failed = failed or code != EXIT_OK
    else:
        interrupted = None
    for path in paths:
        try:
            rows += runs.load(path)
        except runs.RunError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
    if rows:
        print(compare.table(rows, args.format))
        fits = compare.growth(rows, args.format) if args.format in ("table", "md") else ""
        if fits:
            print(f"\ncost growth per derivative order (fit over validated orders):\n\n{fits}")
        clocks = compare.fidelity(rows, args.format) if args.format in ("table", "md") else ""
        if clocks:
            print(f"\nthe harness's timing over the device's own clock, same calls:\n\n{clocks}")
        if args.format == "table":
            print(f"\n{compare.legend()}")
    if interrupted:
        return interrupted.exit_code
    invalid = [r for r in rows if not r.validated]
    failed = failed or bool(invalid) or not rows
    if args.plot and rows:
        for path in compare.plot(rows, Path(args.plot)):
            print(f"wrote {path}", file=sys.stderr)
    if base_path is not None:
        try:
            slower = compare.regressions(rows, runs.load(base_path), stat, threshold)
        except runs.RunError as exc:
            raise UsageError(f"baseline {exc}") from None
        for line in slower:
            print(f"REGRESSION {line}", file=sys.stderr)
        print(f"{len(slower)} regression(s) beyond {args.fail_on} against {base_path.stem}", file=sys.stderr)
        failed = failed or bool(slower)
    return EXIT_FAIL if failed else EXIT_OK


def cmd_tolerances(args) -> int:
    print(report.tolerance_table())
    return EXIT_OK


def cmd_scale(args) -> int:
    registry = plugins.load()
    entries, engines = scale.select(registry, args.backend, args.engine)
    scalings = scale.SCALINGS if args.scaling == "both" else (args.scaling,)
    jobs = scale.jobs(
        [e for e in entries if not e.unavailable],
        engines,
        args.world,
        args.size,
        scalings,
        list(dict.fromkeys(args.dtype or ["float32"])),
    )
    _check_destination(args.plot, folder=True)
    if args.save:
        _check_destination(args.results, folder=True)
    unavailable = {e.name: e.unavailable for e in entries if e.unavailable}
    started = time.perf_counter()
    outcomes, interrupted = _run(jobs, registry, args, parallel=1)
    found = scale.records(outcomes, registry)
    elapsed = time.perf_counter() - started
    explicit = args.backend is not None or args.engine is not None  # named: must run
    failed = any(r.status != "pass" for r in found) or (explicit and bool(unavailable)) or not found
    document = {
        "harness": __version__,
        "seconds": round(elapsed, 3),
        "interrupted": signal.Signals(interrupted.signum).name if interrupted else None,
        "unavailable": unavailable,
        "records": [r.to_json() for r in found],
    }
    if args.format == "json":
        print(json.dumps(document, indent=2, allow_nan=False))
    else:
        verdict = "interrupted" if interrupted else "FAILED" if failed else "all passed"
        print(_scale_text(found, unavailable, elapsed, verdict))
    if interrupted:
        kept, _ = files.deliver(
            files.fallback_path("scale"), json.dumps(document, indent=2, allow_nan=False) + "\n", "scale"
        )
        print(f"interrupted: {len(found)} worlds finished, kept in {kept}", file=sys.stderr)
        return interrupted.exit_code
    code = EXIT_FAIL if failed else EXIT_OK
    timed = [r.benchmark() for r in found if r.status == "pass" and r.times]
    if (args.save or args.plot) and not timed:
        print("error: no world was timed, so there is nothing to save or plot", file=sys.stderr)
        return EXIT_FAIL
    if not (args.save or args.plot):
        return code
    from harness import machine

    text = runs.text(runs.document(timed, machine.info()))
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "scale.json"
        if args.save:
            name = Path(args.results) / runs.file_name("scale")
            path, why = files.deliver(name, text, "scale", overwrite=False)
            if why:
                print(f"error: could not write {name} ({why}); the run is kept in {path}", file=sys.stderr)
                code = EXIT_FAIL
            else:
                print(f"saved this run to {path}", file=sys.stderr)
        else:
            files.write_text(path, text)
        if args.plot:
            for written in compare.plot(runs.load(path), Path(args.plot)):
                print(f"wrote {written}", file=sys.stderr)
    return code


def _scale_text(found: list[scale.Record], unavailable: dict, elapsed: float, verdict: str) -> str:
    """The records as a table, what went wrong, and a summary ending in ``verdict``."""

    def number(value, form):
        return "-" if value is None else format(value, form)

    body = [
        [
            r.backend,
            r.engine,
            r.scaling,
            r.world,
            r.processes,
            r.devices,
            "x".join(map(str, r.size)),
            r.dtype,
            r.status,
            number(r.max_rel_err, ".1e"),
            compare._time(r.median_s),
            number(r.speedup, ".2f"),
            number(r.efficiency, ".0%"),
        ]
        for r in found
    ]
    headers = ["backend", "engine", "scaling", "world", "procs", "devices", "N x D", "dtype", "status"]
    headers += ["max rel err", "median/step", "speedup", "efficiency"]
    parts = [tabulate(body, headers=headers, disable_numparse=True)] if found else ["no world ran"]
    parts += [
        f"{r.status}: {r.backend} {r.engine} world {r.world} {r.dtype}: {r.message}"
        for r in found
        if r.status != "pass"
    ]
    parts += [f"unavailable: {name}: {why}" for name, why in unavailable.items()]
    counts = ", ".join(f"{sum(r.status == s for r in found)} {s}" for s in scale.STATUSES)
    parts.append(
        f"{counts} in {elapsed:.1f} s: {verdict}\n"
        "speedup: rows per second over world 1's; efficiency: speedup / world "
        "(on one machine the world's devices or processes share its cores)"
    )
    return "\n\n".join(parts)
