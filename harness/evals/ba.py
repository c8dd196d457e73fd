"""ba: bundle adjustment (from ADBench), reprojection and weight errors of replicated cameras and
points; its Jacobian is sparse, each observation's residuals depending on one camera, one point
and one weight (`sparse_jacobian`, assembled into GradBench's compressed rows by `to_csr`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from harness.errors import ShapeMismatch
from harness.evals import adapter
from harness.problems import JacobianProblem
from harness.validation.tolerances import tolerance

CAMERA = 11
"""Camera parameters: Rodrigues rotation (3), centre (3), focal length, principal point (2),
radial distortion (2)."""
BLOCK = CAMERA + 3 + 1
"""Columns of one observation's reprojection block: its camera, its point, its weight."""

ONE = {
    "cam": [-0.758453, -1.109613, -0.845551, 34.556073, 39.676747, 53.881673, 419.194514, 5.864426]
    + [-8.51887, 0.087812, 0.002739],
    "x": [7.203245, 0.001144, 3.023326],
    "w": 0.417022,
    "feat": [271.760969, 834.209256],
}
"""The one camera, point, weight and feature every file ``evals/ba/data/ba<i>_n_m_p.txt`` holds
(the twenty files differ only in n, m, p)."""
FILES = {
    1: (49, 7776, 31843),
    2: (21, 11315, 36455),
    3: (161, 48126, 182072),
    4: (372, 47423, 204472),
    5: (257, 65132, 225911),
    6: (539, 65220, 277273),
    7: (93, 61203, 287451),
    8: (88, 64298, 383937),
    9: (810, 88814, 393775),
    10: (1197, 126327, 563734),
    11: (1723, 156502, 678718),
    12: (253, 163691, 899155),
    13: (245, 198739, 1091386),
    14: (356, 226730, 1255268),
    15: (1102, 780462, 4052340),
    16: (1544, 942409, 4750193),
    17: (1778, 993923, 5001946),
    18: (1936, 649673, 5213733),
    19: (4585, 1324582, 9125125),
    20: (13682, 4456117, 2987644),
}
"""(n, m, p) of GradBench's files ba1 ... ba20 (its default run: 1 ... 14)."""
SIZE = (3, 4, 6)
"""(n, m, p) validated here: every camera and point seen by more than one observation."""


def reprojection(xp, cams, X, w, feats):
    """Each observation's two reprojection errors, ``w (proj - feat)``, from its own camera
    parameters ``cams`` [p, 11], point ``X`` [p, 3] and weight ``w`` [p]: ``X - C`` rotated by
    Rodrigues' formula (``cos``, ``sin`` of the angle, the ``sqtheta != 0`` branch of GradBench's
    ``rodrigues_rotate_point``), divided by its z, radially distorted ``1 + k1 r^2 + k2 r^4``,
    scaled by f, shifted by the principal point. Returns [p, 2]: row i depends on row i only."""
    rot = cams[:, 0:3]
    Xo = X - cams[:, 3:6]
    theta = xp.sqrt(xp.sum(rot * rot, axis=1))
    costheta, sintheta = xp.cos(theta), xp.sin(theta)
    u = rot * (1.0 / theta)[:, None]
    u0, u1, u2 = u[:, 0], u[:, 1], u[:, 2]
    p0, p1, p2 = Xo[:, 0], Xo[:, 1], Xo[:, 2]
    cross = (u1 * p2 - u2 * p1, u2 * p0 - u0 * p2, u0 * p1 - u1 * p0)
    tmp = (u0 * p0 + u1 * p1 + u2 * p2) * (1.0 - costheta)
    rotated = [
        p * costheta + c * sintheta + k * tmp
        for p, c, k in zip((p0, p1, p2), cross, (u0, u1, u2), strict=True)
    ]
    proj = [rotated[0] / rotated[2], rotated[1] / rotated[2]]
    rsq = proj[0] * proj[0] + proj[1] * proj[1]
    L = 1.0 + cams[:, 9] * rsq + cams[:, 10] * rsq * rsq
    errors = [w * ((proj[k] * L) * cams[:, 6] + cams[:, 7 + k] - feats[:, k]) for k in (0, 1)]
    return xp.stack(errors, axis=1)


