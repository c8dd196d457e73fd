"""``validate --problems FILE`` (and ``module:attribute``): problems from a file, no packaging,
run in the jobs' child processes too; a broken file is a usage error (exit 2) naming it."""

from __future__ import annotations

import json
import textwrap

import pytest

from harness import plugins
from harness.cli.main import main

try:
    import autograd
except ImportError:  # the jax, torch and tensorflow tox envs: the broken-file tests still run
    autograd = None
needs_autograd = pytest.mark.skipif(autograd is None, reason="autograd is not installed")

PROBLEMS_FILE = """
import os

import numpy as np

from harness.problems import GradientProblem, JacobianProblem, ScalarProblem

with open(os.path.join(os.path.dirname(__file__), "loaded-by"), "a") as seen:
    seen.write(f"{os.getpid()}\\n")  # which processes loaded this file


def bump(xp, x):
    return x * xp.exp(-x * x)


def quadratic(xp, w, a):
    return xp.sum((a @ w) ** 2) / 2


def quadratic_args(size=None):
    rng = np.random.default_rng(1)
    return rng.standard_normal(3), rng.standard_normal((4, 3))


def softsign(xp, x):
    return x / (1 + x * x)


PROBLEMS = [
    ScalarProblem("file-bump", bump, points=(-1.0, 0.0, 0.5, 2.0), default=False),
    GradientProblem("file-quadratic", quadratic, quadratic_args, argnums=0,
                    gradient=lambda w, a: a.T @ (a @ w)),
    JacobianProblem("file-softsign", softsign, lambda size=None: (np.linspace(-2, 2, 5),), argnums=0),
]
"""

HOOK_FILE = """
import harness
from harness.problems import ScalarProblem


def wrong_cube(xp, x):
    return x ** 3


@harness.hookimpl
def harness_register_problems(register):
    # a planted mistake: the polynomial says 2 x**3, the function computes x**3
    register(ScalarProblem("file-cube", wrong_cube, points=(1.0, 2.0), polynomial=(0, 0, 0, 2)))
"""

SMALL = ["-b", "autograd", "--dtype", "float64", "-o", "1", "--format", "json", "-q"]


@pytest.fixture(autouse=True)
def no_backends_env(monkeypatch):
    monkeypatch.delenv(plugins.BACKENDS_ENV, raising=False)


def run(capsys, *args) -> tuple[int, dict | None, str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


@needs_autograd
def test_a_files_scalar_gradient_and_jacobian_problems_are_validated_in_a_child(tmp_path, capsys):
    path = tmp_path / "my_problems.py"
    path.write_text(PROBLEMS_FILE)
    code, report, _ = run(capsys, "--problems", str(path), *SMALL)
    assert code == 0
    ran = {c["problem"] for c in report["checks"] if c["status"] == "pass"}
    # the file's problems all run, the non-default one too, beside the default built-ins
    assert {"file-bump", "file-quadratic", "file-softsign", "tanh"} <= ran
    oracles = {c["oracle"] for c in report["checks"] if c["problem"] == "file-softsign"}
    assert {"complex-step", "central-difference"} <= oracles
    loaded_by = set((tmp_path / "loaded-by").read_text().split())
    assert len(loaded_by) == 2  # this process and the job's child interpreter


@needs_autograd
def test_a_hookimpl_file_named_as_module_attribute_and_its_planted_mistake(tmp_path, capsys, monkeypatch):
    (tmp_path / "cube_problems.py").write_text(HOOK_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the child finds the module from its working directory
    code, report, _ = run(
        capsys, "--problems", "cube_problems:harness_register_problems", "-p", "file-cube", *SMALL
    )
    assert code == 1
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert failed and {c["classification"] for c in failed} == {"wrong derivative"}


@pytest.mark.parametrize(
    "source, says",
    [
        ("def f(:\n", "syntax error at line 1"),
        ("import no_such_module_anywhere\n", "failed to import: ModuleNotFoundError"),
        ("X = 1\n", "defines no problems"),
        ("PROBLEMS = [1]\n", "1 is none of ScalarProblem"),
        ("PROBLEMS = []\n", "problem list is empty"),
        (
            "from harness.problems import ScalarProblem\n"
            "PROBLEMS = [ScalarProblem('tanh', lambda xp, x: x, points=(1.0,))]\n",
            "problem name 'tanh' is already taken",
        ),
    ],
)
def test_a_broken_file_is_a_usage_error_that_names_it(tmp_path, capsys, source, says):
    path = tmp_path / "broken_problems.py"
    path.write_text(textwrap.dedent(source))
    code, report, err = run(capsys, "--problems", str(path), *SMALL)
    assert code == 2 and report is None
    assert str(path) in err and says in err


def test_a_missing_file_or_attribute_is_a_usage_error(tmp_path, capsys, monkeypatch):
    code, _, err = run(capsys, "--problems", str(tmp_path / "nowhere.py"), *SMALL)
    assert code == 2 and "nowhere.py' does not exist" in err
    (tmp_path / "some_problems.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = run(capsys, "--problems", "some_problems:NOPE", *SMALL)
    assert code == 2 and "has no attribute 'NOPE'" in err


def test_compare_refuses_problems_for_saved_runs(capsys):
    assert main(["compare", "latest", "--problems", "x.py"]) == 2
    assert "--problems" in capsys.readouterr().err
