"""Exit codes, and where a command's report goes: destinations checked before any work, and
writes that keep the report in a named fallback file when its destination fails."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.errors import DestinationError, UsageError
from harness.results import files, plots
from harness.results.runs import Row

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
"""EXIT_INCONCLUSIVE: the gate found no regression but could not judge some rows (flagged)."""


def check_destination(path, option: str, *, folder: bool = False) -> None:
    """A usage error, before any work, if ``path`` (given as ``option``) cannot be written."""
    try:
        files.check_destination(path, folder=folder, option=option)
    except DestinationError as exc:
        raise UsageError(str(exc)) from None


def deliver(path, text: str, kind: str, code: int, *, overwrite: bool = True) -> int:
    """Write ``text`` to ``path`` or, failing that, to a named fallback file; the exit code."""
    where, why = files.write_with_fallback(path, text, kind, overwrite=overwrite)
    if why:
        print(f"error: could not write {path} ({why}); the run is kept in {where}", file=sys.stderr)
        return EXIT_FAIL
    return code


def write_figures(rows: list[Row], folder: str) -> bool:
    """The figures of ``rows`` written into ``folder``, each named on stderr; False (said on
    stderr) when one could not be written, as on a full disk: no half-written figure is left."""
    try:
        for path in plots.plot(rows, Path(folder)):
            print(f"wrote {path}", file=sys.stderr)
    except OSError as exc:
        print(f"error: could not write the figures to {folder}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True
