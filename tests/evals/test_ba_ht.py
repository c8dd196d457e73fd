"""GradBench's ba and ht as problems (`harness.evals.ba`, `harness.evals.ht`): the definitions
against direct computations, ba's sparse Jacobian against the dense one, ht on a small synthetic
model written in GradBench's file layout, planted errors caught, and ht's missing data reported."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fakes import Scaled, plugin_of

from harness import evals, plugins, strategies
from harness.cli.main import main
from harness.evals import ba, ht
from harness.target import Target
from harness.validation import checks

EVALS = {p.name: p for p in evals.PROBLEMS}
STEP = 1e-20


def complex_step_jacobian(F, theta):
    return np.array([np.imag(F(theta + 1j * STEP * e)) / STEP for e in np.eye(theta.size)]).T


# --- ba -----------------------------------------------------------------------------------------------


def ba_direct(cam, X, w, feat):
    """One observation's residuals in plain floats: the rotation matrix ``I + sin K + (1 - cos) K^2``
    of the axis-angle (not the code's Rodrigues formula on the point), as GradBench's comment
    in ``ba.hpp`` writes it."""
    theta = math.sqrt(sum(r * r for r in cam[:3]))
    k = [r / theta for r in cam[:3]]
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    R = np.eye(3) + math.sin(theta) * K + (1 - math.cos(theta)) * K @ K
    Xcam = R @ (np.array(X) - np.array(cam[3:6]))
    proj = Xcam[:2] / Xcam[2]
    rsq = proj @ proj
    distorted = proj * (1 + cam[9] * rsq + cam[10] * rsq * rsq)
    return [w * (distorted[i] * cam[6] + cam[7 + i] - feat[i]) for i in (0, 1)], 1 - w * w


def perturbed(size=(3, 4, 5)):
    """ba's `observations` with every camera, point and weight moved apart (GradBench's are replicas)."""
    cams, X, w, feats, camera, point = ba.observations(ba.gradbench_input(size))
    rng = np.random.default_rng(7)
    cams = cams * (1 + 0.05 * rng.standard_normal(cams.shape))
    X = X * (1 + 0.05 * rng.standard_normal(X.shape))
    w = w * (1 + 0.1 * rng.standard_normal(w.shape))
    return cams, X, w, feats, camera, point


def test_ba_replicates_gradbench_input_and_matches_a_direct_computation():
    cams, X, w, feats, camera, point = perturbed()
    assert camera.tolist() == [0, 1, 2, 0, 1] and point.tolist() == [0, 1, 2, 3, 0]  # i mod n, i mod m
    residuals = ba.primal(np, *ba.dense(cams, X, w, feats, camera, point))
    direct = [ba_direct(cams[camera[i]], X[point[i]], w[i], feats[i]) for i in range(5)]
    np.testing.assert_allclose(residuals[:10], [e for d in direct for e in d[0]], rtol=1e-13)
    np.testing.assert_allclose(residuals[10:], [d[1] for d in direct], rtol=1e-15)
    given = ba.gradbench_input(ba.FILES[1])
    assert (given["n"], given["m"], given["p"]) == (49, 7776, 31843) and given["w"] == 0.417022
    assert np.array_equal(ba.args()[0][2], given["cam"])


def test_ba_refuses_malformed_input():
    with pytest.raises(ValueError, match="n, m, p >= 1"):
        ba.from_gradbench(ba.gradbench_input((0, 4, 6)))
    with pytest.raises(ValueError, match="11, 3, 2 entries"):
        ba.from_gradbench(ba.gradbench_input() | {"cam": [1.0, 2.0]})


def test_ba_csr_is_gradbench_layout():
    """Compressed rows of made-up blocks: 15 entries per reprojection row, 1 per weight row, the
    columns of each observation's camera, point and weight."""
    camera, point = ba.observations(ba.gradbench_input((2, 3, 4)))[4:]
    block = np.arange(4 * 2 * 15, dtype=float).reshape(4, 2, 15)
    csr = ba.to_csr(block, -np.arange(1.0, 5.0), camera, point, 2, 3)
    assert csr["shape"] == (12, 2 * 11 + 3 * 3 + 4)
    assert csr["rows"].tolist() == [15 * i for i in range(9)] + [121, 122, 123, 124]
    third = list(range(11)) + [28, 29, 30, 33]  # observation 2: camera 0, point 2, weight 2
    assert csr["cols"][60:75].tolist() == third and csr["cols"][75:90].tolist() == third
    J = ba.densify(csr)
    assert (
        J[5, 0] == block[2, 1, 0]
        and J[5, 11] == 0
        and J[11, 34] == -4.0
        and np.count_nonzero(J) == 4 * 30 + 4 - 1
    )
    cut = ba.gradbench_jacobian(csr)
    assert (
        len(cut["vals"]) == 31
        and cut["vals"][-1] == -4.0
        and cut["cols"][:15] == list(range(11)) + [22, 23, 24, 31]
    )


