"""Run a command beside busy CPU loops, as on a shared CI machine: ``python tests/under_load.py CMD...``.

Starts ``$HARNESS_LOAD_LOOPS`` (default 4) single-threaded numpy matrix-product loops,
which put a load of about 6 on a 2-core machine, runs the command, stops the loops and
exits with the command's exit code. ``tox run -e loaded`` runs the test suite this way;
the suite must pass here too (no test may race a wall clock a loaded machine can miss).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

LOOP = "import numpy as np; a = np.random.rand(600, 600)\nwhile True: a @ a"


def main(command: list[str]) -> int:
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    count = int(os.environ.get("HARNESS_LOAD_LOOPS", "4"))
    loops = [subprocess.Popen([sys.executable, "-c", LOOP], env=env) for _ in range(count)]
    time.sleep(2.0)
    dead = [loop for loop in loops if loop.poll() is not None]
    if dead:
        for loop in loops:
            loop.kill()
        print(
            f"under_load: {len(dead)} of the loops died at once: does {sys.executable} have numpy?",
            file=sys.stderr,
        )
        return 2
    try:
        print(
            f"under_load: {count} numpy loops running; load average {os.getloadavg()[0]:.1f}",
            file=sys.stderr,
            flush=True,
        )
        return subprocess.call(command)
    finally:
        print(f"under_load: load average {os.getloadavg()[0]:.1f} at the end", file=sys.stderr)
        for loop in loops:
            loop.kill()
            loop.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
