"""``list``'s devices: detected in child processes, remembered for the same environment only."""

from __future__ import annotations

import pytest

from harness import devices


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
