"""TensorFlow backend: ``tf.GradientTape`` and ``tf.autodiff.ForwardAccumulator``, nested;
``tf.function(jit_compile=True)`` (XLA) for ``jit``; problems run on ``tf.experimental.numpy``.

Two process-wide settings come with the first use, both TensorFlow's own:

- NumPy behavior (``experimental_enable_numpy_behavior``): without it ``matrix @ vector``
  (the logistic loss's ``inputs @ W``) raises, since ``tf.Tensor.__matmul__`` wants rank 2.
  It also gives ``tf.Tensor`` NumPy's promotion rules; float32 stays float32 (tested).
- Quiet loading: ``TF_CPP_MIN_LOG_LEVEL=2`` while TensorFlow imports, unless the user set
  it, then restored (JAX reads the same variable). The native INFO lines TensorFlow prints
  before its logging is set up (the oneDNN notice) ignore the variable; they are dropped
  from the import's stderr whenever the level hides INFO, and every other line is kept.

Placement: TensorFlow runs an eager op on the first GPU whatever its inputs' device, so
the functions this backend returns run under ``tf.device`` of their first input.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import harness
from harness.pytree import leaves, select, substitute, tree_map
from harness.strategies import nest

MAX_FORWARD_NESTING = 3
"""Nested ``ForwardAccumulator`` levels offered (``forward`` order n nests n, ``forward-over-reverse``
n - 1); deeper is ``unsupported``: see ``tensorflow.expected`` for the measured cost and errors."""
LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "2"  # hides INFO and WARNING, keeps ERROR
_EARLY_INFO = re.compile(r"^(I\d{4} |WARNING: All log messages before absl::InitializeLog\(\))")
"""absl's INFO lines (``I0000 ...``) and its preamble, printed before TensorFlow sets up logging."""


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """Import TensorFlow at the user's log level, or `QUIET_LEVEL`; see the module docstring."""
    previous = os.environ.get(LOG_LEVEL_ENV)
    os.environ.setdefault(LOG_LEVEL_ENV, QUIET_LEVEL)
    hide_info = os.environ[LOG_LEVEL_ENV].strip() not in ("", "0")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                captured.seek(0)
                lines = captured.read().decode(errors="replace").splitlines(keepends=True)
                sys.stderr.write("".join(x for x in lines if not (hide_info and _EARLY_INFO.match(x))))
                sys.stderr.flush()
    finally:
        os.close(saved)
        if previous is None:
            os.environ.pop(LOG_LEVEL_ENV, None)


