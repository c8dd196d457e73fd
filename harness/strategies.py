"""Named strategies for n-th derivatives and Hessian-vector products, composed in one place.

Both are built from a backend's two primitives, ``value_and_grad`` and the
optional ``jvp``, so no backend writes its own nesting: `nest` composes the
n-th derivative of an elementwise function, `hvp` the Hessian-vector product.
Taylor mode is framework-specific (``jet``) and stays in the JAX backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.pytree import select, substitute, vdot

HVP_STRATEGIES = ("reverse", "forward-over-reverse")
"""reverse: grad of <grad f, v> (reverse over reverse); forward-over-reverse: jvp of grad f along v."""


def nest(backend: Any, f: Callable, order: int, strategy: str) -> Callable:
    """The ``order``-th derivative of elementwise ``f``, composed from the backend's primitives.

    ``reverse``: ``value_and_grad`` of ``sum(g(x))``, n times; ``forward``: ``jvp``
    with unit tangents, n times; ``forward-over-reverse``: one reverse, then forward.
    The result's ``nesting`` attribute is (levels, how many of them ``jvp``).

    :raises NotImplementedError: an unknown strategy, or forward mode without ``jvp``.
    """
    if order < 1:
        raise ValueError(f"derivative order must be >= 1, got {order}")
    xp = backend.namespace()
    jvp = getattr(backend, "jvp", None)

    def reverse(g):
        return lambda x: backend.value_and_grad(lambda y: xp.sum(g(y)), 0)(x)[1]

    def forward(g):
        return lambda x: jvp(g, (x,), (xp.ones_like(x),))[1]

    if jvp is None:
        forward = None
    plans = {
        "reverse": [reverse] * order,
        "forward": [forward] * order,
        "forward-over-reverse": [reverse] + [forward] * (order - 1),
    }
    if strategy not in plans or any(op is None for op in plans[strategy]):
        raise NotImplementedError(f"strategy {strategy!r} is not offered by this backend")
    for op in plans[strategy]:
        f = op(f)
    f.nesting = (order, plans[strategy].count(forward))  # (levels, of which jvp): for compilers
    return f


def derivative(backend: Any, f: Callable, order: int, strategy: str) -> Callable:
    """The backend's own `derivative` if it has one (it is optional), else `nest`."""
    own = getattr(backend, "derivative", None)
    return own(f, order, strategy) if own else nest(backend, f, order, strategy)


def hvp(backend: Any, f: Callable, argnums: int | tuple[int, ...], strategy: str) -> Callable:
    """``hvp(v, *args)``: the Hessian of ``f`` w.r.t. ``args[argnums]`` times ``v``.

    ``v`` is shaped like `harness.pytree.select` of the arguments, and so is
    the result. Only the backend's own primitives are used, nested.

    :raises NotImplementedError: forward-over-reverse on a backend without ``jvp``.
    """
    xp = backend.namespace()

    def gradient(*args):
        return backend.value_and_grad(f, argnums)(*args)[1]

    if strategy == "reverse":

        def along(chosen, v, *args):
            return vdot(xp, gradient(*substitute(args, argnums, chosen)), v)

        return lambda v, *args: backend.value_and_grad(along, 0)(select(args, argnums), v, *args)[1]
    if strategy == "forward-over-reverse":
        jvp = getattr(backend, "jvp", None)
        if jvp is None:
            raise NotImplementedError("forward-over-reverse needs the backend's optional jvp")

        def product(v, *args):
            return jvp(
                lambda chosen: gradient(*substitute(args, argnums, chosen)), (select(args, argnums),), (v,)
            )[1]

        return product
    raise NotImplementedError(
        f"no Hessian-vector product strategy {strategy!r} (known: {', '.join(HVP_STRATEGIES)})"
    )
