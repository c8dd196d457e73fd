"""``compare``: saved runs side by side, or a quick validated run on this machine; the
regression gate against a baseline."""

from __future__ import annotations

import sys
from pathlib import Path

from harness import problem_files
from harness.benchmark import cases, measure
from harness.cli import options
from harness.cli.output import (
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    check_destination,
    deliver,
    write_figures,
)
from harness.cli.running import pool, run_with_progress
from harness.errors import RunError, UsageError
from harness.jobs import Interrupted, Job
from harness.results import compare, files, gate, runs, soundness


def add_parser(sub) -> None:
    cmp = sub.add_parser(
        "compare",
        help="benchmark side by side: saved runs, or a quick run on this machine",
        description="With no RUN: validate and time the installed backends here (a minute or two). "
        "RUN is a results file, or a run name (stem or unique prefix, or 'latest') "
        "in --results.",
        epilog=compare.HELP_COLUMNS,
    )
    cmp.add_argument("runs", nargs="*", metavar="RUN", type=options.run_name)
    options.add_results_folder(cmp)
    cmp.add_argument("--format", choices=("table", "md", "csv", "json"), default="table")
    cmp.add_argument(
        "--baseline", metavar="RUN", type=options.run_name, help="run to compare against for --fail-on"
    )
    cmp.add_argument(
        "--fail-on",
        default=None,
        metavar="STAT:N%",
        help="with --baseline: exit 1 when STAT (median or min) is slower by more "
        "than N%% and beyond noise (default: median:10%%); rows flagged on either side are "
        "inconclusive, listed apart: exit 3 when there is no regression but some are",
    )
    options.add_plot(cmp)
    cmp.add_argument("--save", action="store_true", help="save the quick run to --results")
    cmp.add_argument(
        "--profile",
        choices=tuple(cases.PROFILES),
        default="quick",
        help="cases for the run without RUN (default quick, a minute or two; "
        "scaling: cost against order 1-10 for every strategy, minutes to tens of minutes: "
        "torch.compile of order 9 alone took 275 s on a 2-core Xeon)",
    )
    options.add_backends(cmp, "backends for the quick run (default: all installed)")
    options.add_problem_files(cmp)
    options.add_jobs(
        cmp,
        "time each backend in its own process, one after another, with a time limit",
        1800.0,
        "seconds each isolated backend may take",
    )
    cmp.add_argument("--run-to", metavar="FILE", help="also write the quick run to FILE")
    cmp.add_argument(
        "--passes",
        type=options.positive_int,
        default=1,
        metavar="N",
        help="time the backends in N interleaved passes (each backend's cases in turn, N times "
        "over, each with 1/N of the time budget; rounds pooled), so that a load that changes "
        "mid-run weighs on every backend alike; each pass starts the backend afresh (default 1)",
    )
    cmp.add_argument(
        "--threads",
        type=options.positive_int,
        default=None,
        metavar="N",
        help="give every backend N intra-op threads (the fair comparison on a shared machine; "
        "default: each framework's own choice); recorded with the run",
    )
    cmp.set_defaults(handler=from_args)


