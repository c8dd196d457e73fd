"""``report``: saved runs as a static HTML site (`harness.report`): each run's machine, rows and
figures, each run against its baseline with the gate's verdicts, and each case's history."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

from harness.cli import options
from harness.cli.output import EXIT_FAIL, EXIT_OK, check_destination
from harness.errors import UsageError
from harness.results import gate, runs


def add_parser(sub) -> None:
    rep = sub.add_parser(
        "report",
        help="write saved runs as an HTML site to open in a browser (no server, no network)",
        description="RUN is a results file, or a run name (stem or unique prefix, or 'latest') in "
        "--results; with none, every run there. The site: index.html (the runs, and the files left "
        "out with why), a page per run (its machine, compare's rows per group, sortable and "
        "filterable, and figures), each run against its baseline with the gate's verdict per row, "
        "and each case's time across runs. Nothing in --results is changed.",
    )
    rep.add_argument("runs", nargs="*", metavar="RUN", type=options.run_name)
    options.add_results_folder(rep)
    rep.add_argument(
        "-o",
        "--output",
        default="report",
        metavar="DIR",
        help="folder to write the site to (default: report)",
    )
    rep.add_argument(
        "--baseline",
        metavar="RUN",
        type=options.run_name,
        help="judge every other run against this one (default: each run against the latest "
        "earlier run of the same cases on the same machine: CPU model and GPUs)",
    )
    rep.add_argument(
        "--fail-on",
        default="median:10%",
        metavar="STAT:N%",
        help="the gate's rule, as compare's: STAT (median or min) slower (faster) by more than N%% "
        "and beyond noise is a regression (an improvement); default median:10%%",
    )
    rep.set_defaults(handler=from_args)


def from_args(args) -> int:
    missing = [name for name in ("jinja2", "plotly") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(
            f"report needs {' and '.join(missing)}, not installed: pip install 'gradient-harness[report]'"
        )
    folder, output = Path(args.results), Path(args.output)
    try:
        gate.parse_threshold(args.fail_on)
        paths = runs.resolve(args.runs, folder) if args.runs else runs.in_folder(folder)
        baseline = runs.resolve([args.baseline], folder)[0] if args.baseline else None
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if not paths:
        raise UsageError(f"no saved run in {folder}/: name runs (RUN) or another --results folder")
    if baseline is not None and baseline not in paths:
        paths.append(baseline)
    into = output.resolve()
    if any(into == p.parent.resolve() or p.parent.resolve() in into.parents for p in paths):
        raise UsageError(
            f"--output {output} is in a folder of saved runs: the report never writes among them; "
            "give another folder, e.g. -o report"
        )
    check_destination(output, "--output", folder=True)
    return report(paths, output, baseline=baseline, fail_on=args.fail_on)


def report(paths: list[Path], output: Path, *, baseline: Path | None, fail_on: str) -> int:
    """The site for the runs at ``paths`` in ``output``; 1 when a run was left out (each named on
    stderr as ``compare`` names it) or none could be read."""
    from harness.report import model, site

    start = time.perf_counter()
    found, left_out = model.read_runs(paths)
    for message in left_out:
        print(f"error: {message}", file=sys.stderr)
    base = next((r for r in found if baseline is not None and r.path == baseline), None)
    if baseline is not None and base is None:
        raise UsageError(f"baseline {baseline} cannot be read (see above): name another --baseline")
    pairs = model.comparisons(found, fail_on, base)
    written = site.write(found, left_out, pairs, model.history(found), output)
    print(
        f"wrote {output / 'index.html'}: {len(found)} runs, {len(pairs)} comparisons, "
        f"{len(written)} files in {time.perf_counter() - start:.1f} s"
        + (f"; {len(left_out)} left out (named above)" if left_out else ""),
        file=sys.stderr,
    )
    return EXIT_FAIL if left_out or not found else EXIT_OK
