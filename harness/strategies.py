"""Named strategies for n-th derivatives, and the nesting every backend shares.

A backend supplies first-derivative operators for elementwise functions
(``reverse(f)`` and, where it has forward mode, ``forward(f)``); `nest` composes
them into the n-th derivative. Taylor mode is framework-specific (``jet``) and
implemented by the backend itself.
"""

from __future__ import annotations

from collections.abc import Callable

STRATEGIES: dict[str, str] = {
    "reverse": "nested reverse mode: grad of grad of ... (n reverse passes)",
    "forward": "nested forward mode: jvp of jvp of ... with unit tangents",
    "forward-over-reverse": "one reverse-mode derivative, then forward mode for the other n-1",
    "taylor": "Taylor mode: all n orders in one forward pass (jax.experimental.jet)",
}

Operator = Callable[[Callable], Callable]


def nest(
    f: Callable,
    order: int,
    strategy: str,
    *,
    reverse: Operator | None = None,
    forward: Operator | None = None,
) -> Callable:
    """The ``order``-th derivative of elementwise ``f`` by composing first-derivative operators.

    :param reverse: maps elementwise ``f`` to its elementwise derivative by reverse mode.
    :param forward: the same by forward mode (``None`` if the framework has none).
    :raises NotImplementedError: the strategy needs an operator that was not given.
    """
    if order < 1:
        raise ValueError(f"derivative order must be >= 1, got {order}")
    plans = {
        "reverse": [reverse] * order,
        "forward": [forward] * order,
        "forward-over-reverse": [reverse] + [forward] * (order - 1),
    }
    if strategy not in plans or any(op is None for op in plans[strategy]):
        raise NotImplementedError(f"strategy {strategy!r} is not offered by this backend")
    for op in plans[strategy]:
        f = op(f)
    return f