def from_args(args) -> int:
    folder = Path(args.results)
    if args.fail_on is not None and args.baseline is None:
        raise UsageError("--fail-on sets the gate against --baseline: give --baseline RUN too")
    if args.runs:  # options of the quick run mean nothing for saved runs: refuse, do not ignore
        quick = {
            "--save": args.save,
            "--run-to": args.run_to,
            "--backend": args.backend,
            "--threads": args.threads,
            "--passes": args.passes != 1,
            "--problems": args.problems,
        }
        given = [name for name, value in quick.items() if value]
        if given:
            raise UsageError(
                f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for the quick run on this "
                "machine, not for saved runs (RUN): leave out the RUNs or those options"
            )
    fail_on = "median:10%" if args.fail_on is None else args.fail_on  # an empty rule is refused below
    try:
        gate.parse_threshold(fail_on)  # a usage error before any work
        paths = runs.resolve(args.runs, folder)
        baseline = runs.resolve([args.baseline], folder)[0] if args.baseline else None
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    check_destination(args.plot, "--plot", folder=True)
    if paths:
        return compare_runs(paths, fmt=args.format, plot=args.plot, baseline=baseline, fail_on=fail_on)
    check_destination(args.run_to, "--run-to")
    if args.save:
        check_destination(folder, "--results", folder=True)
    jobs_pool = pool(args.executor, args.address, args.timeout, 1, args.isolate)
    return compare_here(
        backends=args.backend,
        problem_specs=tuple(args.problems or ()),
        profile=args.profile,
        threads=args.threads,
        passes=args.passes,
        jobs_pool=jobs_pool,
        isolate=args.isolate,
        quiet=args.quiet,
        save_to=folder if args.save else None,
        run_to=args.run_to,
        fmt=args.format,
        plot=args.plot,
        baseline=baseline,
        fail_on=fail_on,
    )


def compare_here(
    *,
    backends,
    profile: str,
    threads: int | None = None,
    passes: int = 1,
    jobs_pool,
    isolate: bool,
    quiet: bool,
    save_to: Path | None,
    run_to,
    problem_specs: tuple[str, ...] = (),
    **shown,
) -> int:
    """Validate and time the installed backends here, deliver the run, then show it."""
    registry = problem_files.registry_with(problem_specs)
    run, failed, interrupted = _benchmark_here(
        backends, profile, (threads, passes), registry, jobs_pool, isolate, quiet, problem_specs
    )
    if run is None:
        return interrupted.exit_code if interrupted else EXIT_FAIL
    text = runs.text(run)
    if interrupted:
        kept, _ = files.write_with_fallback(files.fallback_path("compare"), text, "compare", overwrite=False)
        print(f"interrupted: {len(run['benchmarks'])} benchmarks finished, kept in {kept}", file=sys.stderr)
        return _show(text, kept.stem, interrupted=interrupted, **shown)
    code, name = EXIT_OK, profile
    if run_to:
        code = deliver(run_to, text, "compare", code)
    if save_to is not None:
        path = save_to / runs.file_name(profile)
        where, why = files.write_with_fallback(path, text, "compare", overwrite=False)
        if why:
            print(f"error: could not write {path} ({why}); the run is kept in {where}", file=sys.stderr)
            code = EXIT_FAIL
        else:
            print(f"saved this run to {where}", file=sys.stderr)
        name = where.stem  # the run as its file names it
    return _show(text, name, failed=failed or code != EXIT_OK, **shown)


def _show(text: str, name: str, **shown) -> int:
    """`compare_runs` of the run in memory (``text``), read as its saved file ``name`` would be."""
    here = runs.from_text(text, name)
    return compare_runs([], rows=here.rows, machines={name: here.machine}, **shown)


def _benchmark_here(
    backends, profile, settings, registry, jobs_pool, isolate, quiet, problem_specs=()
) -> tuple[dict | None, bool, Interrupted | None]:
    """The quick run: (the run, or None if nothing was timed, whether a backend failed, the
    interrupt). Backends are timed one after another, each isolated when it can be (side by side
    they would slow each other), in ``passes`` interleaved passes with ``threads`` each."""
    (threads, passes), entries = settings, registry.select_backends(backends)
    available = [e for e in entries if not e.unavailable]
    jobs = [
        Job(
            "benchmark",
            e.name,
            profile=profile,
            problem_files=problem_specs,
            threads=threads,
            passes=passes,
        )
        for _ in range(passes)
        for e in available
    ]
    unavailable = [f"{e.name}: {e.unavailable}" for e in entries if e.unavailable]
    outcomes, interrupted = run_with_progress(jobs, registry, jobs_pool, isolate=isolate, quiet=quiet)
    failed = False
    for outcome in outcomes:
        if outcome.failure:
            print(f"error: {outcome.job.backend}: {outcome.failure[1]}", file=sys.stderr)
            failed = True
    benchmarks = measure.merge_passes([b for o in outcomes for b in o.results])
    if not benchmarks:
        why = "; ".join(unavailable) or "every case failed or was interrupted (see above)"
        print(f"error: no case was timed, so no run is saved: {why}", file=sys.stderr)
        return None, True, interrupted
    machine = runs.merge_machines([(o.job.backend, o.machine) for o in outcomes if o.machine])
    machine["passes"] = passes
    return runs.document(benchmarks, machine), failed, interrupted


