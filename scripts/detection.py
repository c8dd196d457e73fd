"""The smallest planted relative error each checker catches, per dtype and derivative order.

    python scripts/detection.py                 # the README's table (about a minute on 2 cores)
    python scripts/detection.py --dtype float64 --order 1 --tool harness-torch

A derivative is planted scaled by 1 + eps: at order 1, sin's backward (a custom
``torch.autograd.Function``, a ``jax.custom_vjp``) times 1 + eps; at order 2, sin's backward is
right but calls a custom cos whose own backward is off, so only the second derivative is wrong.
Each checker runs on ``sum(sin(x))`` at five points in [-1, 2], with its defaults:

- ``harness-torch``, ``harness-jax``: ``harness.check(f, x, order=n, dtype=d)`` (order 2: the
  ``reverse`` Hessian-vector products; a custom rule has no forward mode);
- ``gradcheck``: ``torch.autograd.gradcheck`` (order 2: ``gradgradcheck``), ``raise_exception=False``;
- ``check_grads``: ``jax.test_util.check_grads(f, (x,), order=n, modes=("rev",))``.

eps runs down 1e-1, 3e-2, 1e-2, ... 1e-14; the smallest caught is the last eps flagged before the
first one missed. "correct passes" says whether the unplanted version (eps = 0) passes: a
checker that fails a correct derivative catches everything and means nothing.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

X = np.linspace(-1.0, 2.0, 5)
EPSILONS = [m * 10.0**-k for k in range(1, 15) for m in (1.0, 0.3)][:-1]
TOOLS = ("harness-torch", "harness-jax", "gradcheck", "check_grads")


def torch_planted(eps: float, order: int):
    import torch

    scales = {order: 1 + eps}

    class Cos(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return torch.cos(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            return -g * torch.sin(ctx.saved_tensors[0]) * scales.get(2, 1.0)

    class Sin(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return torch.sin(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            return g * Cos.apply(ctx.saved_tensors[0]) * scales.get(1, 1.0)

    return lambda x: torch.sum(Sin.apply(x))


def jax_planted(eps: float, order: int):
    import jax
    import jax.numpy as jnp

    scales = {order: 1 + eps}

    @jax.custom_vjp
    def cos(x):
        return jnp.cos(x)

    cos.defvjp(lambda x: (jnp.cos(x), x), lambda x, g: (-g * jnp.sin(x) * scales.get(2, 1.0),))

    @jax.custom_vjp
    def sin(x):
        return jnp.sin(x)

    sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * cos(x) * scales.get(1, 1.0),))
    return lambda x: jnp.sum(sin(x))


def flags(tool: str, eps: float, dtype: str, order: int) -> bool:
    """Whether ``tool`` with its defaults reports the function planted with ``eps`` as wrong."""
    import harness

    if tool.startswith("harness"):
        backend = tool.split("-")[1]
        make = torch_planted if backend == "torch" else jax_planted
        found = harness.check(
            make(eps, order), X, backend=backend, order=order, dtype=dtype, strategies=["reverse"]
        )
        return not found.passed
    if tool == "gradcheck":
        import torch

        x = torch.tensor(X, dtype=getattr(torch, dtype), requires_grad=True)
        check = torch.autograd.gradcheck if order == 1 else torch.autograd.gradgradcheck
        return not check(torch_planted(eps, order), (x,), raise_exception=False)
    import jax
    from jax.test_util import check_grads

    jax.config.update("jax_enable_x64", True)
    try:
        check_grads(
            jax_planted(eps, order), (jax.numpy.asarray(X, dtype=dtype),), order=order, modes=("rev",)
        )
    except AssertionError:
        return True
    return False


def smallest_caught(tool: str, dtype: str, order: int) -> tuple[bool, float]:
    """(whether the correct version passes, the smallest eps caught before the first miss)."""
    correct = not flags(tool, 0.0, dtype, order)
    caught = math.inf
    if not correct:
        return correct, caught
    for eps in EPSILONS:
        if not flags(tool, eps, dtype, order):
            break
        caught = eps
    return correct, caught


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", choices=TOOLS, action="append")
    parser.add_argument("--dtype", choices=("float64", "float32"), action="append")
    parser.add_argument("--order", type=int, choices=(1, 2), action="append")
    args = parser.parse_args()
    print("| checker | dtype | order | correct passes | smallest relative error caught |")
    print("|---|---|---|---|---|")
    for dtype in args.dtype or ("float64", "float32"):
        for order in args.order or (1, 2):
            for tool in args.tool or TOOLS:
                correct, caught = smallest_caught(tool, dtype, order)
                shown = (
                    "- (fails the correct derivative)"
                    if not correct
                    else f"{caught:.0e}"
                    if math.isfinite(caught)
                    else f"none down to {EPSILONS[0]:.0e}"
                )
                print(f"| {tool} | {dtype} | {order} | {'yes' if correct else 'no'} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