@pytest.mark.parametrize("strategy", strategies.JACOBIAN_STRATEGIES)
@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_each_backends_sparse_ba_jacobian_equals_the_dense_one(entry, strategy, mode):
    if mode not in entry.backend.modes:
        pytest.skip(f"{entry.name} does not compile")
    given = perturbed((3, 4, 7))
    compiled = Target(entry, mode=mode).compiled
    block, weight = ba.sparse_jacobian(entry.backend, strategy, compiled=compiled)(*given)
    sparse = ba.densify(ba.to_csr(block, weight, given[4], given[5], 3, 4))
    args = ba.dense(*given)
    cams, X = args[0], args[1]

    def F(theta):
        c, x, v = theta[:33].reshape(cams.shape), theta[33:45].reshape(X.shape), theta[45:]
        return ba.primal(np, c, x, v, *args[3:])

    dense = complex_step_jacobian(F, np.concatenate([cams.ravel(), X.ravel(), args[2]]))
    assert np.array_equal(sparse != 0, dense != 0)  # the pattern: nothing exploited that is not zero
    np.testing.assert_allclose(sparse, dense, rtol=1e-13, atol=1e-13 * np.abs(dense).max())


def test_a_planted_error_in_the_sparse_jacobian_is_caught(fast):
    args = perturbed()
    for strategy, primitive in (("forward", "jvp"), ("reverse", "value_and_grad")):
        good = ba.sparse_jacobian(fast.backend, strategy)(*args)
        bad = ba.sparse_jacobian(Scaled(fast.backend, primitive), strategy)(*args)
        gap = np.abs(bad[0] - good[0]).max() / np.abs(good[0]).max()
        assert 1e-9 < gap < 1e-7  # 1e-8 relative, seen through the dense comparison's 1e-13


def test_ba_validates_and_a_planted_error_is_caught(fast):
    """Float32 too: its residuals (about 0.1) cancel pixel coordinates near 800, which the value
    check allows for through ba's ``value_magnitude``."""
    problem = EVALS["ba"]
    found = list(
        checks.check_plan(checks.Plan([fast], [problem], dtypes=("float32", "float64"), modes=("eager",)))
    )
    assert found and {c.status for c in found} == {"pass"}
    values = [c for c in found if c.oracle == "numpy-float64" and c.dtype == "float32"]
    assert values and all(c.max_abs_err > 1e-6 for c in values)  # float32's cancellation, allowed
    backend = Scaled(fast.backend, "value_and_grad")
    entry = plugins.load(extra=[("scaled", plugin_of(backend))], entry_points=False).backends[backend.name]
    plan = checks.Plan([entry], [problem], dtypes=("float64",), modes=("eager",))
    failed = [c for c in checks.check_plan(plan) if c.status == "fail"]
    assert {(c.strategy, c.oracle) for c in failed} >= {("reverse", "complex-step")}
    assert {c.classification for c in failed} == {"wrong derivative"}


# --- ht on a synthetic model ----------------------------------------------------------------------------

BONES = ["wrist"] + [f"{f}{k}" for f in ("thumb", "index", "middle", "ring", "pinky") for k in (1, 2, 3, 4)]
BONES.append("forearm")
PARENTS = [-1] + [p for f in range(5) for p in (0, 1 + 4 * f, 2 + 4 * f, 3 + 4 * f)] + [0]


