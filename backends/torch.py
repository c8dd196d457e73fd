"""PyTorch backend: ``torch.func`` transforms, evaluated through ``array_api_compat.torch``;
``torch.compile`` (whole graphs, TorchInductor) as its ``jit`` mode; reverse mode outside any
transform on autograd's tape, as PyTorch code is written."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

import harness
from harness.pytree import leaves, select, substitute, tree_map


def compile_refusal(nesting: tuple[int, int]) -> str | None:
    """Why torch.compile is not attempted on a nest of (levels, of which ``jvp``), or ``None``.

    Measured 2026-11-26 with torch 2.13.0+cpu, on tanh, on the 2-core Xeon:

    - three or more nested ``torch.func`` transforms of which any is ``jvp`` kill the process
      (SIGSEGV): forward and forward-over-reverse order 3 crash, order 2 compiles and passes;
    - nested reverse mode compiles and passes to order 9, its compile time growing about 3x per
      order (order 8: 74 s, order 9: 275 s); order 10 ran g++ 12.2 for about 14 minutes until
      an internal compiler error (in gimple_duplicate_bb) on TorchInductor's generated C++.

    Refused nests are reported as unsupported, with this reason.
    """
    levels, jvps = nesting
    if levels >= 3 and jvps:
        return f"torch.compile of {levels} nested transforms with {jvps} jvp: SIGSEGV with torch 2.13"
    if levels >= 10:
        return (
            f"torch.compile of {levels} nested transforms: about 14 minutes of g++, then an internal "
            "compiler error on TorchInductor's C++ (order 10, torch 2.13, g++ 12.2)"
        )
    return None


class TorchBackend:
    name = "torch"
    requires = ("torch", "array-api-compat")
    install_hint = "pip install 'gradient-harness[torch]'"
    strategies = ("reverse", "forward", "forward-over-reverse")
    modes = ("eager", "jit")
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
        """Any tensor as numpy: a ZeroTensor (what autograd returns for a derivative known to be
        zero) as zeros, conjugate and negative bits resolved, complex32 as complex64 and bfloat16
        as float32 (numpy has neither), a sparse or other layout made dense."""
        torch = self.torch
        if not isinstance(x, torch.Tensor):
            return np.asarray(x)
        x = x.detach()
        dtype = {torch.complex32: torch.complex64, torch.bfloat16: torch.float32}.get(x.dtype, x.dtype)
        if x._is_zerotensor():
            return np.zeros(tuple(x.shape), torch.zeros((), dtype=dtype).numpy().dtype)
        if x.layout != torch.strided:
            x = x.to_dense()
        return x.resolve_conj().resolve_neg().to(dtype).cpu().numpy()

    def value_and_grad(self, f: Callable, argnums: int | tuple[int, ...]) -> Callable:
        """Reverse mode: on autograd's tape (``torch.autograd.grad``) where no ``torch.func``
        transform and no ``torch.compile`` trace is under way, else ``torch.func.grad_and_value``.

        The tape is how PyTorch code takes gradients (GradBench's PyTorch tool calls
        ``backward``); ``torch.func.grad`` wraps every tensor of the pass in a transform level,
        which cost its reverse pass 1.8x the tape's on GradBench's lstm (l, c = 4, 1024, torch
        2.13 on the 2-core AMD EPYC). Inside a transform (``jvp`` of a gradient, ``vmap`` over
        cotangents) autograd's tape cannot be used, and TorchDynamo captures ``torch.func``
        whole but not ``torch.autograd.grad``. A tape pass inside another (reverse over reverse)
        keeps its graph for the outer one. Both give the same numbers; `tests/backends/test_torch.py`
        holds them to each other."""
        grad_and_value = self.torch.func.grad_and_value(f, argnums=argnums)

        def value_and_grad(*args):
            if self._tape_usable():
                return self._on_tape(f, argnums, args)
            with self._coverage("torch.func.grad"):
                grads, value = grad_and_value(*args)
            return value, grads

        return value_and_grad

    _tape = threading.local()

    def _tape_usable(self) -> bool:
        torch = self.torch
        # torch has no public test for "inside a torch.func transform"; without this private
        # one, every pass takes torch.func.
        peek = getattr(torch._C._functorch, "peek_interpreter_stack", None)
        return peek is not None and peek() is None and not torch.compiler.is_compiling()

    def _on_tape(self, f: Callable, argnums: int | tuple[int, ...], args: tuple) -> tuple[Any, Any]:
        torch, tape = self.torch, self._tape
        outer = getattr(tape, "depth", 0) > 0
        # A fresh leaf per chosen tensor; one an outer pass records is cloned, so it stays on
        # that pass's graph.
        chosen = tree_map(
            lambda t: t.clone() if t.requires_grad else t.detach().requires_grad_(), select(args, argnums)
        )
        tape.depth = getattr(tape, "depth", 0) + 1
        try:
            with torch.enable_grad():
                value = f(*substitute(args, argnums, chosen))
                inputs = list(leaves(chosen))
                if value.requires_grad:
                    found = torch.autograd.grad(
                        value, inputs, create_graph=outer, allow_unused=True, materialize_grads=True
                    )
                else:  # a constant (a cubic's fourth derivative): zeros, as torch.func gives
                    found = [torch.zeros_like(t) for t in inputs]
                grads = iter(found)
        finally:
            tape.depth -= 1
        return (value if outer else value.detach()), tree_map(lambda _: next(grads), chosen)

    def differentiable_outputs(self, f: Callable, args: tuple, argnums: int | tuple[int, ...]) -> list[bool]:
        """Per output leaf of ``f(*args)``, whether autograd records it as a function of
        ``args[argnums]``: torch marks some outputs not differentiable (``native_layer_norm``'s
        mean and rstd, ``max``'s indices), and gradcheck skips them."""
        torch = self.torch
        with torch.enable_grad():
            chosen = tree_map(lambda t: t.detach().requires_grad_(), select(args, argnums))
            out = f(*substitute(args, argnums, chosen))
        return [bool(getattr(y, "requires_grad", False)) for y in leaves(out)]

    def jvp(self, f: Callable, primals: tuple, tangents: tuple) -> tuple[Any, Any]:
        with self._coverage("torch.func.jvp"):
            return self.torch.func.jvp(f, primals, tangents)

    COVERAGE_GAPS = (
        "functorch",
        "torch.func",
        "setup_context",
        "doesn't have storage",
        "batching rule",
        "forward ad",
        "forward-mode ad",
        "jvp function",
        "not implemented",
        "not supported",
    )
    """Words in what torch raises where ``torch.func`` or forward mode does not cover an operator
    or an `autograd.Function` (a classic-style one, one without ``jvp``, an operator reading a
    tensor's storage, such as ``tensor_split`` with a tensor of indices): a coverage gap, not a
    wrong derivative."""

    @contextlib.contextmanager
    def _coverage(self, what: str):
        """Turn torch's coverage-gap errors into `NotImplementedError` (reported ``unsupported``)
        with torch's reason."""
        try:
            yield
        except NotImplementedError:
            raise
        except RuntimeError as exc:
            reason = str(exc).strip()
            if any(word in reason.lower() for word in self.COVERAGE_GAPS):
                raise NotImplementedError(f"{what} does not cover it: {reason.splitlines()[0]}") from exc
            raise

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

    def peak_memory(self, call: Callable[[], Any], device: str) -> int | None:
        if not device.startswith("cuda"):
            raise NotImplementedError(f"no device allocator on {device}")
        cuda = self.torch.cuda
        cuda.synchronize(device)
        before = cuda.memory_allocated(device)
        cuda.reset_peak_memory_stats(device)
        result = call()
        peak = cuda.max_memory_allocated(device)
        del result
        return max(0, peak - before)

    def compile(self, fn: Callable, mode: str) -> Callable:
        """``torch.compile(fn, fullgraph=True)``: the whole function or nothing. What TorchDynamo
        cannot capture whole raises `NotImplementedError` with torch's reason (reported as
        unsupported), never runs eagerly in a "compiled" row."""
        import torch._dynamo

        message = compile_refusal(getattr(fn, "nesting", (0, 0)))
        if message:

            def refused(*args):
                raise NotImplementedError(f"{message} (measured; see compile_refusal)")

            return refused
        # Every nested derivative is the same few closures over other functions: to TorchDynamo
        # each is a recompilation of one code object, which it stops doing after 8 by default.
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, 100_000)
        config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 100_000)
        compiled = torch.compile(fn, fullgraph=True)

        def run(*args):
            try:
                return compiled(*args)
            except torch._dynamo.exc.Unsupported as exc:
                reason = str(exc).strip().splitlines()[0]
                raise NotImplementedError(f"torch.compile cannot capture it whole: {reason}") from exc

        return run

    def block_until_ready(self, x: Any) -> Any:
        if self.torch.cuda.is_available():
            self.torch.cuda.synchronize()
        return x


@harness.hookimpl
def harness_register_backends(register):
    register(TorchBackend())
