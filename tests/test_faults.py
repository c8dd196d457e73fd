"""Fault injection through real isolation: faulty backends from a fake installed distribution.

A tmp folder on ``PYTHONPATH`` holds ``faulty-0.1.dist-info`` whose ``entry_points.txt``
lists several plugin modules in the ``harness`` group. Each registers a wrapper
around an installed built-in backend (autograd, else jax) with one planted fault:
a segfault, a hang, a SIGKILL (what the kernel's OOM killer sends), an exception,
a NaN, a wrong shape or a wrong gradient structure. ``python -m harness validate``
then runs them in child processes, as a user would, and each fault must be reported
as its own backend's check while the other backends' results stay intact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

import harness
from harness import plugins, validate

INNERS = (("autograd", "AutogradBackend"), ("jax", "JaxBackend"))
SMALL = ["-p", "tanh", "-o", "1-2", "--dtype", "float64", "--mode", "eager"]
TIMEOUT = 15
PLANTED_MESSAGE = "RuntimeError: planted failure in derivative"

COMMON = '''\
"""Faulty wrappers around INNER_CLASS, written by tests/test_faults.py."""

import os
import signal
import threading

import harness
from backends.INNER_MODULE import INNER_CLASS

PLANTED = 1e-3


class Wrapper:
    """A renamed INNER_CLASS that delegates every method of the spec."""

    def __init__(self, name, expected=None, inner=None):
        self.inner = inner or INNER_CLASS()
        self.name = name
        self.requires = tuple(self.inner.requires)
        self.install_hint = self.inner.install_hint
        self.strategies = tuple(self.inner.strategies)
        self.modes = tuple(self.inner.modes)
        self.dtypes = tuple(self.inner.dtypes)
        if expected is not None:
            self.expected = expected

    def devices(self):
        return self.inner.devices()

    def namespace(self):
        return self.inner.namespace()

    def asarray(self, x, dtype, device):
        return self.inner.asarray(x, dtype, device)

    def to_numpy(self, x):
        return self.inner.to_numpy(x)

    def value_and_grad(self, f, argnums):
        return self.inner.value_and_grad(f, argnums)

    def jvp(self, f, primals, tangents):
        return self.inner.jvp(f, primals, tangents)

    def derivative(self, f, order, strategy):
        return self.inner.derivative(f, order, strategy)

    def compile(self, fn, mode):
        return self.inner.compile(fn, mode)

    def block_until_ready(self, x):
        return self.inner.block_until_ready(x)


class Segv(Wrapper):
    def derivative(self, f, order, strategy):
        if order == 2:
            os.kill(os.getpid(), signal.SIGSEGV)
        return self.inner.derivative(f, order, strategy)


class Killed(Wrapper):
    """What the out-of-memory killer does: SIGKILL, no chance to clean up."""

    def derivative(self, f, order, strategy):
        if order == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.derivative(f, order, strategy)


class Hang(Wrapper):
    def derivative(self, f, order, strategy):
        if order == 2:
            threading.Event().wait()  # forever
        return self.inner.derivative(f, order, strategy)


class Raises(Wrapper):
    def derivative(self, f, order, strategy):
        raise RuntimeError("planted failure in derivative")


class Nan(Wrapper):
    def derivative(self, f, order, strategy):
        d = self.inner.derivative(f, order, strategy)
        return (lambda x: d(x) * float("nan")) if order == 2 else d


class Shape(Wrapper):
    def derivative(self, f, order, strategy):
        d = self.inner.derivative(f, order, strategy)
        return lambda x: d(x)[:1]


class BadGrad(Wrapper):
    """The gradient w.r.t. (W, b) comes back as W alone."""

    def value_and_grad(self, f, argnums):
        vg = self.inner.value_and_grad(f, argnums)
        if isinstance(argnums, int):
            return vg

        def only_first(*args):
            value, grads = vg(*args)
            return value, grads[0]

        return only_first


class BadHvp(Wrapper):
    """jvp drops the last leaf of a tuple tangent: only forward-over-reverse HVPs see it."""

    def jvp(self, f, primals, tangents):
        out, tangent = self.inner.jvp(f, primals, tangents)
        return out, (tangent[0] if isinstance(tangent, tuple) else tangent)


class BadJit(Wrapper):
    """Offers a jit mode whose compile raises."""

    def __init__(self, name, **kwargs):
        super().__init__(name, **kwargs)
        self.modes = ("eager", "jit")

    def compile(self, fn, mode):
        raise RuntimeError("planted: compile is broken")


class WrongSecond(Wrapper):
    """Order 2 is off by a relative PLANTED."""

    def derivative(self, f, order, strategy):
        d = self.inner.derivative(f, order, strategy)
        return (lambda x: d(x) * (1 + PLANTED)) if order == 2 else d
'''

PLUGIN = '''\
import harness
from faulty_common import {cls}


@harness.hookimpl
def harness_register_backends(register):
    register({cls}({name!r}{extra}))
'''

CRASHERS = {"hang": "Hang", "segv": "Segv", "killed": "Killed", "raises": "Raises", "nan": "Nan",
            "shape": "Shape", "badgrad": "BadGrad", "badhvp": "BadHvp", "badjit": "BadJit"}


@pytest.fixture(scope="module")
def inner(registry) -> tuple[str, str]:
    """(module, class) of the built-in backend the faulty wrappers delegate to."""
    for module, cls in INNERS:
        if not registry.backends[module].unavailable:
            return module, cls
    pytest.skip("neither autograd nor jax is installed")


def common_source(inner: tuple[str, str]) -> str:
    module, cls = inner
    return COMMON.replace("INNER_MODULE", module).replace("INNER_CLASS", cls)


def install(path: Path, inner: tuple[str, str], backends: dict[str, str]) -> dict:
    """``faulty-0.1.dist-info`` under ``path``, one entry point per backend; the env that finds it.

    ``backends`` maps a backend (and plugin) name to ``"Class"`` or ``"Class, keyword=value"``.
    """
    path.mkdir(parents=True, exist_ok=True)
    (path / "faulty_common.py").write_text(common_source(inner))
    lines = ["[harness]"]
    for name, spec in backends.items():
        cls, _, extra = spec.partition(",")
        module = "faulty_" + name.replace("-", "_")
        (path / f"{module}.py").write_text(PLUGIN.format(
            cls=cls.strip(), name=name, extra=f", {extra.strip()}" if extra else ""))
        lines.append(f"{name} = {module}")
    info = path / "faulty-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: faulty\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    env = dict(os.environ)
    env.pop(plugins.BACKENDS_ENV, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    return env


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @cached_property
    def report(self) -> dict:
        return json.loads(self.stdout)

    @property
    def checks(self) -> list[dict]:
        return self.report["checks"]

    def of(self, backend: str, **fields) -> list[dict]:
        return [c for c in self.checks
                if c["backend"] == backend and all(c[k] == v for k, v in fields.items())]

    def __str__(self) -> str:
        return f"exit {self.code}\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"


def harness_cli(*args: str, env: dict, cwd: Path, timeout: float = 120) -> Run:
    result = subprocess.run([sys.executable, "-m", "harness", *args], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=timeout)
    return Run(result.returncode, result.stdout, result.stderr)


def summary(checks: list[dict]) -> list[tuple]:
    return [(c["problem"], c["strategy"], c["order"], c["oracle"], c["status"], c["classification"],
             c["message"][:80]) for c in checks]


def assert_all_pass(checks: list[dict]) -> None:
    assert checks
    bad = [c for c in checks if c["status"] != "pass"]
    assert not bad, summary(bad)


def assert_intact(run: Run, name: str) -> None:
    """``name`` ran every check of the small plan, and all passed."""
    checks = run.of(name)
    assert_all_pass(checks)
    assert {c["problem"] for c in checks} == {"tanh", "logistic-notebook"}
    assert {c["order"] for c in run.of(name, problem="tanh")} == {1, 2}
    assert {c["order"] for c in run.of(name, problem="logistic-notebook")} == {0, 1, 2}
    assert not [c for c in checks if c["classification"] in ("crash", "timeout")]


def crash_record(run: Run, name: str) -> dict:
    """The one check isolation added for ``name``'s dead process."""
    [record] = [c for c in run.of(name) if c["classification"] in ("crash", "timeout")]
    assert (record["status"], record["problem"], record["order"]) == ("error", "-", 0), record
    return record


