"""The gradient-backend spec, whole: the hooks a plugin implements, the backend it registers,
and the names it may use. Nothing else needs reading to write a backend.

A plugin is a module (or object) with functions decorated by ``@harness.hookimpl``
and an entry point in the ``harness`` group of its package::

    [project.entry-points.harness]
    mybackend = "mypackage.harness_plugin"

The built-in ``jax``, ``autograd``, ``torch`` and ``tensorflow`` backends (the folder
``backends/``, installed as ``harness_backends``) load through this same group.
A complete backend, JAX with only what the spec requires plus the optional ``jvp``
(``tests/test_hookspecs.py`` runs this very text and validates it on every default problem)::

    import numpy as np

    import harness


    class MiniJax:
        name = "mini-jax"
        requires = ("jax",)
        install_hint = "pip install jax"
        strategies = ("reverse", "forward", "forward-over-reverse")
        modes = ("eager",)
        dtypes = ("float32", "float64")

        def devices(self):
            return ["cpu"]

        def namespace(self):
            import jax

            jax.config.update("jax_enable_x64", True)  # else float64 silently becomes float32
            return jax.numpy

        def asarray(self, x, dtype, device):
            return self.namespace().asarray(np.asarray(x, dtype=dtype))

        def to_numpy(self, x):
            return np.asarray(x)

        def value_and_grad(self, f, argnums):
            import jax

            return jax.value_and_grad(f, argnums)

        def jvp(self, f, primals, tangents):
            import jax

            return jax.jvp(f, primals, tangents)

        def block_until_ready(self, x):
            import jax

            return jax.block_until_ready(x)


    @harness.hookimpl
    def harness_register_backends(register):
        register(MiniJax())

The host checks every registered backend against `Backend` and reports a plugin
that breaks the spec, fails to import or raises by name; the other backends go on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import pluggy

hookspec = pluggy.HookspecMarker("harness")

__all__ = [
    "DTYPES",
    "MODES",
    "NAMESPACE",
    "STRATEGIES",
    "Backend",
    "harness_register_backends",
    "harness_register_problems",
]

MODES = ("eager", "jit")
"""Execution modes: ``eager`` (required of every backend) and ``jit`` (compiled, `Backend.compile`)."""
DTYPES = ("float32", "float64")
"""The dtypes a backend may declare (`Backend.dtypes`); oracles always compute in float64 or higher."""
STRATEGIES: dict[str, str] = {
    "reverse": "nested reverse mode: grad of grad of ... (n reverse passes)",
    "forward": "nested forward mode: jvp of jvp of ... with unit tangents",
    "forward-over-reverse": "one reverse-mode derivative, then forward mode for the other n-1",
    "taylor": "Taylor mode: all n orders in one forward pass (jax.experimental.jet)",
}
"""Strategies for n-th derivatives. ``reverse`` and ``forward-over-reverse`` also name the
Hessian-vector products (grad of <grad f, v>; jvp of grad f along v)."""
NAMESPACE = ("tanh", "exp", "log", "log1p", "sin", "cos", "sum", "max", "min", "ones_like")
"""What `Backend.namespace` must offer: the functions problems use and the host composes with."""
REQUIRED_METHODS = ("devices", "namespace", "asarray", "to_numpy", "value_and_grad", "block_until_ready")
OPTIONAL_METHODS = ("jvp", "derivative", "compile", "no_gpu_reason", "event_times", "peak_memory")


@runtime_checkable
class Backend(Protocol):
    """What a gradient backend offers. Data comes in as numpy (`asarray`) and goes out as numpy
    (`to_numpy`); in between, everything is the framework's own arrays.

    A *pytree* here is an array or a tuple, list or dict of pytrees. Problem
    functions are written once as ``fn(xp, *args)`` against an array namespace
    ``xp``; a backend runs them through its own namespace (``namespace()``).

    Attributes (read without importing the framework):

    - ``name``: unique backend name, e.g. ``"jax"``.
    - ``requires``: distributions that must be installed, e.g. ``("jax",)``; an
      entry may be a tuple of alternatives, any one of which will do, e.g.
      ``(("tensorflow", "tensorflow-cpu"),)``. The first one's version is reported
      as the backend's version. If one is missing the backend is *unavailable*
      (listed with ``install_hint``), never a crash.
    - ``install_hint``: the command that makes the backend available.
    - ``strategies``: the n-th-derivative strategies offered, keys of `STRATEGIES`.
    - ``modes``: execution modes, from `MODES`; ``"eager"`` is required.
    - ``dtypes``: from `DTYPES`.

    Required methods: `devices`, `namespace`, `asarray`, `to_numpy`,
    `value_and_grad`, `block_until_ready`. Optional:

    - `jvp`: forward mode. With it the host builds the ``forward`` and
      ``forward-over-reverse`` strategies, forward-over-reverse Hessian-vector
      products and Hessian diagonals (`harness.strategies.hessian_diagonal`) and
      forward-mode Jacobians (`harness.strategies.jacobian`); without it they
      are reported ``unsupported``.
    - `derivative`: only for strategies the host cannot compose (Taylor mode);
      without it the host nests `value_and_grad` and `jvp`
      (`harness.strategies.nest`).
    - `compile`: required when ``modes`` has anything besides ``"eager"``.
    - `no_gpu_reason`: why `devices` finds no GPU on a machine that has one,
      and what to install (``python -m harness list`` shows it).
    - `event_times`: the device's own clock (CUDA events), for the benchmark
      suite's check of its host-clock timings.
    - `peak_memory`: the device allocator's peak during one call, for the
      benchmarks' memory column on a GPU (on the CPU the host reads the
      resident set's high-water mark itself).
    - ``expected``: the path of a text file listing the combinations the backend
      is known to fail or not support (format: `harness.expected`).

    **Nesting.** The host differentiates what `value_and_grad` and `jvp` return,
    again and again (the n-th derivative is n nested calls; a Hessian-vector
    product is a gradient of a gradient). So both must return functions that the
    same backend can differentiate again, from inside another `value_and_grad`
    or `jvp`. Functional frameworks (JAX, autograd, ``torch.func``) do this by
    construction. A tape-based framework must record the backward pass on the
    tape as well: ``torch.autograd.grad(..., create_graph=True)``, or a
    ``tf.GradientTape`` whose ``gradient`` is taken while the outer tape still
    records (``backends/tensorflow.py``), and must not detach the inputs it
    receives (they may be the outer level's traced values).
    """

    name: str
    requires: tuple[str | tuple[str, ...], ...]
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

        It must offer the functions in `NAMESPACE` and arrays that support
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
        tuple of them for a sequence, as ``jax.value_and_grad`` does. It must be
        differentiable again by this backend (see *Nesting* above).
        """

    def block_until_ready(self, x: Any) -> Any:
        """Wait until the asynchronous computation producing pytree ``x`` is done; return ``x``."""


class OptionalMethods(Protocol):
    """The optional methods of a `Backend`, with their contracts."""

    def jvp(self, f: Callable, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
        """``(f(*primals), tangent_out)``: forward mode over pytrees, as ``jax.jvp``.

        Differentiable again by this backend, like `Backend.value_and_grad`.
        """

    def derivative(self, f: Callable, order: int, strategy: str) -> Callable:
        """The ``order``-th derivative (order >= 1) of an elementwise function ``f``.

        ``f`` maps an array of points to an array of values elementwise; the
        result maps an array of points to the n-th derivative at each point.
        Return ``harness.strategies.nest(self, f, order, strategy)`` for the
        strategies the host composes, and handle only framework-specific ones
        (Taylor mode) yourself. Raise ``NotImplementedError`` for a strategy the
        backend does not offer: it is reported as ``unsupported``, not an error.
        """

    def compile(self, fn: Callable, mode: str) -> Callable:
        """``fn`` compiled for ``mode``, one of ``modes`` other than ``"eager"`` (``jax.jit(fn)``).

        Never called for ``"eager"``. Data reaches compiled functions as
        arguments, never as baked-in constants. A derivative composed by
        `harness.strategies.nest` carries ``fn.nesting`` = (levels, how many of them
        ``jvp``), for a compiler known to fail on some nests (torch's). The function may
        raise ``NotImplementedError`` when called, for what the compiler cannot take:
        reported as ``unsupported``, with the message as the reason.
        """

    def no_gpu_reason(self) -> str:
        """Why this backend sees no GPU, and the fix: e.g. ``"jaxlib has no CUDA plugin: pip
        install 'gradient-harness[cuda]'"``.

        Called (in the child process that detects devices) only when the machine
        has a GPU and `Backend.devices` lists none. May import the framework.
        """

    def event_times(self, launch: Callable[[], Any], device: str, rounds: int) -> list[float]:
        """Seconds of each of ``rounds`` calls of ``launch`` on ``device``, by the device's clock.

        ``launch()`` starts the work and returns without waiting for it. Time it
        between two events recorded on the stream the work runs on (CUDA events),
        waiting only for the second. Raise ``NotImplementedError`` for a device
        without such a clock. The benchmark suite records the median beside its
        own timing of the same call, whose ratio to it should be near 1.
        """

    def peak_memory(self, call: Callable[[], Any], device: str) -> int | None:
        """Bytes the device allocator's use rose to during one ``call()`` above where it stood
        before (the inputs are on the device already; the result counts), e.g. with
        ``torch.cuda.reset_peak_memory_stats`` and ``max_memory_allocated``. ``None`` where the
        allocator cannot tell (its peak cannot be reset and the call did not pass it); raise
        ``NotImplementedError`` for a device without an allocator to ask (the CPU).
        """


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
        function whose n-th derivatives are checked), a
        `harness.problems.GradientProblem` (a scalar loss whose gradient w.r.t.
        chosen arguments is checked, with its Hessian-vector products and its
        Hessian's diagonal where it gives them in closed form) or a `harness.problems.JacobianProblem` (a
        function returning a 1-D array, whose full Jacobian w.r.t. chosen
        arguments is checked) or a `harness.problems.NestedProblem` (a nested
        optimization given derivative operators, checked in each mode pair).
        Problems are written once against an array namespace and run on every
        backend.
    """
