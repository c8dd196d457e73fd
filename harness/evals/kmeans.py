"""kmeans: the k-means cost of centroids, with its gradient and the diagonal of its Hessian
(GradBench's ``dir`` is the one over the other: a Newton step of Lloyd's algorithm)."""

from __future__ import annotations

import numpy as np

from harness import strategies
from harness.evals import adapter
from harness.evals.inputs import draw
from harness.problems import GradientProblem
from harness.validation.tolerances import tolerance

SIZE = (3, 12, 2)
"""(k, n, d) here: 12 points whose nearest centroid is unique by at least 0.033 in squared
distance (`margin`), 3, 4 and 5 of them per centroid."""


def primal(xp, centroids, points):
    """``sum_i min_j |p_i - c_j|^2``: GradBench's ``cost`` (the squared distance of each point to
    its nearest centroid, summed), ``centroids`` k x d, ``points`` n x d. The n x k distances as
    ``|p|^2 + |c|^2 - 2 p c^T``, one matrix product, as GradBench's JAX and PyTorch tools form
    them (the differences ``p_i - c_j`` would be an n x k x d array: 64 MB at GradBench's
    n, k, d = 10000, 100, 8); the rounding it adds, ~1e-16 of ``|p|^2``, is far inside a
    second derivative's tolerance, and a nearest centroid is unique by far more (`margin`)."""
    squares = xp.sum(points * points, axis=1)[:, None] + xp.sum(centroids * centroids, axis=1)[None, :]
    return xp.sum(xp.min(squares - 2 * xp.matmul(points, centroids.T), axis=1))


def gradbench_input(size=None) -> dict:
    """GradBench's ``input`` at (k, n, d): n x d points from ``np.random.rand`` after its seed,
    the centroids the last k of them (so that no cluster is empty)."""
    k, n, d = size or SIZE
    points = draw(n * d).reshape(n, d)
    return {"points": points.tolist(), "centroids": points[-k:].tolist()}


def from_gradbench(input: dict) -> tuple:
    """``(centroids, points)`` from GradBench's input: the differentiated argument first."""
    return np.array(input["centroids"], np.float64), np.array(input["points"], np.float64)


def args(size=None):
    return from_gradbench(gradbench_input(size))


def assignment(centroids, points) -> np.ndarray:
    """The index of each point's nearest centroid (by real parts: complex-step safe)."""
    gap = np.real(points)[:, None, :] - np.real(centroids)[None, :, :]
    return np.argmin(np.sum(gap * gap, axis=2), axis=1)


def margin(centroids, points) -> float:
    """The smallest gap between a point's nearest and second-nearest squared distance: moving one
    centroid coordinate by h changes a squared distance by at most ``2 h |p - c| + h^2``, so
    differences with steps well inside it stay within one piece of the piecewise-quadratic cost."""
    gap = points[:, None, :] - centroids[None, :, :]
    nearest = np.sort(np.sum(gap * gap, axis=2), axis=1)
    return float(np.min(nearest[:, 1] - nearest[:, 0]))


def counts(centroids, points) -> np.ndarray:
    """How many points each centroid is nearest to."""
    return np.bincount(assignment(centroids, points), minlength=len(centroids))


def gradient(centroids, points):
    """``2 (|S_j| c_j - sum_{i in S_j} p_i)``, ``S_j`` the points nearest to centroid j (computed
    in the arguments' dtype: complex-step safe)."""
    owner = assignment(centroids, points)
    sums = np.stack([np.sum(points[owner == j], axis=0) for j in range(len(centroids))])
    return 2 * (counts(centroids, points)[:, None] * centroids - sums)


def hessian_diagonal(centroids, points):
    """``2 |S_j|`` for each of centroid j's d coordinates: the Hessian is diagonal (each squared
    distance involves one centroid, each coordinate separately)."""
    return 2.0 * np.repeat(counts(centroids, points)[:, None], centroids.shape[1], axis=1)


def hvp(v, centroids, points):
    return hessian_diagonal(centroids, points) * v


def direction(centroids, points):
    """GradBench's ``dir``: gradient over the Hessian's diagonal, ``c_j - mean(S_j)`` (the golden
    C++ computes it so, ``-(sum / size - c)``)."""
    return gradient(centroids, points) / hessian_diagonal(centroids, points)


