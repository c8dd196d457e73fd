"""Which tests each tox env executes, with and without tests/conftest.py's per-env selection, and
whether the union over the envs is kept.

    python scripts/tox_selection.py [--tox-dir .tox] [--json OUT] [ENV ...]

Run from the checkout's root after `tox run` (or `tox run --notest`) built the envs. For each ENV
(default: jax autograd torch tensorflow all) it collects the suite with that env's interpreter
(`pytest --collect-only`, this file as a plugin) and counts a test as executed where it is
collected, no skip mark of its own skips it, and a backend it names (tests/conftest.py's
`bound_backends`) is installed there. A test's key is its id, and for a test that runs against
whatever is installed (conftest's `on_installed`: the `installed`, `fast` or `inner` fixtures, or
the mark), the backends installed where it ran: the same test against another set of backends is
another key. "before" is every test, as
each env ran before the selection (`pytest` without --tox-env); "after" is what
`tests/conftest.py`'s `runs_in` keeps. Exit 1 if a key executed before is executed nowhere after.
Runtime skips (inside a test or a fixture) are not seen: they skip alike before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ENVS = ("jax", "autograd", "torch", "tensorflow", "all")


# --- As a pytest plugin (-p tox_selection): write each collected test's facts to $TOX_SELECTION_OUT.


def pytest_collection_finish(session):
    out = os.environ.get("TOX_SELECTION_OUT")
    if not out:
        return
    import conftest  # tests/conftest.py, importable through pyproject's pythonpath
    from _pytest.skipping import evaluate_skip_marks

    from harness import plugins

    registry = plugins.load()
    installed = sorted(n for n in conftest.BUILTIN if not registry.backends[n].unavailable)
    env = os.environ["TOX_SELECTION_ENV"]
    tests = []
    for item in session.items:
        bound = conftest.bound_backends(item)
        tests.append(
            {
                "id": item.nodeid,
                "skipped": evaluate_skip_marks(item) is not None,
                "bound": sorted(bound),
                "installed": conftest.on_installed(item),
                "selected": conftest.runs_in(item, env),
            }
        )
    Path(out).write_text(json.dumps({"installed": installed, "tests": tests}))


# --- As a script.


def collect(python: Path, env: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tests.json"
        environ = {
            **os.environ,
            "TOX_SELECTION_OUT": str(out),
            "TOX_SELECTION_ENV": env,  # collect everything; the plugin applies the selection
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
            ),
        }
        done = subprocess.run(
            [
                python,
                "-m",
                "pytest",
                "--collect-only",
                "-q",
                "-p",
                "tox_selection",
                "-p",
                "no:cacheprovider",
                "--ignore=tests/benchmarks",
            ],
            env=environ,
            capture_output=True,
            text=True,
        )
        if not out.exists():
            sys.exit(f"{env}: collection failed\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def executed(found: dict, selected_only: bool) -> set[tuple[str, str]]:
    installed = set(found["installed"])
    keys = set()
    for t in found["tests"]:
        if t["skipped"] or (t["bound"] and not set(t["bound"]) & installed):
            continue
        if selected_only and not t["selected"]:
            continue
        keys.add((t["id"], ",".join(sorted(installed)) if t["installed"] else ""))
    return keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("envs", nargs="*", default=list(ENVS))
    parser.add_argument("--tox-dir", type=Path, default=Path(".tox"))
    parser.add_argument("--json", type=Path, help="write each env's executed keys, before and after")
    args = parser.parse_args()
    before, after = {}, {}
    for env in args.envs:
        found = collect(args.tox_dir / env / "bin" / "python", env)
        before[env], after[env] = executed(found, False), executed(found, True)
        print(
            f"{env:>10}: {len(found['tests'])} collected, {len(before[env])} executed before, "
            f"{len(after[env])} after (installed: {','.join(found['installed'])})"
        )
    union_before = set().union(*before.values())
    union_after = set().union(*after.values())
    lost = sorted(union_before - union_after)
    runs_before = sum(map(len, before.values()))
    runs_after = sum(map(len, after.values()))
    print(f"{'runs':>10}: {runs_before} before, {runs_after} after")
    print(
        f"{'union':>10}: {len(union_before)} before, {len(union_after)} after, "
        f"{len(union_after - union_before)} new, {len(lost)} lost"
    )
    for key in lost:
        print("lost:", *key)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "before": {e: sorted(k) for e, k in before.items()},
                    "after": {e: sorted(k) for e, k in after.items()},
                },
                indent=1,
            )
        )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
