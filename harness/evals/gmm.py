"""gmm: the log-posterior of a Gaussian mixture with a Wishart prior on its precisions (ADBench's
GMM), differentiated w.r.t. all its parameters."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from harness.errors import ShapeMismatch
from harness.evals import adapter
from harness.problems import GradientProblem

SIZE = (2, 3, 10)
"""(d, k, n) here: 3 + 6 + 6 + 3 = 18 parameters, so the full gradient is checked."""
SEED = 31337
"""GradBench's ``--seed`` default; its generator reseeds ``default_rng`` for every size."""


def primal(xp, alpha, mu, q, l, x, gamma, m, log_gamma, upper):  # noqa: E741 (GradBench names it l)
    """GradBench's ``objective``: ``-n d/2 log(2 pi) + sum_i lse_k(alpha_k + sum_j q_kj -
    |Q_k (x_i - mu_k)|^2 / 2) - n lse(alpha)`` plus the log Wishart prior ``sum_k (m sum_j q_kj
    - gamma^2/2 (|exp(q_k)|^2 + |l_k|^2)) + k C``. ``Q_k`` is lower triangular, ``exp(q_k)`` on
    its diagonal and ``l_k`` below it column by column (``upper``: the transposes of the d(d-1)/2
    unit matrices in that order, data, so that ``sum_p l_kp upper_p`` is ``Q_k``'s strict lower
    triangle transposed); lse shifts by the max, as GradBench's. ``gamma``, ``m`` (0-d arrays) and
    ``upper`` are data, and so is ``log_gamma``, C's multivariate log gamma (`wishart_log_gamma`,
    a constant computed from ``m`` and d in `args`: no backend needs lgamma).

    The points are laid out k x n x d, so that ``Q_k (x_i - mu_k)`` for all i is one batched
    matrix product per centroid, as GradBench's PyTorch tool's einsum (an n x k x d x d product,
    or a matmul broadcast over n, costs torch's reverse mode 4.7x as much at d, k, n = 10, 10,
    1000)."""
    n, d = x.shape
    k = alpha.shape[0]
    diagonal = xp.exp(q)
    sum_qs = xp.sum(q, axis=1)
    lower_t = xp.reshape(xp.matmul(l, xp.reshape(upper, (upper.shape[0], d * d))), (k, d, d))
    centered = x[None, :, :] - mu[:, None, :]  # k x n x d
    product = diagonal[:, None, :] * centered + xp.matmul(centered, lower_t)  # rows (Q_k (x_i - mu_k))^T
    main = alpha[:, None] + sum_qs[:, None] - 0.5 * xp.sum(product * product, axis=2)  # k x n
    likelihood = -n * d * 0.5 * math.log(2 * math.pi) + xp.sum(_lse(xp, main)) - n * _lse(xp, alpha)
    frobenius = xp.sum(diagonal * diagonal) + xp.sum(l * l)
    wishart_n = d + m + 1
    constant = wishart_n * d * (xp.log(gamma) - 0.5 * math.log(2)) - log_gamma
    return likelihood - (0.5 * gamma * gamma * frobenius - m * xp.sum(sum_qs)) + k * constant


def _lse(xp, values):
    """log-sum-exp over the first axis, shifted by its max (analytic wherever the max is unique)."""
    top = xp.max(values, axis=0)
    return xp.log(xp.sum(xp.exp(values - top[None, ...]), axis=0)) + top


def wishart_log_gamma(d, m):
    """``log Gamma_d((d + m + 1) / 2)``, GradBench's ``log_gamma_distrib`` (``d(d-1)/4 log pi +
    sum_j lgamma(a + (1 - j)/2)``): a constant of the objective."""
    a = 0.5 * (d + float(m) + 1)
    return 0.25 * d * (d - 1) * math.log(math.pi) + sum(
        math.lgamma(a + 0.5 * (1 - j)) for j in range(1, d + 1)
    )


