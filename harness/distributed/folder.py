"""A world's folder: the files by which the launcher (`harness.distributed.launch`) and the world's
ranks (`harness.distributed.worker`) talk. The launcher writes the spec and the reference, each
rank's output goes to its own file, and rank 0 writes the result last, whole or not at all.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

SPEC_FILE, REFERENCE_FILE, RESULT_FILE = "spec.json", "reference.npz", "result.pkl"


def write_spec(folder: Path, spec: dict) -> None:
    """The world: ``engine``, ``world``, global ``size``, ``dtype`` and the coordinator's ``port``."""
    (folder / SPEC_FILE).write_text(json.dumps(spec))


def read_spec(folder: Path) -> dict:
    return json.loads((folder / SPEC_FILE).read_text())


def write_reference(folder: Path, reference: dict[str, np.ndarray]) -> None:
    """The reference (`harness.distributed.data.reference`) that rank 0 validates against."""
    np.savez(folder / REFERENCE_FILE, **reference)


def read_reference(folder: Path):
    return np.load(folder / REFERENCE_FILE)


def rank_output(folder: Path, rank: int) -> Path:
    """Where process ``rank``'s stdout and stderr go."""
    return folder / f"rank-{rank}.out"


def write_result(folder: Path, result: dict) -> None:
    """Rank 0's result, renamed into place once written."""
    tmp = folder / f".{RESULT_FILE}.tmp"
    tmp.write_bytes(pickle.dumps(result))
    tmp.rename(folder / RESULT_FILE)


def read_result(folder: Path) -> dict:
    return pickle.loads((folder / RESULT_FILE).read_bytes())
