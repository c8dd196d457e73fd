"""The child interpreter's side of `harness.execution.runner`: ``python -m harness.execution.child
FOLDER PARENT_PID`` runs the job in ``FOLDER`` and writes its events, length-prefixed and pickled,
to the events file there; if the parent dies (even by SIGKILL) it ends its own process group."""

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
from harness.execution.kinds import execute
from harness.jobs import Job

JOB_FILE, EVENTS_FILE, OUTPUT_FILE = "job.json", "events", "output"


def main(folder: Path, parent: int) -> int:
    """Run the job in ``folder``, writing length-prefixed pickled events to its events file."""
    threading.Thread(target=_end_with_parent, args=(parent,), daemon=True).start()
    job = Job.from_json(json.loads((folder / JOB_FILE).read_text()))
    threads.apply(job.threads)  # before any framework is imported: most read it only then
    registry = problem_files.load(job.problem_files)
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


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))