def assert_kept_before_death(run: Run, name: str, record: dict) -> None:
    """The order-1 checks the child finished before order 2 killed it are kept, and passed."""
    kept = [c for c in run.of(name) if c is not record]
    assert_all_pass(kept)
    assert {(c["problem"], c["order"]) for c in kept} == {("tanh", 1)}
    oracles = {c["oracle"] for c in kept}
    assert "self-consistency" in oracles and any(o.startswith("mpmath") for o in oracles)
    own = [c for c in kept if not c["oracle"].startswith("agreement")]
    assert f"{len(own)} check(s) had finished and are kept" in record["message"]


# --- One isolated command, several faulty backends ------------------------------------------------


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, inner) -> tuple[dict, Path]:
    path = tmp_path_factory.mktemp("faulty")
    return install(path, inner, CRASHERS), path


@pytest.fixture(scope="module")
def crashed(faulty, inner) -> Run:
    """The installed reference backend first, then the faulty ones (hang early: it takes longest)."""
    env, path = faulty
    names = [inner[0], "hang", "segv", "killed", "raises", "nan", "shape", "badgrad"]
    return harness_cli("validate", "-b", ",".join(names), "-p", "tanh,logistic-notebook",
                       "-o", "1-2", "--dtype", "float64", "--mode", "eager",
                       "--timeout", str(TIMEOUT), "--format", "json", env=env, cwd=path)


