"""Shared fixtures: the plugin registry and a fixture parametrized over the built-in backends.

A backend that is not installed is skipped, unless ``$HARNESS_REQUIRE_BACKENDS``
names it (tox's ``all`` environment does): then its absence fails the test, so
a run that was meant to cross-validate all four cannot pass by skipping.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from harness import machine, plugins

BUILTIN = ("jax", "autograd", "torch", "tensorflow")
REQUIRED = {n for n in os.environ.get("HARNESS_REQUIRE_BACKENDS", "").split(",") if n}


@pytest.fixture(scope="session")
def registry() -> plugins.Registry:
    return plugins.load()


def require(entry: plugins.BackendEntry) -> plugins.BackendEntry:
    """Skip (or fail, if required) when ``entry``'s framework is not installed."""
    if entry.unavailable:
        if entry.name in REQUIRED:
            pytest.fail(f"required backend {entry.name} is unavailable: {entry.unavailable}")
        pytest.skip(entry.unavailable)
    return entry


@pytest.fixture(params=BUILTIN)
def entry(request, registry) -> plugins.BackendEntry:
    """Each built-in backend in turn."""
    return require(registry.backends[request.param])


@pytest.fixture
def installed(registry) -> list[plugins.BackendEntry]:
    """The built-in backends that are installed (at least one, else the test is skipped)."""
    entries = [registry.backends[n] for n in BUILTIN if not registry.backends[n].unavailable]
    missing = REQUIRED - {e.name for e in entries}
    if missing:
        pytest.fail(f"required backends are unavailable: {', '.join(sorted(missing))}")
    if not entries:
        pytest.skip("no built-in backend is installed")
    return entries


@pytest.fixture
def fast(installed) -> plugins.BackendEntry:
    """One installed built-in backend, the quickest to validate (autograd has no compile step)."""
    return next((e for e in installed if e.name == "autograd"), installed[0])


@pytest.fixture
def quick_machine(monkeypatch):
    """`machine.info` without its 256 MiB copy loops (seconds each): a fixed bandwidth instead."""
    monkeypatch.setattr(machine, "host_copy_bandwidth", lambda *a, **k: 1.0e10)
    monkeypatch.setattr(machine, "cuda_copy_bandwidth", lambda *a, **k: None)


@pytest.fixture
def with_plugin(monkeypatch):
    """Make the CLI's ``plugins.load()`` also load the given (name, plugin) pairs."""
    real_load = plugins.load

    def install(*extra):
        monkeypatch.setattr(plugins, "load", lambda: real_load(extra=list(extra)))

    return install


@pytest.fixture(autouse=True, scope="session")
def device_cache(tmp_path_factory):
    """Device detections are remembered in a folder of this test session, not in ~/.cache."""
    folder = tmp_path_factory.mktemp("device-cache")
    previous = os.environ.get("HARNESS_CACHE_DIR")
    os.environ["HARNESS_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("HARNESS_CACHE_DIR", None)
    else:
        os.environ["HARNESS_CACHE_DIR"] = previous


def tanh_derivative(x: np.ndarray, order: int) -> np.ndarray:
    """Closed form: the n-th derivative of tanh is a polynomial p_n(t) in t = tanh(x), with
    p_0 = t and p_{n+1} = p_n'(t) (1 - t**2)."""
    p = np.polynomial.Polynomial([0, 1])
    for _ in range(order):
        p = p.deriv() * np.polynomial.Polynomial([1, 0, -1])
    return p(np.tanh(x))