def write_model(root, variant="simple", npts=4, vertices=9):
    """GradBench's layout under ``root``: ``<variant>_small/model/{bones,vertices,triangles}.txt``
    (22 bones, as theta's 26 entries address, ``vertices`` vertices, 6 triangles) and
    ``<variant>_small/hand1_...`` (for the complicated variant with a pair of us per point)."""
    rng = np.random.default_rng(3)
    folder = root / ht.FOLDERS[variant]
    model = folder / "model"
    model.mkdir(parents=True)

    def transform():
        q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = q, 0.3 * rng.standard_normal(3)
        return T

    lines = []
    for name, parent in zip(BONES, PARENTS, strict=True):
        numbers = np.concatenate([transform().ravel(), transform().ravel()])
        lines.append(":".join([name, str(parent), *map(repr, numbers.tolist())]))
    (model / "bones.txt").write_text("\n".join(lines) + "\n")
    lines = []
    for _ in range(vertices):
        bones = rng.choice(22, size=3, replace=False)
        weights = rng.dirichlet(np.ones(3))
        atoms = [*rng.standard_normal(3).tolist(), 0.0, 0.0, 1.0, 0.0, 0.0, 3]
        atoms += [v for b, wt in zip(bones, weights, strict=True) for v in (int(b), float(wt))]
        lines.append(":".join(map(str, atoms)))
    (model / "vertices.txt").write_text("\n".join(lines) + "\n")
    triangles = [rng.choice(vertices, size=3, replace=False).tolist() for _ in range(6)]
    (model / "triangles.txt").write_text("".join(":".join(map(str, t)) + "\n" for t in triangles))
    correspondences = rng.choice(6 if variant == "complicated" else vertices, size=npts, replace=False)
    points = rng.standard_normal((npts, 3))
    us = rng.uniform(0, 0.5, (npts, 2)) if variant == "complicated" else np.zeros((0, 2))
    theta = 0.4 * rng.standard_normal(26)
    text = [f"{npts} 26"] + [
        f"{c} " + " ".join(map(repr, p.tolist())) for c, p in zip(correspondences, points, strict=True)
    ]
    text += [" ".join(map(repr, u)) for u in us.tolist()] + [repr(t) for t in theta.tolist()]
    (folder / f"hand1_t26_c{npts}.txt").write_text("\n".join(text) + "\n")
    return correspondences, points, theta


@pytest.fixture
def hand(tmp_path, monkeypatch):
    monkeypatch.setenv(ht.VARIABLE, str(tmp_path))
    return write_model(tmp_path)


def ht_direct(input):
    """GradBench's golden ``ht::objective`` (simple) step by step on 4 x 4 matrices, every vertex
    skinned, the parents followed by index."""
    model, data = input["data"]["model"], input["data"]
    theta = input["theta"]
    pose = np.zeros((model["bone_count"] + 3, 3))
    pose[0], pose[1], pose[2] = theta[0:3], 1.0, theta[3:6]
    i_theta, i_pose = 6, 5
    for _ in range(5):
        for i in (2, 3, 4):
            pose[i_pose, 0] = theta[i_theta]
            i_theta += 1
            if i == 2:
                pose[i_pose, 1] = theta[i_theta]
                i_theta += 1
            i_pose += 1
        i_pose += 1

    def euler(tx, tz, ty):
        Rx, Ry, Rz = np.eye(3), np.eye(3), np.eye(3)
        Rx[1:, 1:] = [[math.cos(tx), -math.sin(tx)], [math.sin(tx), math.cos(tx)]]
        Ry[[0, 0, 2, 2], [0, 2, 0, 2]] = [math.cos(ty), math.sin(ty), -math.sin(ty), math.cos(ty)]
        Rz[:2, :2] = [[math.cos(tz), -math.sin(tz)], [math.sin(tz), math.cos(tz)]]
        return Rz @ Ry @ Rx

    absolutes = []
    for b, parent in enumerate(model["parents"]):
        tr = np.eye(4)
        tr[:3, :3] = euler(*pose[b + 3])
        relative = np.array(model["base_relatives"][b]) @ tr
        absolutes.append(relative if parent == -1 else absolutes[parent] @ relative)
    base = np.array(model["base_positions"]).T
    weights = np.array(model["weights"]).T
    positions = np.zeros((3, base.shape[1]))
    for b, absolute in enumerate(absolutes):
        positions += ((absolute @ np.array(model["inverse_base_absolutes"][b])) @ base)[:3] * weights[b]
    r = np.array(theta[0:3])
    angle = np.linalg.norm(r)
    k = r / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    R = np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K
    positions = R @ positions + np.array(theta[3:6])[:, None]
    if len(input["us"]):  # the complicated variant: a point on each correspondence's triangle
        corners = np.array(model["triangles"])[data["correspondences"]]
        u = np.array(input["us"])
        hand = [
            u[i, 0] * positions[:, a] + u[i, 1] * positions[:, b] + (1 - u[i].sum()) * positions[:, c]
            for i, (a, b, c) in enumerate(corners)
        ]
        return (np.array(data["points"]) - np.array(hand)).ravel()
    return (np.array(data["points"]) - positions[:, data["correspondences"]].T).ravel()


