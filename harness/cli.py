"""``python -m harness``: list backends and problems, validate derivatives, compare benchmarks.

Exit codes: 0 everything passed (``unsupported`` is not a failure), 1 a check
failed or errored, 2 a usage error (unknown name, bad order, ...).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

from tabulate import tabulate

from harness import (
    __version__,
    compare,
    expected,
    files,
    isolation,
    plugins,
    report,
    timing,
    validate,
)
from harness.plugins import DTYPES, MODES, UsageError
from harness.strategies import STRATEGIES

MAX_ORDER = 30
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def parse_orders(text: str) -> tuple[int, ...]:
    """``"1-6"``, ``"2,4"`` or ``"3"`` as a tuple of derivative orders in 1..MAX_ORDER."""
    try:
        return tuple(sorted(expected.parse_orders(text, MAX_ORDER)))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _devices(text: str) -> list[str]:
    """Device names: ``cpu``, ``cuda`` or ``cuda:N``."""
    names = _names(text)
    bad = [n for n in names if not re.fullmatch(r"cpu|cuda(:\d+)?", n)]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown device {', '.join(map(repr, bad))}; use cpu, cuda or cuda:N")
    return [n if n != "cuda" else "cuda:0" for n in names]


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _choices(allowed):
    def parse(text: str) -> list[str]:
        names = _names(text)
        bad = [n for n in names if n not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, bad))}; choose from {', '.join(allowed)}")
        return names
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Validate and benchmark automatic-differentiation backends.",
        epilog="Exit codes: 0 all checks pass, 1 a check failed or errored, 2 usage error.")
    parser.add_argument("--version", action="version", version=f"gradient-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    lister = sub.add_parser("list", help="backends (availability, version, devices), problems")
    lister.add_argument("--format", choices=("table", "json"), default="table")
    lister.add_argument("--no-devices", action="store_true",
                        help="skip device detection (it imports each framework in a subprocess)")

    val = sub.add_parser("validate", help="check derivatives against oracles and across backends")
    val.add_argument("-b", "--backend", type=_names, action="extend",
                     help=f"backends to run, comma-separated (default: ${plugins.BACKENDS_ENV} "
                          "or all installed)")
    val.add_argument("-p", "--problem", type=_names, action="extend",
                     help="problems to run, or 'all' (default: the notebook's and the synthetic "
                          "logistic loss; `list` marks them)")
    val.add_argument("-o", "--order", type=parse_orders,
                     help="derivative orders, e.g. 1-10 (default: 1-6 float64, 1-4 float32)")
    val.add_argument("--dtype", type=_choices(DTYPES), action="extend")
    val.add_argument("--mode", type=_choices(MODES), action="extend")
    val.add_argument("--strategy", type=_choices(tuple(STRATEGIES)), action="extend")
    val.add_argument("--device", type=_devices, action="extend",
                     help="devices such as cpu or cuda:0 (default: every device detected)")
    val.add_argument("--format", choices=("table", "json", "jsonl"), default="table",
                     help="jsonl: one check per line, written as each finishes")
    val.add_argument("--output", help="write the report to this file (atomically) not stdout")
    val.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                     help="run each backend in its own process with a time limit, so a crash "
                          "or hang is reported and the others go on (default: on)")
    val.add_argument("--timeout", type=float, default=3600.0,
                     help="seconds each isolated backend may take (default 3600)")
    val.add_argument("--agreement", action=argparse.BooleanOptionalAction, default=True,
                     help="check backends against each other (default: on)")

    cmp = sub.add_parser(
        "compare", help="benchmark side by side: saved runs, or a quick run on this machine",
        description="With no RUN: validate and time the installed backends here (about a minute). "
                    "RUN is a results file, or a run name (stem or unique prefix, or 'latest') "
                    "in --results.")
    cmp.add_argument("runs", nargs="*", metavar="RUN")
    cmp.add_argument("--results", default="results", help="folder of saved runs (default: results)")
    cmp.add_argument("--format", choices=("table", "md", "csv", "json"), default="table")
    cmp.add_argument("--baseline", metavar="RUN", help="run to compare against for --fail-on")
    cmp.add_argument("--fail-on", default="median:10%", metavar="STAT:N%",
                     help="with --baseline: exit 1 when STAT (median or min) is slower by more "
                          "than N%% and beyond noise (default: median:10%%)")
    cmp.add_argument("--plot", metavar="DIR", help="write PNG figures to DIR")
    cmp.add_argument("--save", action="store_true", help="save the quick run to --results")
    cmp.add_argument("--profile", choices=tuple(timing.PROFILES), default="quick",
                     help="cases for the run without RUN (default quick, about a minute; "
                          "scaling: cost against order 1-10 for every strategy, a few minutes)")
    cmp.add_argument("-b", "--backend", type=_names, action="extend",
                     help="backends for the quick run (default: all installed)")
    cmp.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                     help="time each backend in its own process, one after another, with a "
                          "time limit (default: on)")
    cmp.add_argument("--timeout", type=float, default=1800.0,
                     help="seconds each isolated backend may take (default 1800)")
    cmp.add_argument("--run-to", metavar="FILE", help="also write the quick run to FILE")

    sub.add_parser("tolerances", help="the tolerance table by dtype and order")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"list": cmd_list, "validate": cmd_validate, "compare": cmd_compare,
                "tolerances": cmd_tolerances}[args.command](args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _probe_devices(name: str) -> list[str]:
    """Run in a subprocess: import the framework and detect its devices."""
    return plugins.load().backends[name].backend.devices()


def detect_devices(entries: list[plugins.BackendEntry]) -> dict[str, str]:
    """Each available backend's devices, found in child processes so this one imports no framework."""
    found = {}
    available = [e.name for e in entries if not e.unavailable]
    if not available:
        return found
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(available), mp_context=context) as pool:
        futures = {name: pool.submit(_probe_devices, name) for name in available}
        for name, future in futures.items():
            try:
                found[name] = ", ".join(future.result(timeout=120))
            except Exception as exc:
                found[name] = f"error: {type(exc).__name__}: {exc}"
    return found


