"""``scale``: the logistic loss's distributed value and gradient on each framework's engine,
validated against the single-device float64 closed form, then timed over world sizes."""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

from harness import __version__, machine, plugins
from harness.cli import options
from harness.cli.output import EXIT_FAIL, EXIT_OK, check_destination, write_figures
from harness.cli.running import run_with_progress
from harness.distributed import plan, records
from harness.errors import UsageError
from harness.execution.runner import LocalPool
from harness.hookspecs import DTYPES
from harness.results import compare, files, runs


def add_parser(sub) -> None:
    scl = sub.add_parser(
        "scale",
        help="distributed value and gradient on each framework's engine: validated, then timed",
        description="The logistic loss's value and gradient with the data sharded over each world "
        "size, on each engine (jax.sharding, jax.distributed, torch.distributed): validated "
        "against the single-device float64 closed form, then timed; speedup and efficiency are "
        "against world 1. Each world runs in its own process group with a time limit.",
    )
    options.add_backends(
        scl, f"backends, comma-separated: {', '.join(plan.ENGINES)} (default: those installed)"
    )
    scl.add_argument(
        "--engine",
        type=options.choices(plan.ENGINE_NAMES),
        action="extend",
        metavar="ENGINE",
        help=f"{', '.join(plan.ENGINE_NAMES)}, comma-separated (default: every engine of the backends)",
    )
    scl.add_argument("--world", type=options.worlds, default=[1, 2, 4], help="world sizes (default 1,2,4)")
    scl.add_argument(
        "--size",
        type=options.size,
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
        "--dtype", type=options.choices(DTYPES), action="extend", metavar="DTYPE", help="default float32"
    )
    scl.add_argument("--format", choices=("table", "json"), default="table")
    scl.add_argument("--save", action="store_true", help="save the timed worlds to --results")
    options.add_results_folder(scl)
    options.add_plot(scl)
    options.add_timeout(
        scl, 600.0, "seconds each world may take; then its processes are killed and it is an error"
    )
    options.add_quiet(scl)
    scl.set_defaults(handler=from_args)


def from_args(args) -> int:
    dtypes = list(dict.fromkeys(args.dtype or ["float32"]))
    _check_fits(args.size, max(args.world) if args.scaling != "strong" else 1, dtypes)
    return scale_worlds(
        backends=args.backend,
        engines=args.engine,
        worlds=args.world,
        size=args.size,
        scalings=plan.SCALINGS if args.scaling == "both" else (args.scaling,),
        dtypes=dtypes,
        fmt=args.format,
        save_to=Path(args.results) if args.save else None,
        plot=args.plot,
        timeout=args.timeout,
        quiet=args.quiet,
    )


def _check_fits(size: tuple[int, int], copies: int, dtypes: list[str]) -> None:
    """A usage error, before any work, for data larger than this machine's memory (``copies``:
    the largest world under weak scaling, whose every process holds N x D)."""
    memory = machine.host_memory()
    needed = size[0] * size[1] * copies * max(np.dtype(d).itemsize for d in dtypes)
    if memory and needed > memory:
        raise UsageError(
            f"--size {size[0]}x{size[1]} needs {needed / 1e9:.3g} GB of data, more than this "
            f"machine's {memory / 1e9:.3g} GB of memory: give a smaller NxD"
        )


def scale_worlds(
    *, backends, engines, worlds, size, scalings, dtypes, fmt, save_to: Path | None, plot, timeout, quiet
) -> int:
    registry = plugins.load()
    entries, chosen_engines = plan.select(registry, backends, engines)
    jobs = plan.world_jobs(
        [e for e in entries if not e.unavailable], chosen_engines, worlds, size, scalings, dtypes
    )
    check_destination(plot, "--plot", folder=True)
    if save_to is not None:
        check_destination(save_to, "--results", folder=True)
    unavailable = {e.name: e.unavailable for e in entries if e.unavailable}
    started = time.perf_counter()
    # Each world isolated, one at a time: its processes need a process group of their own.
    outcomes, interrupted = run_with_progress(
        jobs, registry, LocalPool(timeout, 1), isolate=True, quiet=quiet
    )
    found = records.world_records(outcomes, registry)
    elapsed = time.perf_counter() - started
    explicit = backends is not None or engines is not None  # named: must run
    failed = any(r.status != "pass" for r in found) or (explicit and bool(unavailable)) or not found
    document = {
        "harness": __version__,
        "seconds": round(elapsed, 3),
        "interrupted": signal.Signals(interrupted.signum).name if interrupted else None,
        "unavailable": unavailable,
        "records": [r.to_json() for r in found],
    }
    if fmt == "json":
        print(json.dumps(document, indent=2, allow_nan=False))
    else:
        verdict = "interrupted" if interrupted else "FAILED" if failed else "all passed"
        print(_scale_text(found, unavailable, elapsed, verdict))
    if interrupted:
        kept, _ = files.write_with_fallback(
            files.fallback_path("scale"), json.dumps(document, indent=2, allow_nan=False) + "\n", "scale"
        )
        print(f"interrupted: {len(found)} worlds finished, kept in {kept}", file=sys.stderr)
        return interrupted.exit_code
    code = EXIT_FAIL if failed else EXIT_OK
    timed = [r.benchmark() for r in found if r.status == "pass" and r.times]
    if (save_to is not None or plot) and not timed:
        print("error: no world was timed, so there is nothing to save or plot", file=sys.stderr)
        return EXIT_FAIL
    if not (save_to is not None or plot):
        return code
    text = runs.text(runs.document(timed, machine.info()))
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "scale.json"
        if save_to is not None:
            name = save_to / runs.file_name("scale")
            path, why = files.write_with_fallback(name, text, "scale", overwrite=False)
            if why:
                print(f"error: could not write {name} ({why}); the run is kept in {path}", file=sys.stderr)
                code = EXIT_FAIL
            else:
                print(f"saved this run to {path}", file=sys.stderr)
        else:
            files.write_text(path, text)
        if plot and not write_figures(runs.load(path), plot):
            code = EXIT_FAIL
    return code


def _scale_text(found: list[records.Record], unavailable: dict, elapsed: float, verdict: str) -> str:
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
            compare.format_seconds(r.median_s),
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
    counts = ", ".join(f"{sum(r.status == s for r in found)} {s}" for s in records.STATUSES)
    parts.append(
        f"{counts} in {elapsed:.1f} s: {verdict}\n"
        "speedup: rows per second over world 1's; efficiency: speedup / world "
        "(on one machine the world's devices or processes share its cores)"
    )
    return "\n\n".join(parts)