def test_the_run_survives_and_fails(crashed, inner):
    assert crashed.code == 1, crashed
    report = crashed.report
    assert report["plugin_errors"] == [] and report["unavailable"] == {}
    names = [inner[0], "hang", "segv", "killed", "raises", "nan", "shape", "badgrad"]
    assert {c["backend"] for c in crashed.checks} == set(names)
    records = {c["backend"] for c in crashed.checks if c["classification"] in ("crash", "timeout")}
    assert records == {"hang", "segv", "killed"}


def test_segfault_is_a_crash_and_others_are_intact(crashed, inner):
    record = crash_record(crashed, "segv")
    assert record["classification"] == "crash"
    assert "SIGSEGV" in record["message"]
    assert_kept_before_death(crashed, "segv", record)
    assert_intact(crashed, inner[0])


def test_hang_is_a_timeout_and_others_are_intact(crashed, inner):
    record = crash_record(crashed, "hang")
    assert record["classification"] == "timeout"
    assert f"no result within {TIMEOUT} s" in record["message"]
    assert_kept_before_death(crashed, "hang", record)
    assert_intact(crashed, inner[0])


def test_sigkill_is_a_crash_hinting_at_memory(crashed, inner):
    record = crash_record(crashed, "killed")
    assert record["classification"] == "crash"
    assert "SIGKILL" in record["message"] and "out of memory?" in record["message"]
    assert_kept_before_death(crashed, "killed", record)
    assert_intact(crashed, inner[0])


def test_raising_derivative_is_an_error_not_a_crash(crashed, inner):
    tanh = crashed.of("raises", problem="tanh")
    assert {(c["status"], c["message"]) for c in tanh} == {("error", PLANTED_MESSAGE)}
    assert {c["order"] for c in tanh} == {1, 2}
    assert not [c for c in crashed.of("raises") if c["classification"] in ("crash", "timeout")]
    assert not crashed.of("raises", problem="-")
    assert_all_pass(crashed.of("raises", problem="logistic-notebook"))  # value_and_grad is intact
    assert_intact(crashed, inner[0])


def test_nan_second_derivative_is_overflow_nan(crashed, inner):
    order2 = crashed.of("nan", problem="tanh", order=2)
    assert order2 and any(c["oracle"].startswith("agreement") for c in order2)
    for c in order2:
        assert (c["status"], c["classification"]) == ("fail", "overflow/nan"), summary([c])
    assert_all_pass(crashed.of("nan", problem="tanh", order=1))
    assert_all_pass(crashed.of("nan", problem="logistic-notebook"))
    assert_intact(crashed, inner[0])