def value_magnitude(cams, X, w, feats, camera_of, point_of):
    """What each residual subtracts: ``|w| (|f proj L| + |c| + |feat|)`` (GradBench's errors are
    about 0.1 of pixel coordinates near 800), then ``1 + w^2``."""
    return _magnitude(camera_of @ cams, point_of @ X, w, feats)


def _magnitude(cams, X, w, feats):
    """`value_magnitude` of each observation's own camera [p, 11] and point [p, 3]."""
    scaled = reprojection(np, cams, X, np.ones_like(w), 0 * feats) - cams[:, 7:9]  # f proj L
    terms = np.abs(w)[:, None] * (np.abs(scaled) + np.abs(cams[:, 7:9]) + np.abs(feats))
    return np.concatenate([terms.ravel(), 1 + w * w])


def weight_error(xp, w):
    """``1 - w^2`` per observation."""
    return 1.0 - w * w


def primal(xp, cams, X, w, feats, camera_of, point_of):
    """The 3p residuals as GradBench orders its Jacobian's rows: the 2p reprojection errors
    (observation by observation), then the p weight errors. Observation i's camera and point
    are picked by the one-hot rows ``camera_of`` [p, n] and ``point_of`` [p, m] (data from
    `args`: a product with one nonzero term is exact, and no integer indices, which the harness
    would cast to the target's dtype)."""
    return residuals(xp, camera_of @ cams, point_of @ X, w, feats)


def residuals(xp, cams, X, w, feats):
    """`primal` of each observation's own camera [p, 11] and point [p, 3]."""
    reproj = reprojection(xp, cams, X, w, feats)
    return xp.concatenate([xp.reshape(reproj, (2 * w.shape[0],)), weight_error(xp, w)])


def gradbench_input(size=None) -> dict:
    """GradBench's ``input`` for (n, m, p) (`FILES` gives its files' sizes), without Runs."""
    n, m, p = size or SIZE
    one = {key: list(value) if isinstance(value, list) else value for key, value in ONE.items()}
    return {"n": n, "m": m, "p": p, **one}


def observations(input: dict) -> tuple:
    """GradBench's input replicated as its golden ``from_json``: cameras [n, 11], points [m, 3],
    weights [p], features [p, 2], and each observation's camera ``i mod n`` and point ``i mod m``
    (integer indices [p])."""
    n, m, p = (int(input[k]) for k in ("n", "m", "p"))
    if min(n, m, p) < 1:
        raise ValueError(f"ba needs n, m, p >= 1 (cameras, points, observations); got {n}, {m}, {p}")
    cam, x, feat = (np.asarray(input[k], dtype=np.float64) for k in ("cam", "x", "feat"))
    if cam.shape != (CAMERA,) or x.shape != (3,) or feat.shape != (2,):
        raise ValueError(
            f"ba's cam, x, feat have {CAMERA}, 3, 2 entries; got {cam.size}, {x.size}, {feat.size}"
        )
    i = np.arange(p)
    return (
        np.tile(cam, (n, 1)),
        np.tile(x, (m, 1)),
        np.full(p, float(input["w"])),
        np.tile(feat, (p, 1)),
        i % n,
        i % m,
    )


def from_gradbench(input: dict) -> tuple:
    """What GradBench's functions take (`GRADBENCH`): `observations`, with integer indices. Not
    the dense problem's one-hot form (`dense`): p (n + m) numbers, 2 GB at GradBench's smallest
    file (ba1)."""
    return observations(input)


def dense(cams, X, w, feats, camera, point) -> tuple:
    """The dense problem's arguments: `observations` with the indices as one-hot rows [p, n] and
    [p, m] (for validation sizes, not GradBench's)."""
    return cams, X, w, feats, np.eye(len(cams))[camera], np.eye(len(X))[point]


def args(size=None):
    return dense(*observations(gradbench_input(size)))


# --- The sparse Jacobian ----------------------------------------------------------------------------


