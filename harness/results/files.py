"""Result files: destinations checked before work, written atomically, never lost.

- `unwritable` says why a destination cannot be written, before any work starts.
- `write_text` / `write_json` write through a temporary file in the same folder,
  so a result appears complete or not at all; temporaries left by a writer that
  was killed are removed by the next write into that folder.
- `deliver` writes a finished run where it was asked to go and, if that fails
  at the end, to a fallback file (`fallback_dir`) instead of losing it.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

FALLBACK_ENV = "HARNESS_FALLBACK_DIR"
"""Where runs go when their destination fails (default: ~/.cache/gradient-harness)."""
NAME_MAX = 255
_TEMPORARY = re.compile(r"\..+\.(\d+)\.[^.]+\.tmp")
"""``.NAME.PID.RANDOM.tmp``: a temporary of `write_text`, by the process PID."""


def unwritable(path: str | Path, *, folder: bool = False) -> str | None:
    """Why ``path`` (a file, or with ``folder`` a folder) cannot be written, or ``None``.

    Checks names against the file system's length limit, what exists at ``path``,
    and, by creating and removing a file, that the nearest existing folder takes
    new files (permission bits alone do not tell: root ignores them).
    """
    path = Path(path)
    if not str(path):
        return "the name is empty"
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            return f"the name {part[:24]}... is {len(os.fsencode(part))} bytes; the limit is {NAME_MAX}"
    existing = path if folder else path.parent
    try:
        if path.exists() and folder != path.is_dir():
            return "it is a folder; give a file name" if not folder else "it is a file, not a folder"
        while not existing.exists():
            existing = existing.parent
    except OSError as exc:  # a symlink loop, a name too long for the whole path, ...
        return exc.strerror or str(exc)
    if not existing.is_dir():
        return f"{existing} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".harness-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot create files in {existing} ({exc.strerror or exc})"
    return None


def write_text(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder.

    The file appears complete or not at all: a killed writer leaves at most a
    hidden ``.tmp`` file (removed by the next write there), never a half-written
    result. With ``overwrite=False`` an existing file is an error
    (`FileExistsError`): the final step is then a hard link, which fails if the
    name is taken, so two concurrent writers cannot both win.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a result file is an ordinary file
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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


def fallback_dir() -> Path:
    """``$HARNESS_FALLBACK_DIR``, else ``~/.cache/gradient-harness``, else the temporary folder."""
    for folder in (os.environ.get(FALLBACK_ENV), Path.home() / ".cache" / "gradient-harness"):
        if folder and unwritable(folder, folder=True) is None:
            return Path(folder)
    return Path(tempfile.gettempdir())


def fallback_path(kind: str, suffix: str = ".json") -> Path:
    """A new file name for a ``kind`` run (``validate``, ``compare``) in `fallback_dir`."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return fallback_dir() / f"{kind}-{stamp}-{uuid.uuid4().hex[:8]}{suffix}"


def deliver(path: str | Path, text: str, kind: str, *, overwrite: bool = True) -> tuple[Path, str | None]:
    """Write ``text`` to ``path``; if that fails, to a fallback file.

    Returns (where it went, why ``path`` failed or ``None``).
    """
    try:
        return write_text(path, text, overwrite=overwrite), None
    except OSError as exc:
        suffix = Path(path).suffix if len(Path(path).suffix) <= 8 else ".txt"
        kept = write_text(fallback_path(kind, suffix or ".txt"), text, overwrite=False)
        return kept, f"{type(exc).__name__}: {exc}"
