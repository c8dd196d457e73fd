"""`harness.results.files`: result files are written atomically (complete or absent, never
half-written, never clobbered); writes never replace what is not a regular file, and destinations
are refused before work (issue #26).

A character device (``/dev/null``, ``/dev/full``) or a FIFO is written in place, never replaced
by a regular file holding the report; a write error there (``ENOSPC`` from ``/dev/full``) is an
`OSError`, which `files.write_with_fallback` turns into a fallback file. A socket is refused. A destination
inside a symbolic link loop, under a file, or an empty name is refused by `files.unwritable` /
`files.check_destination`. The device nodes are private ones made in ``tmp_path`` (as root).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from harness.errors import DestinationError
from harness.results import files
from harness.results.runs import resolve

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
        resolve(["latest"], tmp_path)
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


# --- not regular files and refused destinations (issue #26) ------------------------------------


REPORT = "a report\n"


def device(tmp_path: Path, name: str, minor: int) -> Path:
    """A private character device node of the memory driver (major 1): 3 is null, 7 is full.
    Skipped where it cannot be made (not root, no CAP_MKNOD) or opened (a ``nodev`` mount)."""
    path = tmp_path / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except (PermissionError, AttributeError) as exc:
        pytest.skip(f"cannot make a device node here (needs root and CAP_MKNOD): {exc}")
    try:
        os.close(os.open(path, os.O_WRONLY))
    except PermissionError as exc:
        pytest.skip(f"device nodes cannot be opened in {tmp_path} (mounted nodev?): {exc}")
    return path


def still_device(path: Path, minor: int) -> None:
    found = os.lstat(path)
    assert stat.S_ISCHR(found.st_mode), f"{path} was replaced by mode {oct(found.st_mode)}"
    assert found.st_rdev == os.makedev(1, minor)


class Reader:
    """Reads a FIFO to its end in a thread: the open rendezvous with the writer's, so nothing
    waits on a clock; `text` waits for the end (its timeout only stops a broken test hanging)."""

    def __init__(self, path: Path):
        self.path, self.data = path, bytearray()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as fh:
            while chunk := fh.read(65536):
                self.data += chunk

    def text(self) -> str:
        self.thread.join(timeout=120)
        if self.thread.is_alive():  # the writer never opened it: let the reader go
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            self.thread.join()
            pytest.fail(f"nothing was written to the FIFO {self.path}")
        return self.data.decode()


@pytest.fixture
def fallback(monkeypatch, tmp_path) -> Path:
    folder = tmp_path / "fallback"
    folder.mkdir()
    monkeypatch.setenv(files.FALLBACK_ENV, str(folder))
    return folder


# --- A FIFO -----------------------------------------------------------------------------------------


def test_a_fifo_is_written_in_place_not_replaced(tmp_path):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so the writer's open returns
    try:
        assert files.unwritable(fifo) is None
        assert files.write_text(fifo, REPORT) == fifo
        assert os.read(reader, 65536).decode() == REPORT
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert leftovers(tmp_path) == []


def test_a_fifo_takes_a_report_larger_than_its_buffer_and_through_a_link(tmp_path):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.json"
    link.symlink_to(fifo.name)
    text = "".join(f"line {i}\n" for i in range(200_000))  # about 2 MB; a pipe holds 64 kB
    reader = Reader(fifo)
    files.write_text(link, text)
    assert reader.text() == text
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()
    assert leftovers(tmp_path) == []


def test_an_existing_fifo_is_a_taken_name_without_overwrite(tmp_path):
    fifo = tmp_path / "run.json"
    os.mkfifo(fifo)
    with pytest.raises(FileExistsError):
        files.write_text(fifo, REPORT, overwrite=False)  # never opened: no reader needed
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert leftovers(tmp_path) == []


# --- Character devices ------------------------------------------------------------------------------


def test_a_null_device_is_written_not_replaced(tmp_path):
    null = device(tmp_path, "null", 3)
    assert files.unwritable(null) is None
    assert files.write_text(null, REPORT) == null
    assert files.write_with_fallback(null, REPORT, "validate") == (null, None)
    still_device(null, 3)
    assert leftovers(tmp_path) == []


def test_a_full_device_is_an_error_and_the_report_goes_to_the_fallback(tmp_path, fallback):
    full = device(tmp_path, "full", 7)
    assert files.unwritable(full) is None  # writable; full only when written
    with pytest.raises(OSError) as info:
        files.write_text(full, REPORT)
    assert info.value.errno == errno.ENOSPC
    kept, why = files.write_with_fallback(full, REPORT, "validate")
    assert why is not None and "No space left on device" in why
    assert kept.parent == fallback and kept.read_text() == REPORT
    still_device(full, 7)
    assert leftovers(tmp_path) == []


# --- /dev/stdout, /dev/fd/N: this process's descriptors ---------------------------------------------


def test_a_descriptor_link_is_written_through_the_descriptor(tmp_path):
    target = tmp_path / "out.txt"
    with open(target, "w") as fh:
        fh.write("before\n")
        fh.flush()
        files.write_text(f"/dev/fd/{fh.fileno()}", REPORT)  # shares the descriptor's offset
        fh.write("after\n")
    assert target.read_text() == "before\n" + REPORT + "after\n"
    r, w = os.pipe()
    try:
        assert files.unwritable(f"/proc/self/fd/{w}") is None
        assert "not open for writing" in files.unwritable(f"/proc/self/fd/{r}")
        files.write_text(f"/proc/self/fd/{w}", REPORT)
        assert os.read(r, 65536).decode() == REPORT
    finally:
        os.close(r)
        os.close(w)


def test_a_stdout_link_redirected_to_a_file_is_written_there(tmp_path):
    """``--output /dev/stdout > file``: the report lands in the file, after what was printed, and
    the link stays. The link is a private one like ``/dev/stdout`` (a fault replaces the link it
    is given: never the machine's own)."""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    script = (
        "import sys\n"
        "from harness.results import files\n"
        "print('printed')\n"
        "files.write_text(sys.argv[1], 'report\\n')\n"
    )
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:
        subprocess.run([sys.executable, "-c", script, str(link)], stdout=fh, check=True)
    assert out.read_text() == "printed\nreport\n"
    assert os.readlink(link) == "/proc/self/fd/1"
    assert leftovers(tmp_path) == []


