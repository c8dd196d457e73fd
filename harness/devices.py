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
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

from harness import machine, plugins
from harness.results import files

CACHE_ENV = files.CACHE_ENV
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
    return files.cache_dir() / "devices.json"


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
    cached = {} if refresh else _entry(_read_cache().get(key))
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
    """Each backend's devices, detected in a child process of its own.

    Each child leads a process group of its own (so do any helpers it starts), and every
    group is killed however detection ends early: a child past `PROBE_TIMEOUT_S`, Ctrl-C,
    or SIGTERM, which then ends this process as it would have without children.
    """
    found: dict[str, str] = {}
    notes: dict[str, str] = {}
    if not names:
        return found, notes
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=len(names), mp_context=context, initializer=os.setpgrp)
    ended = False
    with _sigterm_raises() as sigterm:
        try:
            sigterm.arm()
            futures = {name: pool.submit(_probe_one, name, gpu) for name in names}
            deadline = time.monotonic() + PROBE_TIMEOUT_S
            for name, future in futures.items():
                try:
                    seen, note = future.result(timeout=max(0.0, deadline - time.monotonic()))
                except Exception as exc:
                    if isinstance(exc, TimeoutError):
                        exc = TimeoutError(f"no answer within {PROBE_TIMEOUT_S} s")
                    found[name] = f"error: {type(exc).__name__}: {exc}"
                    continue
                found[name] = ", ".join(seen)
                if note:
                    notes[name] = note
            ended = all(f.done() for f in futures.values())
        except _Terminated:
            pass
        finally:
            sigterm.quiet()  # a SIGTERM from here on is only noted: the children go first
            if not ended:  # interrupted, or a child that does not answer
                _kill(pool)
            pool.shutdown(wait=True, cancel_futures=True)
    if sigterm.received:
        signal.raise_signal(signal.SIGTERM)  # under the disposition before: by default, the end
        raise KeyboardInterrupt  # a handler that returned: stop as Ctrl-C does
    return found, notes


class _Terminated(BaseException):
    """SIGTERM arrived while detecting (a BaseException: ``except Exception`` does not keep it)."""


class _SigtermRaises:
    """`_Terminated` on the first SIGTERM between `arm` and `quiet` (before `arm` too, raised
    by `arm`); whether one came (`received`)."""

    def __init__(self) -> None:
        self.received = False
        self.raising = False

    def arm(self) -> None:
        if self.received:
            raise _Terminated
        self.raising = True

    def handler(self, signum, frame) -> None:
        self.received = True
        if self.raising:
            self.raising = False
            raise _Terminated

    def quiet(self) -> None:
        self.raising = False


@contextmanager
def _sigterm_raises():
    """While detecting, SIGTERM as `_SigtermRaises` says; SIGTERM is left alone where it is
    ignored or this is not the main thread (only it can set a handler)."""
    state = _SigtermRaises()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        yield state
        return
    signal.signal(signal.SIGTERM, state.handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _kill(pool: ProcessPoolExecutor) -> None:
    """SIGKILL every child of ``pool``, each with its process group (what it started)."""
    for pid in list((getattr(pool, "_processes", None) or {}).keys()):
        for kill, target in ((os.killpg, pid), (os.kill, pid)):  # the group, if it has one yet
            with suppress(OSError):
                kill(target, signal.SIGKILL)


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}  # none yet, unreadable or damaged (nested too deeply, too): detect again
    return data if isinstance(data, dict) else {}


def _entry(entry) -> dict:
    """A cache entry as `detect` wrote it, or ``{}`` (detect again) if it is damaged."""
    if not isinstance(entry, dict) or not isinstance(entry.get("detected"), str):
        return {}
    tables = entry.get("devices"), entry.get("no_gpu", {})
    if not all(isinstance(t, dict) and all(isinstance(v, str) for v in t.values()) for t in tables):
        return {}
    return entry


def _write_cache(data: dict) -> None:
    """Keep only the current environment's entry; a cache that cannot be written is no error."""
    with suppress(OSError):
        files.write_json(cache_path(), data)
