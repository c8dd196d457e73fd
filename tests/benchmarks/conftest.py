"""The benchmark suite's plumbing: which cases run, machine info, and saving the run to results/.

Choose the cases with ``--harness-profile`` (declared in ``tests/conftest.py``, which pytest
loads from the repository root too) (``quick``, ``cpu``, ``gpu``; the
default is ``gpu`` when a backend sees one, else ``cpu``) and the backends with
``$HARNESS_BACKENDS``. Every run that timed something is saved as
pytest-benchmark JSON under ``results/`` (or ``--harness-results DIR``), under
a new name, written atomically.
"""

from __future__ import annotations

import datetime
import re
import uuid
from pathlib import Path

from harness import files, machine, plugins, timing


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    entries = [e for e in plugins.load().select_backends() if not e.unavailable]
    profile = metafunc.config.getoption("--harness-profile")
    if profile is None:
        gpu = any(d != "cpu" for e in entries for d in e.backend.devices())
        profile = "gpu" if gpu else "cpu"
    metafunc.config.harness_profile = profile
    found = timing.cases(entries, profile)
    metafunc.parametrize("case", found, ids=[c.name for c in found])


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["harness"] = machine.info()


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or bs.disabled or not bs.benchmarks:
        return
    machine_info = bs.get_machine_info()
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    output = config.hook.pytest_benchmark_generate_json(
        config=config, benchmarks=bs.benchmarks, include_data=True,
        machine_info=machine_info, commit_info=commit_info)
    output["machine_info"]["harness"]["profile"] = getattr(config, "harness_profile", None)
    folder = Path(config.getoption("--harness-results") or Path(config.rootpath) / "results")
    gpus = machine_info["harness"]["gpus"]
    tag = re.sub(r"[^A-Za-z0-9]+", "-", gpus[0]["name"] if gpus else "cpu").strip("-").lower()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = files.write_json(folder / f"{stamp}_{tag}_{uuid.uuid4().hex[:8]}.json", output,
                            overwrite=False)
    config.harness_saved = path
    print(f"\ngradient-harness: saved this run to {path}")