def sparse_jacobian(
    backend: Any,
    strategy: str,
    dtype: str = "float64",
    device: str = "cpu",
    compiled: Callable[[Callable], Callable] = lambda f: f,
) -> Callable:
    """``blocks(cams, X, w, feats, camera, point)`` (`observations`; numpy in, numpy out): every observation's
    2 x 15 reprojection block (d/d its camera, its point, its weight) [p, 2, 15] and its weight
    error's derivative [p], by ``backend``'s own primitives on the gathered per-observation
    inputs, whose rows are independent. ``forward``: 15 ``jvp``s, each with the same unit tangent
    in every observation's row (all p blocks' column k at once, what ``vmap`` of a 15-column
    ``jacfwd`` computes), and one for the weight error; ``reverse``: 2 ``value_and_grad``s, each
    with the same unit cotangent in every row (all blocks' row k), and one for the weight error.
    Gathering the cameras and points (``cams[camera]``) stays in the host: only the
    per-observation residuals are differentiated, each primitive's function wrapped in
    ``compiled`` (`harness.target.Target.compiled`: the target's mode)."""
    xp = backend.namespace()

    def array(a):
        return backend.asarray(np.asarray(a, dtype=np.float64), dtype, device)

    def numpy(a):
        return np.asarray(backend.to_numpy(a), dtype=np.float64)

    if strategy == "forward":
        if getattr(backend, "jvp", None) is None:
            raise NotImplementedError(f"{backend.name} has no jvp: a forward-mode Jacobian needs one")
        column = compiled(
            lambda chosen, tangent, data: backend.jvp(
                lambda c: reprojection(xp, *c, data), (chosen,), (tangent,)
            )[1]
        )
        weight_column = compiled(lambda v, t: backend.jvp(lambda u: weight_error(xp, u), (v,), (t,))[1])
    elif strategy == "reverse":
        rows_of = [
            compiled(backend.value_and_grad(lambda c, data, k=k: xp.sum(reprojection(xp, *c, data)[:, k]), 0))
            for k in (0, 1)
        ]
        weight_row = compiled(backend.value_and_grad(lambda v: xp.sum(weight_error(xp, v)), 0))
    else:
        raise NotImplementedError(f"no sparse Jacobian strategy {strategy!r} (known: forward, reverse)")

    def blocks(cams, X, w, feats, camera, point):
        p = w.shape[0]
        gathered = (array(cams[camera]), array(X[point]), array(w))
        data = array(feats)
        if strategy == "forward":
            columns = []
            for k in range(BLOCK):
                unit = np.zeros(BLOCK)
                unit[k] = 1.0
                tangent = (array(np.tile(unit[:CAMERA], (p, 1))), array(np.tile(unit[CAMERA:-1], (p, 1))))
                tangent += (array(np.full(p, unit[-1])),)
                columns.append(numpy(column(gathered, tangent, data)))
            return np.stack(columns, axis=2), numpy(weight_column(gathered[2], array(np.ones(p))))
        rows = []
        for row_of in rows_of:
            cam_rows, point_rows, weight_rows = row_of(gathered, data)[1]
            rows.append(
                np.concatenate([numpy(cam_rows), numpy(point_rows), numpy(weight_rows)[:, None]], axis=1)
            )
        return np.stack(rows, axis=1), numpy(weight_row(gathered[2])[1])

    return blocks


def to_csr(block, weight, camera, point, n: int, m: int) -> dict:
    """GradBench's compressed rows (``rows``: 3p + 1 offsets, ``cols``, ``vals``) of the
    3p x (11n + 3m + p) Jacobian from the blocks, in the order of its golden ``SparseMat``: per
    observation i two rows of 15 entries (camera i mod n's 11 columns, point i mod m's 3, weight
    i's), then one row per weight error (its weight's column)."""
    p = block.shape[0]
    observations = np.arange(p)
    columns = np.concatenate(
        [
            CAMERA * camera[:, None] + np.arange(CAMERA),
            CAMERA * n + 3 * point[:, None] + np.arange(3),
            (CAMERA * n + 3 * m + observations)[:, None],
        ],
        axis=1,
    )  # [p, 15]
    rows = np.concatenate([BLOCK * np.arange(2 * p + 1), BLOCK * 2 * p + np.arange(1, p + 1)])
    cols = np.concatenate([np.repeat(columns, 2, axis=0).ravel(), CAMERA * n + 3 * m + observations])
    vals = np.concatenate([block.reshape(2 * p * BLOCK), weight])
    return {"rows": rows, "cols": cols, "vals": vals, "shape": (3 * p, CAMERA * n + 3 * m + p)}


