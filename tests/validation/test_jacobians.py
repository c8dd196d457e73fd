"""Full Jacobians of vector-valued functions, composed in the host (`harness.strategies.jacobian`)
from each backend's ``jvp`` (columns) and ``value_and_grad`` (rows), against closed forms."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes import DoNothing, Scaled, Wrapper, plugin_of

import harness
from harness import plugins, problems, strategies
from harness.cli.main import main
from harness.pytree import select
from harness.target import Target
from harness.validation import checks


def coupled(xp, x, w):
    """tanh(a * x) + b * sum(x): elementwise, plus a coupling of every entry to every output."""
    return xp.tanh(x * w["a"]) + w["b"] * xp.sum(x)


def coupled_jacobian(x, w):
    """Columns: x (diagonal plus b everywhere), then w['a'] (diagonal), then w['b'] (sum(x))."""
    a, b = w["a"], w["b"]
    slope = 1 - np.tanh(x * a) ** 2
    return np.concatenate(
        [np.diag(slope * a) + b, np.diag(slope * x), np.full((x.size, 1), np.sum(x))], axis=1
    )


ARGS = (np.array([0.3, -1.2, 0.7, 2.0]), {"a": np.array([1.5, 0.5, -2.0, 0.25]), "b": np.array(0.25)})


def composed(target: Target, fn, args, argnums, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """(value, Jacobian) of ``fn`` by ``strategy`` on ``target``, assembled in numpy."""

    class Problem:
        pass

    Problem.fn, Problem.argnums = staticmethod(fn), argnums
    outputs = np.size(fn(np, *args))
    basis = strategies.jacobian_basis(strategy, select(args, argnums), outputs)
    value, parts = target.numpy(target.jacobian(Problem, strategy)(target.array(basis), *target.array(args)))
    return strategies.jacobian_matrix(strategy, value, parts)


@pytest.mark.parametrize("strategy", strategies.JACOBIAN_STRATEGIES)
def test_jacobian_of_a_pytree_equals_the_closed_form(entry, strategy):
    value, jac = composed(Target(entry), coupled, ARGS, (0, 1), strategy)
    assert jac.shape == (4, 9)
    np.testing.assert_allclose(jac, coupled_jacobian(*ARGS), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(value, coupled(np, *ARGS), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("strategy", strategies.JACOBIAN_STRATEGIES)
def test_jacobian_with_respect_to_one_argument(entry, strategy):
    value, jac = composed(Target(entry), coupled, ARGS, 0, strategy)
    np.testing.assert_allclose(jac, coupled_jacobian(*ARGS)[:, :4], rtol=1e-14, atol=1e-15)


def test_forward_needs_jvp_and_unknown_strategies_are_refused():
    backend = DoNothing()
    assert not hasattr(backend, "jvp")
    with pytest.raises(NotImplementedError, match="jvp"):
        strategies.jacobian(backend, lambda x: x, 0, "forward")
    with pytest.raises(NotImplementedError, match="no Jacobian strategy 'taylor'"):
        strategies.jacobian(backend, lambda x: x, 0, "taylor")
    strategies.jacobian(backend, lambda x: x, 0, "reverse")  # composed from value_and_grad alone


def test_basis_and_assembly_in_numpy():
    chosen = (np.zeros(2), {"k": np.zeros((1, 2))})
    basis = strategies.jacobian_basis("forward", chosen, outputs=3)
    assert len(basis) == 4 and [np.shape(b[1]["k"]) for b in basis] == [(1, 2)] * 4
    assert basis[2][1]["k"].tolist() == [[1.0, 0.0]]
    assert np.array_equal(strategies.jacobian_basis("reverse", chosen, outputs=3), np.eye(3))
    columns = tuple(np.arange(3.0) + 10 * k for k in range(4))
    value, jac = strategies.jacobian_matrix("forward", np.ones(3), columns)
    assert jac.shape == (3, 4) and jac[2, 1] == 12.0 and value.tolist() == [1.0, 1.0, 1.0]
    rows = tuple((np.full(2, float(i)), {"k": np.full((1, 2), -float(i))}) for i in range(3))
    value, jac = strategies.jacobian_matrix("reverse", tuple(np.array(float(i)) for i in range(3)), rows)
    assert jac.shape == (3, 4) and jac[2].tolist() == [2.0, 2.0, -2.0, -2.0] and value.tolist() == [0, 1, 2]


# --- Validation of a JacobianProblem ------------------------------------------------------------------

COUPLED = problems.JacobianProblem(
    "coupled",
    coupled,
    lambda size=None: ARGS,
    argnums=(0, 1),
    description="tanh(a * x) + b * sum(x) w.r.t. (x, {'a', 'b'})",
    jacobian=coupled_jacobian,
)
ORACLES = {(0, "numpy-float64"), (1, "closed-form"), (1, "complex-step"), (1, "central-difference")}


def validated(entries, problem, **plan) -> list:
    return list(checks.check_plan(checks.Plan(backends=list(entries), problems=[problem], **plan)))


def loaded(backend) -> plugins.BackendEntry:
    """``backend`` registered the way a third-party plugin registers it."""
    return plugins.load(extra=[("planted", plugin_of(backend))], entry_points=False).backends[backend.name]


def test_a_jacobian_problem_passes_every_oracle_on_every_installed_backend(installed):
    found = validated(installed, COUPLED, modes=("eager",))
    assert [c for c in found if c.status != "pass"] == []
    for entry in installed:
        for dtype in ("float32", "float64"):
            for strategy in strategies.JACOBIAN_STRATEGIES:
                own = {
                    (c.order, c.oracle)
                    for c in found
                    if (c.backend, c.dtype, c.strategy) == (entry.name, dtype, strategy)
                }
                assert own >= ORACLES, (entry.name, dtype, strategy, own)
    assert {c.points for c in found if c.oracle == "closed-form"} == {"full Jacobian 4 x 9, by rows"}
    if len(installed) > 1:  # the checks carry their raw values: backends are compared for free
        assert {c.oracle.split("/")[0] for c in found if c.oracle.startswith("agreement:")} >= {
            f"agreement:{installed[0].name}"
        }


@pytest.mark.parametrize(("primitive", "strategy"), [("jvp", "forward"), ("value_and_grad", "reverse")])
def test_a_derivative_off_by_1e_8_is_caught_in_float64(fast, primitive, strategy):
    found = validated(
        [loaded(Scaled(fast.backend, primitive))], COUPLED, dtypes=("float64",), modes=("eager",)
    )
    failed = {(c.strategy, c.oracle) for c in found if c.status == "fail"}
    agreeing = {(strategy, c.oracle) for c in found if c.oracle.startswith("agreement:")}
    # (a failing strategy is compared with the other one only if that one passed first)
    assert (
        {(strategy, "closed-form"), (strategy, "complex-step")}
        <= failed
        <= {
            (strategy, "closed-form"),
            (strategy, "complex-step"),
            *agreeing,
        }
    )
    assert {c.classification for c in found if c.status == "fail"} == {"wrong derivative"}
    # Central differences are held to 1e-8 (their floor): the error is within their reach.
    assert all(c.status == "pass" for c in found if c.strategy != strategy or c.order == 0)


def test_a_wrong_jacobian_is_no_oracle_noise_to_central_differences(fast):
    found = validated(
        [loaded(Scaled(fast.backend, "jvp", 1e-3))], COUPLED, dtypes=("float64",), modes=("eager",)
    )
    [central] = [c for c in found if c.strategy == "forward" and c.oracle == "central-difference"]
    assert (central.status, central.classification) == ("fail", "wrong derivative")
    assert "independent of the step" in central.message and "complex-step" in central.message
    assert len(central.sweep) == 3


class Short(Wrapper):
    """Forward mode drops the last output entry."""

    name = "short"

    def jvp(self, f, primals, tangents):
        value, tangent = self.inner.jvp(f, primals, tangents)
        return value[:-1], tangent[:-1]


class NoJvp:
    """A renamed backend without the optional ``jvp`` (everything else delegated)."""

    def __init__(self, inner):
        self.inner, self.name = inner, "no-jvp"

    def __getattr__(self, attribute):
        if attribute == "jvp":
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)


def test_a_wrong_shape_and_a_missing_jvp_are_reported_not_raised(fast):
    found = validated(
        [loaded(Short(fast.backend, name="short"))], COUPLED, dtypes=("float64",), modes=("eager",)
    )
    forward = [c for c in found if c.strategy == "forward"]
    assert [(c.status, c.classification) for c in forward] == [("error", "wrong shape")]
    assert "expected (4,) and (4, 9)" in forward[0].message
    assert {c.status for c in found if c.strategy == "reverse"} == {"pass"}

    backend = NoJvp(fast.backend)
    assert not hasattr(backend, "jvp")
    found = validated([loaded(backend)], COUPLED, dtypes=("float64",), modes=("eager",))
    assert [(c.status, c.message) for c in found if c.strategy == "forward"] == [
        ("unsupported", "a forward-mode Jacobian needs the backend's optional jvp")
    ]


def test_many_inputs_are_checked_along_seeded_directions(fast):
    x = np.linspace(-1.0, 1.0, 20)
    args = (x, {"a": np.cos(np.arange(20.0)), "b": np.array(0.5)})
    wide = problems.JacobianProblem(
        "wide", coupled, lambda size=None: args, (0, 1), jacobian=coupled_jacobian
    )
    found = validated([fast], wide, dtypes=("float64",), modes=("eager",))
    assert {c.status for c in found} == {"pass"}
    assert {c.points for c in found if c.oracle == "complex-step"} == {
        "20 x 41 Jacobian along 6 seeded random directions, by rows"
    }
    assert {len(c.value) for c in found if c.oracle == "complex-step"} == {20 * 6}
    assert {len(c.value) for c in found if c.oracle == "closed-form"} == {20 * 41}


def test_list_shows_a_plugins_jacobian_problem(capsys, with_plugin):
    class Plugin:
        @harness.hookimpl
        def harness_register_problems(self, register):
            register(COUPLED)

    with_plugin(("coupled", Plugin()))
    assert main(["list", "--no-devices", "--format", "json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["problems"]}
    assert listed["coupled"]["kind"] == "JacobianProblem" and listed["coupled"]["default"]


@pytest.mark.parametrize("name", ["ode", "ba"])
def test_the_gradbench_profile_times_full_jacobians_validated_first(fast, name):
    """ode and ba in the gradbench profile: the function alone and its Jacobian by each
    strategy, eager; each validated before timing (ode: closed form, ba: complex step along
    directions), and a jvp or a vjp off by 1e-6 relative is not timed."""
    from harness.benchmark import cases
    from harness.evals import PROBLEMS

    problem = next(p for p in PROBLEMS if p.name == name)
    found = [c for c in cases.cases([fast], "gradbench", registered=PROBLEMS) if c.problem is problem]
    assert sorted(c.strategy for c in found) == sorted([cases.VALUE, *strategies.JACOBIAN_STRATEGIES])
    assert {c.target.mode for c in found} == {"eager"}
    assert {c.group.split()[1] for c in found} == {"value", "jacobian"}
    for case in found:  # at the problem's small default size
        prepared = cases.prepare(cases.Case(case.target, problem, (), case.order, case.strategy))
        assert prepared.validated, prepared.detail
    for primitive, strategy in (("jvp", "forward"), ("value_and_grad", "reverse")):
        scaled = Scaled(fast.backend, primitive, 1e-6)
        entry = plugins.load(extra=[("scaled", plugin_of(scaled))], entry_points=False).backends[scaled.name]
        prepared = cases.prepare(cases.Case(Target(entry, dtype="float64"), problem, (), 1, strategy))
        assert not prepared.validated, f"{strategy} off by 1e-6 passed {prepared.detail}"