def magnitude(centroids, points):
    """``2 sum_{i in S_j} (|c_j| + |p_i|)``: the terms each gradient entry adds."""
    owner = assignment(centroids, points)
    return np.stack(
        [2 * np.sum(np.abs(centroids[j]) + np.abs(points[owner == j]), axis=0) for j in range(len(centroids))]
    )


PROBLEMS = (
    GradientProblem(
        "kmeans",
        primal,
        args,
        argnums=0,
        description="GradBench's kmeans: cost = sum_i min_j |p_i - c_j|^2 of centroids c: [k][d] "
        "(the last k of the points), points p: [n][d] uniform in [0, 1) (seed 31337); gradient "
        "[k][d], 2 (|S_j| c_j - sum of S_j) (closed form, S_j the points nearest c_j) and the "
        "Hessian's diagonal 2 |S_j| (the Hessian is diagonal); GradBench's dir = gradient / "
        "diagonal. GradBench's sizes k = 10, 100, 1000, n = 1000, 10000, d = 8, 16; here "
        "(k, n, d) = (3, 12, 2): nearest centroids unique by 0.033 in squared distance, so "
        "differences with steps below 0.01 stay within one piece of the piecewise cost. Not in "
        "the default run: its torch.compile and JAX eager checks took 17-19 s and 7-9 s per "
        "dtype (2-core AMD EPYC, load 10)",
        gradient=gradient,
        magnitude=magnitude,
        hvp=hvp,
        hessian_diagonal=hessian_diagonal,
        diagonal_hessian=True,
        default=False,
    ),
)


REVERSE_OVER_REVERSE = {("torch", "eager")}
"""Where `GRADBENCH`'s ``dir`` takes reverse over reverse: torch eager, whose reverse mode runs on
autograd's tape and whose forward mode goes through functorch (at k, n, d = 100, 10000, 8 on the
2-core AMD EPYC: first call 0.05 s and 20 ms a call, against 1.3 s and 36 ms; GradBench's
PyTorch tool takes the same two tape passes, ``vjp`` and ``vhp``). Forward over reverse was the
faster elsewhere: JAX eager 53 ms against 65, autograd 24 against 31, torch.compile 5.9 against
10.7."""


def _dir_prepare(target, problem, args: tuple):
    """The gradient over the Hessian's diagonal, both from one forward-over-reverse Hessian-vector
    product along the one probe of ones (the Hessian is diagonal; the ``jvp`` of the gradient
    brings the gradient along), the quotient included, compiled as one function in a compiled
    mode, as GradBench's JAX tool does (`harness.strategies.hessian_diagonal`). Reverse over
    reverse (the gradient, then the product, one more gradient inside it) on a backend without
    the optional ``jvp`` and where `REVERSE_OVER_REVERSE` says."""
    reverse = (target.backend.name, target.mode) in REVERSE_OVER_REVERSE or not hasattr(target.backend, "jvp")
    strategy = "reverse" if reverse else "forward-over-reverse"
    diagonal = strategies.hessian_diagonal(
        target.backend, target.function(problem), problem.argnums, strategy
    )
    probes = target.array(strategies.diagonal_probes(args[0], problem.diagonal_hessian))

    def dir(probes, centroids, points):
        gradient, diag = diagonal(probes, centroids, points)
        return gradient / diag

    dir.nesting = diagonal.nesting  # what torch.compile is refused on (`harness_backends.torch`)
    compiled = target.compiled(dir)
    return lambda centroids, points: compiled(probes, centroids, points)


def _dir_oracles(problem, args: tuple) -> list[adapter.Oracle]:
    """`direction` in closed form, at the tolerance of a second derivative; each entry's allowed
    gap grows with the terms of its gradient entry (`magnitude`) over its diagonal entry."""
    rtol = tolerance("float64", 2)
    slack = rtol * np.ravel(magnitude(*args) / hessian_diagonal(*args))
    return [
        adapter.Oracle("closed-form", direction(*args), rtol, slack, points="gradient / Hessian diagonal")
    ]


GRADBENCH = {
    "cost": adapter.value(),
    "dir": adapter.Function(2, "hessian-diagonal", _dir_prepare, _dir_oracles),
}
"""GradBench's ``cost`` (a number) and ``dir`` (the gradient over the Hessian's diagonal, [k][d])."""