def cmd_list(args) -> int:
    registry = plugins.load()
    entries = list(registry.backends.values())
    devices = {} if args.no_devices else detect_devices(entries)
    backends = [{
        "name": e.name, "plugin": e.plugin, "available": e.unavailable is None,
        "reason": e.unavailable, "version": e.version, "devices": devices.get(e.name),
        "strategies": list(e.backend.strategies), "modes": list(e.backend.modes),
        "dtypes": list(e.backend.dtypes),
    } for e in entries]
    problems = [{"name": p.name, "kind": type(p).__name__, "default": p.default,
                 "description": p.description} for p in registry.problems.values()]
    errors = [{"plugin": e.plugin, "message": e.message} for e in registry.errors]
    if args.format == "json":
        print(json.dumps({"backends": backends, "problems": problems, "plugin_errors": errors},
                         indent=2))
        return EXIT_OK
    rows = [[b["name"], b["version"] or "-",
             "yes" if b["available"] else f"no: {b['reason']}",
             b["devices"] or "-", " ".join(b["strategies"]), " ".join(b["modes"])]
            for b in backends]
    print(tabulate(rows, headers=["backend", "version", "available", "devices", "strategies",
                                  "modes"]))
    print()
    print(tabulate([[p["name"], p["kind"], "yes" if p["default"] else "-", p["description"]]
                    for p in problems], headers=["problem", "kind", "default", "description"]))
    for error in registry.errors:
        print(f"\nbroken {error}", file=sys.stderr)
    return EXIT_OK


def cmd_validate(args) -> int:
    registry = plugins.load()
    entries = registry.select_backends(args.backend)
    plan = validate.Plan(
        backends=entries,
        problems=registry.select_problems(args.problem),
        dtypes=tuple(args.dtype or DTYPES),
        modes=tuple(args.mode) if args.mode else None,
        strategies=tuple(args.strategy) if args.strategy else None,
        devices=tuple(args.device) if args.device else None,
        orders=args.order,
    )
    started = time.perf_counter()
    checks = _run_checks(args, registry, plan)
    if args.agreement:
        checks += list(validate.agreement(checks))
    elapsed = time.perf_counter() - started
    if args.format == "jsonl" and not args.output:
        return EXIT_OK  # streamed as they finished: the caller judges them
    missing = [d for d in args.device or () if not any(
        c.device == d and "does not offer device" not in c.message for c in checks)]
    if missing and checks:
        raise UsageError(f"no selected backend has device {', '.join(missing)} on this machine "
                         "(python -m harness list shows the devices found)")
    unavailable = {e.name: e.unavailable for e in entries if e.unavailable}
    errors = [str(e) for e in registry.errors]
    surprises = expected.reconcile(checks, {e.name: e.expected for e in entries})
    # Backends chosen by name must run; a broken plugin fails only an unrestricted run.
    explicit = args.backend is not None or bool(os.environ.get(plugins.BACKENDS_ENV))
    broken = bool(unavailable) if explicit else bool(errors)
    failed = (broken or bool(surprises)
              or any(c.status in ("fail", "error") and not c.expected for c in checks))

    if args.format == "jsonl":
        text = "\n".join(json.dumps(c.to_json()) for c in checks)
    elif args.format == "json":
        text = json.dumps({
            "harness": __version__, "seconds": round(elapsed, 3),
            "unavailable": unavailable, "plugin_errors": errors, "surprises": surprises,
            "checks": [c.to_json() for c in checks],
        }, indent=2)
    else:
        parts = [report.summary(checks)] if checks else ["no checks ran"]
        parts += [report.mismatch(c) for c in checks if c.status in ("fail", "error")]
        parts += [f"surprise: {s}" for s in surprises]
        parts += [f"unavailable: {name}: {why}" for name, why in unavailable.items()]
        parts += [f"broken {e}" for e in errors]
        counts = {s: sum(c.status == s for c in checks) for s in validate.STATUSES}
        known = sum(c.expected for c in checks)
        parts.append(", ".join(f"{n} {s}" for s, n in counts.items())
                     + (f" ({known} of them expected)" if known else "")
                     + f" in {elapsed:.1f} s"
                     + (": FAILED" if failed else ": all as expected" if known else ": all passed"))
        text = "\n\n".join(parts)
    if args.output:
        if args.format == "json":
            files.write_json(args.output, json.loads(text))
        else:
            files.write_text(args.output, text + "\n")
    else:
        print(text)
    return EXIT_FAIL if failed else EXIT_OK


