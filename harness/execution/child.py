"""The child interpreter's side of `harness.execution.runner`: ``python -m harness.execution.child
FOLDER PARENT_PID`` runs the job in ``FOLDER`` and writes its events, length-prefixed and pickled,
to the events file there; if the parent dies (even by SIGKILL) it ends its own process group.

With ``HARNESS_PROFILE=DIR`` set, each child also writes a cProfile of its job to
``DIR/<kind>-<backend>[-<dtype>]-<pid>.prof``, in this process's CPU seconds (the measure of
``scripts/profile-validate.py``), and its CPU seconds (its own and its helpers', user+sys) and
wall seconds to ``.cpu`` beside it (JSON); with ``HARNESS_PROFILE_PLAIN=1`` only the latter."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness import problem_files, threads
from harness.execution import caches
from harness.execution.kinds import execute
from harness.jobs import Job

JOB_FILE, EVENTS_FILE, OUTPUT_FILE = "job.json", "events", "output"


def main(folder: Path, parent: int) -> int:
    """Run the job in ``folder``, writing length-prefixed pickled events to its events file."""
    threading.Thread(target=_end_with_parent, args=(parent,), daemon=True).start()
    job = Job.from_json(json.loads((folder / JOB_FILE).read_text()))
    threads.apply(job.threads)  # before any framework is imported: most read it only then
    caches.apply(job)
    registry = problem_files.registry_with(job.problem_files)
    with open(folder / EVENTS_FILE, "ab") as out:

        def emit(event: tuple[Any, ...]) -> None:
            data = pickle.dumps(event, protocol=pickle.HIGHEST_PROTOCOL)
            out.write(len(data).to_bytes(8, "little") + data)
            out.flush()

        execute(job, registry, emit)
    return 0


def _end_with_parent(parent: int) -> None:
    """If the parent dies (even by SIGKILL), end this process group: no orphans."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.killpg(0, signal.SIGKILL)


PROFILE_ENV = "HARNESS_PROFILE"


def profiled(folder: Path, parent: int, started: float) -> int:
    """`main`, under cProfile when ``HARNESS_PROFILE`` names a folder."""
    into = os.environ.get(PROFILE_ENV)
    if not into:
        return main(folder, parent)
    import cProfile
    import resource

    job = json.loads((folder / JOB_FILE).read_text())
    parts = [job["kind"], job["backend"]] + (job["dtypes"] if len(job.get("dtypes") or ()) == 1 else [])
    stem = Path(into) / "-".join([*parts, str(os.getpid())])
    plain = os.environ.get(PROFILE_ENV + "_PLAIN") == "1"
    profile = cProfile.Profile(time.process_time)  # CPU seconds: a busy machine does not inflate them
    try:
        return main(folder, parent) if plain else profile.runcall(main, folder, parent)
    finally:
        if not plain:
            profile.dump_stats(stem.with_suffix(".prof"))
        used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        cpu = sum(u.ru_utime + u.ru_stime for u in used)
        stem.with_suffix(".cpu").write_text(json.dumps({"cpu": cpu, "wall": time.monotonic() - started}))


if __name__ == "__main__":
    sys.exit(profiled(Path(sys.argv[1]), int(sys.argv[2]), time.monotonic()))