def test_wrong_shape_is_an_error_naming_the_shapes(crashed, inner):
    tanh = crashed.of("shape", problem="tanh")
    assert {c["order"] for c in tanh} == {1, 2}
    assert {(c["status"], c["message"]) for c in tanh} == {
        ("error", "ValueError: derivative has shape (1,), expected (8,)")}
    assert_all_pass(crashed.of("shape", problem="logistic-notebook"))
    assert_intact(crashed, inner[0])


def test_wrong_gradient_structure_is_an_error_naming_the_structures(crashed, inner):
    [gradient] = crashed.of("badgrad", problem="logistic-notebook", order=1)
    assert gradient["status"] == "error"
    assert gradient["message"] == "ValueError: gradient has structure (3,), expected ((3,), ())"
    assert_all_pass(crashed.of("badgrad", problem="tanh"))  # derivative is intact
    assert_intact(crashed, inner[0])


def test_every_hvp_strategy_of_the_bad_gradient_is_reported(crashed):
    order2 = crashed.of("badgrad", problem="logistic-notebook", order=2)
    assert {c["strategy"] for c in order2} == {"reverse", "forward-over-reverse"}


# --- Without isolation ----------------------------------------------------------------------------


def test_no_isolate_survives_raising_plugins_with_the_same_results(faulty, crashed, inner):
    env, path = faulty
    names = [inner[0], "raises", "nan", "shape"]
    run = harness_cli("validate", "-b", ",".join(names), "--no-isolate",
                      "-p", "tanh,logistic-notebook", "-o", "1-2", "--dtype", "float64",
                      "--mode", "eager", "--format", "json", env=env, cwd=path)
    assert run.code == 1, run
    assert_intact(run, inner[0])
    assert {c["message"] for c in run.of("raises", problem="tanh")} == {PLANTED_MESSAGE}
    # In-process or in a child, the same checks with the same outcomes.
    for name in names:
        assert summary(run.of(name)) == summary(crashed.of(name)), name


# --- Faults outside a check (bugs, pinned) --------------------------------------------------------


def test_an_exception_outside_a_check_fails_an_isolated_run(faulty):
    env, path = faulty
    run = harness_cli("validate", "-b", "badjit,badhvp", "-p", "tanh,logistic-notebook",
                      "-o", "1-2", "--dtype", "float64", "--strategy", "forward-over-reverse",
                      "--format", "json", env=env, cwd=path)
    assert run.code == 1, run
    for name in ("badjit", "badhvp"):
        assert [c for c in run.of(name) if c["status"] == "error"], name


@pytest.fixture(scope="module")
def common(inner) -> types.ModuleType:
    """The faulty wrappers, in this process."""
    module = types.ModuleType("faulty_common")
    exec(compile(common_source(inner), "faulty_common.py", "exec"), module.__dict__)
    return module


def in_process(backend) -> plugins.BackendEntry:
    @harness.hookimpl
    def harness_register_backends(register):
        register(backend)

    plugin = types.SimpleNamespace(harness_register_backends=harness_register_backends)
    registry = plugins.load(extra=[("faulty", plugin)], entry_points=False)
    assert registry.errors == []
    return registry.backends[backend.name]


@pytest.mark.parametrize(("cls", "problem", "raises"), [
    ("BadHvp", "logistic-notebook", ValueError),  # _judge: operands could not be broadcast
    ("BadJit", "tanh", RuntimeError),  # backend.compile, outside the try in _scalar_checks
])
def test_a_fault_outside_a_check_is_an_error_check_in_process(common, cls, problem, raises):
    entry = in_process(getattr(common, cls)(cls.lower()))
    registry = plugins.load(entry_points=False)
    plan = validate.Plan(backends=[entry], problems=registry.select_problems([problem]),
                         dtypes=("float64",), orders=(1, 2), strategies=("forward-over-reverse",))
    checks = list(validate.run(plan))
    assert [c for c in checks if c.status == "error"]


# --- Expected outcomes, both directions -----------------------------------------------------------


EXPECTED = "# written by tests/test_faults.py\ntanh  *  *  float64  2  fail  # planted: order 2 is off\n"


