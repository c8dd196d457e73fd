"""gradient-harness: are an AD framework's derivatives right, and how fast are they?

Importing this package imports no array framework: backends are plugins that
import JAX, autograd or PyTorch only when they are first used.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("harness")
"""Decorator for a plugin's hook implementations: ``@harness.hookimpl``."""

__all__ = ["__version__", "hookimpl"]