def gradbench_input(size=None, seed=SEED, m=0, gamma=1.0) -> dict:
    """GradBench's ``input`` at (d, k, n), as its ``generate``: ``default_rng(seed)``, then x (n
    normal rows), alpha (k normal), mu (k uniform rows), q (k normal rows), l (k normal rows of
    d(d-1)/2), row by row in that order."""
    d, k, n = size or SIZE
    rng = np.random.default_rng(seed=seed)
    return {
        "d": d,
        "k": k,
        "n": n,
        "x": [list(rng.normal(size=d)) for _ in range(n)],
        "m": m,
        "gamma": gamma,
        "alpha": list(rng.normal(size=k)),
        "mu": [list(rng.uniform(size=d)) for _ in range(k)],
        "q": [list(rng.normal(size=d)) for _ in range(k)],
        "l": [list(rng.normal(size=d * (d - 1) // 2)) for _ in range(k)],
    }


def upper_basis(d: int) -> np.ndarray:
    """The transposes of the d(d-1)/2 unit matrices of the strictly lower triangle in GradBench's
    order (by column: entry (j, i), j > i, for i = 0, 1, ...), as ``Qtimesx`` reads ``l``."""
    places = [(j, i) for i in range(d) for j in range(i + 1, d)]
    basis = np.zeros((len(places), d, d))
    for p, (j, i) in enumerate(places):
        basis[p, i, j] = 1.0
    return basis


def from_gradbench(input: dict) -> tuple:
    """``(alpha, mu, q, l, x, gamma, m, log_gamma, upper)``: the four differentiated arguments
    first."""
    d, k = input["d"], input["k"]
    return (
        np.array(input["alpha"], np.float64),
        np.array(input["mu"], np.float64).reshape(k, d),
        np.array(input["q"], np.float64).reshape(k, d),
        np.array(input["l"], np.float64).reshape(k, d * (d - 1) // 2),
        np.array(input["x"], np.float64).reshape(input["n"], d),
        np.array(float(input["gamma"])),
        np.array(float(input["m"])),
        np.array(wishart_log_gamma(d, input["m"])),
        upper_basis(d),
    )


def args(size=None):
    return from_gradbench(gradbench_input(size))


def naive_log_posterior(alpha, mu, q, l, x, gamma, m, log_gamma, upper) -> float:  # noqa: E741
    """The same log-posterior from its densities, as GradBench's ``--validate-naive``: the log of
    the product of mixture densities (weights the softmax of alpha, precisions ``Q^T Q``) times
    the Wishart densities of the precisions (``n = d + m + 1``, ``V = I / gamma^2``); small
    sizes only (the product underflows)."""
    from scipy.special import multigammaln

    n, d = x.shape
    weights = np.exp(alpha) / np.sum(np.exp(alpha))
    precisions = []
    for k in range(len(alpha)):
        Q = np.diag(np.exp(q[k])) + np.tensordot(l[k], upper, axes=1).T
        precisions.append(Q.T @ Q)
    likelihood = 1.0
    for i in range(n):
        likelihood *= sum(
            w
            * np.exp(-0.5 * (x[i] - mu_k) @ P @ (x[i] - mu_k))
            / np.sqrt((2 * np.pi) ** d / np.linalg.det(P))
            for w, mu_k, P in zip(weights, mu, precisions, strict=True)
        )
    dof, V = d + float(m) + 1, np.eye(d) / float(gamma) ** 2
    prior = 1.0
    for P in precisions:
        prior *= (np.linalg.det(P) ** ((dof - d - 1) / 2) * np.exp(-np.trace(np.linalg.inv(V) @ P) / 2)) / (
            2 ** (d * dof / 2) * np.linalg.det(V) ** (dof / 2) * np.exp(multigammaln(dof / 2, d))
        )
    return float(np.log(likelihood * prior))


PROBLEMS = (
    GradientProblem(
        "gmm",
        primal,
        args,
        argnums=(0, 1, 2, 3),
        description="GradBench's gmm (ADBench's): the log-posterior of a Gaussian mixture with a "
        "Wishart prior, x: [n][d] data, parameters alpha: [k], mu: [k][d], q: [k][d] (log of "
        "the precision factor's diagonal), l: [k][d(d-1)/2] (below it), gamma = 1, m = 0, drawn "
        "as GradBench's generate (default_rng(31337)); gradient w.r.t. (alpha, mu, q, l) "
        "(GradBench's jacobian, a dict of those four), by complex step and central "
        "differences. GradBench's sizes d = 2 ... 64, k = 5 ... 100, n = 1000; here "
        "(d, k, n) = (2, 3, 10). Not in the default run: its JAX eager checks took 15-21 s "
        "and torch.compile's up to 42 s per dtype (2-core AMD EPYC, load 10)",
        default=False,
    ),
)


PARAMETERS = ("alpha", "mu", "q", "l")
"""The differentiated arguments, in order: GradBench's ``jacobian`` is a dict of their gradients."""


def jacobian_output(gradient: tuple) -> dict:
    return {name: adapter.to_json(part) for name, part in zip(PARAMETERS, gradient, strict=True)}


def parse_jacobian(output, shape: tuple[int, ...]) -> np.ndarray:
    """A tool's ``jacobian`` dict as the flat gradient of ``shape``: alpha [k], mu and q [k][d], l
    [k][d(d-1)/2], k and d read from alpha and mu; `ShapeMismatch` naming what is off."""
    if not isinstance(output, dict) or sorted(output) != sorted(PARAMETERS):
        got = sorted(output) if isinstance(output, dict) else type(output).__name__
        raise ShapeMismatch(f"expected a dict of {', '.join(PARAMETERS)}, got {got}")
    try:
        k, d = len(output["alpha"]), len(output["mu"][0])
    except (TypeError, IndexError) as exc:
        raise ShapeMismatch(f"alpha must be [k] and mu [k][d] ({exc})") from None
    shapes = {"alpha": (k,), "mu": (k, d), "q": (k, d), "l": (k, d * (d - 1) // 2)}
    parts = []
    for name in PARAMETERS:
        try:
            parts.append(adapter.numbers(output[name], shapes[name]).ravel())
        except ShapeMismatch as exc:
            raise ShapeMismatch(f"{name}: {exc}") from None
    flat = np.concatenate(parts)
    if flat.shape != shape:
        raise ShapeMismatch(f"{flat.size} gradient entries (k = {k}, d = {d}), expected {shape[0]}")
    return flat


GRADBENCH = {
    "objective": adapter.value(),
    "jacobian": replace(adapter.gradient(), output=jacobian_output, parse=parse_jacobian),
}
"""GradBench's ``objective`` (a number) and ``jacobian`` (a dict of alpha, mu, q, l)."""
