"""Fake backends shared by the tests: a delegating wrapper and a do-nothing numpy backend.

Test modules import them as ``from fakes import Wrapper, DoNothing`` (pytest puts
``tests/`` on ``sys.path``: it holds the rootdir ``conftest.py`` and no
``__init__.py``) and subclass them to plant faults. ``plugin_of`` registers them
the way a third-party plugin would.

``tests/execution/test_faults.py`` keeps its own copies on purpose: its plugin sources are
written into a fake third-party distribution and must stay self-contained.
"""

from __future__ import annotations

import numpy as np

import harness
from harness.pytree import tree_map
from harness.strategies import derivative


class Wrapper:
    """A renamed backend that delegates every attribute and method of the spec to ``inner``.

    ``name`` defaults to ``renamed-<inner's name>``; ``requires`` and ``install_hint``
    default to ``inner``'s. The optional ``jvp`` is delegated too (all built-ins
    have it). Subclasses override one method to plant a fault.
    """

    def __init__(self, inner, name: str | None = None, requires=None, install_hint=None):
        self.inner = inner
        self.name = name or f"renamed-{inner.name}"
        self.requires = tuple(inner.requires if requires is None else requires)
        self.install_hint = inner.install_hint if install_hint is None else install_hint
        self.strategies = tuple(inner.strategies)
        self.modes = tuple(inner.modes)
        self.dtypes = tuple(inner.dtypes)

    def devices(self):
        return self.inner.devices()

    def namespace(self):
        return self.inner.namespace()

    def asarray(self, x, dtype, device):
        return self.inner.asarray(x, dtype, device)

    def to_numpy(self, x):
        return self.inner.to_numpy(x)

    def value_and_grad(self, f, argnums):
        return self.inner.value_and_grad(f, argnums)

    def jvp(self, f, primals, tangents):  # optional in the spec; all built-ins have it
        return self.inner.jvp(f, primals, tangents)

    def derivative(self, f, order, strategy):
        return derivative(self.inner, f, order, strategy)

    def compile(self, fn, mode):
        return self.inner.compile(fn, mode)

    def block_until_ready(self, x):
        return self.inner.block_until_ready(x)

    def no_gpu_reason(self):
        return self.inner.no_gpu_reason()

    def event_times(self, launch, device, rounds):
        return self.inner.event_times(launch, device, rounds)

    def peak_memory(self, call, device):
        return self.inner.peak_memory(call, device)


class Raising(Wrapper):
    """A renamed backend whose ``derivative`` raises ``RuntimeError(message)``."""

    def __init__(self, inner, name: str | None = None, message: str = "planted failure in derivative"):
        super().__init__(inner, name)
        self.message = message

    def derivative(self, f, order, strategy):
        raise RuntimeError(self.message)


class Scaled(Wrapper):
    """Every derivative of one primitive (``jvp`` or ``value_and_grad``) off by a relative ``error``."""

    def __init__(self, inner, primitive: str, error: float = 1e-8):
        super().__init__(inner, name=f"scaled-{primitive}")
        self.primitive, self.error = primitive, error

    def jvp(self, f, primals, tangents):
        value, tangent = self.inner.jvp(f, primals, tangents)
        if self.primitive == "jvp":
            tangent = tree_map(lambda t: t * (1 + self.error), tangent)
        return value, tangent

    def value_and_grad(self, f, argnums):
        vg = self.inner.value_and_grad(f, argnums)
        if self.primitive != "value_and_grad":
            return vg

        def scaled(*args):
            value, grads = vg(*args)
            return value, tree_map(lambda g: g * (1 + self.error), grads)

        return scaled


class DoNothing:
    """Meets `harness.hookspecs.Backend` with numpy and computes nothing.

    Its derivative is the identity (so it is wrong, and validation must say so);
    ``value_and_grad`` hands back the chosen arguments as the "gradient"; ``compile``
    and ``block_until_ready`` return their argument. It needs no framework.
    """

    name = "do-nothing"
    requires = ()
    install_hint = "nothing to install"
    strategies = ("reverse",)
    modes = ("eager",)
    dtypes = ("float32", "float64")

    def devices(self):
        return ["cpu"]

    def namespace(self):
        return np

    def asarray(self, x, dtype, device):
        return np.asarray(x, dtype=dtype)

    def to_numpy(self, x):
        return np.asarray(x)

    def value_and_grad(self, f, argnums):
        picked = (
            (lambda args: args[argnums])
            if isinstance(argnums, int)
            else (lambda args: tuple(args[i] for i in argnums))
        )
        return lambda *args: (f(*args), picked(args))

    def derivative(self, f, order, strategy):
        return lambda x: x

    def compile(self, fn, mode):
        return fn

    def block_until_ready(self, x):
        return x


def plugin_of(*backends):
    """A plugin object (a class instance) whose hook registers ``backends``."""

    class Plugin:
        @harness.hookimpl
        def harness_register_backends(self, register):
            for backend in backends:
                register(backend)

    return Plugin()
