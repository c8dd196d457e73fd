"""What machine a run was measured on: CPU and GPU models, framework versions, copy bandwidth;
and what it was doing (`state`: load, CPUs allowed, frequency, governor, thread settings).

The bandwidth is measured, not looked up: the best of several large array
copies on every core at once (bytes read plus bytes written, over the time). It
is the physical bound that memory-bound benchmarks are divided by.
"""

from __future__ import annotations

import glob
import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from harness import threads

FRAMEWORKS = (
    "jax",
    "jaxlib",
    "jax-cuda12-plugin",
    "jax-cuda13-plugin",
    "torch",
    "autograd",
    "tensorflow",
    "tensorflow-cpu",
    "numpy",
    "pytest-benchmark",
)
COPY_BYTES = 256 * 2**20


def host_copy_bandwidth(nbytes: int = COPY_BYTES, repeats: int = 5) -> float:
    """Best host-memory copy rate in bytes/s (read + write), every core this process may use
    copying its own slice at once, as a multithreaded kernel does (STREAM's copy, with numpy's
    ``copyto``, which releases the GIL). One thread alone reaches about half the machine's rate
    on a 2-core Xeon (10.7 against 20.2 GB/s, measured), and two-threaded kernels then showed
    170% of that "bound"."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    edges = np.linspace(0, src.size, cores + 1).astype(int)
    slices = [(dst[a:b], src[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def copy() -> float:
        started = time.perf_counter()
        list(pool.map(lambda pair: np.copyto(*pair), slices))
        return time.perf_counter() - started

    with ThreadPoolExecutor(cores) as pool:
        copy()  # starts the threads and touches every page
        best = min(copy() for _ in range(repeats))
    return 2 * src.nbytes / best


def cuda_copy_bandwidth(nbytes: int = 4 * COPY_BYTES, repeats: int = 10) -> float | None:
    """Best device-memory copy rate in bytes/s on ``cuda:0`` via torch, or ``None`` without a GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    src = torch.ones(nbytes // 4, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * src.numel() * 4 / best


def host_memory() -> int | None:
    """This machine's physical memory in bytes, where the system says (``None`` elsewhere)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[dict]:
    """NVIDIA GPUs as reported by ``nvidia-smi`` (name, driver, memory), empty if none."""
    if not shutil.which("nvidia-smi"):
        return []
    query = "--query-gpu=name,driver_version,memory.total"
    try:
        out = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [
        dict(zip(("name", "driver", "memory"), (p.strip() for p in line.split(",")), strict=False))
        for line in out.splitlines()
        if line.strip()
    ]


def has_gpu() -> bool:
    """Whether this machine has an NVIDIA GPU, whatever the frameworks see: a device node or
    ``nvidia-smi`` listing one."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or bool(gpus())


def versions() -> dict[str, str | None]:
    found = {}
    for dist in FRAMEWORKS:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


def info(measure: bool = True) -> dict:
    """The ``harness`` section of a run's ``machine_info``."""
    record = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "gpus": gpus(), "versions": versions()}
    if measure:
        record["host_copy_bandwidth"] = host_copy_bandwidth()
        record["cuda_copy_bandwidth"] = cuda_copy_bandwidth()
    return record


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def cpu_frequency(cpus: list[int], read=_read) -> tuple[dict[str, float] | None, str | None]:
    """(MHz per CPU, the scaling governor) where ``/sys`` says; ``None`` for what it does not
    (virtual machines often expose neither)."""
    base = "/sys/devices/system/cpu/cpu{}/cpufreq/{}"
    khz = {str(c): read(base.format(c, "scaling_cur_freq")) for c in cpus}
    mhz = {c: int(v) / 1000 for c, v in khz.items() if v and v.isdigit()} or None
    governors = {read(base.format(c, "scaling_governor")) for c in cpus} - {None}
    return mhz, ",".join(sorted(governors)) or None


def state() -> dict:
    """What the machine is doing now: load average (1, 5, 15 min), the CPUs this process may use,
    their frequency and governor, and the thread settings in force (`harness.threads`)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    mhz, governor = cpu_frequency(cpus or list(range(os.cpu_count() or 1)))
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return {
        "load_average": load,
        "cpus_allowed": cpus,
        "cpu_mhz": mhz,
        "governor": governor,
        "threads": threads.settings(),
    }


def around(before: dict) -> dict:
    """The state before a run (given) and after it (now), for ``machine_info``."""
    return {"state_before": before, "state_after": state()}
