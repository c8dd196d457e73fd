"""GradBench's kmeans, gmm and lstm as problems, and the gradient with its Hessian's diagonal:
definitions against independent numpy computations, planted errors caught, the CLI's validation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from fakes import Scaled, plugin_of

from harness import evals, oracles, plugins, strategies
from harness.benchmark import cases
from harness.cli.main import main
from harness.evals import gmm, inputs, kmeans, lse, lstm
from harness.pytree import flatten, select
from harness.results import runs
from harness.target import Target
from harness.validation import checks

NAMES = ("kmeans", "gmm", "lstm")
PROBLEMS = {p.name: p for module in (kmeans, gmm, lstm) for p in module.PROBLEMS}
STEP = 1e-20


def complex_step(F, theta):
    """Derivatives of numpy ``F`` along each unit vector, by complex step."""
    return np.array([np.imag(F(theta + 1j * STEP * e)) / STEP for e in np.eye(theta.size)])


# --- kmeans ----------------------------------------------------------------------------------------


def test_kmeans_inputs_are_gradbench_s():
    np.random.seed(inputs.SEED)  # GradBench's run.py: seed, then rand(n, d), centroids the last k
    points = np.random.rand(12, 2)
    given = kmeans.gradbench_input((3, 12, 2))
    assert given["points"] == points.tolist() and given["centroids"] == points[-3:].tolist()
    centroids, again = kmeans.from_gradbench(given)
    assert np.array_equal(again, points) and centroids.shape == (3, 2)


def test_kmeans_cost_gradient_diagonal_and_dir_are_their_definitions():
    c, p = kmeans.args()
    nearest = [min(float(np.sum((pi - cj) ** 2)) for cj in c) for pi in p]
    assert kmeans.primal(np, c, p) == pytest.approx(sum(nearest), rel=1e-15)
    F = lambda t: kmeans.primal(np, t.reshape(c.shape), p)  # noqa: E731
    np.testing.assert_allclose(complex_step(F, c.ravel()), kmeans.gradient(c, p).ravel(), rtol=1e-14)
    G = lambda t: kmeans.gradient(t.reshape(c.shape), p).ravel()  # noqa: E731
    hessian = complex_step(G, c.ravel())  # rows: derivatives of the gradient along e_i
    np.testing.assert_array_equal(hessian, np.diag(kmeans.hessian_diagonal(c, p).ravel()))
    assert sorted(kmeans.counts(c, p)) == [3, 4, 5]  # distinct: a count mixed up would show
    # The golden C++'s dir: -(sum / size - c), cluster by cluster.
    owner = kmeans.assignment(c, p)
    golden = np.stack([-(p[owner == j].sum(axis=0) / np.sum(owner == j) - c[j]) for j in range(3)])
    np.testing.assert_allclose(kmeans.direction(c, p), golden, rtol=1e-14)


def test_kmeans_second_differences_stay_within_one_piece():
    """The largest step numdifftools takes moves one coordinate of one centroid, so one squared
    distance by at most 2 h + h^2 (points and centroids in the unit square): well less than any
    point's gap to its second-nearest centroid (and so do steps up to 0.01, as kmeans says)."""
    c, p = kmeans.args()
    h = max(oracles.second_difference_steps())
    assert 2 * h + h * h < kmeans.margin(c, p) / 4 and kmeans.margin(c, p) > 2 * 0.01 + 0.01**2
    F = lambda t: kmeans.primal(np, t.reshape(c.shape), p)  # noqa: E731
    estimate, error = oracles.hessian_diagonal(F, c.ravel())
    np.testing.assert_allclose(estimate, kmeans.hessian_diagonal(c, p).ravel(), rtol=1e-7)
    assert np.all(error < 1e-6)


