"""JAX backend: ``jax.grad``/``jax.jvp`` nesting, Taylor mode via ``jax.experimental.jet``, ``jax.jit``."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np

import harness
from harness.strategies import nest


class JaxBackend:
    name = "jax"
    requires = ("jax", "jaxlib")
    install_hint = "pip install 'gradient-harness[jax]'"
    strategies = ("reverse", "forward", "forward-over-reverse", "taylor")
    modes = ("eager", "jit")
    dtypes = ("float32", "float64")

    @functools.cached_property
    def jax(self):
        import jax

        # float64 must be switched on before the first array is made; float32
        # arrays stay float32 when it is on.
        jax.config.update("jax_enable_x64", True)
        # float32 means float32: JAX's default lets a GPU compute float32 products in
        # TensorFloat-32 (10-bit mantissas), which fails float32's tolerance (the gpu profile's
        # logistic gradients on an H200) where torch's default does not. A user's own
        # JAX_DEFAULT_MATMUL_PRECISION is kept.
        if not os.environ.get("JAX_DEFAULT_MATMUL_PRECISION"):
            jax.config.update("jax_default_matmul_precision", "highest")
        return jax

    def devices(self) -> list[str]:
        try:
            gpus = self.jax.devices("gpu")
        except RuntimeError:  # no GPU platform in this jaxlib
            gpus = []
        return ["cpu"] + [f"cuda:{d.id}" for d in gpus]

    def no_gpu_reason(self) -> str:
        import importlib.metadata

        plugins = []
        for dist in ("jax-cuda12-plugin", "jax-cuda13-plugin"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                plugins.append(f"{dist} {importlib.metadata.version(dist)}")
        if not plugins:
            return (
                f"jaxlib {self.jax.__version__} has no CUDA plugin: "
                "pip install 'gradient-harness[cuda]' (or 'jax[cuda12]' / 'jax[cuda13]')"
            )
        try:
            self.jax.devices("gpu")
        except RuntimeError as exc:
            return f"{', '.join(plugins)} installed, but JAX finds no GPU: {exc}"
        return f"{', '.join(plugins)} installed; JAX_PLATFORMS or CUDA_VISIBLE_DEVICES hides the GPU"

    def _device(self, device: str) -> Any:
        if device == "cpu":
            return self.jax.devices("cpu")[0]
        kind, _, index = device.partition(":")
        return self.jax.devices("gpu")[int(index or 0)]

    def namespace(self) -> Any:
        return self.jax.numpy

    def asarray(self, x: Any, dtype: str, device: str) -> Any:
        # Straight from numpy: jnp.asarray first would make a second copy on the default device.
        return self.jax.device_put(np.asarray(x, dtype=dtype), self._device(device))

    def to_numpy(self, x: Any) -> np.ndarray:
        import numpy as np

        return np.asarray(x)

    def value_and_grad(self, f: Callable, argnums: int | tuple[int, ...]) -> Callable:
        return self.jax.value_and_grad(f, argnums=argnums)

    def jvp(self, f: Callable, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
        try:
            return self.jax.jvp(f, primals, tangents)
        except TypeError as exc:  # a custom_vjp function has no forward mode: a gap, not a fault
            if "custom_vjp" in str(exc):
                raise NotImplementedError(f"jax.jvp: {exc}") from exc
            raise

    def derivative(self, f: Callable, order: int, strategy: str) -> Callable:
        if strategy == "taylor":
            return self._taylor(f, order)
        return nest(self, f, order, strategy)

    def _taylor(self, f: Callable, order: int) -> Callable:
        from jax.experimental import jet

        jnp = self.jax.numpy

        def nth(x):
            # Input path x(t) = x + t: first coefficient 1, the others 0. jet's
            # coefficients are derivatives (not divided by k!), so term order-1
            # of the output series is the order-th derivative.
            series = [jnp.ones_like(x)] + [jnp.zeros_like(x)] * (order - 1)
            _, out = jet.jet(f, (x,), (series,))
            return out[order - 1]

        return nth

    def compile(self, fn: Callable, mode: str) -> Callable:
        return self.jax.jit(fn)

    def block_until_ready(self, x: Any) -> Any:
        return self.jax.block_until_ready(x)

    def peak_memory(self, call: Callable[[], Any], device: str) -> int | None:
        """XLA's allocator cannot reset its peak: the call's rise above the bytes in use before
        it is known only when it passes the peak so far; else ``None``."""
        if not device.startswith("cuda"):
            raise NotImplementedError(f"no device allocator on {device}")
        index = int(device.split(":")[1]) if ":" in device else 0
        found = next((d for d in self.jax.devices("gpu") if d.id == index), None)
        stats = found.memory_stats() if found is not None else None
        if not stats or "peak_bytes_in_use" not in stats:
            return None
        result = call()
        after = found.memory_stats()
        del result
        if after["peak_bytes_in_use"] <= stats["peak_bytes_in_use"]:
            return None
        return after["peak_bytes_in_use"] - stats["bytes_in_use"]


@harness.hookimpl
def harness_register_backends(register):
    register(JaxBackend())
