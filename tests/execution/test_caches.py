"""Compile caches (`harness.execution.caches`): a validation job's child reuses JAX's compiled
executables from earlier runs, with the same checks; a benchmark job never does (its first-call
time is the compile time); the user's own settings win."""

from __future__ import annotations

import math
import os

from conftest import require

from harness.execution import caches, runner
from harness.jobs import Job


def test_only_a_validation_job_gets_the_compile_cache(device_cache, monkeypatch):
    monkeypatch.delenv(caches.SWITCH_ENV, raising=False)
    env = caches.environment(Job("validate", "jax"))
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(device_cache / "jax-compilation")
    assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    assert caches.environment(Job("benchmark", "jax")) == {}  # a first call is a compile, timed
    assert caches.environment(Job("scale", "jax")) == {}
    monkeypatch.setenv(caches.SWITCH_ENV, "off")
    assert caches.environment(Job("validate", "jax")) == {}


def test_a_variable_the_user_set_wins(monkeypatch, tmp_path):
    monkeypatch.delenv(caches.SWITCH_ENV, raising=False)
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path))
    for name in caches.environment(Job("validate", "jax")):
        if name != "JAX_COMPILATION_CACHE_DIR":
            monkeypatch.delenv(name, raising=False)
    caches.apply(Job("validate", "jax"))
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path)
    assert os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"


def test_a_second_isolated_run_reads_the_cache_and_gives_the_same_checks(registry, device_cache, monkeypatch):
    require(registry.backends["jax"])
    monkeypatch.delenv(caches.SWITCH_ENV, raising=False)
    folder = device_cache / "jax-compilation"
    job = Job("validate", "jax", ("tanh",), ("float64",), ("jit",), ("reverse",), orders=(1, 2))
    runs = []
    for _ in range(2):
        (outcome,) = runner.run_jobs([job], registry, runner.LocalPool(math.inf), isolate=True)
        assert outcome.finished and outcome.failure is None
        runs.append([(c.order, c.oracle, c.status, c.value) for c in outcome.results])
        entries = sorted(p.name for p in folder.iterdir())
        assert entries, "the child wrote no compiled executable to the cache"
        if len(runs) == 1:
            first_entries = entries
    assert entries == first_entries  # the second run compiled nothing new: it read the cache
    assert runs[0] == runs[1] and {s for _, _, s, _ in runs[0]} == {"pass"}
