"""Shared fixtures: the plugin registry and a fixture parametrized over the built-in backends.

A backend that is not installed is skipped, unless ``$HARNESS_REQUIRE_BACKENDS``
names it (tox's ``all`` environment does): then its absence fails the test, so
a run that was meant to cross-validate all four cannot pass by skipping.
"""

from __future__ import annotations

import os
import re

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


# --- Which tests each tox env runs ---------------------------------------------------------------
#
# tox passes `--tox-env NAME` (its env's name; tox.ini says why each env exists). Without it
# (plain `pytest`), every test runs. An option, not a variable: a pytest a test starts, or a
# process it starts, inherits no selection, and xdist's workers get it with the arguments.
# With it, each test runs in the envs where what it proves can differ, and nowhere twice for
# nothing:
#
# - `all` (jax, autograd and torch together) runs every test but those bound to TensorFlow
#   alone: a test whose id or parameters name a backend, or that lives in tests/backends/, runs
#   here against that backend, as it did in that backend's own env; a test that names none runs
#   here once, not five times.
# - A single-backend env (jax, autograd, torch, tensorflow) runs what proves the harness with
#   only that backend installed: the tests that run against whatever is installed (`on_installed`:
#   the fixtures of ENV_FIXTURES, or the mark `on_installed`; here, that backend alone), the files
#   that look at which frameworks are importable (ENV_FILES: skipping, no stray imports,
#   requirements), and, for a backend `all` lacks (TensorFlow), every test bound to it.
#
# scripts/tox_selection.py lists each env's executed tests before and after this selection and
# checks that the union (test id, and the backends installed where an `installed` test ran) is
# kept.
CROSS_ENV = "all"
CROSS_BACKENDS = {"jax", "autograd", "torch"}
ENV_FILES = {"tests/test_no_framework_import.py", "tests/test_plugins.py", "tests/test_problem_files.py"}
ENV_FIXTURES = {"installed", "inner", "hanging", "hanging_detection"}
"""Fixtures that pick the backends a test runs against from those installed (`fast` uses
`installed`; `inner`, `hanging` and `hanging_detection` take autograd or JAX, whichever is)."""


def on_installed(item) -> bool:
    """Whether ``item`` runs against whichever backends are installed, so that each env's set is
    another test: a fixture of ENV_FIXTURES, or the mark ``on_installed`` (a test that reads the
    registry itself)."""
    return bool(ENV_FIXTURES & set(item.fixturenames)) or item.get_closest_marker("on_installed") is not None


def bound_backends(item) -> set[str]:
    """The built-in backends a test names: in its parameters, its id or its file (tests/backends/)."""
    names = set()
    path = item.nodeid.split("::", 1)[0]
    if path.startswith("tests/backends/test_"):
        names.add(path.removeprefix("tests/backends/test_").removesuffix(".py"))
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        names.update(v for v in callspec.params.values() if isinstance(v, str) and v in BUILTIN)
        names.update(t for t in re.split(r"[^a-z0-9]+", callspec.id) if t in BUILTIN)
    return names


def runs_in(item, env: str) -> bool:
    """Whether tox's env ``env`` runs ``item`` (see above)."""
    if env not in (CROSS_ENV, *BUILTIN):
        return True
    bound = bound_backends(item)
    if env == CROSS_ENV:
        return not bound or bool(bound & CROSS_BACKENDS)
    if on_installed(item) or item.nodeid.split("::", 1)[0] in ENV_FILES:
        return not bound or env in bound
    return env in bound and env not in CROSS_BACKENDS


def pytest_addoption(parser):
    parser.addoption(
        "--tox-env",
        default="",
        metavar="NAME",
        help="run the tests tox's env NAME runs (tests/conftest.py says which); default: all",
    )


def pytest_collection_modifyitems(config, items):
    env = config.getoption("--tox-env")
    if not env:
        return
    keep, dropped = [], []
    for item in items:
        (keep if runs_in(item, env) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
