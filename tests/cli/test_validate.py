"""``python -m harness``: exit codes (0 pass, 1 fail or error, 2 usage) and the JSON report, in-process."""

from __future__ import annotations

import json
import types
from dataclasses import replace

import pytest
from fakes import Raising, Wrapper, plugin_of

import harness
from harness import plugins
from harness.cli import options, output
from harness.cli.main import main
from harness.strategies import derivative
from harness.validation import tolerances, verdicts
from harness.validation.checks import FD_RTOL

SMALL = ["-p", "tanh", "-o", "1-2", "--dtype", "float64"]
FIELDS = (
    "backend",
    "device",
    "dtype",
    "mode",
    "strategy",
    "problem",
    "order",
    "status",
    "value",
    "reference",
    "oracle",
    "max_abs_err",
    "max_rel_err",
    "tolerance",
)


@pytest.fixture(autouse=True)
def no_backends_env(monkeypatch):
    monkeypatch.delenv(plugins.BACKENDS_ENV, raising=False)


def validate_json(capsys, *args) -> tuple[int, dict]:
    code = main(["validate", *args, "--format", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


class Planted(Wrapper):
    """A renamed built-in whose order-``order`` derivative is off by a relative 1e-3."""

    def __init__(self, inner, order=2):
        super().__init__(inner, name=f"planted-{inner.name}")
        self.order = order

    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)
        return (lambda x: d(x) * (1 + 1e-3)) if order == self.order else d


# --- validate ------------------------------------------------------------------------------------------


def test_validate_json_records(capsys, fast):
    code, report = validate_json(capsys, "-b", fast.name, *SMALL)
    assert code == output.EXIT_OK
    assert report["harness"] == harness.__version__
    assert report["plugin_errors"] == [] and report["unavailable"] == {}
    checks = report["checks"]
    assert checks
    for record in checks:
        missing = [f for f in FIELDS if f not in record]
        assert not missing, (missing, record)
        assert record["status"] in verdicts.STATUSES
        assert record["backend"] == fast.name and record["version"] == fast.version
        assert record["dtype"] == "float64" and record["problem"] == "tanh"
        assert record["order"] in (1, 2) and record["device"] == "cpu"
        assert record["mode"] in fast.backend.modes
        assert record["strategy"] in fast.backend.strategies
    assert {r["status"] for r in checks} == {"pass"}
    assert {r["order"] for r in checks} == {1, 2}
    assert {r["strategy"] for r in checks} == set(fast.backend.strategies)
    for record in checks:
        assert len(record["value"]) == len(record["reference"]) == 8  # tanh's eight points
        gaps = [abs(v - r) for v, r in zip(record["value"], record["reference"], strict=True)]
        assert record["max_abs_err"] == pytest.approx(max(gaps), rel=1e-12, abs=1e-300)
        rtol = tolerances.tolerance("float64", record["order"])
        if record["oracle"] == "self-consistency":  # against a finite difference
            rtol = max(rtol, FD_RTOL)
        elif record["oracle"].startswith("agreement:"):  # allows the error of both sides
            rtol *= verdicts.AGREEMENT_FACTOR
        assert record["tolerance"] == rtol


def test_validate_table(capsys, fast):
    assert main(["validate", "-b", fast.name, *SMALL]) == output.EXIT_OK
    out = capsys.readouterr().out
    assert fast.name in out and "tanh" in out
    assert "0 fail" in out and "0 error" in out and "all passed" in out


def test_validate_output_file(capsys, fast, tmp_path):
    target = tmp_path / "reports" / "run.json"
    code = main(["validate", "-b", fast.name, *SMALL, "--format", "json", "--output", str(target)])
    assert code == output.EXIT_OK
    assert capsys.readouterr().out == ""
    report = json.loads(target.read_text())
    assert report["checks"] and {c["backend"] for c in report["checks"]} == {fast.name}
    assert [p.name for p in target.parent.iterdir()] == ["run.json"]  # no temporary left behind

    text = tmp_path / "run.txt"
    assert main(["validate", "-b", fast.name, *SMALL, "--output", str(text)]) == output.EXIT_OK
    assert "all passed" in text.read_text()


def test_backends_env_selects(capsys, monkeypatch, fast):
    monkeypatch.setenv(plugins.BACKENDS_ENV, fast.name)
    code, report = validate_json(capsys, *SMALL)
    assert code == output.EXIT_OK
    assert {c["backend"] for c in report["checks"]} == {fast.name}


def test_backend_option_overrides_env(capsys, monkeypatch, fast):
    monkeypatch.setenv(plugins.BACKENDS_ENV, "no-such-backend")
    code, report = validate_json(capsys, "-b", fast.name, *SMALL)
    assert code == output.EXIT_OK
    assert {c["backend"] for c in report["checks"]} == {fast.name}


def test_unknown_backend_in_env_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setenv(plugins.BACKENDS_ENV, "no-such-backend")
    assert main(["validate", *SMALL]) == output.EXIT_USAGE
    assert "no-such-backend" in capsys.readouterr().err


def test_unknown_backend_lists_known(capsys):
    assert main(["validate", "-b", "no-such-backend", *SMALL]) == output.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unknown backend 'no-such-backend'" in captured.err
    for name in ("jax", "autograd", "torch", "tensorflow"):
        assert name in captured.err.split("known:")[1]


def test_unknown_problem(capsys, fast):
    assert main(["validate", "-b", fast.name, "-p", "no-such-problem"]) == output.EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown problem 'no-such-problem'" in err and "tanh" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--order", "0"],
        ["--order", "-1"],
        ["--order=-1"],
        ["--order", "99"],
        ["--order", str(options.MAX_ORDER + 1)],
        ["--order", "abc"],
        ["--order", "3-1"],
        ["--order", ""],
        ["--dtype", "float16"],
        ["--dtype", "float64,float16"],
        ["--mode", "graph"],
        ["--strategy", "backward"],
        ["--format", "xml"],
    ],
)
def test_bad_arguments_exit_2(capsys, args):
    with pytest.raises(SystemExit) as exc:
        main(["validate", *args])
    assert exc.value.code == output.EXIT_USAGE
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "orders"),
    [
        ("3", (3,)),
        ("1-3", (1, 2, 3)),
        ("2,4", (2, 4)),
        ("1-2,5,2", (1, 2, 5)),
        (str(options.MAX_ORDER), (options.MAX_ORDER,)),
    ],
)
def test_parse_orders(text, orders):
    assert options.parse_orders(text) == orders


