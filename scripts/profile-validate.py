"""Where the default `python -m harness validate` spends its time, in numbers that survive a busy
machine: CPU seconds (user+sys) of the parent and of every child, counts (children started,
checks, compiles, oracle calls), and each child's cProfile grouped into framework imports,
compiling, oracles and the backend's own work; wall time only with the load beside it.

    python scripts/profile-validate.py                       # the default run, profiled
    python scripts/profile-validate.py --plain               # no cProfile: CPU and wall as users see them
    python scripts/profile-validate.py --runs 3 --plain      # the median of three
    python scripts/profile-validate.py -- -b jax -p tanh     # anything after -- goes to validate
    python scripts/profile-validate.py --keep prof           # keep the profiles (pstats, snakeviz)

The groups overlap (an import made inside a check counts in both). cProfile slows Python-heavy
work (TorchDynamo's tracing most) by 2-3x: read its groups as shares and counts, and take seconds
from ``--plain``. ``--cold`` turns off the JAX compilation cache of validation jobs
(`harness.execution.caches`), so JAX compiles everything again as on the first run after an
install (TorchInductor's own cache stays as it is).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GROUPS = {  # (label, function-name matches): cumulative seconds of the outermost matching call
    "framework imports": [("<frozen importlib._bootstrap>", "_find_and_load")],
    "XLA compiles (JAX)": [("jax/_src/compiler.py", "backend_compile_and_load")],
    "JAX cache reads": [("jax/_src/compiler.py", "_cache_read")],
    "TorchDynamo+Inductor compiles": [("torch/_dynamo/convert_frame.py", "_compile")],
    "tf.function traces+compiles": [("tensorflow/python/eager/polymorphic_function", "_initialize")],
    "oracles": [
        ("harness/oracles.py", name)
        for name in (
            "mpmath_derivative",
            "exact_polynomial",
            "exact_cofactors",
            "complex_step",
            "central_difference",
            "central_derivative",
            "hessian_diagonal",
            "remainder_slope",
            "step_gaps",
            "richardson_difference",
        )
    ],
    "all checks": [("harness/validation/checks.py", "backend_checks")],
}


def grouped(path: str) -> dict[str, tuple[float, int]]:
    """(cumulative seconds, calls) per group; nested calls of one function are counted once."""
    stats = pstats.Stats(path).stats
    out = {}
    for label, wanted in GROUPS.items():
        seconds = calls = 0
        for (file, _line, name), (_cc, nc, _tt, ct, _callers) in stats.items():
            if any(file.endswith(f) or f in file for f, n in wanted if n == name):
                seconds += ct
                calls += nc
        out[label] = (seconds, calls)
    out["child total"] = (max(v[3] for v in stats.values()), 1)
    return out


def one_run(validate_args: list[str], profile: bool, cold: bool, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "report.json"
    env = dict(os.environ, HARNESS_PROFILE=str(folder))  # each child's CPU seconds (.cpu)
    if not profile:
        env["HARNESS_PROFILE_PLAIN"] = "1"  # no cProfile
    if cold:
        env["HARNESS_COMPILE_CACHE"] = "off"
    command = [sys.executable, "-m", "harness", "validate", "-q", "--format", "json", "--output", str(report)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()
    started = time.perf_counter()
    code = subprocess.run(command + validate_args, env=env).returncode
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    document = json.loads(report.read_text()) if report.exists() else {"checks": []}
    return {
        "code": code,
        "wall": wall,
        "load": (load, os.getloadavg()),
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "checks": document["checks"],
        "profiles": sorted(glob.glob(str(folder / "*.prof"))),
        "children": {
            Path(p).stem.rsplit("-", 1)[0]: json.loads(Path(p).read_text())
            for p in sorted(glob.glob(str(folder / "*.cpu")))
        },
    }


def summary(run: dict) -> str:
    checks = run["checks"]
    statuses = collections.Counter(c["status"] for c in checks)
    (l1, _, _), (l2, _, _) = run["load"]
    lines = [
        f"wall {run['wall']:.1f} s (load {l1:.2f} before, {l2:.2f} after), CPU user+sys "
        f"{run['cpu']:.1f} s (the parent and every child), exit {run['code']}",
        f"{len(checks)} checks: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())),
    ]
    spent = collections.defaultdict(float)
    for c in checks:
        spent[(c["backend"], c["mode"])] += c.get("seconds") or 0.0
    lines.append(
        "the checks' own wall seconds (the derivative computed twice, compiles included): "
        + ", ".join(f"{b} {m} {s:.1f}" for (b, m), s in sorted(spent.items()) if b != "-")
    )
    children = run["children"]
    if children:
        lines.append(
            f"  {len(children)} children, CPU s (wall s): "
            + ", ".join(
                f"{n.removeprefix('validate-')} {c['cpu']:.1f} ({c['wall']:.1f})" for n, c in children.items()
            )
            + f"; sum {sum(c['cpu'] for c in children.values()):.1f} CPU s"
        )
    for path in run["profiles"]:
        name = Path(path).stem.rsplit("-", 1)[0]
        groups = grouped(path)
        total = groups["child total"][0]
        parts = [
            f"{label} {s:.1f} s" + (f" ({n} calls)" if label != "all checks" else "")
            for label, (s, n) in groups.items()
            if label != "child total" and n > 0
        ]
        lines.append(f"  child {name}: {total:.1f} CPU s profiled; " + "; ".join(parts))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plain", action="store_true", help="no cProfile in the children")
    parser.add_argument("--runs", type=int, default=1, help="runs in a row (the median is printed)")
    parser.add_argument("--cold", action="store_true", help="an empty compilation cache for each run")
    parser.add_argument(
        "--keep", type=Path, help="keep each run's report and profiles in DIR/run-N (default: removed)"
    )
    parser.add_argument("validate_args", nargs="*", help="after --: options for validate")
    args = parser.parse_args()
    walls, cpus = [], []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="harness-profile-") as scratch:
            folder = args.keep / f"run-{i + 1}" if args.keep else Path(scratch)
            run = one_run(args.validate_args, not args.plain, args.cold, folder)
            print(f"run {i + 1}: " + summary(run), flush=True)
        walls.append(run["wall"])
        cpus.append(run["cpu"])
    if args.runs > 1:
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        print(f"median of {args.runs}: wall {wall:.1f} s, CPU {cpu:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
