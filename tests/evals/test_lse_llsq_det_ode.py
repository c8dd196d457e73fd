"""GradBench's evals as problems (`harness.evals`): their definitions and closed forms against
independent numpy computations, planted errors caught, and the CLI's validation of them."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
from fakes import Scaled, plugin_of

from harness import oracles, plugins, strategies
from harness.cli.main import main
from harness.evals import det, inputs, llsq, lse, ode
from harness.pytree import select
from harness.target import Target
from harness.validation import checks

EVALS = {p.name: p for module in (lse, llsq, det, ode) for p in module.PROBLEMS}
"""The first four evals; the later ones have test modules of their own (`test_kmeans_gmm_lstm.py`,
`test_ba_ht.py`, `test_particle_saddle.py`)."""
STEP = 1e-20


def complex_step(F, theta):
    """Derivatives of numpy ``F`` (scalar or vector) along each unit vector, by complex step."""
    return np.array([np.imag(F(theta + 1j * STEP * e)) / STEP for e in np.eye(theta.size)])


# --- The definitions and their closed forms, in numpy -------------------------------------------------


def test_inputs_are_drawn_as_gradbench_draws_them():
    np.random.seed(inputs.SEED)  # what GradBench's run.py does before its first draw
    assert np.array_equal(lse.args((7,))[0], np.random.rand(7))
    x, t, s = llsq.args((5, 3))
    assert t.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0] and s.tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0]
    assert x.shape == (3,) and det.args((3,))[0].shape == (9,)


def test_lse_is_log_sum_exp_and_its_gradient_the_softmax():
    (x,) = lse.args()
    assert lse.primal(np, x) == pytest.approx(math.log(sum(math.exp(v) for v in x)), rel=1e-15)
    np.testing.assert_allclose(complex_step(lambda u: lse.primal(np, u), x), lse.softmax(x), rtol=1e-14)
    hessian = np.diag(lse.softmax(x)) - np.outer(lse.softmax(x), lse.softmax(x))
    v = np.cos(np.arange(x.size))
    np.testing.assert_allclose(lse.hvp(v, x), hessian @ v, rtol=1e-13, atol=1e-16)


def test_llsq_matches_its_sums_and_its_gradient_and_hessian():
    x, t, s = llsq.args((9, 4))
    direct = sum((s[i] - sum(x[j] * t[i] ** j for j in range(4))) ** 2 for i in range(9)) / 2
    assert llsq.primal(np, x, t, s) == pytest.approx(direct, rel=1e-14)
    F = lambda u: llsq.primal(np, u, t, s)  # noqa: E731
    np.testing.assert_allclose(complex_step(F, x), llsq.gradient(x, t, s), rtol=1e-13)
    hessian = complex_step(lambda u: llsq.gradient(u, t, s), x)
    v = np.arange(1.0, 5.0)
    np.testing.assert_allclose(llsq.hvp(v, x, t, s), hessian @ v, rtol=1e-13)


@pytest.mark.parametrize("ell", [1, 2, 3, 5])
def test_det_by_minors_and_its_exact_cofactors(ell):
    (A,) = det.args((ell,))
    M = A.reshape(ell, ell)
    assert det.primal(np, A) == pytest.approx(np.linalg.det(M), rel=1e-12)
    cofactors = det.gradient(A)
    by_complex_step = complex_step(lambda u: det.primal(np, u), A)
    np.testing.assert_allclose(cofactors, by_complex_step, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(cofactors, (np.linalg.det(M) * np.linalg.inv(M)).T.ravel(), rtol=1e-10)


def test_exact_cofactors_are_exact():
    assert oracles.exact_cofactors(np.array([1.0, 2.0, 3.0, 4.0])).tolist() == [4.0, -3.0, -2.0, 1.0]
    assert oracles.exact_cofactors(np.ones(9)).tolist() == [0.0] * 9  # singular: every minor too
    # A zero pivot is swapped (the sign flips); 0.1 is taken as the float64 it is, exactly.
    A = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.1])
    assert oracles.exact_cofactors(A).tolist() == [0.0, -0.1, 0.0, -0.1, 0.0, 0.0, 0.0, 0.0, -1.0]
    # Rounded once: the cofactor of a near-cancelling minor is the nearest float to the truth.
    a, b = 1.0 + 2.0**-52, 1.0 - 2.0**-53
    truth = Fraction(a) * Fraction(a) - Fraction(b) * Fraction(b)  # the (2, 2) cofactor
    entries = np.array([a, b, 0.0, b, a, 0.0, 0.0, 0.0, 1.0])
    assert oracles.exact_cofactors(entries)[8] == float(truth)
    with pytest.raises(ValueError, match="no square"):
        oracles.exact_cofactors(np.ones(5))


def test_ode_is_rk4_and_its_jacobian_the_closed_form():
    x, steps = ode.args((7, 3))
    reference = np.zeros(7)  # RK4 written out on plain lists, index by index, as GradBench's C++
    h = steps[0]

    def f(y):
        return [x[0]] + [x[i] * y[i - 1] for i in range(1, 7)]

    for _ in range(3):
        k1 = f(reference)
        k2 = f(reference + h * np.array(k1) / 2)
        k3 = f(reference + h * np.array(k2) / 2)
        k4 = f(reference + h * np.array(k3))
        reference = reference + h * (np.array(k1) + 2 * np.array(k2) + 2 * np.array(k3) + np.array(k4)) / 6
    np.testing.assert_allclose(ode.primal(np, x, steps), reference, rtol=1e-15)
    q = ode.coefficients(steps, 7)
    closed = [q[i + 1] * np.prod(x[: i + 1]) for i in range(7)]
    np.testing.assert_allclose(reference, closed, rtol=1e-14)
    jacobian = complex_step(lambda u: ode.primal(np, u, steps), x).T
    np.testing.assert_allclose(ode.jacobian(x, steps), jacobian, rtol=1e-14, atol=1e-300)


def test_rk4_solves_the_ode_exactly_only_up_to_four_entries():
    """GradBench's golden gradient is the ODE's own solution, t_f**(i+1) / (i+1)! x_0 ... x_i:
    RK4's equals it while n <= 4 (P's degree) and differs beyond; with s steps RK4's y_i is
    exactly 0 from i = 4s on."""
    for n, s, same in ((4, 1, True), (4, 5, True), (6, 2, False)):
        x, steps = ode.args((n, s))
        solution = [2.0 ** (i + 1) / math.factorial(i + 1) * np.prod(x[: i + 1]) for i in range(n)]
        assert np.allclose(ode.primal(np, x, steps), solution, rtol=1e-14) is same
    y = ode.primal(np, *ode.args((9, 2)))
    assert np.all(y[:8] > 0) and y[8] == 0.0


# --- The backends -----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", strategies.JACOBIAN_STRATEGIES)
def test_each_backends_ode_jacobian_equals_the_closed_form(entry, strategy):
    """JAX's own form (`ode.primal_jax`, a scan) included: it is what runs there."""
    target, problem = Target(entry), EVALS["ode"]
    assert target.function(problem).func is (ode.primal_jax if entry.name == "jax" else ode.primal)
    args = problem.make_args(problem.size)
    basis = strategies.jacobian_basis(strategy, select(args, 0), args[0].size)
    value, parts = target.numpy(target.jacobian(problem, strategy)(target.array(basis), *target.array(args)))
    value, jacobian = strategies.jacobian_matrix(strategy, value, parts)
    np.testing.assert_allclose(jacobian, ode.jacobian(*args), rtol=1e-14, atol=1e-17)
    np.testing.assert_allclose(value, ode.primal(np, *args), rtol=1e-15)


