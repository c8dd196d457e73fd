"""The data and the reference of a world, the same in the driver's child and in every rank.

The data: seeded blocks of `BLOCK` rows (`rows`), so each process makes only its own rows and
every world size sees the same N x D data (not `problems.synthetic_args`' draw, which makes all N
rows at once).

The reference: the single-device float64 closed form (`problems.logistic_gradient` on the data
rounded to the dtype). The harness's logistic loss is a *sum* over the N rows
(`problems.logistic_loss`), so the world's value and gradient are the sums of the shards'; nothing
is divided by N or by the world size.
"""

from __future__ import annotations

import numpy as np

from harness import problems

BLOCK = 4096
"""Rows per seeded block of data."""
SEED = 0


def weights(d: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) in float64: W scaled so that the logits stay O(1)."""
    rng = np.random.default_rng([seed, d])
    return rng.standard_normal(d) / np.sqrt(d), np.array(rng.standard_normal())


def rows(start: int, stop: int, W: np.ndarray, b: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, ...]:
    """Rows ``start:stop`` of the seeded data, float64 (inputs, 0/1 targets), whatever the world:
    block k of `BLOCK` rows comes from its own generator."""
    d = W.shape[0]
    if stop <= start:
        return np.zeros((0, d)), np.zeros(0)
    inputs, targets = [], []
    for k in range(start // BLOCK, (stop - 1) // BLOCK + 1):
        rng = np.random.default_rng([seed, d, k])
        x = rng.standard_normal((BLOCK, d))
        t = (rng.random(BLOCK) < problems.sigmoid(np, x @ W + b)).astype(np.float64)
        lo, hi = max(start - k * BLOCK, 0), min(stop - k * BLOCK, BLOCK)
        inputs.append(x[lo:hi])
        targets.append(t[lo:hi])
    return np.concatenate(inputs), np.concatenate(targets)


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` as the dtype holds it, back in float64: what the reference is computed on."""
    return np.asarray(a, dtype=dtype).astype(np.float64)


def reference(size: tuple[int, int], dtype: str, seed: int = SEED) -> dict[str, np.ndarray]:
    """The single-device float64 closed form over all N rows, a block at a time: the value, the
    flat gradient ``[dW, db]`` and the summed |terms| behind each (`problems.logistic_magnitude`)."""
    n, d = size
    W, b = weights(d, seed)
    W64, b64 = rounded(W, dtype), rounded(b, dtype)
    value = magnitude_value = 0.0
    gradient, magnitude = np.zeros(d + 1), np.zeros(d + 1)
    for start in range(0, n, BLOCK):
        x, t = rows(start, min(start + BLOCK, n), W, b, seed)
        x, t = rounded(x, dtype), rounded(t, dtype)
        value += float(problems.logistic_loss(np, W64, b64, x, t))
        dW, db = problems.logistic_gradient(W64, b64, x, t)
        mW, mb = problems.logistic_magnitude(W64, b64, x, t)
        gradient += np.append(dW, db)
        magnitude += np.append(mW, mb)
    magnitude_value = value  # every term -log(p) is 0 or more
    return {
        "value": np.array(value),
        "gradient": gradient,
        "magnitude_value": np.array(magnitude_value),
        "magnitude": magnitude,
    }
