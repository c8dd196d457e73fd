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

    def probe(names):
        calls.append(list(names))
        return real(names)

    monkeypatch.setattr(devices, "_probe", probe)
    return calls


def test_devices_are_detected_once_then_remembered(counted, fast):
    first, when = devices.detect([fast])
    assert when is None and first[fast.name] == ", ".join(fast.backend.devices())
    again, when = devices.detect([fast])
    assert again == first and when is not None
    assert len(counted) == 1


@pytest.mark.parametrize("change", ["variable", "refresh", "damaged"])
def test_any_change_to_the_environment_detects_again(counted, fast, monkeypatch, change):
    devices.detect([fast])
    if change == "variable":
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    elif change == "damaged":
        devices.cache_path().write_text("{not json")
    found, when = devices.detect([fast], refresh=change == "refresh")
    assert when is None and len(counted) == 2
    assert found[fast.name] == ", ".join(fast.backend.devices())


def test_a_failed_detection_is_not_remembered(counted, fast, monkeypatch):
    monkeypatch.setattr(
        devices,
        "_probe",
        lambda names: counted.append(names) or {n: "error: RuntimeError: planted" for n in names},
    )
    assert devices.detect([fast])[0][fast.name].startswith("error:")
    assert not devices.cache_path().exists()
