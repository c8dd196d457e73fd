"""``list``'s devices: detected in child processes, remembered for the same environment only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import faulty
import pytest

from harness import devices, plugins


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """Probes counted; a cache folder of this test's own."""
    monkeypatch.setenv(devices.CACHE_ENV, str(tmp_path))
    calls = []
    real = devices._probe

    def probe(names, gpu):
        calls.append(list(names))
        return real(names, gpu)

    monkeypatch.setattr(devices, "_probe", probe)
    return calls


def test_devices_are_detected_once_then_remembered(counted, fast):
    first, _, when = devices.detect([fast])
    assert when is None and first[fast.name] == ", ".join(fast.backend.devices())
    again, _, when = devices.detect([fast])
    assert again == first and when is not None
    assert len(counted) == 1


@pytest.mark.parametrize("change", ["variable", "refresh", "damaged"])
def test_any_change_to_the_environment_detects_again(counted, fast, monkeypatch, change):
    devices.detect([fast])
    if change == "variable":
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    elif change == "damaged":
        devices.cache_path().write_text("{not json")
    found, _, when = devices.detect([fast], refresh=change == "refresh")
    assert when is None and len(counted) == 2
    assert found[fast.name] == ", ".join(fast.backend.devices())


def test_a_failed_detection_is_not_remembered(counted, fast, monkeypatch):
    monkeypatch.setattr(
        devices,
        "_probe",
        lambda names, gpu: (counted.append(names) or {n: "error: RuntimeError: planted" for n in names}, {}),
    )
    assert devices.detect([fast])[0][fast.name].startswith("error:")
    assert not devices.cache_path().exists()


def test_on_a_machine_with_a_gpu_each_backend_that_sees_none_says_why(counted, installed, monkeypatch):
    """Here no backend sees a GPU; pretend the machine has one, as a CUDA machine with CPU-only
    builds would: every real backend's reason names what to install (or that it is CPU-only)."""
    monkeypatch.setattr(devices.machine, "has_gpu", lambda: True)
    found, notes, _ = devices.detect(installed)
    blind = {e.name for e in installed if "cuda" not in found[e.name]}
    assert set(notes) == blind and blind
    for name, reason in notes.items():
        assert "pip install" in reason or "CPU only" in reason, (name, reason)
    monkeypatch.setattr(devices.machine, "has_gpu", lambda: False)
    assert devices.detect(installed, refresh=True)[1] == {}


# --- A damaged cache (issue #26) --------------------------------------------------------------------


DATE = "2025-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    "damage",
    [
        lambda key, name: "[" * 100_000 + "]" * 100_000,
        lambda key, name: json.dumps({key: None}).replace("null", "[" * 100_000 + "]" * 100_000),
        lambda key, name: json.dumps({key: [name]}),
        lambda key, name: json.dumps({key: {"detected": DATE, "devices": [name]}}),
        lambda key, name: json.dumps({key: {"devices": {name: "cpu"}}}),
        lambda key, name: json.dumps({key: {"detected": DATE, "devices": {name: ["cpu"]}}}),
        lambda key, name: json.dumps({key: {"detected": DATE, "devices": {name: "cpu"}, "no_gpu": 5}}),
    ],
    ids=[
        "nested-100000-deep",
        "entry-nested-deep",
        "entry-a-list",
        "devices-a-list",
        "no-date",
        "not-text",
        "no-gpu-a-number",
    ],
)
def test_a_damaged_cache_is_detected_again(counted, fast, damage):
    devices.cache_path().parent.mkdir(parents=True, exist_ok=True)
    devices.cache_path().write_text(damage(devices.fingerprint(), fast.name))
    found, _, when = devices.detect([fast])
    assert when is None and len(counted) == 1
    assert found[fast.name] == ", ".join(fast.backend.devices())
    assert devices.detect([fast])[2] is not None  # the damaged cache was replaced by a good one
    assert len(counted) == 1


def test_a_cache_nested_100000_deep_lists_the_backends(tmp_path, fast):
    """``list`` with that cache: the backend table, no traceback."""
    (tmp_path / "devices.json").write_text("[" * 100_000 + "]" * 100_000)
    env = {**os.environ, devices.CACHE_ENV: str(tmp_path), "COLUMNS": "1000"}
    env.pop(plugins.BACKENDS_ENV, None)
    result = subprocess.run(
        [sys.executable, "-m", "harness", "list"], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert fast.name in result.stdout and ", ".join(fast.backend.devices()) in result.stdout
    assert json.loads((tmp_path / "devices.json").read_text())  # detected, and remembered


# --- Signals end every detection child (issue #26) --------------------------------------------------


def descendants(pid: int) -> set[int]:
    """Every process started, directly or not, by ``pid`` (from /proc: its children's children too)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass  # gone meanwhile
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture(scope="module")
def hanging_detection(tmp_path_factory, registry) -> tuple[dict, Path]:
    """An installed backend whose device detection starts a helper process, then hangs."""
    inner = faulty.inner_of(registry)
    if inner is None:
        pytest.skip("neither autograd nor jax is installed")
    path = tmp_path_factory.mktemp("hanging-detection")
    return faulty.install(path, inner, {"helper": "HangWithHelper"}), path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_list_refresh_ends_every_detection_child(hanging_detection, tmp_path, signum):
    """SIGTERM (or SIGINT) to ``list --refresh`` alone, while its detection children run: each
    child, and what it started, ends with it; SIGTERM ends the harness as SIGTERM does."""
    env, cwd = hanging_detection
    pids = tmp_path / "pids"
    proc = faulty.harness_in_terminal(["list", "--refresh"], {**env, faulty.PIDS_ENV: str(pids)}, cwd)
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 300  # a safety net, not a race: it only waits
        while len(faulty.pids_of(pids)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(faulty.pids_of(pids)) == 2, "the hanging detection never started its helper"
        started = descendants(proc.pid) | set(faulty.pids_of(pids).values())
        os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
        left = faulty.wait_gone(started, within=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in started:  # the test's own mess, whatever the harness left
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert left == [], f"still running after {signal.Signals(signum).name}: {left}"
    assert "Traceback" not in err, err
    if signum == signal.SIGTERM:
        assert proc.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), (proc.returncode, err)
    else:
        assert proc.returncode == 128 + signal.SIGINT, (proc.returncode, err)
