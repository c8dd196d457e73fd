"""A third-party plugin's view of the harness: wrappers around the built-in backends.

Each wrapper here delegates to a real, installed built-in backend (the ``entry``
fixture) and is registered the way an outside package would register it, through
``@harness.hookimpl def harness_register_backends(register)``. Some wrappers are
correct; others plant one fault, and the tests check that validation finds it,
classifies it, and keeps it to the faulty backend.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from fakes import Wrapper, plugin_of

import harness
from harness import hookspecs, plugins
from harness.plugins import PluginError
from harness.strategies import derivative
from harness.validation import verdicts
from harness.validation.checks import Plan, check_plan

PROBLEMS = ("tanh", "logistic-notebook")
ORDERS = (1, 2, 3)
PLANTED = 1e-3
"""Relative (or absolute, for the flaky wrapper) size of the planted errors: far beyond any tolerance."""


# --- Wrappers (subclasses of fakes.Wrapper, which delegates the whole spec) -----------------------


class WrongThirdDerivative(Wrapper):
    """Order 3 is off by a relative PLANTED; orders 1 and 2 are right."""

    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)
        if order != 3:
            return d
        return lambda x: d(x) * (1 + PLANTED)


class WrongBiasGradient(Wrapper):
    """The gradient w.r.t. argument 1 (the bias ``b`` of the logistic problems) is off by PLANTED."""

    def value_and_grad(self, f, argnums):
        vg = self.inner.value_and_grad(f, argnums)
        position = argnums.index(1)

        def perturbed(*args):
            value, grads = vg(*args)
            grads = list(grads)
            grads[position] = grads[position] * (1 + PLANTED)
            return value, tuple(grads)

        return perturbed


class NanSecondDerivative(Wrapper):
    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)
        if order != 2:
            return d
        return lambda x: d(x) * float("nan")


class RaisingDerivative(Wrapper):
    def derivative(self, f, order, strategy):
        raise RuntimeError("planted failure in derivative")


class NoForward(Wrapper):
    """Claims every strategy of its delegate but raises NotImplementedError for ``forward``."""

    def derivative(self, f, order, strategy):
        if strategy == "forward":
            raise NotImplementedError("planted: forward mode is not wired up")
        return derivative(self.inner, f, order, strategy)


class Flaky(Wrapper):
    """Each derivative function alternates between the right answer and the right answer + PLANTED."""

    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)
        calls = itertools.count()

        def flaky(x):
            y = d(x)
            return y + PLANTED if next(calls) % 2 else y

        return flaky


class Incomplete:
    """Has the attributes of the spec but not ``value_and_grad`` (``derivative`` and ``compile``
    are optional)."""

    name = "incomplete"
    requires = ()
    install_hint = "-"
    strategies = ("reverse",)
    modes = ("eager",)
    dtypes = ("float64",)

    def devices(self):
        return ["cpu"]

    def namespace(self):
        return None

    def asarray(self, x, dtype, device):
        return x

    def to_numpy(self, x):
        return x

    def block_until_ready(self, x):
        return x


# --- Plugins --------------------------------------------------------------------------------------


def namespace_plugin(*backends):
    """The same as a ``types.SimpleNamespace``, the shape of a plugin module."""

    @harness.hookimpl
    def harness_register_backends(register):
        for backend in backends:
            register(backend)

    return types.SimpleNamespace(harness_register_backends=harness_register_backends)


def load_with(*backends, name="thirdparty", entry_points=False) -> plugins.Registry:
    registry = plugins.load(extra=[(name, plugin_of(*backends))], entry_points=entry_points)
    assert registry.errors == []
    return registry


def run(*entries, **plan) -> list[verdicts.Check]:
    plan.setdefault("dtypes", ("float64",))
    plan.setdefault("orders", ORDERS)
    registry = plugins.load(entry_points=False)
    problems = registry.select_problems(plan.pop("problems", PROBLEMS))
    return list(check_plan(Plan(backends=list(entries), problems=problems, **plan)))


def of(checks, backend, **fields):
    selected = [
        c for c in checks if c.backend == backend and all(getattr(c, k) == v for k, v in fields.items())
    ]
    assert selected, f"no checks of {backend} with {fields}"
    return selected


def statuses(checks) -> list[tuple]:
    return [(c.strategy, c.problem, c.order, c.oracle, c.status, c.classification, c.message) for c in checks]


def assert_all_pass(checks):
    bad = [s for c, s in zip(checks, statuses(checks), strict=True) if c.status != "pass"]
    assert not bad, bad


def quiet_nan(test):
    """numdifftools warns while differencing the NaN-returning wrapper (self-consistency)."""
    test = pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")(test)
    return pytest.mark.filterwarnings("ignore:All-NaN slice:UserWarning")(test)


# --- The wrapper itself -----------------------------------------------------------------------------


def test_wrapper_delegates_the_whole_spec(entry):
    """If the spec grows, this wrapper (and every test below) must grow with it."""
    spelled_out = set(vars(Wrapper)) | set(vars(Wrapper(entry.backend)))
    assert (
        set(hookspecs.REQUIRED_METHODS) | set(hookspecs.OPTIONAL_METHODS) | set(plugins._ATTRIBUTES)
    ) <= spelled_out
    assert plugins.spec_violation(Wrapper(entry.backend)) is None
    assert isinstance(Wrapper(entry.backend), hookspecs.Backend)


@pytest.mark.parametrize("make_plugin", [plugin_of, namespace_plugin], ids=["instance", "namespace"])
def test_renamed_wrapper_is_registered(entry, make_plugin):
    wrapper = Wrapper(entry.backend)
    registry = plugins.load(extra=[("thirdparty", make_plugin(wrapper))])
    assert registry.errors == []
    registered = registry.backends[f"renamed-{entry.name}"]
    assert registered.backend is wrapper
    assert registered.plugin == "thirdparty"
    assert registered.unavailable is None
    assert registered.version == entry.version
    assert {"jax", "autograd", "torch", "tensorflow"} <= set(registry.backends)


def test_renamed_wrapper_passes_every_check(entry):
    """Every check passes, but what the delegate itself does not support (torch's compiler
    refuses some nests): that is unsupported for the wrapper too, with the delegate's reason."""
    wrapped = load_with(Wrapper(entry.backend)).backends[f"renamed-{entry.name}"]
    checks = run(wrapped)
    refused = [c for c in checks if c.status == "unsupported"]
    assert_all_pass([c for c in checks if c not in refused])
    for c in refused:
        (own,) = run(
            entry,
            problems=[c.problem],
            modes=(c.mode,),
            strategies=(c.strategy,),
            orders=(c.order,),
            dtypes=(c.dtype,),
            devices=(c.device,),
        )
        assert (own.status, own.message) == (c.status, c.message)
    assert {c.backend for c in checks} == {wrapped.name}
    assert {c.problem for c in checks} == set(PROBLEMS)
    assert {c.order for c in of(checks, wrapped.name, problem="tanh")} == set(ORDERS)
    assert {c.strategy for c in checks} == set(entry.backend.strategies)
    assert {c.mode for c in checks} == set(entry.backend.modes)
    oracles = {c.oracle for c in checks}
    assert {"self-consistency", "closed-form", "complex-step", "central-difference"} <= oracles
    assert any(o.startswith("mpmath") for o in oracles)


