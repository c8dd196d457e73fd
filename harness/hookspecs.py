"""The gradient-backend spec: the hooks a plugin implements and the backend object it registers.

A plugin is a module (or object) with functions decorated by ``@harness.hookimpl``
and an entry point in the ``harness`` group of its package::

    [project.entry-points.harness]
    mybackend = "mypackage.harness_plugin"

The built-in ``jax``, ``autograd`` and ``torch`` backends (``backends/``) load
through this same group. A minimal plugin::

    import harness
    from harness.strategies import nest

    class MyBackend:
        name = "mine"
        requires = ("myframework",)
        install_hint = "pip install myframework"
        strategies = ("reverse",)
        modes = ("eager",)
        dtypes = ("float32", "float64")
        ...  # the methods of `Backend` below

    @harness.hookimpl
    def harness_register_backends(register):
        register(MyBackend())

The host checks every registered backend against `Backend` and reports a plugin
that breaks the spec, fails to import or raises by name; the other backends go on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import pluggy

hookspec = pluggy.HookspecMarker("harness")

__all__ = [
    "Backend",
    "harness_register_backends",
    "harness_register_problems",
]


@runtime_checkable
class Backend(Protocol):
    """What a gradient backend offers. Data comes in as numpy (`asarray`) and goes out as numpy
    (`to_numpy`); in between, everything is the framework's own arrays.

    A *pytree* here is an array or a tuple, list or dict of pytrees. Problem
    functions are written once as ``fn(xp, *args)`` against an array namespace
    ``xp``; a backend runs them through its own namespace (``namespace()``).

    Attributes (read without importing the framework):

    - ``name``: unique backend name, e.g. ``"jax"``.
    - ``requires``: distributions that must be installed, e.g. ``("jax",)``. The
      first one's version is reported as the backend's version. If one is missing
      the backend is *unavailable* (listed with ``install_hint``), never a crash.
    - ``install_hint``: the command that makes the backend available.
    - ``strategies``: the n-th-derivative strategies offered, names from
      `harness.strategies.STRATEGIES` (``"reverse"``, ``"forward"``,
      ``"forward-over-reverse"``, ``"taylor"``).
    - ``modes``: execution modes, from ``("eager", "jit")``; ``"eager"`` is required.
    - ``dtypes``: from ``("float32", "float64")``.

    Optional:

    - ``expected``: the path of a text file listing the combinations the backend
      is known to fail or not support (format: `harness.expected`).
    - ``jvp(f, primals, tangents) -> (f(*primals), tangent_out)``: forward mode
      over pytrees, as ``jax.jvp``. With it the host builds the ``forward`` and
      ``forward-over-reverse`` strategies (`harness.strategies.nest`) and
      forward-over-reverse Hessian-vector products (`harness.strategies.hvp`);
      without it they are reported ``unsupported``.
    """

    name: str
    requires: tuple[str, ...]
    install_hint: str
    strategies: tuple[str, ...]
    modes: tuple[str, ...]
    dtypes: tuple[str, ...]

    def devices(self) -> list[str]:
        """Devices present now, detected, never assumed: ``"cpu"``, ``"cuda:0"``, ...

        May import the framework. ``"cpu"`` first.
        """

    def namespace(self) -> Any:
        """The array namespace problems are evaluated with (``jax.numpy``, ...).

        It must offer ``tanh exp log log1p sin cos sum`` and arrays that support
        ``+ - * / ** @``.
        """

    def asarray(self, x: Any, dtype: str, device: str) -> Any:
        """A numpy array (or Python scalar) as this framework's array of ``dtype`` on ``device``."""

    def to_numpy(self, x: Any) -> Any:
        """A framework array as a numpy array (copied to the host, detached)."""

    def value_and_grad(self, f: Callable, argnums: int | tuple[int, ...]) -> Callable:
        """``f``'s value and gradient w.r.t. the arguments ``argnums``.

        ``f(*args)`` returns a scalar; each argument is a pytree. The returned
        callable takes the same ``*args`` and returns ``(value, grads)``, where
        ``grads`` is one pytree shaped like ``args[argnums]`` for an int and a
        tuple of them for a sequence, as ``jax.value_and_grad`` does.
        """

    def derivative(self, f: Callable, order: int, strategy: str) -> Callable:
        """The ``order``-th derivative (order >= 1) of an elementwise function ``f``.

        ``f`` maps an array of points to an array of values elementwise; the
        result maps an array of points to the n-th derivative at each point.
        ``return harness.strategies.nest(self, f, order, strategy)`` builds the
        nested strategies from ``value_and_grad`` and ``jvp``; handle only
        framework-specific strategies (Taylor mode) yourself. Raise
        ``NotImplementedError`` for a strategy the backend does not offer: it is
        reported as ``unsupported``, not as an error.
        """

    def compile(self, fn: Callable, mode: str) -> Callable:
        """``fn`` compiled for ``mode``, one of ``modes`` other than ``"eager"`` (``jax.jit(fn)``).

        Never called for ``"eager"``. Data reaches compiled functions as
        arguments, never as baked-in constants.
        """

    def block_until_ready(self, x: Any) -> Any:
        """Wait until the asynchronous computation producing pytree ``x`` is done; return ``x``."""


@hookspec
def harness_register_backends(register: Callable[[Backend], None]) -> None:
    """Register gradient backends by calling ``register(backend)`` once per backend.

    :param register: checks ``backend`` against `Backend` and adds it. A plugin
        may register several backends (e.g. an eager and a compiled variant).
    """


@hookspec
def harness_register_problems(register: Callable[[Any], None]) -> None:
    """Register problems by calling ``register(problem)``.

    :param register: adds a `harness.problems.ScalarProblem` (an elementwise
        function whose n-th derivatives are checked) or a
        `harness.problems.GradientProblem` (a scalar loss whose gradient w.r.t.
        chosen arguments is checked). Problems are written once against an
        array namespace and run on every backend.
    """
