"""gradient-harness: are an AD framework's derivatives right, and how fast are they?

Importing this package imports no array framework: backends are plugins that
import JAX, autograd or PyTorch only when they are first used.
"""

import importlib
import importlib.metadata

import pluggy

try:
    __version__ = importlib.metadata.version("gradient-harness")  # one source: pyproject.toml
except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"

hookimpl = pluggy.HookimplMarker("harness")
"""Decorator for a plugin's hook implementations: ``@harness.hookimpl``."""

API = ("check", "check_xp", "assert_gradients", "CheckReport")
"""Check your own function (`harness.api`): loaded on first use, so that ``import harness`` stays
light and `harness.problems`, which imports ``harness`` for `hookimpl`, closes no circle."""


def __getattr__(name: str):
    if name in API:
        return getattr(importlib.import_module("harness.api"), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


__all__ = ["__version__", "hookimpl", *API]