def test_renamed_wrapper_agrees_with_its_delegate(entry):
    wrapped = load_with(Wrapper(entry.backend)).backends[f"renamed-{entry.name}"]
    checks = run(entry, wrapped, modes=("eager",), strategies=("reverse",))
    assert_all_pass(checks)
    agreement = of(checks, wrapped.name, oracle=f"agreement:{entry.name}/eager/reverse")
    assert {c.order for c in agreement} == {0, *ORDERS}


# --- Planted faults ---------------------------------------------------------------------------------


def test_wrong_third_derivative_is_found(entry):
    wrong = load_with(WrongThirdDerivative(entry.backend)).backends[f"renamed-{entry.name}"]
    checks = run(entry, wrong, modes=("eager",))
    assert_all_pass([c for c in checks if c.backend == entry.name])
    order3 = of(checks, wrong.name, problem="tanh", order=3)
    assert {c.status for c in order3} == {"fail"}, statuses(order3)
    assert {c.classification for c in order3} == {"wrong derivative"}, statuses(order3)
    oracles = {c.oracle for c in order3}
    assert {"self-consistency", f"agreement:{entry.name}/eager/reverse"} <= oracles
    assert any(o.startswith("mpmath") for o in oracles)
    assert {c.strategy for c in order3} == set(entry.backend.strategies)
    for c in order3:
        assert c.max_rel_err == pytest.approx(PLANTED, rel=1e-3) or c.oracle == "self-consistency"
    assert_all_pass([c for c in checks if c.backend == wrong.name and c.order != 3])
    # The step sweep saw a gap that does not follow the step size.
    for c in of(checks, wrong.name, order=3, oracle="self-consistency"):
        assert c.sweep and "independent of the step" in c.message


