"""autograd backend (HIPS/autograd): ``value_and_grad`` over tuples, forward mode via ``make_jvp``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import harness
from harness.pytree import select, substitute


class AutogradBackend:
    name = "autograd"
    requires = ("autograd",)
    install_hint = "pip install 'gradient-harness[autograd]'"
    strategies = ("reverse", "forward", "forward-over-reverse")
    modes = ("eager",)
    dtypes = ("float32", "float64")
    expected = str(Path(__file__).with_suffix(".expected"))

    @functools.cached_property
    def autograd(self):
        import autograd
        import autograd.numpy

        return autograd

    def devices(self) -> list[str]:
        return ["cpu"]  # autograd runs on numpy: host memory only

    def no_gpu_reason(self) -> str:
        return "autograd computes with numpy, on the CPU only (by design; nothing to install)"

    def namespace(self) -> Any:
        return self.autograd.numpy

    def asarray(self, x: Any, dtype: str, device: str) -> Any:
        if device != "cpu":
            raise ValueError(f"autograd runs on the CPU only, not on {device!r}")
        return self.autograd.numpy.asarray(x, dtype=dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        # Nested forward mode returns object arrays of numpy scalars.
        return x.astype(np.result_type(*x.flat)) if x.dtype == object else x

    def value_and_grad(self, f: Callable, argnums: int | tuple[int, ...]) -> Callable:
        value_and_grad = self.autograd.value_and_grad
        if isinstance(argnums, int):
            return value_and_grad(f, argnums)

        # autograd differentiates one argument: make the chosen ones a single
        # tuple argument (autograd differentiates through tuples, lists, dicts).
        def of_chosen(chosen, *args):
            return f(*substitute(args, argnums, chosen))

        return lambda *args: value_and_grad(of_chosen)(select(args, argnums), *args)

    def jvp(self, f: Callable, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
        from autograd.differential_operators import make_jvp

        # make_jvp differentiates one argument: pack the primals into one tuple.
        return make_jvp(lambda packed: f(*packed))(tuple(primals))(tuple(tangents))

    def block_until_ready(self, x: Any) -> Any:
        return x  # numpy is synchronous


@harness.hookimpl
def harness_register_backends(register):
    register(AutogradBackend())
