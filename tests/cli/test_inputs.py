"""Every input checked, every output valid: bad arguments are one-line usage errors before any
work; JSON output is strict RFC 8259 whatever a backend returns; exit codes do not depend on
the format; every error and failure carries an honest classification.

(Damaged saved runs are in ``test_damaged_runs.py``; destinations in ``test_runner.py``.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from fakes import Raising, Wrapper, plugin_of

import harness
from harness import plugins, problems
from harness.cli import output
from harness.cli.main import main
from harness.execution import runner
from harness.strategies import derivative

SMALL = ["-p", "tanh", "-o", "1-2", "--dtype", "float64"]


@pytest.fixture(autouse=True)
def no_backends_env(monkeypatch):
    monkeypatch.delenv(plugins.BACKENDS_ENV, raising=False)


@pytest.fixture
def no_work(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(runner, "run_jobs", refuse)


def strict(text: str):
    """Parse as RFC 8259 JSON: NaN, Infinity and -Infinity are refused."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def usage_error(capsys, argv: list[str]) -> str:
    """Run ``argv``; it must exit 2 with a one-line message. The message."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == output.EXIT_USAGE, (argv, code, err)
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith(("error", "python -m harness"))]
    assert len(lines) == 1, err
    return lines[0]


# --- Arguments --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "-o", "1-"],
        ["validate", "-o", "-3"],
        ["validate", "-o", "1,,2"],
        ["validate", "--strategy", ""],
        ["validate", "--dtype", ""],
        ["validate", "--mode", ""],
        ["validate", "--device", ""],
        ["validate", "--dtype", " , "],
        ["validate", "-b", ""],
        ["validate", "-p", ""],
        ["compare", "latest", "--baseline", ""],
        ["compare", ""],
        *[
            [command, "--timeout", t]
            for command in ("validate", "compare")
            for t in ("-1", "0", "nan", "inf", "-inf", "soon")
        ],
    ],
    ids=lambda argv: " ".join(argv) or "empty",
)
def test_bad_arguments_are_one_line_usage_errors_before_work(capsys, no_work, argv):
    usage_error(capsys, argv)


@pytest.mark.parametrize(
    "argv, names",
    [
        (["validate", "--executor", "ray", "--address", ""], "address"),
        (["compare", "--address", " "], "address"),
        (["scale", "--world", "1,,2"], "world size"),
        (["scale", "--world", "1,2,"], "world size"),
        (["scale", "--size", "99999999999999999999x64"], "memory"),
        (
            ["scale", "--size", "400000000x64", "--dtype", "float64", "--world", "1,64", "--scaling", "weak"],
            "memory",
        ),
        (["compare", "latest", "--save"], "--save"),
        (["compare", "latest", "--run-to", "x.json"], "--run-to"),
        (["compare", "latest", "-b", "jax"], "--backend"),
        (["compare", "latest", "--threads", "2"], "--threads"),
        (["compare", "latest", "--passes", "2"], "--passes"),
        (["compare", "latest", "--fail-on", "median:5%"], "--baseline"),
        (["compare", "--fail-on", "median:5%"], "--baseline"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_options_that_cannot_apply_are_refused_not_ignored(capsys, no_work, argv, names):
    assert names in usage_error(capsys, argv)


def test_stdout_that_cannot_be_written_is_a_clear_error(tmp_path):
    """``tolerances > /dev/full``: one line on stderr, exit 1, no traceback."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "harness", "tolerances"], stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert done.returncode == output.EXIT_FAIL, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "could not write the output to stdout: No space left on device" in done.stderr


INTERRUPTED_IMPORT = """
import builtins, os, runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as on a terminal, even if started ignoring it
real = builtins.__import__
def importing(name, *args, **kwargs):
    if name == "harness.cli.main":  # Ctrl-C lands while the command line is being imported
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)
builtins.__import__ = importing
sys.argv = ["harness", "list", "--no-devices"]
runpy.run_module("harness", run_name="__main__")
"""


def test_an_interrupt_while_importing_is_exit_130_without_a_traceback():
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_IMPORT], capture_output=True, text=True)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "interrupted" in done.stderr, done.stderr


