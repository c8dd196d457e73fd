"""What the machine did while a row was timed: how much of this process's CPUs other processes
used, how long this process's threads waited for a CPU, the peak memory a call adds, and the
flags that say a row's timing is unsound.

Two probes, over the same wall interval (a row's calibration, warm-up and timed rounds):

- **others' share** (``contention``), from ``/proc/stat`` (busy ticks of each CPU this process
  may use) against this process's own CPU time (`time.process_time`):
  ``(busy time of our CPUs - our own CPU time) / (CPUs x wall time)``, 0 to 1. It counts
  others on CPUs this process did not need too (one busy job on one of two cores reads 0.5
  beside a single-threaded numpy loop that it does not slow), and ``/proc/stat`` counts in
  10 ms ticks, so alone it decides only where the next probe cannot be read;
- **run-queue wait** (``run_queue_wait``), from ``/proc/self/task/*/schedstat``: the time this
  process's threads were ready to run but waited for a CPU, over the wall time (above 1 when
  several threads wait at once). This is the harm, but it counts waits behind the process's
  own threads too (JAX's and torch's pools on 2 cores wait for each other on an idle machine).

A row is ``contended`` when both say so: its run-queue wait above `WAITED` while others used
more than `CONTENDED` of its CPUs (where schedstat cannot be read, others' share alone);
``spread`` when its IQR is above `SPREAD` times its median. The thresholds come from
measurements on a 2-core AMD EPYC (README "Timings you can trust").
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WAITED = 0.25
"""A row is flagged ``contended`` when its threads waited for a CPU more than this share of
the wall time (measured: 0.01-0.06 on the quiet machine, 0.58-1.34 beside numpy loops) ..."""
CONTENDED = 0.2
"""... while others used more than this share of its CPUs (a quick compare of JAX and torch on
the idle machine: median 0.01, 90th percentile 0.32 as a stray job passed; beside four numpy
loops: median 0.52). Where run-queue waits cannot be read, this share alone decides."""
SPREAD = 1.0
"""A row is flagged ``spread`` when its IQR is more than this times its median (the same
compares: 2 of 116 idle rows above it, 18 above 0.5, the earlier threshold)."""
STAT_FILE = "/proc/stat"
STATUS_FILE, CLEAR_REFS = "/proc/self/status", "/proc/self/clear_refs"
SCHEDSTAT = "/proc/self/task/*/schedstat"


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity), or every CPU where that is unknown."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def busy_ticks(text: str, cpus: list[int]) -> int | None:
    """Busy clock ticks (user, nice, system, irq, softirq, steal) of ``cpus`` summed, from the
    text of ``/proc/stat``; ``None`` when a CPU is missing from it."""
    per_cpu = {}
    for line in text.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(f) for f in fields[:8]] + [0] * (8 - len(fields[:8]))
            user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
            per_cpu[int(name[3:])] = user + nice + system + irq + softirq + steal
    if any(c not in per_cpu for c in cpus):
        return None
    return sum(per_cpu[c] for c in cpus)


def run_queue_wait(texts: list[str | None]) -> float | None:
    """Seconds this process's threads have waited on a run queue, summed, from the text of each
    thread's ``schedstat`` (on-CPU ns, waiting ns, timeslices); ``None`` if none can be read."""
    waited = [int(t.split()[1]) for t in texts if t and len(t.split()) >= 2]
    return sum(waited) / 1e9 if waited else None


@dataclass(frozen=True)
class Sample:
    """One reading: wall clock, busy ticks of our CPUs, our own CPU seconds, our threads'
    run-queue wait in seconds."""

    wall: float
    busy: int | None
    own: float
    waited: float | None = None


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def sample(cpus: list[int], read: Callable[[str], str | None] = _read) -> Sample:
    text = read(STAT_FILE)
    waited = run_queue_wait([read(path) for path in glob.glob(SCHEDSTAT)])
    busy = None if text is None else busy_ticks(text, cpus)
    return Sample(time.perf_counter(), busy, time.process_time(), waited)


def waiting(before: Sample, after: Sample) -> float | None:
    """Seconds this process's threads waited for a CPU between two samples, over the wall time
    between them; ``None`` where schedstat could not be read. (A thread that ended in between
    takes its waits with it: never below 0.)"""
    wall = after.wall - before.wall
    if before.waited is None or after.waited is None or wall <= 0:
        return None
    return max(0.0, after.waited - before.waited) / wall


def contention(before: Sample, after: Sample, cpus: int, hz: float | None = None) -> float | None:
    """Share of ``cpus`` CPUs that other processes kept busy between two samples (0 to 1), or
    ``None`` where ``/proc/stat`` could not be read or no time passed."""
    wall = after.wall - before.wall
    if before.busy is None or after.busy is None or wall <= 0 or cpus < 1:
        return None
    hz = hz or os.sysconf("SC_CLK_TCK")
    others = (after.busy - before.busy) / hz - (after.own - before.own)
    return min(1.0, max(0.0, others / (cpus * wall)))


def flags(others: float | None, waited: float | None, median: float, iqr: float) -> list[str]:
    """Why a row's timing is unsound: ``contended`` (its threads waited for a CPU more than
    `WAITED` of the time while others used more than `CONTENDED` of its CPUs; without the wait,
    the share alone), ``spread`` (IQR over `SPREAD` times the median)."""
    found = []
    busy = others is not None and others > CONTENDED
    if busy and (waited is None or waited > WAITED):
        found.append("contended")
    if median > 0 and iqr / median > SPREAD:
        found.append("spread")
    return found


def _status_bytes(key: str, read: Callable[[str], str | None] = _read) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (VmRSS, VmHWM) in bytes, or ``None``."""
    text = read(STATUS_FILE) or ""
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    return None


def _trim() -> None:
    """Hand freed heap memory back to the system (glibc's ``malloc_trim``), so that what the
    timed calls freed does not hide the next call's peak in the resident set."""
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError, TypeError):  # no glibc: nothing to trim
        ctypes.CDLL(name).malloc_trim(0)


def peak_rss_added(call: Callable[[], Any]) -> int | None:
    """Bytes the resident set rose to above where it stood, during one ``call()`` (Linux: the
    high-water mark reset through ``/proc/self/clear_refs``); ``None`` where it cannot be reset.
    The inputs are resident already; the result counts, held until the mark is read."""
    import gc

    gc.collect()
    _trim()
    try:
        with open(CLEAR_REFS, "w") as fh:
            fh.write("5")
    except OSError:
        return None
    start = _status_bytes("VmRSS")
    result = call()
    peak = _status_bytes("VmHWM")
    del result
    if start is None or peak is None:
        return None
    return max(0, peak - start)
