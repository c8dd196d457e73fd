"""Synthetic saved runs, and `compare` called in-process: shared by the tests of `compare`, the
results files, the report and the benchmark conditions.

Synthetic runs are built like `measure.timed_run` builds real ones (pytest-benchmark ``Stats``
over a list of per-call times), from seeded lognormal samples, so the gate's verdicts on them are
deterministic.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pytest_benchmark.stats import Stats

from harness.cli.main import main
from harness.results import files
from harness.results.runs import FORMAT_VERSION

REMEDY = re.compile(
    r"delete|rerun|re-run|regenerate|upgrade|reads runs saved by|save it|pass a file saved by"
)
"""What a RunError message tells the user to do."""

# (problem, size, order) of the synthetic cases, and each one's median seconds per call.
CASES = [("tanh", (10_000,), 1, 20e-6), ("tanh", (10_000,), 2, 80e-6), ("logistic", (4, 3), 1, 200e-6)]


# --- Building runs --------------------------------------------------------------------------------


def group_of(problem: str, size: tuple[int, ...], order: int) -> str:
    if problem == "logistic":
        return f"logistic value+grad {'x'.join(map(str, size))}"
    return f"{problem} d^{order} " + ("scalar latency" if size == () else f"over {size[0]} points")


def bench(
    data, problem="tanh", size=(10_000,), order=1, backend="fake", device="cpu", dtype="float32", **extra
) -> dict:
    """One benchmark entry as `measure.timed_run` (and pytest-benchmark) writes it."""
    stats = Stats()
    for seconds in data:
        stats.update(float(seconds))
    group = group_of(problem, size, order)
    name = f"{group} | {backend} eager reverse {dtype} {device}"
    info = {
        "harness_format": FORMAT_VERSION,
        "backend": backend,
        "version": "0.0",
        "device": device,
        "dtype": dtype,
        "mode": "eager",
        "strategy": "reverse",
        "problem": problem,
        "size": list(size),
        "order": order,
        "bytes": 8.0 * np.prod(size),
        "flops": None,
        "first_call_s": 0.01,
        "validated": True,
        "validation": "synthetic",
        **extra,
    }
    return {
        "group": group,
        "name": name,
        "fullname": name,
        "params": None,
        "param": None,
        "extra_info": info,
        "options": {"disable_gc": True, "timer": "perf_counter", "warmup": 1},
        "stats": {**stats.as_dict(), "data": list(stats.data), "iterations": 1},
    }


def run_of(benchmarks: list[dict]) -> dict:
    return {
        "machine_info": {
            "harness": {"cpu_model": "synthetic", "host_copy_bandwidth": 1.0e10, "cuda_copy_bandwidth": None}
        },
        "commit_info": {},
        "benchmarks": benchmarks,
        "datetime": "2026-01-01T00:00:00+00:00",
        "version": "5.0.0",
    }


def synthetic(seed: int, slowdown: float = 1.0, samples: int = 30, sigma: float = 0.05) -> dict:
    """A run of CASES with ``samples`` seeded lognormal times per case, all scaled by ``slowdown``."""
    rng = np.random.default_rng(seed)
    return run_of(
        [
            bench(median * slowdown * rng.lognormal(0.0, sigma, samples), problem, size, order)
            for problem, size, order, median in CASES
        ]
    )


def save(folder: Path, name: str, run: dict) -> Path:
    return files.write_json(folder / f"{name}.json", run)


def compare_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["compare", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