@pytest.mark.parametrize("option", ["run", "--baseline", "--results"])
def test_overlong_names_are_usage_errors(capsys, no_work, tmp_path, option):
    long = "r" * 5000
    argv = {
        "run": ["compare", long],
        "--baseline": ["compare", "latest", "--baseline", long],
        "--results": ["compare", "latest", "--results", str(tmp_path / long)],
    }[option]
    line = usage_error(capsys, argv)
    assert "File name too long" in line or "is neither a file nor a run" in line or "limit" in line


def test_a_problem_with_no_points_is_refused_when_it_registers():
    @harness.hookimpl
    def harness_register_problems(register):
        register(problems.ScalarProblem("pointless", lambda xp, x: x, points=()))

    plugin = types.SimpleNamespace(harness_register_problems=harness_register_problems)
    registry = plugins.load(extra=[("pointless-plugin", plugin)], entry_points=False)
    assert "pointless" not in registry.problems
    [error] = registry.errors
    assert error.plugin == "pointless-plugin" and "no points" in error.message


def test_help_explains_dtype_mode_and_strategy(capsys):
    with pytest.raises(SystemExit):
        main(["validate", "--help"])
    out = " ".join(capsys.readouterr().out.split()).replace("- ", "-")
    for words in ("float32, float64", "eager, jit", "reverse, forward, forward-over-reverse, taylor"):
        assert words in out, words


def test_compare_help_explains_the_columns(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for column in ("of bound", "x fastest", "first call"):
        assert column in out


# --- Strict JSON, exit codes, classifications ------------------------------------------------------


class NanSecond(Wrapper):
    """Order 2 comes back NaN; the gradient comes back infinite."""

    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)
        return (lambda x: d(x) * float("nan")) if order == 2 else d

    def value_and_grad(self, f, argnums):
        vg = self.inner.value_and_grad(f, argnums)
        return lambda *args: (lambda v, g: (v, g * float("inf")))(*vg(*args))


def test_json_is_strict_whatever_the_backend_returns(capsys, fast, with_plugin):
    with_plugin(("nan", plugin_of(NanSecond(fast.backend, name="nan"))))
    code = main(
        [
            "validate",
            "-b",
            "nan",
            "-p",
            "tanh,logistic-notebook",
            "-o",
            "1-2",
            "--dtype",
            "float64",
            "--format",
            "json",
        ]
    )
    assert code == output.EXIT_FAIL
    report = strict(capsys.readouterr().out)
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert failed and {c["classification"] for c in failed} == {"overflow/nan"}
    for check in failed:
        assert check["not_finite"], check
        for where, what in check["not_finite"].items():
            assert what in ("nan", "inf", "-inf")
            field, _, index = where.partition("[")
            value = check[field] if not index else check[field][int(index.split("]")[0])]
            assert value is None
    # the table says not finite, not 0, next to FAIL
    main(["validate", "-b", "nan", "-p", "tanh", "-o", "2", "--dtype", "float64"])
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("nan ")]
    assert rows and all("not finite" in row and "FAIL" in row for row in rows)


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl"])
def test_exit_codes_do_not_depend_on_the_format(capsys, fast, with_plugin, fmt):
    with_plugin(("nan", plugin_of(NanSecond(fast.backend, name="nan"))))
    assert main(["validate", "-b", "nan", *SMALL, "--format", fmt]) == output.EXIT_FAIL
    out = capsys.readouterr().out
    if fmt == "jsonl":
        records = [strict(line) for line in out.splitlines()]
        assert any(r["status"] == "fail" for r in records)
        assert (
            any(r["oracle"].startswith("agreement") for r in records)
            or len({r["backend"] for r in records}) == 1
        )
    assert main(["validate", "-b", fast.name, *SMALL, "--format", fmt]) == output.EXIT_OK


class Scaled(Wrapper):
    """Every derivative and gradient off by a relative 1e-7: wrong, and small."""

    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)
        return lambda x: d(x) * (1 + 1e-7)

    def value_and_grad(self, f, argnums):
        vg = self.inner.value_and_grad(f, argnums)

        def scaled(*args):
            value, grads = vg(*args)
            return value, (
                tuple(g * (1 + 1e-7) for g in grads) if isinstance(grads, tuple) else grads * (1 + 1e-7)
            )

        return scaled