def densify(csr: dict) -> np.ndarray:
    """The dense matrix of `to_csr`'s compressed rows."""
    J = np.zeros(csr["shape"])
    for i in range(csr["shape"][0]):
        lo, hi = csr["rows"][i], csr["rows"][i + 1]
        J[i, csr["cols"][lo:hi]] = csr["vals"][lo:hi]
    return J


def gradbench_jacobian(csr: dict) -> dict:
    """The Jacobian as GradBench's golden ``to_json`` reports it: the first 30 entries (two rows
    of 15) and the last of each of ``rows``, ``cols``, ``vals``."""

    def cut(a):
        return [*a[: 2 * BLOCK].tolist(), a[-1].item()]

    return {"rows": cut(csr["rows"]), "cols": cut(csr["cols"]), "vals": cut(csr["vals"])}


PROBLEMS = (
    JacobianProblem(
        "ba",
        primal,
        args,
        argnums=(0, 1, 2),
        description="GradBench's ba (bundle adjustment): for p observations of m points by n cameras "
        "(GradBench's replicated input: one camera [11], point [3], weight and feature [2], from "
        "its data files; observation i uses camera i mod n, point i mod m), the 2p reprojection "
        "errors w (distort(project(R (X - C))) f + c - feat) (Rodrigues rotation, radial "
        "distortion) then the p weight errors 1 - w^2; its 3p x (11n + 3m + p) Jacobian w.r.t. "
        "(cams, points, weights), checked dense here. GradBench's sizes (n, m, p) = (49, 7776, "
        "31843) ... (356, 226730, 1255268) (ba1 ... ba14); here (3, 4, 6). The sparse Jacobian "
        "GradBench asks for (compressed rows, per-observation 2 x 15 and 1 x 1 blocks) is "
        "harness.evals.ba.sparse_jacobian + to_csr. Not in the default run: torch.compile of its "
        "51 jvps takes minutes on a cold cache",
        default=False,
        value_magnitude=value_magnitude,
    ),
)


# --- GradBench's protocol ----------------------------------------------------------------------------


def _objective_prepare(target, problem, args: tuple) -> Callable:
    """The 3p residuals on the backend, compiled for the target's mode, of each observation's
    camera and point gathered in the host (``cams[camera]``), as `sparse_jacobian` gathers them."""
    cams, X, w, feats, camera, point = args
    compute = target.compiled(partial(residuals, target.backend.namespace()))
    return lambda *_: compute(*target.array((cams[camera], X[point], w, feats)))


def _objective_output(residuals) -> dict:
    """GradBench's golden ``to_json``: the first observation's two errors and the first weight
    error, each with how often it is repeated (every observation is the same)."""
    r = np.asarray(residuals, np.float64)
    p = r.size // 3
    return {
        "reproj_error": {"elements": r[:2].tolist(), "repeated": p},
        "w_err": {"element": float(r[2 * p]), "repeated": p},
    }


def _parse_objective(output, shape) -> np.ndarray:
    """``[e0, e1, repeated, w_err, repeated]`` from GradBench's objective dict."""
    try:
        reproj, weight = output["reproj_error"], output["w_err"]
        flat = [*reproj["elements"], reproj["repeated"], weight["element"], weight["repeated"]]
    except (TypeError, KeyError) as exc:
        raise ShapeMismatch(
            f"expected {{reproj_error: {{elements: [2], repeated}}, w_err: {{element, repeated}}}} ({exc!r})"
        ) from None
    return adapter.numbers(flat, shape)


