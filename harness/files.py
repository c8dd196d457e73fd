"""Result files: written atomically, optionally never over an existing file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder.

    The file appears complete or not at all: an interrupted run leaves at most a
    stray hidden ``.tmp`` file, never a half-written result. With
    ``overwrite=False`` an existing file is an error (`FileExistsError`): the
    final step is then a hard link, which fails if the name is taken, so two
    concurrent writers cannot both win.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