class TensorFlowBackend:
    name = "tensorflow"
    requires = (("tensorflow", "tensorflow-cpu"),)  # either distribution provides it
    install_hint = "pip install 'gradient-harness[tensorflow]' (GPU: pip install 'tensorflow[and-cuda]')"
    strategies = ("reverse", "forward", "forward-over-reverse")
    modes = ("eager", "jit")
    dtypes = ("float32", "float64")
    expected = str(Path(__file__).with_suffix(".expected"))

    @functools.cached_property
    def tf(self):
        with _quiet_import():
            import tensorflow as tf

        tf.experimental.numpy.experimental_enable_numpy_behavior()
        # float32 means float32 on a GPU too: TensorFlow's default TensorFloat-32 products
        # (10-bit mantissas) would fail float32's tolerance, as JAX's default did (backends/jax.py)
        tf.config.experimental.enable_tensor_float_32_execution(False)
        return tf

    @functools.cached_property
    def _gpus(self) -> int:
        return len(self.tf.config.list_physical_devices("GPU"))

    def devices(self) -> list[str]:
        return ["cpu"] + [f"cuda:{i}" for i in range(self._gpus)]

    def no_gpu_reason(self) -> str:
        tf = self.tf
        if not tf.test.is_built_with_cuda():
            return (
                f"this TensorFlow {tf.__version__} is a CPU-only build: pip uninstall tensorflow-cpu, "
                "then pip install 'tensorflow[and-cuda]'"
            )
        return (
            f"TensorFlow {tf.__version__} is built with CUDA but finds no GPU: a driver too old "
            "for its CUDA, missing CUDA libraries, or CUDA_VISIBLE_DEVICES hides it"
        )

    def _device(self, device: str) -> str:
        """``"cpu"``, ``"cuda:N"`` as TensorFlow's ``"/CPU:0"``, ``"/GPU:N"``."""
        if device == "cpu":
            return "/CPU:0"
        kind, _, index = device.partition(":")
        if kind == "cuda" and index.isdigit() and int(index) < self._gpus:
            return f"/GPU:{index}"
        # TensorFlow would quietly run on the CPU instead (soft placement): refuse.
        raise ValueError(f"TensorFlow has no device {device!r} here (it sees {', '.join(self.devices())})")

    def _on_device_of(self, tree: Any) -> contextlib.AbstractContextManager:
        """``tf.device`` of the first leaf of ``tree`` that has one (none while tracing)."""
        device = next((leaf.device for leaf in leaves(tree) if getattr(leaf, "device", "")), "")
        return self.tf.device(device) if device else contextlib.nullcontext()

    def namespace(self) -> Any:
        return self.tf.experimental.numpy

    def asarray(self, x: Any, dtype: str, device: str) -> Any:
        with self.tf.device(self._device(device)):
            # identity copies the constant onto the scope's device.
            return self.tf.identity(self.tf.constant(np.asarray(x, dtype=dtype)))

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.numpy() if hasattr(x, "numpy") else np.asarray(x)

    def _fresh(self, tree: Any) -> Any:
        """Copies of the leaves (``tf.identity``, differentiable): a tape or accumulator tracks
        tensors by identity, so the same tensor passed elsewhere too must not share its watch."""
        return tree_map(self.tf.identity, tree)

    def value_and_grad(self, f: Callable, argnums: int | tuple[int, ...]) -> Callable:
        tf = self.tf

        def value_and_grad(*args):
            with self._on_device_of(args):
                chosen = self._fresh(select(args, argnums))
                # Not persistent: one gradient per tape. An enclosing tape (or accumulator)
                # records both this forward pass and the gradient computation, so the
                # result is differentiable again.
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(chosen)
                    value = f(*substitute(args, argnums, chosen))
                grads = tape.gradient(value, chosen, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return value, grads

        return value_and_grad

    def jvp(self, f: Callable, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
        tf = self.tf
        with self._on_device_of(primals):
            primals = self._fresh(tuple(primals))
            with tf.autodiff.ForwardAccumulator(primals, tuple(tangents)) as accumulator:
                out = f(*primals)
            tangent_out = tree_map(
                lambda y: accumulator.jvp(y, unconnected_gradients=tf.UnconnectedGradients.ZERO), out
            )
        return out, tangent_out

    def derivative(self, f: Callable, order: int, strategy: str) -> Callable:
        levels = {"forward": order, "forward-over-reverse": order - 1}.get(strategy, 0)
        if levels > MAX_FORWARD_NESTING:
            raise NotImplementedError(
                f"{strategy} order {order} nests {levels} tf.autodiff.ForwardAccumulator levels; "
                f"this backend offers at most {MAX_FORWARD_NESTING}: each level retraces every op's "
                "JVP function, so the first call costs about 7x the level below, and TensorFlow "
                "raises inside its own tracing at 4 (see backends/tensorflow.expected)"
            )
        return nest(self, f, order, strategy)

    def compile(self, fn: Callable, mode: str) -> Callable:
        compiled = self.tf.function(fn, jit_compile=True)

        def run(*args):
            with self._on_device_of(args):
                return compiled(*args)

        return run

    def block_until_ready(self, x: Any) -> Any:
        if self._gpus:  # eager CPU ops are synchronous; GPU ops are queued on streams
            self.tf.test.experimental.sync_devices()
        return x


@harness.hookimpl
def harness_register_backends(register):
    register(TensorFlowBackend())