@pytest.mark.parametrize("strategy", strategies.HVP_STRATEGIES)
def test_the_diagonal_by_unit_probes_is_any_hessian_s_and_by_ones_only_a_diagonal_one_s(fast, strategy):
    """lse's Hessian diag(p) - p p^T is not diagonal: unit probes give its diagonal, the single
    probe of ones gives H 1 = 0 (each row sums to 0), which is why only a problem whose Hessian
    is diagonal gets the one probe."""
    target, problem = Target(fast), lse.PROBLEMS[0]
    (x,) = lse.args((5,))
    p = lse.softmax(x)
    diag = target.hessian_diagonal(problem, strategy)
    for diagonal, expected in ((False, p - p * p), (True, np.zeros(5))):
        probes = strategies.diagonal_probes(x, diagonal)
        gradient, found = target.numpy(diag(target.array(probes), target.array(x)))
        np.testing.assert_allclose(gradient, p, rtol=1e-14)
        np.testing.assert_allclose(found, expected, rtol=1e-13, atol=1e-16)
    assert len(strategies.diagonal_probes(x, False)) == 5 and len(strategies.diagonal_probes(x, True)) == 1


# --- gmm -------------------------------------------------------------------------------------------


def test_gmm_inputs_are_gradbench_s_and_the_objective_its_density():
    given = gmm.gradbench_input((3, 2, 5))
    rng = np.random.default_rng(gmm.SEED)  # drawn whole, not row by row: the same stream
    assert given["x"] == rng.normal(size=(5, 3)).tolist() and given["alpha"] == rng.normal(size=2).tolist()
    assert np.shape(given["l"]) == (2, 3) and (given["m"], given["gamma"]) == (0, 1.0)
    for size, m, gamma in (((2, 3, 10), 0, 1.0), ((3, 2, 5), 2, 0.7)):
        a = gmm.from_gradbench(gmm.gradbench_input(size, m=m, gamma=gamma))
        assert gmm.primal(np, *a) == pytest.approx(gmm.naive_log_posterior(*a), rel=1e-13)


def test_gmm_alpha_gradient_is_responsibilities_minus_weights():
    """d/d alpha_k = sum_i r_ik - n softmax(alpha)_k, r_ik the posterior of component k at x_i:
    a closed form the complex step of the objective must meet."""
    a = gmm.args()
    alpha, mu, q, lower, x = a[:5]
    Q = [np.diag(np.exp(q[k])) + np.tensordot(lower[k], a[-1], axes=1).T for k in range(3)]
    log_terms = np.array(
        [[alpha[k] + q[k].sum() - 0.5 * np.sum((Q[k] @ (xi - mu[k])) ** 2) for k in range(3)] for xi in x]
    )
    r = np.exp(log_terms - log_terms.max(axis=1, keepdims=True))
    r /= r.sum(axis=1, keepdims=True)
    closed = r.sum(axis=0) - len(x) * np.exp(alpha) / np.exp(alpha).sum()
    stepped = complex_step(lambda t: gmm.primal(np, t, *a[1:]), alpha)
    np.testing.assert_allclose(stepped, closed, rtol=1e-13)


# --- lstm ------------------------------------------------------------------------------------------


def lstm_by_loops(main_params, extra, state, sequence):
    """ADBench's C++ objective transcribed entry by entry (plain floats, in-place state)."""
    layers, b = state.shape[0] // 2, state.shape[1]
    state = state.copy()
    total = 0.0

    def sigmoid(v):
        return 1 / (1 + math.exp(-v))

    for t in range(len(sequence) - 1):
        out = [sequence[t][i] * extra[0][i] for i in range(b)]
        for layer in range(layers):
            w, bias, h, cell = (
                main_params[2 * layer],
                main_params[2 * layer + 1],
                state[2 * layer],
                state[2 * layer + 1],
            )
            for i in range(b):
                forget = sigmoid(out[i] * w[i] + bias[i])
                ingate = sigmoid(h[i] * w[b + i] + bias[b + i])
                outgate = sigmoid(out[i] * w[2 * b + i] + bias[2 * b + i])
                change = math.tanh(h[i] * w[3 * b + i] + bias[3 * b + i])
                cell[i] = cell[i] * forget + ingate * change
                h[i] = outgate * math.tanh(cell[i])
            out = list(h)
        pred = [out[i] * extra[1][i] + extra[2][i] for i in range(b)]
        lse = math.log(sum(math.exp(v) for v in pred) + 2)
        total += sum(sequence[t + 1][i] * (pred[i] - lse) for i in range(b))
    return -total / ((len(sequence) - 1) * b)


