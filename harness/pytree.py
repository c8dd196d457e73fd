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
    if isinstance(tree, tuple | list):
        return type(tree)(tree_map(fn, v) for v in tree)
    return fn(tree)


def leaves(tree: Any) -> Iterator[Any]:
    """The leaves in a fixed order (dicts by insertion order)."""
    if isinstance(tree, dict):
        for v in tree.values():
            yield from leaves(v)
    elif isinstance(tree, tuple | list):
        for v in tree:
            yield from leaves(v)
    else:
        yield tree


def structure(tree: Any) -> Any:
    """The containers and leaf shapes, for comparing two trees: ``{'W': (3,), 'b': ()}``."""
    return tree_map(lambda leaf: np.shape(leaf), tree)


def flatten(tree: Any) -> np.ndarray:
    """All leaves raveled into one float64 vector."""
    parts = [np.ravel(np.asarray(leaf, dtype=np.float64)) for leaf in leaves(tree)]
    return np.concatenate(parts) if parts else np.zeros(0)


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