def test_finite_differences_never_call_an_exactly_confirmed_error_oracle_noise(capsys, fast, with_plugin):
    with_plugin(("scaled", plugin_of(Scaled(fast.backend, name="scaled"))))
    code = main(
        [
            "validate",
            "-b",
            "scaled",
            "-o",
            "1-3",
            "--dtype",
            "float64",
            "--mode",
            "eager",
            "--no-agreement",
            "--format",
            "json",
        ]
    )
    assert code == output.EXIT_FAIL
    checks = strict(capsys.readouterr().out)["checks"]
    exact_oracles = ("exact", "mpmath", "closed-form", "complex-step")
    wrong = {
        (c["strategy"], c["problem"], c["order"])
        for c in checks
        if c["oracle"].startswith(exact_oracles) and c["classification"] == "wrong derivative"
    }
    assert wrong
    noise = [
        c
        for c in checks
        if c["classification"] == "oracle noise" and (c["strategy"], c["problem"], c["order"]) in wrong
    ]
    assert noise == [], [(c["problem"], c["order"], c["oracle"]) for c in noise]
    finite_difference = [
        c
        for c in checks
        if c["oracle"] in ("self-consistency", "central-difference")
        and (c["strategy"], c["problem"], c["order"]) in wrong
        and c["status"] == "fail"
    ]
    for check in finite_difference:
        assert "also finds it wrong" in check["message"]


def test_every_error_has_a_classification(capsys, fast, with_plugin):
    with_plugin(("raising", plugin_of(Raising(fast.backend, name="raising"))))
    assert main(["validate", "-b", "raising", *SMALL, "--format", "json"]) == output.EXIT_FAIL
    errors = [c for c in strict(capsys.readouterr().out)["checks"] if c["status"] == "error"]
    assert errors and {c["classification"] for c in errors} == {"exception"}


def test_shape_check_error_is_classified_wrong_shape(capsys, fast, with_plugin):
    class Short(Wrapper):
        def derivative(self, f, order, strategy):
            d = derivative(self.inner, f, order, strategy)
            return lambda x: d(x)[:1]

    with_plugin(("short", plugin_of(Short(fast.backend, name="short"))))
    assert main(["validate", "-b", "short", *SMALL, "--format", "json"]) == output.EXIT_FAIL
    errors = [c for c in strict(capsys.readouterr().out)["checks"] if c["status"] == "error"]
    assert errors and {c["classification"] for c in errors} == {"wrong shape"}
    assert np.all(["expected (8,)" in c["message"] for c in errors])


class Stopper(Wrapper):
    """Ctrl-C lands while this backend computes its first derivative."""

    def derivative(self, f, order, strategy):
        raise KeyboardInterrupt


def test_an_interrupted_run_reconciles_what_finished_with_the_expected_outcomes(
    capsys, installed, with_plugin
):
    autograd = next((e for e in installed if e.name == "autograd"), None)
    if autograd is None:
        pytest.skip("autograd is not installed: its declared float32 failures are the subject")
    with_plugin(("stopper", plugin_of(Stopper(autograd.backend, name="stopper"))))
    argv = ["validate", "-b", "autograd,stopper", "--no-isolate", "-p", "tanh", "-o", "6"]
    code = main([*argv, "--dtype", "float32", "--format", "json", "--mode", "eager", "-q"])
    captured = capsys.readouterr()
    assert code == 130, captured.err
    report = strict(captured.out)
    assert report["interrupted"] == "SIGINT" and report["surprises"] == []
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert failed and all(c["backend"] == "autograd" and c["expected"] for c in failed)
    (line,) = [ln for ln in captured.err.splitlines() if ln.startswith("interrupted:")]
    assert line.startswith(f"interrupted: {len(report['checks'])} checks finished")


def test_a_reader_that_goes_away_ends_the_harness_by_sigpipe_quietly():
    """``compare RUN --format json | head -c 10``: ended by SIGPIPE as ``cat`` would be, no traceback."""
    (run,) = (Path(__file__).resolve().parents[2] / "results").glob("20261126T052338Z_scaling_*.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "compare", str(run), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(10)
    proc.stdout.close()  # the reader goes away with about 100 kB still to come
    err = proc.stderr.read()
    assert proc.wait() == -signal.SIGPIPE, err
    assert b"Traceback" not in err and b"Exception ignored" not in err