def _run_checks(args, registry: plugins.Registry, plan: validate.Plan) -> list[validate.Check]:
    """Every selected backend's checks: in child processes where it can be isolated (side by
    side), else here; in plan order either way. ``--format jsonl`` to stdout streams them."""
    options = []
    for flag, values in (("--problem", args.problem), ("--dtype", args.dtype),
                         ("--mode", args.mode), ("--strategy", args.strategy),
                         ("--device", args.device), ("--order", args.order)):
        if values:
            options += [flag, ",".join(map(str, values))]
    isolated = [e for e in plan.backends
                if args.isolate and not e.unavailable and e.plugin in registry.loadable]
    stream = args.format == "jsonl" and not args.output
    per_backend: dict[str, list[validate.Check]] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(len(isolated), os.cpu_count() or 1))) as pool:
        futures = {e.name: pool.submit(isolation.validate_in_child, e, options, args.timeout)
                   for e in isolated}
        for entry in plan.backends:
            if entry.name not in futures:
                per_backend[entry.name] = []
                for check in validate.backend_checks(entry, plan):
                    per_backend[entry.name].append(check)
                    if stream:
                        print(json.dumps(check.to_json()), flush=True)
        for name, future in futures.items():
            per_backend[name] = future.result()
            if stream:
                for check in per_backend[name]:
                    print(json.dumps(check.to_json()), flush=True)
    return [c for e in plan.backends for c in per_backend[e.name]]


def _benchmark_here(args) -> tuple[dict, bool]:
    """The quick run of ``compare`` without RUN: each isolatable backend in its own process,
    one after another (side by side they would slow each other); the others here."""
    log = partial(print, file=sys.stderr)
    registry = plugins.load()
    spec = timing.PROFILES[args.profile]
    runs, here, failed = [], [], False
    for entry in registry.select_backends(args.backend):
        if args.isolate and not entry.unavailable and entry.plugin in registry.loadable:
            run, problem = isolation.benchmark_in_child(entry, args.profile, args.timeout)
            if problem:
                log(f"error: {entry.name}: {problem}")
                failed = True
            runs += [run] if run else []
        else:
            here.append(entry)
    if here or not runs:
        runs.append(timing.run(timing.cases(here, args.profile), spec["budget"], log,
                               spec.get("min_rounds", timing.MIN_ROUNDS)))
    return timing.merge(runs), failed


def cmd_compare(args) -> int:
    folder = Path(args.results)
    try:
        stat, threshold = compare.parse_threshold(args.fail_on)
        paths = compare.resolve(args.runs, folder)
        base_path = compare.resolve([args.baseline], folder)[0] if args.baseline else None
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    failed = False
    rows: list[compare.Row] = []
    if not paths:
        run, failed = _benchmark_here(args)
        if args.run_to:
            files.write_json(args.run_to, run)
        if args.save:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            name = f"{stamp}_{args.profile}_{uuid.uuid4().hex[:8]}.json"
            path = files.write_json(folder / name, run, overwrite=False)
            print(f"saved this run to {path}", file=sys.stderr)
            paths = [path]
        else:
            with tempfile.TemporaryDirectory() as folder:  # read back as a saved run would be
                rows += compare.load(files.write_json(Path(folder) / f"{args.profile}.json", run))
    for path in paths:
        try:
            rows += compare.load(path)
        except compare.RunError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
    if rows:
        print(compare.table(rows, args.format))
        fits = compare.growth(rows, args.format) if args.format in ("table", "md") else ""
        if fits:
            print(f"\ncost growth per derivative order (fit over validated orders):\n\n{fits}")
    invalid = [r for r in rows if not r.validated]
    failed = failed or bool(invalid) or not rows
    if args.plot and rows:
        for path in compare.plot(rows, Path(args.plot)):
            print(f"wrote {path}", file=sys.stderr)
    if base_path is not None:
        try:
            slower = compare.regressions(rows, compare.load(base_path), stat, threshold)
        except compare.RunError as exc:
            raise UsageError(f"baseline {exc}") from None
        for line in slower:
            print(f"REGRESSION {line}", file=sys.stderr)
        print(f"{len(slower)} regression(s) beyond {args.fail_on} against {base_path.stem}",
              file=sys.stderr)
        failed = failed or bool(slower)
    return EXIT_FAIL if failed else EXIT_OK


def cmd_tolerances(args) -> int:
    print(report.tolerance_table())
    return EXIT_OK