@pytest.fixture(scope="module")
def expecting(tmp_path_factory, inner) -> tuple[dict, Path, Path]:
    path = tmp_path_factory.mktemp("expecting")
    known = path / "planted.expected"
    known.write_text(EXPECTED)
    env = install(path, inner, {"planted": f"WrongSecond, expected={str(known)!r}",
                                "honest": f"Wrapper, expected={str(known)!r}"})
    return env, path, known


def test_expected_failure_that_happens_passes_the_run(expecting, inner):
    env, path, known = expecting
    run = harness_cli("validate", "-b", f"{inner[0]},planted", *SMALL, "--format", "json",
                      env=env, cwd=path)
    assert run.code == 0, run
    assert run.report["surprises"] == []
    order2 = run.of("planted", order=2)
    assert order2 and {c["status"] for c in order2} == {"fail"}, summary(order2)
    assert all(c["expected"] for c in order2)
    oracles = {c["oracle"] for c in order2}
    assert "self-consistency" in oracles and f"agreement:{inner[0]}/eager/reverse" in oracles
    assert_all_pass(run.of("planted", order=1))
    assert not [c for c in run.checks if c["expected"] and c["status"] == "pass"]
    assert_all_pass(run.of(inner[0]))


def test_expected_failure_that_does_not_happen_is_a_surprise(expecting, inner, registry):
    env, path, known = expecting
    run = harness_cli("validate", "-b", "honest", *SMALL, env=env, cwd=path)
    assert run.code == 1, run
    surprises = [line for line in run.stdout.splitlines() if line.startswith("surprise: ")]
    assert len(surprises) == len(registry.backends[inner[0]].backend.strategies), run
    for line in surprises:
        assert f"{known}:2: tanh" in line and "order 2 is expected to fail" in line
        assert "(planted: order 2 is off) but did not: update the file" in line
    assert "0 fail, 0 unsupported, 0 error" in run.stdout and run.stdout.rstrip().endswith("FAILED")


def test_malformed_expected_file_is_a_broken_plugin_and_others_run(tmp_path, inner):
    bad = tmp_path / "bad.expected"
    bad.write_text("tanh * * float64 2 fail\ntanh * * float64 2 explode  # not an outcome\n")
    env = install(tmp_path / "site", inner, {
        "malformed": f"Wrapper, expected={str(bad)!r}",
        "missing": f"Wrapper, expected={str(tmp_path / 'no-such.expected')!r}",
        "honest": "Wrapper",
    })
    run = harness_cli("validate", "-b", f"{inner[0]},honest", *SMALL, "--format", "json",
                      env=env, cwd=tmp_path)
    assert run.code == 0, run
    errors = run.report["plugin_errors"]
    assert len(errors) == 2, errors
    malformed, missing = sorted(errors)
    assert malformed.startswith("plugin 'malformed': has an unreadable expected-outcomes file: ")
    assert f"{bad}:2: expected 'problem strategy mode dtype orders outcome'" in malformed
    assert missing.startswith("plugin 'missing': has an unreadable expected-outcomes file: ")
    assert {c["backend"] for c in run.checks} == {inner[0], "honest"}
    assert_all_pass(run.checks)
    # Named on the command line, the broken backend is an unknown name: a usage error.
    named = harness_cli("validate", "-b", "malformed", *SMALL, env=env, cwd=tmp_path)
    assert named.code == 2 and "unknown backend 'malformed'" in named.stderr, named


# --- The quick benchmark, isolated ------------------------------------------------------------------


def test_compare_survives_a_backend_that_segfaults(faulty, inner):
    """``compare`` times each backend in its own process: segv's crash is reported by name, and
    the reference backend's timings are all there."""
    env, path = faulty
    run = harness_cli("compare", "-b", f"{inner[0]},segv", "--format", "json",
                      "--timeout", str(TIMEOUT * 4), env=env, cwd=path, timeout=300)
    assert run.code == 1, run
    assert "error: segv:" in run.stderr and "SIGSEGV" in run.stderr, run
    rows = json.loads(run.stdout)
    assert rows and {r["backend"] for r in rows} == {inner[0]}
    assert all(r["validated"] for r in rows)
