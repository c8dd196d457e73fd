"""`harness.machine`: the copy bandwidth that the bandwidth bound divides by."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from harness import machine

# --- machine --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cores", [1, 3])
def test_the_copy_bandwidth_copies_the_whole_array_on_every_core_at_once(monkeypatch, cores):
    """One slice per core this process may use, together the whole array, each copied on a
    thread of its own (the warm-up round, then each timed round)."""
    copied: list[tuple[int, str]] = []
    real = np.copyto

    def copyto(dst, src):
        copied.append((src.size, threading.current_thread().name))
        real(dst, src)

    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(machine.np, "copyto", copyto)
    rate = machine.host_copy_bandwidth(nbytes=3 * 2**20, repeats=2)
    assert rate > 0 and np.isfinite(rate)
    assert len(copied) == 3 * cores  # warm-up and two timed rounds
    for start in range(0, len(copied), cores):
        rounds = copied[start : start + cores]
        assert sum(size for size, _ in rounds) == 3 * 2**20 // 8
    assert threading.main_thread().name not in {name for _, name in copied}
