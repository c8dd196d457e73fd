"""Result files: destinations checked before work, written atomically, never lost.

- `unwritable` says why a destination cannot be written, before any work starts;
  `check_destination` raises it as `DestinationError`.
- `write_text` / `write_json` / `write_bytes` write through a temporary file in the
  same folder, so a result appears complete or not at all; temporaries left by a
  writer that was killed are removed by the next write into that folder. What is
  not a regular file (``/dev/null``, a FIFO, ``/dev/stdout``) is written in place,
  never replaced.
- `write_with_fallback` writes a finished run where it was asked to go and, if that fails
  at the end, to a fallback file (`fallback_dir`) instead of losing it.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import re
import stat
import sys
import tempfile
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

from harness.errors import DestinationError

FALLBACK_ENV = "HARNESS_FALLBACK_DIR"
"""Where runs go when their destination fails (default: ~/.cache/gradient-harness)."""
NAME_MAX = 255
_TEMPORARY = re.compile(r"\..+\.(\d+)\.[^.]+\.tmp")
"""``.NAME.PID.RANDOM.tmp``: a temporary of `write_text`, by the process PID."""


def check_destination(path: str | Path | None, *, folder: bool = False, option: str | None = None) -> None:
    """Raise `DestinationError` if `unwritable` finds a reason; ``None`` (no destination) passes.

    ``option`` (``--output``) names where ``path`` came from, so that an empty value names
    the option that was given one.
    """
    if path is None:
        return
    why = unwritable(path, folder=folder)
    if why is None:
        return
    if not str(path):
        raise DestinationError(
            f"{option or 'the destination'} is empty (''): give a {'folder' if folder else 'file'} "
            "name, or leave the option out"
        )
    given = f" (given as {option})" if option else ""
    raise DestinationError(f"cannot write {'to folder ' if folder else ''}{path}{given}: {why}")


def unwritable(path: str | Path, *, folder: bool = False) -> str | None:
    """Why ``path`` (a file, or with ``folder`` a folder) cannot be written, or ``None``.

    Checks names against the file system's length limit, what exists at ``path``
    (a symbolic link loop, a parent that is not a folder, a socket or block device),
    and, by creating and removing a file, that the nearest existing folder takes
    new files (permission bits alone do not tell: root ignores them). A character
    device or FIFO is written in place (`write_text`), so it needs write permission
    only; so does ``/dev/stdout`` (``/proc/self/fd/N``).
    """
    if not str(path):  # before Path(): Path("") is "."
        return "the name is empty (''); give a name"
    path = Path(path)
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            return f"the name {part[:24]}... is {len(os.fsencode(part))} bytes; the limit is {NAME_MAX}"
    existing = path if folder else path.parent
    try:
        found = _stat(path)
        if found is not None and folder != stat.S_ISDIR(found.st_mode):
            return "it is a folder; give a file name" if not folder else "it is a file, not a folder"
        if found is not None and not folder:
            how, detail = _destination(path)
            if how == "refuse":
                return detail
            if how == "descriptor":
                writable = fcntl.fcntl(int(detail), fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
                return None if writable else f"descriptor {detail} is not open for writing"
            if how == "direct":
                return None if os.access(path, os.W_OK) else "no permission to write to it"
        while _stat(existing) is None:
            existing = existing.parent
    except OSError as exc:  # a symlink loop, a parent that is a file, a name too long for the path...
        return _why(path, exc)
    if not existing.is_dir():
        return f"{existing} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".harness-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot create files in {existing} ({exc.strerror or exc})"
    return None


def _stat(path: Path) -> os.stat_result | None:
    """``os.stat`` (through symbolic links), ``None`` where nothing is; other errors raised
    (`Path.exists` says ``False`` for a symbolic link loop or a parent that is a file)."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _why(path: Path, exc: OSError) -> str:
    """What ``exc``, raised looking up ``path``, means, naming the part of ``path`` at fault."""
    prefixes = [Path(*path.parts[: i + 1]) for i in range(len(path.parts))]
    if exc.errno == errno.ELOOP:
        for prefix in prefixes:
            try:
                os.stat(prefix)
            except OSError as inner:
                if inner.errno == errno.ELOOP:
                    return (
                        f"{prefix} is a symbolic link loop (it never reaches a file or folder); "
                        "fix or remove the link, or name another destination"
                    )
                break
        return f"{exc.strerror} (a symbolic link loop); fix the links or name another destination"
    if exc.errno == errno.ENOTDIR:
        for prefix in prefixes[:-1]:
            found = _stat_or_none(prefix)
            if found is not None and not stat.S_ISDIR(found.st_mode):
                return (
                    f"{prefix} is not a folder, so nothing can be written under it; name another destination"
                )
        return f"{exc.strerror}: a part of the path is not a folder; name another destination"
    if exc.errno == errno.ENAMETOOLONG:
        return "the whole path is too long for the file system; use a shorter one"
    return exc.strerror or str(exc)


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


_OWN_DESCRIPTOR = re.compile(r"/proc/(?:self|thread-self|(\d+))(?:/task/\d+)?/fd/(\d+)")


