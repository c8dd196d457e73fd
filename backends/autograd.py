"""autograd backend (HIPS/autograd): nested ``elementwise_grad``, forward mode via ``make_jvp``."""

from __future__ import annotations

import functools
from pathlib import Path

import harness
from harness.strategies import nest


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

    def namespace(self):
        return self.autograd.numpy

    def asarray(self, x, dtype, device):
        if device != "cpu":
            raise ValueError(f"autograd runs on the CPU only, not on {device!r}")
        return self.autograd.numpy.asarray(x, dtype=dtype)

    def to_numpy(self, x):
        import numpy as np

        x = np.asarray(x)
        # Nested forward mode returns object arrays of numpy scalars.
        return x.astype(np.result_type(*x.flat)) if x.dtype == object else x

    def value_and_grad(self, f, argnums):
        value_and_grad = self.autograd.value_and_grad
        if isinstance(argnums, int):
            return value_and_grad(f, argnums)

        # autograd differentiates one argument: make the chosen ones a single
        # tuple argument (autograd differentiates through tuples, lists, dicts).
        def of_selected(selected, *args):
            full = list(args)
            for i, value in zip(argnums, selected, strict=True):
                full[i] = value
            return f(*full)

        return lambda *args: value_and_grad(of_selected)(tuple(args[i] for i in argnums), *args)

    def derivative(self, f, order, strategy):
        from autograd import elementwise_grad
        from autograd.differential_operators import make_jvp

        def forward(g):
            return lambda x: make_jvp(g)(x)(self.autograd.numpy.ones_like(x))[1]

        return nest(f, order, strategy, reverse=elementwise_grad, forward=forward)

    def compile(self, fn, mode):
        raise NotImplementedError("autograd has no compiled mode")

    def block_until_ready(self, x):
        return x  # numpy is synchronous


@harness.hookimpl
def harness_register_backends(register):
    register(AutogradBackend())
