"""``validate``: check derivatives against oracles and across backends."""

from __future__ import annotations

import argparse
import json
import os
import sys

from harness import plugins
from harness.cli import options
from harness.cli.output import EXIT_FAIL, EXIT_OK, check_destination, deliver
from harness.cli.running import pool, run_with_progress
from harness.errors import UsageError
from harness.hookspecs import DTYPES, MODES, STRATEGIES
from harness.jobs import Interrupted, Job, Outcome
from harness.problem_files import registry_with
from harness.results import files
from harness.strategies import NESTED_PAIRS
from harness.validation import session
from harness.validation.verdicts import Check, head


def add_parser(sub) -> None:
    val = sub.add_parser("validate", help="check derivatives against oracles and across backends")
    options.add_backends(val)
    val.add_argument(
        "-p",
        "--problem",
        type=options.names,
        action="extend",
        help="problems to run, or 'all' (default: the notebook's and the synthetic "
        "logistic loss, and every problem of --problems; `list` marks them)",
    )
    options.add_problem_files(val)
    val.add_argument(
        "-o",
        "--order",
        type=options.parse_orders,
        help="derivative orders, e.g. 1-10 (default: 1-6 float64, 1-4 float32)",
    )
    val.add_argument(
        "--dtype",
        type=options.choices(DTYPES),
        action="extend",
        metavar="DTYPE",
        help=f"{', '.join(DTYPES)}, comma-separated (default: both)",
    )
    val.add_argument(
        "--mode",
        type=options.choices(MODES),
        action="extend",
        metavar="MODE",
        help=f"{', '.join(MODES)} (compiled), comma-separated (default: every mode the backend offers)",
    )
    val.add_argument(
        "--strategy",
        type=options.choices(tuple(STRATEGIES) + NESTED_PAIRS),
        action="extend",
        metavar="STRATEGY",
        help=f"n-th derivative strategies: {', '.join(STRATEGIES)} (default: every "
        "one the backend offers; reverse and forward-over-reverse also name the "
        f"Hessian-vector products); {', '.join(NESTED_PAIRS)}: the mode pairs (outer, inner) "
        "of nested problems (particle, saddle)",
    )
    val.add_argument(
        "--device",
        type=options.devices,
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
    options.add_jobs(
        val,
        "run each backend in its own process with a time limit, so a crash "
        "or hang is reported and the others go on",
        3600.0,
        "seconds each isolated job (a backend in one dtype) may take; then its process group is killed "
        "and reported as a timeout",
    )
    val.add_argument(
        "--agreement",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check backends against each other (default: on)",
    )
    val.set_defaults(handler=from_args)


def from_args(args) -> int:
    return validate(
        backends=args.backend,
        problems=args.problem,
        problem_files=tuple(args.problems or ()),
        orders=args.order,
        dtypes=args.dtype,
        modes=args.mode,
        strategies=args.strategy,
        devices=args.device,
        fmt=args.format,
        output=args.output,
        isolate=args.isolate,
        timeout=args.timeout,
        executor=args.executor,
        address=args.address,
        quiet=args.quiet,
        agreement=args.agreement,
    )


def validate(
    *,
    backends,
    problems,
    orders,
    dtypes,
    modes,
    strategies,
    devices,
    fmt: str,
    output: str | None,
    isolate: bool,
    timeout: float,
    executor: str,
    address: str | None,
    quiet: bool,
    agreement: bool,
    problem_files: tuple[str, ...] = (),
) -> int:
    registry = registry_with(problem_files)
    jobs_pool = pool(executor, address, timeout, os.cpu_count() or 1, isolate, _heaviest_first(registry))
    entries = registry.select_backends(backends)
    chosen = registry.select_problems(problems)
    if problems is None and problem_files:  # the file's problems run, default or not
        chosen += [p for p in registry.problems.values() if registry.origins[p.name] in problem_files]
        chosen = list({p.name: p for p in chosen}.values())
    check_destination(output, "--output")
    # Under Ray each named device is a job of its own, placed where that device is.
    per_job = [(d,) for d in devices] if executor == "ray" and devices else [options.as_tuple(devices)]
    # A job per dtype, too: two children per backend share the cores (`_heaviest_first`), and a
    # backend's checks keep their order (dtype is the outer loop of a backend's plan).
    per_dtype = [(d,) for d in dtypes or DTYPES] if isolate else [tuple(dtypes or DTYPES)]
    jobs = [
        Job(
            "validate",
            e.name,
            problems=tuple(p.name for p in chosen),
            dtypes=job_dtypes,
            modes=options.as_tuple(modes),
            strategies=options.as_tuple(strategies),
            devices=job_devices,
            orders=orders,
            problem_files=problem_files,
        )
        for e in entries
        if not e.unavailable
        for job_devices in per_job
        for job_dtypes in per_dtype
    ]
    stream = fmt == "jsonl" and not output

    def emit(check: Check) -> None:
        if stream:
            print(json.dumps(check.to_json(), allow_nan=False), flush=True)

    def run(on_check) -> tuple[list[Check], Interrupted | None]:
        def on_stop(outcome: Outcome) -> None:
            if outcome.failure:
                on_check(_failure_check(registry.backends[outcome.job.backend], outcome))

        outcomes, interrupted = run_with_progress(
            jobs, registry, jobs_pool, isolate=isolate, quiet=quiet, on_result=on_check, on_stop=on_stop,
            stream=stream,
        )  # fmt: skip
        return [  # in plan order: each backend's checks, then what stopped it, if anything did
            c
            for o in outcomes
            for c in o.results + ([_failure_check(registry.backends[o.job.backend], o)] if o.failure else [])
        ], interrupted

    found = session.validate(
        run,
        emit=emit,
        agreement=agreement,
        expectations={e.name: e.expected for e in entries},
        unavailable={e.name: e.unavailable for e in entries if e.unavailable},
        plugin_errors=[str(e) for e in registry.errors],
        # Backends chosen by name must run; a broken plugin fails only an unrestricted run.
        strict=backends is not None or bool(os.environ.get(plugins.BACKENDS_ENV)),
    )
    checks = found.checks
    missing = [
        d
        for d in devices or ()
        if not any(c.device == d and "does not offer device" not in c.message for c in checks)
    ]
    if missing and checks and not found.interrupted:
        raise UsageError(
            f"no selected backend has device {', '.join(missing)} on this machine "
            "(python -m harness list shows the devices found)"
        )
    text = found.render(fmt)
    code = EXIT_FAIL if found.failed else EXIT_OK
    if output:
        code = deliver(output, text + "\n", "validate", code)
        kept = output
    elif not stream:
        print(text)
    if found.interrupted:
        if not output:
            document = json.dumps(found.document(), indent=2, allow_nan=False)
            kept, _ = files.write_with_fallback(files.fallback_path("validate"), document + "\n", "validate")
        print(f"interrupted: {len(checks)} checks finished, kept in {kept}", file=sys.stderr)
        return found.interrupted.exit_code
    return code


def _heaviest_first(registry: plugins.Registry):
    """Start backends with more modes first, and of each its float64 job (more orders, and the
    self-consistency oracle) first: a compiled mode is most of a backend's time (JAX's XLA
    compiles, TorchDynamo's traces: `scripts/profile-validate.py`), so the light ones fill in
    beside the heavy ones rather than delay them."""

    def key(job: Job) -> tuple[int, bool]:
        modes = len(getattr(registry.backends[job.backend].backend, "modes", ()))
        return -modes, "float64" not in job.dtypes

    return key


def _failure_check(entry: plugins.BackendEntry, outcome: Outcome) -> Check:
    """The one ``error`` check that says a job's process crashed, timed out or failed."""
    classification, message = outcome.failure
    dtype = outcome.job.dtypes[0] if len(outcome.job.dtypes) == 1 else "-"  # a job per dtype
    unknown = dict(device="-", dtype=dtype, mode="-", strategy="-", problem="-")
    return head(backend=entry.name, version=entry.version, **unknown)(
        0, "-", "error", classification=classification, message=message, seconds=round(outcome.seconds, 3)
    )
