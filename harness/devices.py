"""Which devices each backend sees, for ``python -m harness list``: detected, then remembered.

Detecting devices means importing every framework (several seconds, each in a
child process so that this one imports none). The answer depends only on the
environment, so it is cached under a fingerprint of everything that can change
it: the interpreter, every installed distribution and its version, the GPU
device nodes, and the environment variables that hide or choose devices. Any
change to those detects again; ``list --refresh`` always does.
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import importlib.metadata
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress
from pathlib import Path

from harness import machine, plugins
from harness.results import files

CACHE_ENV = "HARNESS_CACHE_DIR"
"""Folder of the device cache (default ~/.cache/gradient-harness)."""
DEVICE_ENV = (
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "JAX_PLATFORMS",
    "JAX_PLATFORM_NAME",
    "XLA_FLAGS",
)
DEVICE_NODES = ("/dev/nvidia*", "/dev/dri/*", "/dev/kfd", "/dev/accel*")
PROBE_TIMEOUT_S = 300


def cache_path() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "gradient-harness") / "devices.json"


def fingerprint() -> str:
    """A hash of everything the devices a backend sees can depend on."""
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    nodes = sorted(n for pattern in DEVICE_NODES for n in glob.glob(pattern))
    env = [f"{k}={os.environ.get(k)}" for k in DEVICE_ENV]
    text = "\n".join([sys.executable, sys.version, *dists, *nodes, *env])
    return hashlib.sha256(text.encode()).hexdigest()


def detect(
    entries: list[plugins.BackendEntry], refresh: bool = False
) -> tuple[dict[str, str], dict[str, str], str | None]:
    """For the available ``entries``: ({backend: its devices, comma-separated, or "error: ..."},
    {backend: why it sees no GPU, for those that see none on a machine that has one}, when they
    were detected if that was in an earlier run)."""
    names = [e.name for e in entries if not e.unavailable]
    key = fingerprint()
    cached = {} if refresh else _read_cache().get(key, {})
    if names and all(n in cached.get("devices", {}) for n in names):
        notes = cached.get("no_gpu", {})
        return {n: cached["devices"][n] for n in names}, _only(notes, names), cached["detected"]
    found, notes = _probe(names, machine.has_gpu())
    detected = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if not any(v.startswith("error:") for v in found.values()):
        _write_cache({key: {"detected": detected, "devices": found, "no_gpu": notes}})
    return found, notes, None


def _only(notes: dict, names: list[str]) -> dict[str, str]:
    return {n: notes[n] for n in names if n in notes}


def _probe_one(name: str, gpu: bool) -> tuple[list[str], str | None]:
    """Run in a child process: import the framework, detect its devices and, if the machine
    has a GPU that it does not see, ask it why."""
    backend = plugins.load().backends[name].backend
    found = backend.devices()
    if not gpu or any(d != "cpu" for d in found):
        return found, None
    reason = getattr(backend, "no_gpu_reason", None)
    return found, reason() if reason else "sees no GPU (the backend does not say why)"


def _probe(names: list[str], gpu: bool) -> tuple[dict[str, str], dict[str, str]]:
    found: dict[str, str] = {}
    notes: dict[str, str] = {}
    if not names:
        return found, notes
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(names), mp_context=context) as pool:
        futures = {name: pool.submit(_probe_one, name, gpu) for name in names}
        for name, future in futures.items():
            try:
                seen, note = future.result(timeout=PROBE_TIMEOUT_S)
            except Exception as exc:
                found[name] = f"error: {type(exc).__name__}: {exc}"
                continue
            found[name] = ", ".join(seen)
            if note:
                notes[name] = note
    return found, notes


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}  # none yet, unreadable or damaged: detect again
    return data if isinstance(data, dict) else {}


def _write_cache(data: dict) -> None:
    """Keep only the current environment's entry; a cache that cannot be written is no error."""
    with suppress(OSError):
        files.write_json(cache_path(), data)
