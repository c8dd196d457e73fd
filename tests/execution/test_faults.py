"""Fault injection through real isolation: faulty backends from a fake installed distribution
(`faulty`), run by ``python -m harness`` in child processes as a user would. Each fault must be
reported as its own backend's check while the other backends' results stay intact.

No test here races a clock: the run's time limit is left at its default (an hour), so a
loaded machine is only slower. Time limits are tested with backends that hang on purpose,
in ``test_runner.py``.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from faulty import CRASHERS, PLANTED_MESSAGE, SMALL, Run, common_source, harness_cli, inner_of, install

import harness
from harness import plugins
from harness.validation.checks import Plan, check_plan


@pytest.fixture(scope="module")
def inner(registry) -> tuple[str, str]:
    found = inner_of(registry)
    if found is None:
        pytest.skip("neither autograd nor jax is installed")
    return found


def summary(checks: list[dict]) -> list[tuple]:
    return [
        (
            c["problem"],
            c["strategy"],
            c["order"],
            c["oracle"],
            c["status"],
            c["classification"],
            c["message"][:80],
        )
        for c in checks
    ]


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
    """The installed reference backend first, then the faulty ones."""
    env, path = faulty
    names = [n.format(inner=inner[0]) for n in CRASHED]
    return harness_cli("validate", "-b", ",".join(names), *PLAN, env=env, cwd=path, timeout=900)


CRASHED = ["{inner}", "segv", "killed", "raises", "nan", "shape", "badgrad"]
PLAN = ["-p", "tanh,logistic-notebook", "-o", "1-2", "--dtype", "float64", "--mode", "eager"]
PLAN += ["--format", "json"]


def test_the_run_survives_and_fails(crashed, inner):
    assert crashed.code == 1, crashed
    report = crashed.report
    assert report["plugin_errors"] == [] and report["unavailable"] == {}
    assert {c["backend"] for c in crashed.checks} == {n.format(inner=inner[0]) for n in CRASHED}
    records = {c["backend"] for c in crashed.checks if c["classification"] in ("crash", "timeout")}
    assert records == {"segv", "killed"}


def test_segfault_is_a_crash_and_others_are_intact(crashed, inner):
    record = crash_record(crashed, "segv")
    assert record["classification"] == "crash"
    assert "SIGSEGV" in record["message"]
    assert_kept_before_death(crashed, "segv", record)
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
        ("error", "ShapeMismatch: derivative has shape (1,), expected (8,)")
    }
    assert {c["classification"] for c in tanh} == {"wrong shape"}
    assert_all_pass(crashed.of("shape", problem="logistic-notebook"))
    assert_intact(crashed, inner[0])


def test_wrong_gradient_structure_is_an_error_naming_the_structures(crashed, inner):
    [gradient] = crashed.of("badgrad", problem="logistic-notebook", order=1)
    assert gradient["status"] == "error"
    assert gradient["message"] == "ShapeMismatch: gradient has structure (3,), expected ((3,), ())"
    assert gradient["classification"] == "wrong shape"
    assert_all_pass(crashed.of("badgrad", problem="tanh"))  # derivative is intact
    assert_intact(crashed, inner[0])


def test_every_hvp_strategy_of_the_bad_gradient_is_reported(crashed):
    order2 = crashed.of("badgrad", problem="logistic-notebook", order=2)
    assert {c["strategy"] for c in order2} == {"reverse", "forward-over-reverse"}


# --- Without isolation ----------------------------------------------------------------------------


def test_no_isolate_survives_raising_plugins_with_the_same_results(faulty, crashed, inner):
    env, path = faulty
    names = [inner[0], "raises", "nan", "shape"]
    run = harness_cli("validate", "-b", ",".join(names), "--no-isolate", *PLAN, env=env, cwd=path)
    assert run.code == 1, run
    assert_intact(run, inner[0])
    assert {c["message"] for c in run.of("raises", problem="tanh")} == {PLANTED_MESSAGE}
    # In-process or in a child, the same checks with the same outcomes.
    for name in names:
        assert summary(run.of(name)) == summary(crashed.of(name)), name


# --- Faults outside a check (bugs, pinned) --------------------------------------------------------


def test_an_exception_outside_a_check_fails_an_isolated_run(faulty):
    env, path = faulty
    run = harness_cli(
        "validate",
        "-b",
        "badjit,badhvp",
        "-p",
        "tanh,logistic-notebook",
        "-o",
        "1-2",
        "--dtype",
        "float64",
        "--strategy",
        "forward-over-reverse",
        "--format",
        "json",
        env=env,
        cwd=path,
    )
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


@pytest.mark.parametrize(
    ("cls", "problem", "raises"),
    [
        ("BadHvp", "logistic-notebook", ValueError),  # _judge: operands could not be broadcast
        ("BadJit", "tanh", RuntimeError),  # backend.compile, outside the try in _scalar_checks
    ],
)
def test_a_fault_outside_a_check_is_an_error_check_in_process(common, cls, problem, raises):
    entry = in_process(getattr(common, cls)(cls.lower()))
    registry = plugins.load(entry_points=False)
    plan = Plan(
        backends=[entry],
        problems=registry.select_problems([problem]),
        dtypes=("float64",),
        orders=(1, 2),
        strategies=("forward-over-reverse",),
    )
    checks = list(check_plan(plan))
    assert [c for c in checks if c.status == "error"]


# --- Expected outcomes, both directions -----------------------------------------------------------


EXPECTED = (
    "# written by tests/execution/test_faults.py\ntanh  *  *  float64  2  fail  # planted: order 2 is off\n"
)


@pytest.fixture(scope="module")
def expecting(tmp_path_factory, inner) -> tuple[dict, Path, Path]:
    path = tmp_path_factory.mktemp("expecting")
    known = path / "planted.expected"
    known.write_text(EXPECTED)
    env = install(
        path,
        inner,
        {"planted": f"WrongSecond, expected={str(known)!r}", "honest": f"Wrapper, expected={str(known)!r}"},
    )
    return env, path, known


def test_expected_failure_that_happens_passes_the_run(expecting, inner):
    env, path, known = expecting
    run = harness_cli("validate", "-b", f"{inner[0]},planted", *SMALL, "--format", "json", env=env, cwd=path)
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
    env = install(
        tmp_path / "site",
        inner,
        {
            "malformed": f"Wrapper, expected={str(bad)!r}",
            "missing": f"Wrapper, expected={str(tmp_path / 'no-such.expected')!r}",
            "honest": "Wrapper",
        },
    )
    run = harness_cli(
        "validate", "-b", f"{inner[0]},honest", *SMALL, "--format", "json", env=env, cwd=tmp_path
    )
    assert run.code == 0, run
    errors = run.report["plugin_errors"]
    assert len(errors) == 2, errors
    malformed, missing = sorted(errors)
    assert malformed.startswith("plugin 'malformed': has an unreadable expected-outcomes file: ")
    assert f"{bad}:2: expected 'problem strategy mode dtype orders outcome'" in malformed
    assert missing.startswith("plugin 'missing': has an unreadable expected-outcomes file: ")
    assert {c["backend"] for c in run.checks} == {inner[0], "honest"}
    assert_all_pass(run.checks)
    # Named on the command line, the broken backend is a usage error that says what is wrong.
    named = harness_cli("validate", "-b", "malformed", *SMALL, env=env, cwd=tmp_path)
    assert named.code == 2, named
    assert named.stderr.startswith(
        "error: backend 'malformed' cannot run: plugin 'malformed': "
        "has an unreadable expected-outcomes file: "
    ), named
    assert named.stderr.count("\n") == 1


# --- The quick benchmark, isolated ------------------------------------------------------------------


def test_compare_survives_a_backend_that_segfaults(faulty, inner):
    """``compare`` times each backend in its own process: segv's crash is reported by name, and
    the reference backend's timings are all there."""
    env, path = faulty
    run = harness_cli("compare", "-b", f"{inner[0]},segv", "--format", "json", env=env, cwd=path, timeout=900)
    assert run.code == 1, run
    assert "error: segv:" in run.stderr and "SIGSEGV" in run.stderr, run
    rows = json.loads(run.stdout)
    assert rows and {r["backend"] for r in rows} >= {inner[0]}
    assert all(r["validated"] for r in rows)
    # What segv timed before order 2 killed it is kept: tanh alone and order 1, never order 2.
    assert {r["order"] for r in rows if r["backend"] == "segv" and r["problem"] == "tanh"} <= {0, 1}
