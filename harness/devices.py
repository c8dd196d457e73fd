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

from harness import files, plugins

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


def detect(entries: list[plugins.BackendEntry], refresh: bool = False) -> tuple[dict[str, str], str | None]:
    """({backend: its devices, comma-separated, or "error: ..."}, when they were detected if
    that was in an earlier run) for the available ``entries``."""
    names = [e.name for e in entries if not e.unavailable]
    key = fingerprint()
    cached = {} if refresh else _read_cache().get(key, {})
    if names and all(n in cached.get("devices", {}) for n in names):
        return {n: cached["devices"][n] for n in names}, cached["detected"]
    found = _probe(names)
    detected = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if not any(v.startswith("error:") for v in found.values()):
        _write_cache({key: {"detected": detected, "devices": found}})
    return found, None


def _probe_one(name: str) -> list[str]:
    """Run in a child process: import the framework and detect its devices."""
    return plugins.load().backends[name].backend.devices()


def _probe(names: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    if not names:
        return found
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(names), mp_context=context) as pool:
        futures = {name: pool.submit(_probe_one, name) for name in names}
        for name, future in futures.items():
            try:
                found[name] = ", ".join(future.result(timeout=PROBE_TIMEOUT_S))
            except Exception as exc:
                found[name] = f"error: {type(exc).__name__}: {exc}"
    return found


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