# --- What a report cannot be written to -------------------------------------------------------------


def test_a_socket_is_refused_and_kept(tmp_path, fallback):
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        assert "socket" in files.unwritable(path)
        with pytest.raises(OSError, match="socket"):
            files.write_text(path, REPORT)
        kept, why = files.write_with_fallback(path, REPORT, "validate")
        assert "socket" in why and kept.read_text() == REPORT
        assert stat.S_ISSOCK(os.lstat(path).st_mode)


# --- Destinations refused before any work -----------------------------------------------------------


def test_a_destination_in_a_symlink_loop_is_refused(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    for path, culprit in (
        (loop / "x.json", loop),
        (loop, loop),
        (loop / "deeper" / "x.json", loop),
        (tmp_path / "a" / "x.json", tmp_path / "a"),
    ):
        why = files.unwritable(path)
        assert why and f"{culprit} is a symbolic link loop" in why, (path, why)
        assert "remove the link" in why
        with pytest.raises(DestinationError) as info:
            files.check_destination(path, option="--output")
        assert str(path) in str(info.value) and "--output" in str(info.value)
        assert files.unwritable(path, folder=True), path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "loop"]  # nothing written


def test_a_destination_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    for path in (tmp_path / "file" / "x.json", tmp_path / "file" / "sub" / "x.json"):
        why = files.unwritable(path)
        assert why == f"{tmp_path / 'file'} is not a folder, so nothing can be written under it; " + (
            "name another destination"
        )
        with pytest.raises(DestinationError, match="not a folder"):
            files.check_destination(path)


def test_an_empty_destination_names_the_option(tmp_path):
    assert "empty" in files.unwritable("")
    for folder in (False, True):
        with pytest.raises(DestinationError) as info:
            files.check_destination("", folder=folder, option="--output")
        message = str(info.value)
        assert message.startswith("--output is empty ('')") and "leave the option out" in message
    with pytest.raises(ValueError, match="the destination is empty"):
        files.check_destination("")


def test_good_destinations_pass(tmp_path):
    files.check_destination(None)
    files.check_destination(tmp_path / "new" / "deeper" / "run.json", option="--output")
    files.check_destination(tmp_path, folder=True)
    (tmp_path / "old.json").write_text("{}")
    files.check_destination(tmp_path / "old.json")
    assert leftovers(tmp_path) == [] and not (tmp_path / "new").exists()


# --- write_bytes ------------------------------------------------------------------------------------


def test_write_bytes_is_atomic_and_a_failed_write_keeps_what_was_there(tmp_path, monkeypatch):
    png = files.write_bytes(tmp_path / "plot.png", b"\x89PNG first")
    assert png.read_bytes() == b"\x89PNG first"
    real = os.write

    def full(fd, data):  # a file system that fills after the first bytes
        real(fd, bytes(data[:4]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    for target in (png, tmp_path / "new.png"):
        with pytest.raises(OSError) as info:
            files.write_bytes(target, b"\x89PNG second, longer")
        assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert png.read_bytes() == b"\x89PNG first"
    assert not (tmp_path / "new.png").exists()  # no 0-byte or half plot
    assert leftovers(tmp_path) == []


# --- The CLI ----------------------------------------------------------------------------------------


def harness(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def small(fast) -> list[str]:
    return ["validate", "-b", fast.name, "-p", "tanh", "-o", "1", "--dtype", "float64", "--mode", "eager"]


@pytest.mark.parametrize("where", ["loop/x.json", "file/x.json", ""])
def test_cli_refuses_a_bad_destination_before_any_work(tmp_path, fast, where):
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "file").write_text("")
    result = harness(*small(fast), "--format", "json", "--output", where, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert (where or "empty") in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "loop"]


def test_cli_validate_to_a_fifo(tmp_path, fast):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    reader = Reader(fifo)
    result = harness(*small(fast), "--format", "json", "--output", fifo, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(reader.text())["checks"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_cli_validate_to_a_full_device_keeps_the_report_in_the_fallback(tmp_path, fast):
    full = device(tmp_path, "full", 7)
    fallback = tmp_path / "fallback"
    fallback.mkdir()
    env = {files.FALLBACK_ENV: str(fallback)}
    result = harness(*small(fast), "--format", "json", "--output", full, cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    assert f"could not write {full}" in result.stderr and "No space left on device" in result.stderr
    [kept] = fallback.iterdir()
    assert str(kept) in result.stderr and json.loads(kept.read_text())["checks"]
    still_device(full, 7)