def test_no_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == output.EXIT_USAGE


def test_failing_check_exits_1(capsys, fast, with_plugin):
    with_plugin(("planted", plugin_of(Planted(fast.backend, order=2))))
    name = f"planted-{fast.name}"
    code, report = validate_json(capsys, "-b", name, *SMALL)
    assert code == output.EXIT_FAIL
    checks = report["checks"]
    assert {c["backend"] for c in checks} == {name}
    failed = [c for c in checks if c["status"] == "fail"]
    assert failed and {c["order"] for c in failed} == {2}
    assert {c["classification"] for c in failed} == {"wrong derivative"}
    assert all(c["status"] == "pass" for c in checks if c["order"] == 1)

    assert main(["validate", "-b", name, *SMALL]) == output.EXIT_FAIL
    out = capsys.readouterr().out
    assert "FAILED" in out and "wrong derivative" in out and name in out


def test_failing_plugin_fails_only_its_own_checks(capsys, fast, with_plugin):
    with_plugin(("planted", plugin_of(Planted(fast.backend, order=2))))
    code, report = validate_json(capsys, "-b", f"{fast.name},planted-{fast.name}", *SMALL)
    assert code == output.EXIT_FAIL
    assert all(c["status"] == "pass" for c in report["checks"] if c["backend"] == fast.name)


def test_erroring_check_exits_1(capsys, fast, with_plugin):
    with_plugin(("raising", plugin_of(Raising(fast.backend, "raising", message="planted"))))
    code, report = validate_json(capsys, "-b", "raising", *SMALL)
    assert code == output.EXIT_FAIL
    assert {c["status"] for c in report["checks"]} == {"error"}
    assert {c["message"] for c in report["checks"]} == {"RuntimeError: planted"}


def test_unsupported_is_not_a_failure(capsys, fast):
    """A strategy the backend does not offer is ``unsupported``, which exits 0."""
    missing = [
        s
        for s in ("reverse", "forward", "forward-over-reverse", "taylor")
        if s not in fast.backend.strategies
    ]
    if not missing:
        pytest.skip(f"{fast.name} offers every strategy")
    code, report = validate_json(capsys, "-b", fast.name, *SMALL, "--strategy", missing[0])
    assert code == output.EXIT_OK
    assert {c["status"] for c in report["checks"]} == {"unsupported"}