def test_wrong_bias_gradient_is_found(entry):
    wrong = load_with(WrongBiasGradient(entry.backend)).backends[f"renamed-{entry.name}"]
    checks = run(wrong, problems=["logistic-notebook"], modes=("eager",))
    gradient = of(checks, wrong.name, order=1)
    assert {c.oracle for c in gradient} == {"closed-form", "complex-step", "central-difference"}
    for c in gradient:
        assert (c.status, c.classification) == ("fail", "wrong derivative"), statuses([c])
        # Only the bias entry (the last of the flat gradient W, b) is off.
        assert c.max_rel_err == pytest.approx(PLANTED, rel=1e-3)
        assert c.value[:-1] == pytest.approx(c.reference[:-1], rel=1e-7)
    assert_all_pass(of(checks, wrong.name, order=0))


@quiet_nan
def test_nan_second_derivative_is_overflow_nan(entry):
    nan = load_with(NanSecondDerivative(entry.backend)).backends[f"renamed-{entry.name}"]
    checks = run(nan, problems=["tanh"], modes=("eager",), orders=(1, 2))
    own = [c for c in checks if not c.oracle.startswith("agreement")]
    order2 = [c for c in own if c.order == 2]
    assert order2 and {c.oracle for c in order2} >= {"self-consistency"}
    for c in order2:
        assert (c.status, c.classification) == ("fail", "overflow/nan"), statuses([c])
    assert_all_pass([c for c in checks if c.order == 1])


@quiet_nan
def test_a_deterministic_nan_is_never_called_nondeterministic(entry):
    nan = load_with(NanSecondDerivative(entry.backend)).backends[f"renamed-{entry.name}"]
    checks = run(nan, problems=["tanh"], modes=("eager",))
    failed = [c for c in checks if c.status == "fail"]
    assert failed
    assert all(c.classification != "nondeterministic" for c in failed), statuses(failed)


def test_raising_derivative_is_an_error_and_stays_its_own(entry):
    broken = load_with(RaisingDerivative(entry.backend)).backends[f"renamed-{entry.name}"]
    checks = run(entry, broken, modes=("eager",))
    assert_all_pass([c for c in checks if c.backend == entry.name])
    scalar = of(checks, broken.name, problem="tanh")
    assert {(c.status, c.message) for c in scalar} == {
        ("error", "RuntimeError: planted failure in derivative")
    }
    assert {(c.strategy, c.order) for c in scalar} == set(itertools.product(entry.backend.strategies, ORDERS))
    # Its value_and_grad is the delegate's: the gradient problem still passes.
    assert_all_pass(of(checks, broken.name, problem="logistic-notebook"))


def test_not_implemented_strategy_is_unsupported(entry):
    partial = load_with(NoForward(entry.backend)).backends[f"renamed-{entry.name}"]
    checks = run(partial, problems=["tanh"], modes=("eager",), strategies=("reverse", "forward"))
    forward = of(checks, partial.name, strategy="forward")
    assert {(c.status, c.order) for c in forward} == {("unsupported", n) for n in ORDERS}
    assert all("planted: forward mode is not wired up" in c.message for c in forward)
    assert_all_pass(of(checks, partial.name, strategy="reverse"))


def test_flaky_derivative_is_nondeterministic(entry):
    flaky = load_with(Flaky(entry.backend)).backends[f"renamed-{entry.name}"]
    checks = run(flaky, problems=["tanh"], modes=("eager",), strategies=("reverse",))
    primary = [c for c in checks if c.oracle.startswith("mpmath")]
    assert {c.order for c in primary} == set(ORDERS)
    for c in primary:
        assert (c.status, c.classification) == ("fail", "nondeterministic"), statuses([c])


# --- Registration faults ------------------------------------------------------------------------------


def test_backend_missing_methods_is_reported_not_registered():
    registry = plugins.load(extra=[("halfdone", plugin_of(Incomplete()))])
    assert "incomplete" not in registry.backends
    assert {"jax", "autograd", "torch", "tensorflow"} <= set(registry.backends)
    [error] = registry.errors
    assert isinstance(error, PluginError)
    assert error.plugin == "halfdone"
    assert "breaks the spec" in error.message
    assert "missing value_and_grad " in error.message
    for optional in ("derivative", "compile", "jvp"):
        assert optional not in error.message
    assert "halfdone" in str(error)