def test_lstm_is_adbench_s_loop_and_its_inputs_gradbench_s():
    a = lstm.args((2, 5, 4))
    assert [x.shape for x in a] == [(4, 16), (3, 4), (4, 4), (5, 4)]
    assert set(np.unique(a[3])) == {0.0, 1.0}
    assert lstm.primal(np, *a) == pytest.approx(lstm_by_loops(*a), rel=1e-14)
    assert lstm.text_bits("Ab").tolist() == [[1, 0, 0, 0, 0, 0, 1], [1, 1, 0, 0, 0, 1, 0]]
    given = lstm.gradbench_input((1, 3, 7), text="Abc and more")
    assert given["sequence"] == lstm.text_bits("Abc").tolist()
    with pytest.raises(ValueError, match="take 7 bits, not 14"):
        lstm.gradbench_input((1, 3, 14), text="Abc")


def test_lstm_gradient_by_complex_step_is_its_differences():
    """The complex step (the validation's oracle) against plain central differences of the loop
    transcription, in the order GradBench's jacobian lists them (main_params, then extra)."""
    a = lstm.args((1, 3, 3))
    theta = np.concatenate([a[0].ravel(), a[1].ravel()])

    def F(t):
        return lstm.primal(np, *_split(t, a))

    stepped = complex_step(F, theta)
    h = 1e-5
    central = [
        (lstm_by_loops(*_split(theta + h * e, a)) - lstm_by_loops(*_split(theta - h * e, a))) / (2 * h)
        for e in np.eye(33)
    ]
    np.testing.assert_allclose(stepped, central, rtol=1e-6, atol=1e-10)


def _split(t, a):
    return t[:24].reshape(2, 12), t[24:].reshape(3, 3), a[2], a[3]


# --- The backends and the command line --------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_derivative_off_by_1e_8_is_caught_in_float64(fast, name):
    problem = PROBLEMS[name]
    backend = Scaled(fast.backend, "value_and_grad")
    entry = plugins.load(extra=[("scaled", plugin_of(backend))], entry_points=False).backends[backend.name]
    found = list(checks.check_plan(checks.Plan([entry], [problem], dtypes=("float64",), modes=("eager",))))
    failed = [c for c in found if c.status == "fail"]
    assert failed and {c.classification for c in failed} == {"wrong derivative"}
    assert all(c.order >= 1 for c in failed)
    caught = {(c.strategy, c.order, c.oracle) for c in failed}
    assert ("reverse", 1, "complex-step") in caught
    if name == "kmeans":  # the gradient beside the diagonal, and the diagonal (products of it)
        for strategy in ("reverse-diagonal", "forward-over-reverse-diagonal"):
            assert {
                (strategy, 1, "closed-form"),
                (strategy, 2, "closed-form"),
                (strategy, 2, "complex-step"),
            } <= caught


def test_kmeans_dir_on_a_backend_is_the_golden_one(fast):
    target, problem = Target(fast), PROBLEMS["kmeans"]
    c, p = problem.make_args(None)
    probes = strategies.diagonal_probes(select((c, p), 0), problem.diagonal_hessian)
    gradient, diagonal = target.numpy(
        target.hessian_diagonal(problem, "reverse")(target.array(probes), *target.array((c, p)))
    )
    np.testing.assert_allclose(gradient / diagonal, kmeans.direction(c, p), rtol=1e-14)
    assert flatten(diagonal).tolist() == flatten(kmeans.hessian_diagonal(c, p)).tolist()


