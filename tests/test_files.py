"""Result files are written atomically: complete or absent, never half-written, never clobbered."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from harness.results import files
from harness.results import runs as results

ROWS = 60_000
"""The killed writer's JSON is ROWS strings of 1000 characters: about 60 MB."""

WRITER = textwrap.dedent(f"""
    import sys
    from harness.results import files
    files.write_json(sys.argv[1], {{"rows": ["x" * 1000] * {ROWS}}})
""")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- overwrite=False ------------------------------------------------------------------------------


def test_overwrite_false_refuses_an_existing_file(tmp_path):
    target = files.write_json(tmp_path / "run.json", {"first": True}, overwrite=False)
    before = target.read_bytes()
    with pytest.raises(FileExistsError):
        files.write_json(target, {"second": True}, overwrite=False)
    assert target.read_bytes() == before
    assert json.loads(before) == {"first": True}
    assert leftovers(tmp_path) == []


def test_overwrite_true_replaces(tmp_path):
    target = files.write_json(tmp_path / "run.json", {"first": True})
    files.write_json(target, {"second": True})
    assert json.loads(target.read_text()) == {"second": True}
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("overwrite", [True, False])
def test_no_tmp_files_after_a_write(tmp_path, overwrite):
    target = files.write_json(tmp_path / "sub" / "run.json", {"rows": list(range(1000))}, overwrite=overwrite)
    assert json.loads(target.read_text()) == {"rows": list(range(1000))}
    assert [p.name for p in target.parent.iterdir()] == ["run.json"]


def test_write_text_returns_the_path_and_writes_exactly(tmp_path):
    target = files.write_text(tmp_path / "report.txt", "line\n")
    assert target == tmp_path / "report.txt" and target.read_text() == "line\n"


def test_written_file_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        target = files.write_json(tmp_path / "run.json", {})
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644


# --- Interrupted writes ---------------------------------------------------------------------------


def kill_mid_write(folder: Path, target: Path) -> bool:
    """Start a writer, SIGKILL it as soon as its ``.tmp`` file appears; whether it was caught mid-write."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)])
    try:
        deadline = time.monotonic() + 30
        while not leftovers(folder):
            if proc.poll() is not None or time.monotonic() > deadline:
                return False  # finished (or hung) before a .tmp file was seen
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode in (-signal.SIGKILL, 0)
    return proc.returncode == -signal.SIGKILL and bool(leftovers(folder))


def test_sigkill_mid_write_never_leaves_a_partial_file(tmp_path):
    interrupted = 0
    for attempt in range(3):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        target = folder / "run.json"
        caught = kill_mid_write(folder, target)
        interrupted += caught
        if target.exists():  # the writer won the race: then the file must be whole
            assert len(json.loads(target.read_text())["rows"]) == ROWS
        else:
            assert caught
        if caught:
            break
    assert interrupted, "the writer was never killed mid-write: the test proved nothing"


# --- Concurrent writers ---------------------------------------------------------------------------


def concurrently(count: int, write) -> list[BaseException | None]:
    """Run ``write(i)`` in ``count`` threads released together; each one's exception or None."""
    barrier = threading.Barrier(count)
    outcome: list[BaseException | None] = [None] * count

    def worker(i):
        barrier.wait()
        try:
            write(i)
        except BaseException as exc:  # recorded and checked by the caller
            outcome[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcome


def payload(i: int) -> dict:
    return {"writer": i, "rows": [f"{i}" * 100] * 20_000}


def test_concurrent_writers_with_distinct_names_both_succeed(tmp_path):
    outcome = concurrently(
        2, lambda i: files.write_json(tmp_path / f"run-{i}.json", payload(i), overwrite=False)
    )
    assert outcome == [None, None]
    for i in range(2):
        assert json.loads((tmp_path / f"run-{i}.json").read_text()) == payload(i)
    assert leftovers(tmp_path) == []


def test_concurrent_writers_in_processes_with_distinct_names_both_succeed(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / f"run-{i}.json")]) for i in range(2)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    for i in range(2):
        assert len(json.loads((tmp_path / f"run-{i}.json").read_text())["rows"]) == ROWS
    assert leftovers(tmp_path) == []


def test_concurrent_writers_of_one_name_exactly_one_wins(tmp_path):
    target = tmp_path / "run.json"
    outcome = concurrently(8, lambda i: files.write_json(target, payload(i), overwrite=False))
    winners = [i for i, exc in enumerate(outcome) if exc is None]
    assert len(winners) == 1
    assert all(isinstance(exc, FileExistsError) for exc in outcome if exc is not None)
    assert json.loads(target.read_text()) == payload(winners[0])
    assert leftovers(tmp_path) == []


# --- Temporaries of killed writers ----------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_writers_temporary_is_removed_by_the_next_write_and_never_read_as_a_run(tmp_path):

    stale = tmp_path / f".run.json.{dead_pid()}.abcd1234.tmp"
    stale.write_text('{"half": ')
    live = tmp_path / f".other.json.{os.getpid()}.efgh5678.tmp"  # a writer still at work
    live.write_text("{")
    with pytest.raises(FileNotFoundError):
        results.resolve(["latest"], tmp_path)
    files.write_json(tmp_path / "next.json", {"ok": True})
    assert not stale.exists()
    assert live.exists()
    assert leftovers(tmp_path) == [live.name]


def test_kill_mid_write_then_next_write_leaves_no_temporary(tmp_path):
    for attempt in range(3):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        if kill_mid_write(folder, folder / "run.json"):
            break
    else:
        pytest.fail("the writer was never killed mid-write: the test proved nothing")
    files.write_json(folder / "again.json", {"ok": True})
    assert leftovers(folder) == []