def test_backend_with_a_bad_strategy_is_reported():
    bad = Wrapper(plugins.load().backends["autograd"].backend, name="bad-strategy")
    bad.strategies = ("reverse", "backward")
    registry = plugins.load(extra=[("typo", plugin_of(bad))])
    assert "bad-strategy" not in registry.backends
    [error] = registry.errors
    assert error.plugin == "typo" and "'backward'" in error.message


def test_taken_backend_name_is_reported_and_the_first_kept(registry):
    impostor = Wrapper(registry.backends["autograd"].backend, name="autograd")
    loaded = plugins.load(extra=[("impostor", plugin_of(impostor))])
    assert loaded.backends["autograd"].plugin == "autograd"
    assert loaded.backends["autograd"].backend is not impostor
    [error] = loaded.errors
    assert error.plugin == "impostor" and "already taken" in error.message


def test_faulty_plugins_are_reported_by_name_and_others_unaffected(registry):
    @harness.hookimpl
    def harness_register_backends(register):
        raise RuntimeError("planted failure while registering")

    @harness.hookimpl
    def harness_register_backend(register):  # misspelt: one "s" short
        raise AssertionError("never called")

    good = Wrapper(registry.backends["autograd"].backend)
    loaded = plugins.load(
        extra=[
            ("raises", types.SimpleNamespace(harness_register_backends=harness_register_backends)),
            ("misspelt", types.SimpleNamespace(harness_register_backend=harness_register_backend)),
            ("good", plugin_of(good)),
        ]
    )
    errors = {e.plugin: e.message for e in loaded.errors}
    assert set(errors) == {"raises", "misspelt"}
    assert "RuntimeError: planted failure while registering" in errors["raises"]
    assert "harness_register_backend" in errors["misspelt"]
    assert loaded.backends["renamed-autograd"].backend is good
    assert loaded.backends["renamed-autograd"].plugin == "good"
    assert {"jax", "autograd", "torch", "tensorflow"} <= set(loaded.backends)
    assert set(loaded.problems) == set(registry.problems)


def test_a_plugin_registered_twice_does_not_unregister_the_first(registry):
    from harness_backends import autograd

    loaded = plugins.load(extra=[("alias", autograd)])
    assert [e.plugin for e in loaded.errors] == ["alias"]
    assert "autograd" in loaded.backends


def test_missing_requirement_is_unavailable_with_hint(registry):
    ghost = Wrapper(
        registry.backends["autograd"].backend,
        name="ghost",
        requires=("no-such-framework-xyz",),
        install_hint="pip install no-such-framework-xyz",
    )
    loaded = load_with(ghost, entry_points=True)
    entry = loaded.backends["ghost"]
    assert entry.version is None
    assert entry.unavailable == ("no-such-framework-xyz is not installed (pip install no-such-framework-xyz)")
    assert run(entry) == []
    assert [e.name for e in loaded.select_backends(["ghost"])] == ["ghost"]


def test_requirement_checked_in_order(registry):
    """The version reported is the first requirement's; any missing one makes it unavailable."""
    inner = registry.backends["autograd"].backend
    second_missing = Wrapper(inner, name="second-missing", requires=("numpy", "no-such-framework-xyz"))
    numpy_only = Wrapper(inner, name="numpy-only", requires=("numpy",))
    loaded = load_with(second_missing, numpy_only)
    assert loaded.backends["second-missing"].unavailable.startswith("no-such-framework-xyz")
    import numpy

    assert loaded.backends["numpy-only"].version == numpy.__version__
    assert loaded.backends["numpy-only"].unavailable is None


def test_a_requirement_may_name_alternatives(registry):
    """``("tensorflow", "tensorflow-cpu")``: the first alternative installed meets it."""
    inner = registry.backends["autograd"].backend
    either = Wrapper(inner, name="either", requires=(("no-such-framework-xyz", "numpy"),))
    neither = Wrapper(inner, name="neither", requires=(("no-such-xyz", "no-such-abc"),), install_hint="hint")
    loaded = load_with(either, neither)
    import numpy

    assert loaded.backends["either"].version == numpy.__version__
    assert loaded.backends["either"].unavailable is None
    assert loaded.backends["neither"].unavailable == "no-such-xyz or no-such-abc is not installed (hint)"


# --- Through the harness entry-point group, in a fresh process -----------------------------------------


FAKE_PLUGIN = """\
import harness
from harness_backends.{module} import {cls}


class Fake({cls}):
    name = "fake"


@harness.hookimpl
def harness_register_backends(register):
    register(Fake())
"""