def test_ht_reads_gradbench_files_and_matches_a_direct_computation(hand):
    correspondences, points, theta = hand
    input = ht.gradbench_input()
    assert input["us"] == [] and input["data"]["correspondences"] == correspondences.tolist()
    assert input["data"]["model"]["bone_count"] == 22 and input["data"]["model"]["parents"] == PARENTS
    assert np.array_equal(input["theta"], theta) and np.array_equal(input["data"]["points"], points)
    weights = np.array(input["data"]["model"]["weights"])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-15)
    residuals = ht.primal(np, *ht.from_gradbench(input))
    np.testing.assert_allclose(residuals, ht_direct(input), rtol=1e-12, atol=1e-13)


def test_ht_complicated_reads_us_and_matches_a_direct_computation(tmp_path, monkeypatch):
    monkeypatch.setenv(ht.VARIABLE, str(tmp_path))
    write_model(tmp_path, "complicated")
    input = ht.gradbench_input(variant="complicated")
    assert np.array(input["us"]).shape == (4, 2)
    residuals = ht.primal_complicated(np, *ht.from_gradbench(input))
    np.testing.assert_allclose(residuals, ht_direct(input), rtol=1e-12, atol=1e-13)
    assert "simple_small" in ht.missing()  # each variant reads its own folder
    fast = plugins.load().backends["autograd"]
    if fast.unavailable:
        pytest.skip(fast.unavailable)
    plan = checks.Plan([fast], [EVALS["ht-complicated"]], dtypes=("float64",), modes=("eager",))
    found = list(checks.check_plan(plan))
    assert found and {c.status for c in found} == {"pass"}


def test_ht_refuses_malformed_input(hand):
    input = ht.gradbench_input()
    with pytest.raises(ValueError, match="a pair per correspondence"):
        ht.from_gradbench(input | {"us": [[0.1, 0.2]] * 3})
    with pytest.raises(ValueError, match="26 entries"):
        ht.from_gradbench(input | {"theta": [0.0] * 25})
    with pytest.raises(ValueError, match="parents must come before"):
        input["data"]["model"]["parents"] = [-1, 3] + PARENTS[2:]
        ht.from_gradbench(input)


def test_ht_validates_and_a_planted_error_is_caught(hand):
    registry = plugins.load()
    fast = registry.backends["autograd"]
    if fast.unavailable:
        pytest.skip(fast.unavailable)
    problem = EVALS["ht"]
    found = list(checks.check_plan(checks.Plan([fast], [problem], dtypes=("float64",), modes=("eager",))))
    assert found and {c.status for c in found} == {"pass"}
    assert {c.oracle for c in found} >= {"complex-step", "central-difference"}
    backend = Scaled(fast.backend, "jvp")
    entry = plugins.load(extra=[("scaled", plugin_of(backend))], entry_points=False).backends[backend.name]
    failed = [
        c
        for c in checks.check_plan(
            checks.Plan([entry], [problem], dtypes=("float64",), modes=("eager",), strategies=("forward",))
        )
        if c.status == "fail"
    ]
    assert {(c.strategy, c.oracle) for c in failed} >= {("forward", "complex-step")}


def test_ht_without_its_data_is_listed_and_reported_unsupported(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv(ht.VARIABLE, raising=False)
    assert main(["list", "--no-devices", "--format", "json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)["problems"]}
    assert ht.VARIABLE in listed["ht"]["unavailable"] and listed["ba"]["unavailable"] is None
    monkeypatch.setenv(ht.VARIABLE, str(tmp_path))
    assert "bones.txt is missing" in ht.missing()
    registry = plugins.load()
    fast = registry.backends["autograd"]
    if fast.unavailable:
        pytest.skip(fast.unavailable)
    found = list(checks.check_plan(checks.Plan([fast], [EVALS["ht"]], dtypes=("float64",), modes=("eager",))))
    assert {c.status for c in found} == {"unsupported"} and "bones.txt is missing" in found[0].message
    assert {c.strategy for c in found} == set(strategies.JACOBIAN_STRATEGIES)


def test_the_gradbench_profile_times_hts_forward_jacobian_where_its_data_is(fast):
    """ht in the gradbench profile: the residuals alone and the forward Jacobian (GradBench's mode;
    reverse would take 300 vjps), eager; no case where its data is absent."""
    from dataclasses import replace

    from harness.benchmark import cases

    (problem,) = [p for p in evals.PROBLEMS if p.name == "ht"]
    present = replace(problem, unavailable=lambda: None)
    found = [c for c in cases.cases([fast], "gradbench", registered=[present]) if c.problem is present]
    assert sorted(c.strategy for c in found) == sorted([cases.VALUE, "forward"])
    assert {(c.target.mode, c.size) for c in found} == {("eager", (1,))}
    absent = replace(problem, unavailable=lambda: "no data here")
    assert not [c for c in cases.cases([fast], "gradbench", registered=[absent]) if c.problem is absent]
