"""Named strategies for n-th derivatives, Hessian-vector products and Jacobians, composed in one place.

All are built from a backend's two primitives, ``value_and_grad`` and the
optional ``jvp``, so no backend writes its own nesting: `nest` composes the
n-th derivative of an elementwise function, `hvp` the Hessian-vector product,
`jacobian` the full Jacobian of a vector-valued function, `hessian_diagonal` a gradient with
the diagonal of its Hessian.
Taylor mode is framework-specific (``jet``) and stays in the JAX backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from harness.pytree import flatten, leaves, select, substitute, tree_map, unflatten, vdot

HVP_STRATEGIES = ("reverse", "forward-over-reverse")
"""reverse: grad of <grad f, v> (reverse over reverse); forward-over-reverse: jvp of grad f along v."""
JACOBIAN_STRATEGIES = ("forward", "reverse")
"""forward: a jvp per input entry, one column each (jacfwd); reverse: the gradient of <e_i, f>
per output entry, one row each (jacrev: a vector-Jacobian product per output)."""


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


def hessian_diagonal(backend: Any, f: Callable, argnums: int | tuple[int, ...], strategy: str) -> Callable:
    """``diag(probes, *args)``: ``(gradient, diagonal)`` of ``f`` w.r.t. ``args[argnums]``, the
    diagonal of its Hessian composed from Hessian-vector products by ``strategy`` (an HVP
    strategy, `hvp`): ``diagonal = sum_v v * (H v)`` over the ``probes`` (pytrees shaped like the
    selected arguments, as the backend's arrays; `diagonal_probes` makes them in numpy).

    With the unit vectors as probes that is the diagonal of any Hessian, one product per
    entry; with the single probe of ones it is ``H 1``, the diagonal only where the Hessian
    is diagonal (k-means' cost: what GradBench's JAX and PyTorch tools compute). By
    ``forward-over-reverse`` each ``jvp`` of the gradient brings the gradient along with ``H v``
    (GradBench's JAX tool for k-means' ``dir``); by ``reverse`` the gradient is one more
    ``value_and_grad``. The result carries ``nesting`` (levels, of which ``jvp``), as `nest`'s.

    :raises NotImplementedError: forward-over-reverse without ``jvp``, or an unknown strategy.
    """

    def gradient(*args):
        return backend.value_and_grad(f, argnums)(*args)[1]

    if strategy == "forward-over-reverse":
        jvp = getattr(backend, "jvp", None)
        if jvp is None:
            raise NotImplementedError("forward-over-reverse needs the backend's optional jvp")

        def along_probes(probes, *args):
            def of_chosen(chosen):
                return gradient(*substitute(args, argnums, chosen))

            pairs = [jvp(of_chosen, (select(args, argnums),), (v,)) for v in probes]
            return pairs[0][0], _weighted(probes, [product for _, product in pairs])

        along_probes.nesting = (2, 1)
        return along_probes
    if strategy == "reverse":
        product = hvp(backend, f, argnums, strategy)

        def by_reverse(probes, *args):
            return gradient(*args), _weighted(probes, [product(v, *args) for v in probes])

        by_reverse.nesting = (2, 0)
        return by_reverse
    raise NotImplementedError(
        f"no Hessian-diagonal strategy {strategy!r} (known: {', '.join(HVP_STRATEGIES)})"
    )


def _weighted(probes: list | tuple, products: list) -> Any:
    """``sum_v v * p_v`` leaf by leaf, shaped like a probe."""
    pairs = [list(zip(leaves(v), leaves(p), strict=True)) for v, p in zip(probes, products, strict=True)]
    sums = iter([sum(a * b for a, b in column) for column in zip(*pairs, strict=True)])
    return tree_map(lambda _: next(sums), probes[0])


def diagonal_probes(chosen: Any, diagonal: bool) -> tuple:
    """`hessian_diagonal`'s probes in float64 numpy, shaped like ``chosen``: the one vector of
    ones when the Hessian is known to be ``diagonal``, else every unit vector."""
    theta = flatten(chosen)
    rows = np.ones((1, theta.size)) if diagonal else np.eye(theta.size)
    return tuple(unflatten(v, chosen) for v in rows)


def jacobian(backend: Any, f: Callable, argnums: int | tuple[int, ...], strategy: str) -> Callable:
    """``jac(basis, *args)``: ``(value, parts)``, the Jacobian of ``f`` w.r.t. ``args[argnums]``.

    ``f(*args)`` returns a 1-D array of m entries; n is the number of entries in the selected
    arguments (`harness.pytree.select`, any pytree). ``basis`` holds the unit vectors as the
    backend's arrays, passed in as data (`jacobian_basis` makes them in numpy):

    - ``forward``: n unit tangents shaped like the selected arguments; ``parts`` are the n
      columns ``J e_k``, each from one ``jvp``, and ``value`` is ``f(*args)`` from the first.
    - ``reverse``: m unit cotangents shaped like ``f``'s output; ``parts`` are the m rows, each
      the gradient of ``<e_i, f(*args)>`` by ``value_and_grad`` (shaped like the selected
      arguments), and ``value`` the m values ``<e_i, f(*args)>`` = ``f_i`` that came with them.

    `jacobian_matrix` assembles either as the m x n matrix in numpy. Only the backend's own
    primitives are used; the result carries ``nesting`` (levels, of which ``jvp``), as `nest`'s.

    :raises NotImplementedError: ``forward`` on a backend without ``jvp``, or an unknown strategy.
    """
    xp = backend.namespace()
    if strategy == "forward":
        jvp = getattr(backend, "jvp", None)
        if jvp is None:
            raise NotImplementedError("a forward-mode Jacobian needs the backend's optional jvp")

        def columns(basis, *args):
            along = [
                jvp(lambda chosen: f(*substitute(args, argnums, chosen)), (select(args, argnums),), (e,))
                for e in basis
            ]
            return along[0][0], tuple(column for _, column in along)

        columns.nesting = (1, 1)
        return columns
    if strategy == "reverse":

        def component(chosen, e, *args):
            return vdot(xp, e, f(*substitute(args, argnums, chosen)))

        def rows(basis, *args):
            pairs = [backend.value_and_grad(component, 0)(select(args, argnums), e, *args) for e in basis]
            return tuple(value for value, _ in pairs), tuple(row for _, row in pairs)

        rows.nesting = (1, 0)
        return rows
    raise NotImplementedError(f"no Jacobian strategy {strategy!r} (known: {', '.join(JACOBIAN_STRATEGIES)})")


def jacobian_basis(strategy: str, chosen: Any, outputs: int) -> tuple:
    """The unit vectors `jacobian`'s ``jac`` takes, in float64 numpy: for ``forward`` one pytree
    shaped like ``chosen`` (the selected arguments) per entry, for ``reverse`` one vector of
    ``outputs`` entries per output."""
    if strategy == "forward":
        return tuple(unflatten(e, chosen) for e in np.eye(flatten(chosen).size))
    return tuple(np.eye(outputs))


def jacobian_matrix(strategy: str, value: Any, parts: tuple) -> tuple[np.ndarray, np.ndarray]:
    """``(value, J)`` in numpy from `jacobian`'s result (brought back as numpy pytrees): the
    function's m values and its m x n Jacobian, whichever way it was composed."""
    if strategy == "forward":
        return flatten(value), np.stack([flatten(column) for column in parts], axis=1)
    return flatten(value), np.stack([flatten(row) for row in parts])


NESTED_PAIRS = ("rr", "ff", "fr", "rf")
"""GradBench's four functions of a nested optimization (particle, saddle): the outer derivative's
mode, then the inner's, ``r`` reverse and ``f`` forward."""


def gradient_operator(backend: Any, mode: str) -> Callable:
    """``grad(f)``: the gradient of scalar ``f`` at a point (a tuple of scalars), as a tuple like
    it, by the backend's own primitives: ``"r"`` one ``value_and_grad``, ``"f"`` one ``jvp`` per
    coordinate with a unit tangent (``ones_like`` there, ``0 * ones_like`` elsewhere). Either may
    be nested inside the other, in any order (`nested_pair`).

    :raises NotImplementedError: ``"f"`` on a backend without ``jvp``.
    """
    if mode == "r":
        return lambda f: lambda x: tuple(backend.value_and_grad(f, 0)(tuple(x))[1])
    jvp = getattr(backend, "jvp", None)
    if mode != "f" or jvp is None:
        raise NotImplementedError(
            "forward mode needs the backend's optional jvp" if mode == "f" else f"no derivative mode {mode!r}"
        )
    xp = backend.namespace()

    def grad(f):
        def gradient(x):
            x = tuple(x)
            ones = [xp.ones_like(a) for a in x]
            units = [tuple(o if j == k else 0 * o for j, o in enumerate(ones)) for k in range(len(x))]
            return tuple(jvp(f, (x,), (unit,))[1] for unit in units)

        return gradient

    return grad


def nested_pair(backend: Any, pair: str) -> tuple[Callable, Callable]:
    """``(outer, inner)``: the two derivative operators of ``pair`` (one of `NESTED_PAIRS`).

    :raises NotImplementedError: an unknown pair, or forward mode without ``jvp``.
    """
    if pair not in NESTED_PAIRS:
        raise NotImplementedError(f"no nested mode pair {pair!r} (known: {', '.join(NESTED_PAIRS)})")
    return gradient_operator(backend, pair[0]), gradient_operator(backend, pair[1])