def install_fake_plugin(path, source: str) -> dict:
    """``fakeplugin.py`` and its dist-info under ``path``; the environment that finds them."""
    (path / "fakeplugin.py").write_text(source)
    info = path / "fakeplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[harness]\nfake = fakeplugin\n")
    env = dict(os.environ)
    env.pop(plugins.BACKENDS_ENV, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    return env


def harness_cli(*args, env, cwd):
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_entry_point_plugin_validates(registry, tmp_path):
    choices = [
        (module, cls)
        for module, cls in (("autograd", "AutogradBackend"), ("jax", "JaxBackend"))
        if not registry.backends[module].unavailable
    ]
    if not choices:
        pytest.skip("neither autograd nor jax is installed")
    module, cls = choices[0]
    env = install_fake_plugin(tmp_path, FAKE_PLUGIN.format(module=module, cls=cls))
    result = harness_cli(
        "validate",
        "-b",
        "fake",
        "-p",
        "tanh",
        "--dtype",
        "float64",
        "-o",
        "1-2",
        "--format",
        "json",
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["plugin_errors"] == [] and report["unavailable"] == {}
    checks = report["checks"]
    assert checks and {c["backend"] for c in checks} == {"fake"}
    assert {c["status"] for c in checks} == {"pass"}
    assert {c["order"] for c in checks} == {1, 2}
    assert {c["problem"] for c in checks} == {"tanh"}

    listed = harness_cli("list", "--no-devices", "--format", "json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [fake] = [b for b in json.loads(listed.stdout)["backends"] if b["name"] == "fake"]
    assert fake["plugin"] == "fake" and fake["available"]


def test_entry_point_plugin_that_fails_to_import(tmp_path):
    env = install_fake_plugin(
        tmp_path,
        textwrap.dedent("""\
        raise ImportError("planted: fakeplugin needs a framework that is not here")
    """),
    )
    result = harness_cli("list", "--no-devices", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("jax", "autograd", "torch", "tensorflow", "tanh", "logistic-notebook"):
        assert name in result.stdout
    assert "fake" not in result.stdout.replace("fakeplugin", "")
    assert "plugin 'fake'" in result.stderr
    assert "ImportError: planted" in result.stderr

    listed = harness_cli("list", "--no-devices", "--format", "json", env=env, cwd=tmp_path)
    assert listed.returncode == 0
    report = json.loads(listed.stdout)
    assert [e["plugin"] for e in report["plugin_errors"]] == ["fake"]
    assert {"jax", "autograd", "torch", "tensorflow"} <= {b["name"] for b in report["backends"]}


def test_a_plugin_importing_a_built_in_by_its_old_name_is_told_the_new_one(tmp_path):
    """The built-ins were a top-level ``backends`` package; now they are ``harness_backends``. A
    plugin written against the old name fails alone, and its error names the new one."""
    env = install_fake_plugin(
        tmp_path,
        FAKE_PLUGIN.replace("harness_backends.", "backends.").format(
            module="autograd", cls="AutogradBackend"
        ),
    )
    listed = harness_cli("list", "--no-devices", "--format", "json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    [error] = report["plugin_errors"]
    assert error["plugin"] == "fake"
    assert "No module named 'backends'" in error["message"]
    new_names = "import harness_backends.NAME (jax, autograd, torch, tensorflow) instead of backends.NAME"
    assert new_names in error["message"]
    assert {"jax", "autograd", "torch", "tensorflow"} <= {b["name"] for b in report["backends"]}


def test_no_top_level_backends_package_is_installed(tmp_path):
    """Outside a checkout (where the folder backends/ is not on the path), ``backends`` is not
    importable: the built-ins are installed under the harness's namespace only."""
    script = "import importlib.util, harness_backends.autograd; print(importlib.util.find_spec('backends'))"
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"


def test_the_built_ins_load_from_the_repository_root_as_the_readme_runs_them(registry):
    """The README's first command runs ``python -m harness`` in the checkout, where the source
    folder ``harness/`` (not the installed package) is imported: the installed built-ins must
    still load, every one that loads here."""
    root = Path(__file__).resolve().parents[1]
    listed = harness_cli("list", "--no-devices", "--format", "json", env=dict(os.environ), cwd=root)
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report["plugin_errors"] == []
    here = {name for name, e in registry.backends.items() if not e.unavailable}
    there = {b["name"] for b in report["backends"] if b["available"] is True}
    assert here and there == here
