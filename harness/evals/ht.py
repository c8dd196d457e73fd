"""ht: hand tracking (from ADBench), a skinned hand model posed by 26 parameters; the model and
the measured points are GradBench's data files, read from the folder ``HARNESS_HT_DATA`` names."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from harness.evals import adapter
from harness.problems import JacobianProblem

VARIABLE = "HARNESS_HT_DATA"
"""The environment variable naming GradBench's ``evals/ht/data`` folder (``simple_small/``,
``simple_big/``, ... each with a ``model/`` and ``hand<i>_t26_c<npts>.txt`` files)."""
THETA = 26
FINGERS = 5
SIZE = (1,)
"""GradBench's hand file validated here: ``hand1_t26_c100.txt`` (100 correspondences)."""
FOLDERS = {"simple": "simple_small", "complicated": "complicated_small"}
"""GradBench's folders of each variant used here, with its small model (its default is big)."""


def posed_bones(bones: int) -> dict[int, tuple[int, int | None]]:
    """Which entries of theta pose which bone, as GradBench's ``to_pose_params``: bone ``b``'s
    Euler angle about x is theta[i], about z theta[j] (or none). Theta's first 6 entries are the
    global rotation and translation; then per finger 4 entries for three consecutive bones (the
    first of them two), one bone left out before the next finger (ADBench's own layout, 22 bones)."""
    posed: dict[int, tuple[int, int | None]] = {}
    i_theta, column = 6, 5
    for _ in range(FINGERS):
        for k in range(3):
            posed[column - 3] = (i_theta, i_theta + 1 if k == 0 else None)
            i_theta += 2 if k == 0 else 1
            column += 1
        column += 1
    if max(posed) >= bones:
        raise ValueError(f"ht's theta poses bones up to {max(posed)}; the model has {bones} bones")
    return posed


def _rotation(xp, angle, axis: str, zero, one):
    """4 x 4: a rotation by ``angle`` about x or z (GradBench's ``Rx``, ``Rz``) in the upper block."""
    c, s = xp.cos(angle), xp.sin(angle)
    if axis == "x":
        rows = [[one, zero, zero, zero], [zero, c, -s, zero], [zero, s, c, zero], [zero, zero, zero, one]]
    else:
        rows = [[c, -s, zero, zero], [s, c, zero, zero], [zero, zero, one, zero], [zero, zero, zero, one]]
    return xp.stack([xp.stack(row) for row in rows])


