"""PyTorch backend: ``torch.func`` transforms, evaluated through ``array_api_compat.torch``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

import harness


class TorchBackend:
    name = "torch"
    requires = ("torch", "array-api-compat")
    install_hint = "pip install 'gradient-harness[torch]'"
    strategies = ("reverse", "forward", "forward-over-reverse")
    modes = ("eager",)
    dtypes = ("float32", "float64")

    @functools.cached_property
    def torch(self):
        import torch
        import torch.func

        return torch

    def devices(self) -> list[str]:
        cuda = self.torch.cuda
        return ["cpu"] + [f"cuda:{i}" for i in range(cuda.device_count() if cuda.is_available() else 0)]

    def no_gpu_reason(self) -> str:
        torch = self.torch
        if torch.version.cuda is None:
            return (
                f"torch {torch.__version__} is a CPU-only build: pip uninstall torch, then "
                "pip install 'gradient-harness[cuda]' (or torch from https://download.pytorch.org/whl/cu128)"
            )
        return (
            f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but finds no usable GPU: "
            "a driver older than that CUDA, or CUDA_VISIBLE_DEVICES hides it (see nvidia-smi)"
        )

    def namespace(self) -> Any:
        import array_api_compat.torch

        return array_api_compat.torch

    def asarray(self, x: Any, dtype: str, device: str) -> Any:
        return self.torch.as_tensor(x, dtype=getattr(self.torch, dtype), device=device)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    def value_and_grad(self, f: Callable, argnums: int | tuple[int, ...]) -> Callable:
        grad_and_value = self.torch.func.grad_and_value(f, argnums=argnums)

        def value_and_grad(*args):
            grads, value = grad_and_value(*args)
            return value, grads

        return value_and_grad

    def jvp(self, f: Callable, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
        return self.torch.func.jvp(f, primals, tangents)

    def event_times(self, launch: Callable[[], Any], device: str, rounds: int) -> list[float]:
        if not device.startswith("cuda"):
            raise NotImplementedError(f"no event clock on {device}")
        cuda = self.torch.cuda
        times = []
        with cuda.device(device):
            for _ in range(rounds):
                start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
                start.record()
                launch()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
        return times

    def block_until_ready(self, x: Any) -> Any:
        if self.torch.cuda.is_available():
            self.torch.cuda.synchronize()
        return x


@harness.hookimpl
def harness_register_backends(register):
    register(TorchBackend())