def test_the_three_pass_unscaled_on_the_same_backend(fast):
    plan = checks.Plan([fast], list(PROBLEMS.values()), dtypes=("float64",), modes=("eager",))
    found = list(checks.check_plan(plan))
    assert [c for c in found if c.status != "pass"] == []
    assert {c.oracle for c in found if c.problem == "kmeans" and c.strategy.endswith("-diagonal")} >= {
        "closed-form",
        "complex-step",
        "central-difference",
    }


def test_validate_passes_kmeans_on_every_backend(capsys, installed):
    """The CLI on every installed backend, eager float64 (gmm and lstm likewise, measured for the
    README: kept out of the suite for time)."""
    names = ",".join(e.name for e in installed)
    code = main(["validate", "-q", "-b", names, "-p", "kmeans", "--dtype", "float64", "--mode", "eager"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 fail" in out and "0 error" in out


def test_list_shows_kmeans_gmm_and_lstm(capsys):
    assert main(["list", "--no-devices", "--format", "json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["problems"]}
    for name in NAMES:
        assert listed[name]["kind"] == "GradientProblem" and "GradBench" in listed[name]["description"]
        assert not listed[name]["default"] and "Not in the default run" in listed[name]["description"]


def test_the_gradbench_profile_times_the_three_validated(fast):
    found = [
        c for c in cases.cases([fast], "gradbench", registered=evals.PROBLEMS) if c.problem.name in NAMES
    ]
    assert {(c.problem.name, c.strategy, c.size) for c in found if c.target.mode == "eager"} == {
        (name, strategy, size)
        for name, (size, *_) in cases.PROFILES["gradbench"]["evals"].items()
        if name in NAMES
        for strategy in (cases.VALUE, "reverse", *([cases.DIAGONAL] if name == "kmeans" else []))
    }
    assert {c.target.dtype for c in found} == {"float64"}
    # lstm compiles only on JAX, whose own form scans its steps (`cases.PROFILES`' reason)
    assert {c.target.entry.name for c in found if c.problem.name == "lstm" and c.target.mode != "eager"} <= {
        "jax"
    }
    small = cases.Case(Target(fast), PROBLEMS["kmeans"], kmeans.SIZE, 2, cases.DIAGONAL)
    prepared = cases.prepare(small)
    assert prepared.validated and prepared.detail == "closed-form gradient and diagonal"
    gradient, diagonal = prepared.case.target.numpy(prepared.call())
    np.testing.assert_allclose(gradient / diagonal, kmeans.direction(*kmeans.args()), rtol=1e-14)
    scaled = Scaled(fast.backend, "value_and_grad")
    entry = plugins.load(extra=[("scaled", plugin_of(scaled))], entry_points=False).backends[scaled.name]
    assert not cases.prepare(
        cases.Case(Target(entry), PROBLEMS["kmeans"], kmeans.SIZE, 2, cases.DIAGONAL)
    ).validated


def test_the_benchmarking_page_s_gradbench_figures_are_the_committed_run_s():
    """The docs' benchmarking page quotes torch.compile's gmm gradient and torch eager's forward
    Jacobian of ode from the committed gradbench run: the figures must be what the run holds."""
    root = Path(__file__).resolve().parents[2]
    (path,) = (root / "results").glob("*_gradbench_*.json")
    rows = {(r.problem, r.backend, r.mode, r.strategy): r for r in runs.load(path)}
    assert all(r.validated for r in rows.values())
    assert {p for p, *_ in rows} >= {m.__name__.rsplit(".", 1)[1] for m in evals.MODULES}  # all eleven
    assert path.stem in " ".join((root / "docs" / "benchmarking.md").read_text().split())
    compiled, forward = rows["gmm", "torch", "jit", "reverse"], rows["ode", "torch", "eager", "forward"]
    readme = " ".join((root / "docs" / "benchmarking.md").read_text().split())
    assert f"torch.compile's gmm gradient takes {compiled.median * 1e6:.0f} us" in readme
    quoted = f"forward Jacobian of ode takes {forward.median:.2f} s and {forward.peak_memory / 1e6:.0f} MB"
    assert quoted in readme