def compare_runs(
    paths: list[Path],
    *,
    fmt: str,
    plot: str | None,
    baseline: Path | None,
    fail_on: str,
    rows: list[runs.Row] | None = None,
    failed: bool = False,
    interrupted: Interrupted | None = None,
    machines: dict[str, dict] | None = None,
) -> int:
    """Show ``rows`` and the runs at ``paths`` side by side, with what the machine was doing
    (``machines``: each run's ``machine_info.harness`` by run name); plot them; gate them against
    ``baseline``."""
    rows, machines = list(rows or []), dict(machines or {})
    for path in paths:
        try:
            saved = runs.read(path)
        except RunError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
            continue
        rows += saved.rows
        machines[path.stem] = saved.machine
    if rows:
        print(compare.table(rows, fmt))
        fits = compare.growth(rows, fmt) if fmt in ("table", "md") else ""
        if fits:
            print(f"\ncost growth per derivative order (fit over validated orders):\n\n{fits}")
        clocks = compare.fidelity(rows, fmt) if fmt in ("table", "md") else ""
        if clocks:
            print(f"\nthe harness's timing over the device's own clock, same calls:\n\n{clocks}")
        if fmt in ("table", "md"):
            state = [line for name, info in machines.items() for line in soundness.machine_lines(name, info)]
            if state:
                print("\nwhat the machine was doing:\n\n" + compare.wrapped(state))
        if fmt == "table":
            print(f"\n{compare.legend()}")
        warning = soundness.flag_warning(rows)
        if warning:
            print(f"\n{warning}", file=sys.stderr)
    if interrupted:
        return interrupted.exit_code
    invalid = [r for r in rows if not r.validated]
    failed = failed or bool(invalid) or not rows
    if plot and rows:
        failed = not write_figures(rows, plot) or failed
    if baseline is not None:
        stat, threshold = gate.parse_threshold(fail_on)
        try:
            base_rows = runs.load(baseline)
        except RunError as exc:
            raise UsageError(f"baseline {exc}") from None
        slower = gate.regressions(rows, base_rows, stat, threshold)
        unjudged = gate.inconclusive(rows, base_rows)
        for line in slower:
            print(f"REGRESSION {line}", file=sys.stderr)
        for line in unjudged:
            print(f"INCONCLUSIVE {line}", file=sys.stderr)
        print(f"{len(slower)} regression(s) beyond {fail_on} against {baseline.stem}", file=sys.stderr)
        if unjudged:
            print(
                f"{len(unjudged)} row(s) inconclusive: flagged on either side, so neither a "
                "regression nor an all-clear; rerun them on a quiet machine",
                file=sys.stderr,
            )
        rules = gate.gate_rules(rows, base_rows)
        print(
            f"rows judged: {rules['Mann-Whitney']} by a one-sided Mann-Whitney test (p < "
            f"{gate.NOISE_P:g}), {rules['quartiles']} by quartiles, having fewer than "
            f"{gate.TEST_ROUNDS} rounds on a side (slower only if they do not overlap)",
            file=sys.stderr,
        )
        failed = failed or bool(slower)
        if unjudged and not failed:
            return EXIT_INCONCLUSIVE
    return EXIT_FAIL if failed else EXIT_OK
