"""lse: log-sum-exp of a vector, GradBench's smallest eval; its gradient is the softmax."""

from __future__ import annotations

import numpy as np

from harness.evals import adapter
from harness.evals.inputs import draw
from harness.problems import GradientProblem


def primal(xp, x):
    """``log(sum(exp(x - A))) + A`` with ``A = max(x)``, as GradBench computes it."""
    shift = xp.max(x)
    return xp.log(xp.sum(xp.exp(x - shift))) + shift


def args(size=None):
    (n,) = size or (32,)
    return (draw(n),)


def softmax(x):
    """lse's gradient: ``exp(x - lse(x))``."""
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def magnitude(x):
    """Each gradient entry ``exp(x_i - A) / s`` divides by the sum ``s`` of positive terms: a
    correct reduction is off by about eps times the entry itself. The entry where ``x`` is
    largest also carries the max's own path, ``dA/dx_k (1 - sum p)``: terms of size 1 that
    cancel (torch.compile's gradient at n = 2500 is off there by 1.1e-16, eager's by 0)."""
    found = softmax(x)
    found[np.argmax(x)] += 2.0
    return found


def hvp(v, x):
    """The Hessian ``diag(p) - p p^T`` (``p`` the softmax) times ``v``."""
    p = softmax(x)
    return p * v - p * np.dot(p, v)


PROBLEMS = (
    GradientProblem(
        "lse",
        primal,
        args,
        argnums=0,
        description="GradBench's lse: log(sum(exp(x - max x))) + max x of x: [n] uniform in [0, 1) "
        "(seed 31337); gradient [n], the softmax (closed form), Hessian diag(p) - p p^T. "
        "GradBench's sizes n = 2500 ... 1280000; here n = 32",
        gradient=softmax,
        magnitude=magnitude,
        hvp=hvp,
    ),
)


# --- GradBench's protocol (harness.evals.adapter) ----------------------------------------------


def gradbench_input(size=None) -> dict:
    """``{"x": [n]}``."""
    (x,) = args(size)
    return {"x": x.tolist()}


def from_gradbench(input: dict) -> tuple:
    return (np.asarray(input["x"], np.float64),)


GRADBENCH = {"primal": adapter.value(), "gradient": adapter.gradient()}