def _objective_oracles(problem, args: tuple) -> list[adapter.Oracle]:
    cams, X, w, feats, camera, point = args
    gathered = (cams[camera], X[point], w, feats)
    r, p = residuals(np, *gathered), len(w)
    pick = [0, 1, 2 * p]
    rtol = tolerance("float64", 0)
    slack = rtol * _magnitude(*gathered)[pick]
    reference = np.array([r[0], r[1], p, r[2 * p], p], np.float64)
    where = "first reprojection and weight errors, their repeat counts"
    return [adapter.Oracle("numpy-float64", reference, rtol, np.insert(slack, [2, 3], 0.0), points=where)]


def _jacobian_prepare(target, problem, args: tuple) -> Callable:
    """The compressed rows by `sparse_jacobian` (reverse mode) on the backend, cut as GradBench's
    golden ``to_json`` cuts them (`gradbench_jacobian`); rows and columns as float64."""
    blocks = sparse_jacobian(target.backend, "reverse", target.dtype, target.device, target.compiled)
    cams, X, camera, point = args[0], args[1], args[4], args[5]

    def jacobian(*_):
        csr = to_csr(*blocks(*args), camera, point, len(cams), len(X))
        cut = gradbench_jacobian(csr)
        return tuple(np.asarray(cut[k], np.float64) for k in ("rows", "cols", "vals"))

    return jacobian


def _jacobian_output(cut: tuple) -> dict:
    rows, cols, vals = (np.asarray(a) for a in cut)
    return {"rows": rows.astype(int).tolist(), "cols": cols.astype(int).tolist(), "vals": vals.tolist()}


def _parse_jacobian(output, shape) -> np.ndarray:
    """``rows``, ``cols``, ``vals`` joined (each cut to at most 31 entries: rows has but 3p + 1)."""
    if not isinstance(output, dict) or sorted(output) != ["cols", "rows", "vals"]:
        got = sorted(output) if isinstance(output, dict) else type(output).__name__
        raise ShapeMismatch(f"expected a dict of rows, cols, vals, got {got}")
    parts = [output[k] for k in ("rows", "cols", "vals")]
    if not all(isinstance(part, list) for part in parts):
        raise ShapeMismatch("rows, cols and vals must be lists of numbers")
    flat = adapter.numbers([x for part in parts for x in part], shape)
    return flat


def _jacobian_oracles(problem, args: tuple) -> list[adapter.Oracle]:
    """The cut's structure from `to_csr`, its values: the first observation's 2 x 15 block by a
    complex step of `reprojection` along each of its 15 parameters, the last weight error's -2 w."""
    cams, X, w, feats, camera, point = args
    theta = np.concatenate([cams[camera[0]], X[point[0]], w[:1]])
    h = 1e-20
    block = np.empty((2, BLOCK))
    for k in range(BLOCK):
        t = theta.astype(complex)
        t[k] += 1j * h
        block[:, k] = (
            np.imag(reprojection(np, t[None, :CAMERA], t[None, CAMERA:-1], t[-1:], feats[:1]))[0] / h
        )
    full = np.zeros((len(w), 2, BLOCK))
    full[0] = block
    cut = gradbench_jacobian(to_csr(full, -2 * w, camera, point, len(cams), len(X)))
    reference = np.concatenate([np.asarray(cut[k], np.float64) for k in ("rows", "cols", "vals")])
    where = "GradBench's cut: 30 + 1 of rows, cols, vals (the first observation's block, the last weight)"
    return [adapter.Oracle("complex-step", reference, tolerance("float64", 1), points=where)]


GRADBENCH = {
    "objective": adapter.Function(
        0, "-", _objective_prepare, _objective_oracles, _objective_output, _parse_objective
    ),
    "jacobian": adapter.Function(
        1, "reverse", _jacobian_prepare, _jacobian_oracles, _jacobian_output, _parse_jacobian
    ),
}
"""GradBench's ``objective`` (the first errors and their repeat counts) and ``jacobian`` (the
compressed rows cut to their first 30 entries and the last, as its golden code reports them)."""
