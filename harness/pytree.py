"""Pytrees (arrays in nested tuples, lists and dicts) moved between numpy and a backend.

Hand-written rather than borrowed from jax.tree_util or torch.utils._pytree:
the host must not import a framework, and these three containers are all the
harness needs (optree would be a compiled dependency for thirty lines).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


def tree_map(fn: Callable[[Any], Any], tree: Any) -> Any:
    """Apply ``fn`` to every leaf, keeping the containers."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # a namedtuple
        return type(tree)(*(tree_map(fn, v) for v in tree))
    if isinstance(tree, tuple | list):
        return type(tree)(tree_map(fn, v) for v in tree)
    return fn(tree)


def leaves(tree: Any) -> Iterator[Any]:
    """The leaves in a fixed order (dicts by insertion order).

    A traced sequence that is not a tuple (autograd's ``SequenceBox``, what a
    gradient w.r.t. a tuple is while an outer derivative traces it) counts as
    a sequence too: it has a length and items but, unlike an array, no shape.
    """
    if isinstance(tree, dict):
        for v in tree.values():
            yield from leaves(v)
    elif isinstance(tree, tuple | list) or (
        hasattr(tree, "__len__")
        and hasattr(tree, "__getitem__")
        and not hasattr(tree, "shape")
        and not isinstance(tree, str)
    ):
        for i in range(len(tree)):
            yield from leaves(tree[i])
    else:
        yield tree


def structure(tree: Any) -> Any:
    """The containers and leaf shapes, for comparing two trees: ``{'W': (3,), 'b': ()}``."""
    return tree_map(lambda leaf: np.shape(leaf), tree)


def flatten(tree: Any, dtype: Any = np.float64) -> np.ndarray:
    """All leaves raveled into one vector of ``dtype`` (float64 unless told otherwise)."""
    parts = [np.ravel(np.asarray(leaf, dtype=dtype)) for leaf in leaves(tree)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def unflatten(vector: np.ndarray, like: Any) -> Any:
    """The inverse of `flatten`: a tree shaped like ``like`` holding ``vector``'s entries."""
    position = 0

    def take(leaf: Any) -> np.ndarray:
        nonlocal position
        shape = np.shape(leaf)
        size = int(np.prod(shape))
        out = np.reshape(vector[position : position + size], shape)
        position += size
        return out

    return tree_map(take, like)


def select(args: tuple, argnums: int | tuple[int, ...]) -> Any:
    """The differentiated part of ``args``: one pytree for an int, a tuple of them otherwise."""
    return args[argnums] if isinstance(argnums, int) else tuple(args[i] for i in argnums)


def substitute(args: tuple, argnums: int | tuple[int, ...], chosen: Any) -> tuple:
    """``args`` with the arguments at ``argnums`` replaced by ``chosen`` (shaped as `select`'s)."""
    full = list(args)
    if isinstance(argnums, int):
        full[argnums] = chosen
    else:
        for i, value in zip(argnums, chosen, strict=True):
            full[i] = value
    return tuple(full)


def vdot(xp: Any, a: Any, b: Any) -> Any:
    """Sum over all leaves of ``sum(a * b)``, in array namespace ``xp`` (differentiable)."""
    return sum(xp.sum(x * y) for x, y in zip(leaves(a), leaves(b), strict=True))