def _angle_axis(xp, r, zero, one):
    """GradBench's ``angle_axis_to_rotation_matrix`` (its identity below norm 1e-4 left out: the
    data's global rotations are far larger)."""
    norm = xp.sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2])
    x, y, z = r[0] / norm, r[1] / norm, r[2] / norm
    s, c = xp.sin(norm), xp.cos(norm)
    rows = [
        [x * x + (1 - x * x) * c, x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
        [x * y * (1 - c) + z * s, y * y + (1 - y * y) * c, y * z * (1 - c) - x * s],
        [x * z * (1 - c) - y * s, z * y * (1 - c) + x * s, z * z + (1 - z * z) * c],
    ]
    return xp.stack([xp.stack(row) for row in rows])


def vertices(xp, theta, base_relatives, inverse_base_absolutes, parent_of, base_positions, weights, mirror):
    """Skinned, posed positions [3, v] of the vertices in ``base_positions`` [4, v] (homogeneous)
    with their bone ``weights`` [bones, v]: each bone's relative transform rotated by its Euler
    angles (z then x; GradBench's y angle is always 0, its rotation the identity), chained to
    absolutes from the root (``parent_of`` [bones, bones]: one-hot rows, zero for a root, the
    parent earlier in the order), times the inverse base absolutes, the weighted sum over bones,
    mirrored (``mirror``: [-1, 1, 1] or ones), then the global rotation and translation."""
    bones = base_relatives.shape[0]
    zero = theta[0] * 0
    one = zero + 1
    posed = posed_bones(bones)
    absolutes = []
    for b in range(bones):
        relative = base_relatives[b]
        if b in posed:
            i, j = posed[b]
            tr = _rotation(xp, theta[i], "x", zero, one)
            if j is not None:
                tr = _rotation(xp, theta[j], "z", zero, one) @ tr
            relative = relative @ tr
        if b == 0:
            absolutes.append(relative)
            continue
        earlier = xp.reshape(xp.stack(absolutes), (b, 16))
        parent = xp.reshape(xp.sum(parent_of[b, :b][:, None] * earlier, axis=0), (4, 4))  # one term
        root = 1 - xp.sum(parent_of[b, :b])  # 1 for a root, whose transform is its relative's
        absolutes.append(parent @ relative + root * relative)
    transforms = xp.stack(absolutes) @ inverse_base_absolutes
    skinned = xp.sum(weights[:, None, :] * (transforms[:, 0:3, :] @ base_positions), axis=0)
    R = _angle_axis(xp, theta[0:3], zero, one)
    return R @ (skinned * mirror[:, None]) + theta[3:6][:, None]


def primal(
    xp, theta, base_relatives, inverse_base_absolutes, parent_of, base_positions, weights, mirror, points
):
    """GradBench's simple ht objective: ``points[i] - vertex(correspondence i)``, [3 npts] point by
    point. ``base_positions`` and ``weights`` hold the corresponded vertices only (`from_gradbench`
    gathers them): each vertex is skinned on its own, so the others are never read."""
    posed = vertices(
        xp, theta, base_relatives, inverse_base_absolutes, parent_of, base_positions, weights, mirror
    )
    return xp.reshape(points - xp.stack([posed[0], posed[1], posed[2]], axis=1), (3 * points.shape[0],))


def primal_complicated(
    xp, theta, us, base_relatives, inverse_base_absolutes, parent_of, base_positions, weights, mirror, points
):
    """GradBench's complicated ht objective: ``points[i] - (u0 P0 + u1 P1 + (1 - u0 - u1) P2)``,
    P the skinned vertices of correspondence i's triangle, ``us`` [npts, 2]. ``base_positions``
    [4, 3 npts] and ``weights`` hold the triangles' first vertices, then their second, third."""
    posed = vertices(
        xp, theta, base_relatives, inverse_base_absolutes, parent_of, base_positions, weights, mirror
    )
    n = points.shape[0]
    u0, u1 = us[:, 0], us[:, 1]
    hand = [
        u0 * posed[j, 0:n] + u1 * posed[j, n : 2 * n] + (1.0 - u0 - u1) * posed[j, 2 * n :] for j in range(3)
    ]
    return xp.reshape(points - xp.stack(hand, axis=1), (3 * n,))


def value_magnitude(
    theta, base_relatives, inverse_base_absolutes, parent_of, base_positions, weights, mirror, points
):
    """What each residual subtracts: ``|point| + |vertex|``."""
    posed = vertices(
        np, theta, base_relatives, inverse_base_absolutes, parent_of, base_positions, weights, mirror
    )
    return (np.abs(points) + np.abs(posed.T)).ravel()


def value_magnitude_complicated(theta, us, *model, points):
    """``|point| + |u0 P0| + |u1 P1| + |(1 - u0 - u1) P2|``."""
    posed = np.abs(vertices(np, theta, *model))
    n = points.shape[0]
    u = np.abs(np.stack([us[:, 0], us[:, 1], 1.0 - us[:, 0] - us[:, 1]]))
    hand = sum(u[k] * posed[:, k * n : (k + 1) * n] for k in range(3))
    return (np.abs(points) + hand.T).ravel()


# --- GradBench's files -------------------------------------------------------------------------------


def data_folder() -> Path | None:
    value = os.environ.get(VARIABLE)
    return Path(value) if value else None


def missing(variant: str = "simple") -> str | None:
    """What ht's ``variant`` lacks to run here, or ``None``."""
    folder = data_folder()
    hint = (
        f"set {VARIABLE} to GradBench's evals/ht/data folder "
        "(git clone https://github.com/gradbench/gradbench)"
    )
    if folder is None:
        return f"ht reads GradBench's hand model and points: {hint}"
    model = folder / FOLDERS[variant] / "model"
    for name in ("bones.txt", "vertices.txt", "triangles.txt"):
        if not (model / name).is_file():
            return f"{model / name} is missing: {hint}"
    if _hand_file(SIZE[0], variant) is None:
        return f"{folder / FOLDERS[variant]} has no hand{SIZE[0]}_*.txt: {hint}"
    return None


def _hand_file(index: int, variant: str) -> Path | None:
    folder = data_folder()
    return next((folder / FOLDERS[variant]).glob(f"hand{index}_*.txt"), None) if folder else None


def load_model(folder: Path) -> dict:
    """GradBench's ``HTModel`` from ``bones.txt`` (name:parent:16 relative:16 inverse absolute,
    row-major 4 x 4), ``vertices.txt`` (x:y:z:normal:uv:count:(bone:weight)*) and
    ``triangles.txt``, as its ``io.load_model`` reads them (``is_mirrored`` false, as there)."""
    bones = [
        line.strip().split(":") for line in (folder / "bones.txt").read_text().splitlines() if line.strip()
    ]
    matrices = np.array([[float(v) for v in bone[2:34]] for bone in bones]).reshape(len(bones), 2, 4, 4)
    lines = [line.split(":") for line in (folder / "vertices.txt").read_text().splitlines() if line.strip()]
    positions = np.ones((len(lines), 4))
    weights = np.zeros((len(lines), len(bones)))
    for v, atoms in enumerate(lines):
        positions[v, :3] = [float(a) for a in atoms[:3]]
        for k in range(int(atoms[8])):
            weights[v, int(atoms[9 + 2 * k])] = float(atoms[10 + 2 * k])
    triangles = np.loadtxt(folder / "triangles.txt", int, delimiter=":", ndmin=2)
    return {
        "bone_count": len(bones),
        "bone_names": [bone[0] for bone in bones],
        "parents": [int(bone[1]) for bone in bones],
        "base_relatives": matrices[:, 0].tolist(),
        "inverse_base_absolutes": matrices[:, 1].tolist(),
        "base_positions": positions.tolist(),
        "weights": weights.tolist(),
        "triangles": triangles.tolist(),
        "is_mirrored": False,
    }


def gradbench_input(size=None, variant: str = "simple") -> dict:
    """GradBench's ``input`` for hand file ``size = (i,)`` of ``variant``, small model (``theta``,
    ``data``, ``us``: empty for the simple variant), without Runs, read from ``HARNESS_HT_DATA``."""
    reason = missing(variant)
    if reason:
        raise FileNotFoundError(reason)
    (index,) = size or SIZE
    path = _hand_file(index, variant)
    if path is None:
        raise FileNotFoundError(
            f"no hand{index}_*.txt in {data_folder() / FOLDERS[variant]}: GradBench has hand1 ... hand12"
        )
    lines = path.read_text().splitlines()
    npts, ntheta = (int(v) for v in lines[0].split())
    rows = [line.split() for line in lines[1 : 1 + npts]]
    us = (
        [[float(v) for v in line.split()] for line in lines[1 + npts : 1 + 2 * npts]]
        if variant == "complicated"
        else []
    )
    start = 1 + npts + len(us)
    theta = [float(v) for v in lines[start : start + ntheta]]
    return {
        "theta": theta,
        "data": {
            "model": load_model(path.parent / "model"),
            "correspondences": [int(row[0]) for row in rows],
            "points": [[float(v) for v in row[1:4]] for row in rows],
        },
        "us": us,
    }


def from_gradbench(input: dict) -> tuple:
    """The problem's arguments from GradBench's input: theta, (for the complicated variant, ``us``
    non-empty: ``us`` [npts, 2]), the model's matrices, the one-hot parents, the corresponded
    vertices' (or their triangles' vertices') positions and weights, the mirror factors and the
    points."""
    model, data = input["data"]["model"], input["data"]
    us = np.asarray(input.get("us", []), dtype=np.float64)
    theta = np.asarray(input["theta"], dtype=np.float64)
    if theta.shape != (THETA,):
        raise ValueError(f"ht's theta has {THETA} entries, got {theta.size}")
    parents = np.asarray(model["parents"], dtype=int)
    bones = parents.size
    if any(not -1 <= p < b for b, p in enumerate(parents)):
        raise ValueError(f"ht's parents must come before their bones (or be -1): {parents.tolist()}")
    parent_of = np.zeros((bones, bones))
    parent_of[np.arange(bones)[parents >= 0], parents[parents >= 0]] = 1.0
    chosen = np.asarray(data["correspondences"], dtype=int)
    if us.size:
        if us.shape != (chosen.size, 2):
            raise ValueError(f"ht's us holds a pair per correspondence: {chosen.size} x 2, got {us.shape}")
        chosen = np.asarray(model["triangles"], dtype=int)[
            chosen
        ].T.ravel()  # first vertices, seconds, thirds
    return (
        theta,
        *((us,) if us.size else ()),
        np.asarray(model["base_relatives"], dtype=np.float64),
        np.asarray(model["inverse_base_absolutes"], dtype=np.float64),
        parent_of,
        np.asarray(model["base_positions"], dtype=np.float64)[chosen].T,
        np.asarray(model["weights"], dtype=np.float64)[chosen].T,
        np.array([-1.0 if model["is_mirrored"] else 1.0, 1.0, 1.0]),
        np.asarray(data["points"], dtype=np.float64),
    )


def args(size=None):
    return from_gradbench(gradbench_input(size))


def args_complicated(size=None):
    return from_gradbench(gradbench_input(size, "complicated"))


PROBLEMS = (
    JacobianProblem(
        "ht",
        primal,
        args,
        argnums=0,
        description="GradBench's ht (hand tracking), simple variant: points - skinned vertices, [3 npts], "
        "for theta [26] (global rotation, translation, finger angles) posing a 22-bone hand model; "
        "its 3 npts x 26 Jacobian. Model and points are GradBench's files, read from the folder "
        f"{VARIABLE} names (its evals/ht/data). GradBench's sizes npts = 100 ... 100000 (hand1 ... "
        "hand12); here hand1 of simple_small, npts = 100. Not in the default run: it needs the data",
        default=False,
        value_magnitude=value_magnitude,
        unavailable=missing,
    ),
    JacobianProblem(
        "ht-complicated",
        primal_complicated,
        args_complicated,
        argnums=(0, 1),
        description="GradBench's ht, complicated variant: points - (u0 P0 + u1 P1 + (1 - u0 - u1) P2), "
        "P the skinned vertices of each correspondence's triangle, [3 npts]; its full 3 npts x (26 + "
        "2 npts) Jacobian w.r.t. (theta, us) (GradBench asks for the 2 us columns of each point's "
        "own pair, then theta's). Data as ht's; here hand1 of complicated_small, npts = 100",
        default=False,
        value_magnitude=lambda theta, us, *model: value_magnitude_complicated(
            theta, us, *model[:-1], points=model[-1]
        ),
        unavailable=lambda: missing("complicated"),
    ),
)


def _own_columns(J: np.ndarray) -> np.ndarray:
    """GradBench's complicated ``jacobian`` [3 npts][2 + 26] from the full one [3 npts][26 + 2
    npts]: each row's point's own two ``us`` columns, then theta's; the simple one unchanged."""
    if J.shape[1] == THETA:
        return J
    rows = np.arange(J.shape[0])
    own = THETA + 2 * (rows // 3)
    return np.concatenate([J[rows, own][:, None], J[rows, own + 1][:, None], J[:, :THETA]], axis=1)


def _either_variant(function: adapter.Function) -> adapter.Function:
    """``function`` on the simple problem, or on the complicated one for an input with ``us``."""

    def variant(problem, args: tuple):
        return problem if len(args) == 8 else next(p for p in PROBLEMS if p.name == "ht-complicated")

    return replace(
        function,
        prepare=lambda target, problem, args: function.prepare(target, variant(problem, args), args),
        oracles=lambda problem, args: function.oracles(variant(problem, args), args),
    )


GRADBENCH = {
    "objective": _either_variant(adapter.value()),
    "jacobian": _either_variant(adapter.jacobian(_own_columns)),
}
"""GradBench's ``objective`` (the residuals [3 npts]) and ``jacobian`` ([3 npts][26]; the
complicated variant's [3 npts][2 + 26], each point's own ``us`` columns first), defined only
where GradBench's data is (`missing`)."""