def test_broken_plugin_is_reported_and_the_chosen_backend_runs(capsys, monkeypatch, fast, with_plugin):
    @harness.hookimpl
    def harness_register_backends(register):
        raise RuntimeError("planted failure while registering")

    with_plugin(("broken", types.SimpleNamespace(harness_register_backends=harness_register_backends)))
    monkeypatch.setenv(plugins.BACKENDS_ENV, fast.name)
    code, report = validate_json(capsys, *SMALL)
    assert code == output.EXIT_OK  # the run was restricted to a backend that works
    assert len(report["plugin_errors"]) == 1 and "'broken'" in report["plugin_errors"][0]
    assert {c["status"] for c in report["checks"]} == {"pass"}


def test_unavailable_backend(capsys, fast, with_plugin):
    ghost = Planted(fast.backend, order=0)
    ghost.name, ghost.requires = "ghost", ("no-such-framework-xyz",)
    ghost.install_hint = "pip install no-such-framework-xyz"
    with_plugin(("ghost", plugin_of(ghost)))

    assert main(["list", "--no-devices", "--format", "json"]) == output.EXIT_OK
    listed = {b["name"]: b for b in json.loads(capsys.readouterr().out)["backends"]}
    assert listed["ghost"]["available"] is False
    assert "pip install no-such-framework-xyz" in listed["ghost"]["reason"]
    assert listed[fast.name]["available"] is True

    assert main(["list", "--no-devices"]) == output.EXIT_OK
    assert "no: no-such-framework-xyz is not installed" in capsys.readouterr().out

    # Named explicitly it cannot be validated: a failure, reported with its hint.
    code, report = validate_json(capsys, "-b", "ghost", *SMALL)
    assert code == output.EXIT_FAIL
    assert report["checks"] == [] and "pip install" in report["unavailable"]["ghost"]
    # Among others it is skipped.
    code, report = validate_json(capsys, "-b", f"{fast.name},ghost", *SMALL)
    assert "ghost" not in {c["backend"] for c in report["checks"]}
    assert report["checks"] and "ghost" in report["unavailable"]


# --- list, tolerances ------------------------------------------------------------------------------------


def test_list_json(capsys):
    assert main(["list", "--no-devices", "--format", "json"]) == output.EXIT_OK
    report = json.loads(capsys.readouterr().out)
    backends = {b["name"]: b for b in report["backends"]}
    assert {"jax", "autograd", "torch", "tensorflow"} <= set(backends)
    assert all(b["devices"] is None for b in backends.values())
    assert report["devices_detected"] is None
    assert {p["name"] for p in report["problems"]} >= {"tanh", "cubic", "logistic-notebook"}
    assert report["plugin_errors"] == []


def test_tolerances(capsys):
    assert main(["tolerances"]) == output.EXIT_OK
    out = capsys.readouterr().out
    assert "float64" in out and "float32" in out
    assert f"{tolerances.tolerance('float64', 1):.0e}" in out  # float64's order-1 tolerance


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert harness.__version__ in capsys.readouterr().out


def test_agreement_allows_the_slack_each_side_was_allowed():
    """Two values of a function that cancels terms near 800 down to 0.1 (ba's residuals): each
    within its oracle's slack of the exact value, 7e-14 apart (TensorFlow's compiled and eager
    ba). Their agreement allows twice the slack; without any, one above the other's gap fails."""

    def judged(value, slack):
        head = verdicts.Check("b", "1", "cpu", "float64", "eager", "-", "ba", 0, "numpy-float64", "pass")
        return verdicts.judge(head, value, value, [0.1], 1e-14, slack)

    eager, compiled = judged([0.1 + 1e-15], 8e-14), replace(judged([0.1 + 7.2e-14], 8e-14), mode="jit")
    assert eager.status == compiled.status == "pass"
    (agreed,) = verdicts.agreement([eager, compiled])
    assert agreed.status == "pass" and agreed.oracle == "agreement:b/eager/-"
    eager, compiled = judged([0.1 + 1e-15], 0.0), replace(judged([0.1 + 7.2e-14], 8e-14), mode="jit")
    assert eager.status == "pass" and compiled.status == "pass"
    (agreed,) = verdicts.agreement([eager, compiled])
    assert agreed.status == "pass"  # the larger slack of the two
    tight = [judged([0.1 + 1e-15], 0.0), replace(judged([0.1 + 1.2e-14], 0.0), mode="jit")]
    assert [c.status for c in verdicts.agreement(tight)] == ["fail"]