@pytest.mark.parametrize("name", sorted(EVALS))
def test_a_derivative_off_by_1e_8_is_caught_in_float64(fast, name):
    """Every derivative of the backend's ``value_and_grad`` (and, for ode, its ``jvp``) scaled by
    1 + 1e-8: the exact, closed-form and complex-step oracles catch it (the central difference,
    held to 1e-8, may not)."""
    problem = EVALS[name]
    caught = set()
    for primitive in ("value_and_grad", "jvp") if name == "ode" else ("value_and_grad",):
        backend = Scaled(fast.backend, primitive)
        entry = plugins.load(extra=[("scaled", plugin_of(backend))], entry_points=False).backends[
            backend.name
        ]
        plan = checks.Plan([entry], [problem], dtypes=("float64",), modes=("eager",))
        found = list(checks.check_plan(plan))
        failed = [c for c in found if c.status == "fail"]
        assert failed and {c.classification for c in failed} == {"wrong derivative"}
        assert all(c.order >= 1 for c in failed)  # the values are right
        caught |= {(c.strategy, c.oracle) for c in failed}
    exact = {"closed-form", "exact", "complex-step"}
    if name == "ode":
        assert {(s, o) for s in ("forward", "reverse") for o in exact - {"exact"}} <= caught
    else:
        assert {("reverse", problem.gradient_oracle), ("reverse", "complex-step")} <= caught
        if problem.hvp:  # a Hessian-vector product is a derivative of the scaled gradient
            assert ("forward-over-reverse", "closed-form") in caught


def test_the_evals_pass_unscaled_on_the_same_backend(fast):
    found = list(checks.check_plan(checks.Plan([fast], list(EVALS.values()), modes=("eager",))))
    assert [c for c in found if c.status != "pass"] == []
    assert {c.oracle for c in found if c.problem == "det"} >= {"exact", "complex-step", "central-difference"}


def test_larger_sizes_check_along_seeded_directions(fast):
    wide = replace(EVALS["lse"], size=(40,))
    found = list(checks.check_plan(checks.Plan([fast], [wide], dtypes=("float64",), modes=("eager",))))
    assert {c.status for c in found} == {"pass"}
    assert {c.points for c in found if c.oracle == "complex-step" and c.order == 1} == {
        "6 seeded random directions"
    }


# --- The command line ------------------------------------------------------------------------------


def test_validate_passes_the_evals_in_float64(capsys, installed):
    names = ",".join(e.name for e in installed)
    code = main(["validate", "-q", "-b", names, "-p", "lse,llsq,det", "--dtype", "float64"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 fail" in out and "0 error" in out


def test_list_shows_the_evals(capsys):
    assert main(["list", "--no-devices", "--format", "json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["problems"]}
    kinds = {name: listed[name]["kind"] for name in EVALS}
    assert kinds == {"lse": "GradientProblem", "llsq": "GradientProblem", "det": "GradientProblem"} | {
        "ode": "JacobianProblem"
    }
    assert all("GradBench" in listed[name]["description"] for name in EVALS)
    assert {name for name in EVALS if listed[name]["default"]} == {"lse", "llsq", "det"}