def _destination(path: Path) -> tuple[str, str | None]:
    """How a write reaches ``path``, looked up through symbolic links:

    - ``("replace", None)``: nothing there, or a regular file: written to a temporary file
      and renamed over ``path`` (a symbolic link at ``path`` is replaced, its target kept);
    - ``("descriptor", "N")``: ``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``: this
      process's open descriptor N, written through a duplicate of it (sharing its offset);
    - ``("direct", None)``: a character device (``/dev/null``) or a FIFO, opened and
      written in place, never replaced;
    - ``("refuse", why)``: a socket, a block device, anything else that is not a file.

    Raises `OSError` where ``path`` cannot be looked up (a loop, a parent that is a file).
    """
    descriptor = _own_descriptor(path)
    if descriptor is not None:
        return "descriptor", str(descriptor)
    found = _stat(path)
    if found is None or stat.S_ISREG(found.st_mode) or stat.S_ISDIR(found.st_mode):
        return "replace", None  # a folder fails at the rename, as it always has
    mode = found.st_mode
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return "direct", None
    what = "a socket" if stat.S_ISSOCK(mode) else "a block device" if stat.S_ISBLK(mode) else "not a file"
    return "refuse", f"it is {what}, which a report cannot be written to; give a file name"


def _own_descriptor(path: Path) -> int | None:
    """N if ``path`` leads, through symbolic links, to this process's ``/proc/PID/fd/N``."""
    name = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        folder = os.path.realpath(os.path.dirname(name))
        match = _OWN_DESCRIPTOR.fullmatch(os.path.join(folder, os.path.basename(name)))
        if match and (match[1] is None or int(match[1]) == os.getpid()):
            return int(match[2])
        if not os.path.islink(name):
            return None
        name = os.path.join(os.path.dirname(name), os.readlink(name))
    return None


def write_text(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (as UTF-8) to ``path``: `write_bytes`."""
    return write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def write_bytes(path: str | Path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    The file appears complete or not at all: a killed writer leaves at most a
    hidden ``.tmp`` file (removed by the next write there), never a half-written
    result, and a write that fails (a full file system) leaves what was there. With
    ``overwrite=False`` an existing file is an error (`FileExistsError`): the final
    step is then a hard link, which fails if the name is taken, so two concurrent
    writers cannot both win.

    What is not a regular file is never replaced (`_destination`): a character device
    (``/dev/null``) or a FIFO is written in place (a FIFO waits for a reader, as a
    shell's ``>`` does), ``/dev/stdout`` through the descriptor, and a write error
    there (``ENOSPC`` from ``/dev/full``) is raised as `OSError`; a socket or block
    device is refused (`OSError`).
    """
    path = Path(path)
    how, detail = _destination(path)
    if how != "replace" and not overwrite:
        raise FileExistsError(errno.EEXIST, "the name is taken (not a regular file)", str(path))
    if how == "refuse":
        raise OSError(errno.EINVAL, detail, str(path))
    if how == "descriptor":
        for stream in (sys.stdout, sys.stderr):  # what this process printed there comes first
            with suppress(AttributeError, OSError, ValueError):
                if stream.fileno() == int(detail):
                    stream.flush()
        _write_all(os.dup(int(detail)), data)
        return path
    if how == "direct":
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            _write_all(fd, data)
            return path
        os.close(fd)  # replaced by a regular file since it was looked at: that one is replaced
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a result file is an ordinary file
    try:
        _write_all(fd, data, sync=True)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_all(fd: int, data: bytes, *, sync: bool = False) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write part), then close it."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str | Path, data: Any, *, overwrite: bool = True) -> Path:
    """`write_text` of ``data`` as indented JSON; other objects (pytest params) as ``str``."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n", overwrite=overwrite)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries in ``folder`` whose writer is no longer alive; those removed."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if match and not _alive(int(match[1])):
            try:
                os.unlink(folder / name)
                removed.append(folder / name)
            except OSError:
                pass  # another cleaner won, or not ours to remove
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


CACHE_ENV = "HARNESS_CACHE_DIR"
"""Folder of what the harness remembers between runs (default `user_cache_dir`)."""


def user_cache_dir() -> Path:
    """``~/.cache/gradient-harness``: the user's folder for what the harness keeps between runs
    (remembered devices, compiled code, runs whose destination failed)."""
    return Path.home() / ".cache" / "gradient-harness"


def cache_dir() -> Path:
    """``$HARNESS_CACHE_DIR``, else `user_cache_dir`: remembered devices, JAX's compiled code."""
    return Path(os.environ.get(CACHE_ENV) or user_cache_dir())


def fallback_dir() -> Path:
    """``$HARNESS_FALLBACK_DIR``, else `user_cache_dir`, else the temporary folder."""
    for folder in (os.environ.get(FALLBACK_ENV), user_cache_dir()):
        if folder and unwritable(folder, folder=True) is None:
            return Path(folder)
    return Path(tempfile.gettempdir())


def fallback_path(kind: str, suffix: str = ".json") -> Path:
    """A new file name for a ``kind`` run (``validate``, ``compare``) in `fallback_dir`."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return fallback_dir() / f"{kind}-{stamp}-{uuid.uuid4().hex[:8]}{suffix}"


def write_with_fallback(
    path: str | Path, text: str, kind: str, *, overwrite: bool = True
) -> tuple[Path, str | None]:
    """Write ``text`` to ``path``; if that fails, to a fallback file.

    Returns (where it went, why ``path`` failed or ``None``).
    """
    try:
        return write_text(path, text, overwrite=overwrite), None
    except OSError as exc:
        suffix = Path(path).suffix if len(Path(path).suffix) <= 8 else ".txt"
        kept = write_text(fallback_path(kind, suffix or ".txt"), text, overwrite=False)
        return kept, f"{type(exc).__name__}: {exc}"
