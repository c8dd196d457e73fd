"""The host imports no array framework: backends import theirs only when first used.

Each test runs in a fresh interpreter, since this one has long since imported
every installed framework.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

FRAMEWORKS = ("jax", "jaxlib", "torch", "autograd", "tensorflow")
BUILTIN = ("jax", "autograd", "torch", "tensorflow")
MARK = "FRAMEWORK-MODULES:"


REPORT = f"""
import sys
print({MARK!r}, __import__("json").dumps(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules)))
"""


def python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter, then print which framework modules it imported."""
    env = dict(os.environ)
    env.pop("HARNESS_BACKENDS", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + REPORT],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def imported(result: subprocess.CompletedProcess) -> list[str]:
    """The framework modules the child reported as imported."""
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [x for x in result.stdout.splitlines() if x.startswith(MARK)]
    return json.loads(line[len(MARK) :])


def test_importing_and_loading_imports_no_framework():
    result = python("""
        import harness, harness.plugins, harness.cli, harness.validation.checks, harness.oracles
        import harness.problems, harness.strategies, harness.validation.report
        import harness.results.files, harness.pytree
        import harness.target, harness.hookspecs
        import harness_backends.jax, harness_backends.torch, harness_backends.autograd
        import harness_backends.tensorflow
        registry = harness.plugins.load()
        assert {"jax", "autograd", "torch", "tensorflow"} <= set(registry.backends), registry.backends
        assert not registry.errors, registry.errors
        for entry in registry.backends.values():  # metadata only: versions, availability
            entry.version, entry.unavailable
    """)
    assert imported(result) == []


def test_the_check_sees_a_framework_once_used(installed):
    """Control: the same report does name a framework once a backend is used."""
    entry = next((e for e in installed if e.name == "autograd"), installed[0])
    result = python(f"""
        import harness.plugins
        harness.plugins.load().backends[{entry.name!r}].backend.namespace()
    """)
    assert entry.name in imported(result)


def test_list_without_devices_imports_no_framework():
    result = python("""
        import runpy, sys
        sys.argv = ["harness", "list", "--no-devices"]
        try:
            runpy.run_module("harness", run_name="__main__")
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        else:
            raise AssertionError("python -m harness did not exit")
    """)
    assert imported(result) == []
    for name in BUILTIN:
        assert name in result.stdout


def test_list_with_devices(installed):
    """Device detection runs in child processes: the CLI's own process still imports no framework."""
    result = python(
        """
        import runpy, sys
        sys.argv = ["harness", "list", "--format", "json"]
        try:
            runpy.run_module("harness", run_name="__main__")
        except SystemExit as exc:
            assert exc.code == 0, exc.code
    """,
        timeout=300,
    )
    assert imported(result) == []
    report = json.loads(result.stdout[: result.stdout.index(MARK)])
    backends = {b["name"]: b for b in report["backends"]}
    assert set(BUILTIN) <= set(backends)
    for entry in installed:
        devices = backends[entry.name]["devices"]
        assert devices.split(", ")[0] == "cpu", devices
    for name in BUILTIN:
        if not backends[name]["available"]:
            assert backends[name]["devices"] is None


def test_python_m_harness_list():
    env = dict(os.environ)
    env.pop("HARNESS_BACKENDS", None)
    result = subprocess.run(
        [sys.executable, "-m", "harness", "list"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for name in BUILTIN:
        assert any(line.split()[:1] == [name] for line in lines), result.stdout
    assert "error:" not in result.stdout
    assert result.stderr == ""
