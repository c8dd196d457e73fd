"""A backend bound to a device, dtype and mode: problems turned into ready-to-call functions.

Validation, benchmarks and tests all go through `Target`, so a problem is
prepared the same way wherever it runs: data moved to the device once and
passed as arguments (never baked into a compiled function), results waited
for and brought back as float64 numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from harness import strategies
from harness.hookspecs import Backend
from harness.plugins import BackendEntry
from harness.problems import GradientProblem, JacobianProblem, NestedProblem, ScalarProblem
from harness.pytree import tree_map


@dataclass(frozen=True)
class Target:
    entry: BackendEntry
    device: str = "cpu"
    dtype: str = "float64"
    mode: str = "eager"

    @property
    def backend(self) -> Backend:
        return self.entry.backend

    def compiled(self, fn: Callable) -> Callable:
        return fn if self.mode == "eager" else self.backend.compile(fn, self.mode)

    def array(self, tree: Any) -> Any:
        """A numpy pytree as the backend's arrays of this dtype on this device."""
        return tree_map(
            lambda a: self.backend.asarray(np.asarray(a, dtype=self.dtype), self.dtype, self.device), tree
        )

    def numpy(self, tree: Any) -> Any:
        """Wait for a backend pytree and bring it back as float64 numpy (a leaf already numpy, one a
        function computed in the host from the backend's parts, as ba's compressed rows, stays)."""
        ready = self.backend.block_until_ready(tree)

        def host(y):
            return np.asarray(y if isinstance(y, np.ndarray) else self.backend.to_numpy(y), dtype=np.float64)

        return tree_map(host, ready)

    def function(self, problem: ScalarProblem | GradientProblem | JacobianProblem) -> Callable:
        """``problem``'s function on this backend's arrays: the backend's own form of it where the
        problem has one (`GradientProblem.native`), else the one written for every namespace."""
        fn = dict(getattr(problem, "native", ())).get(self.backend.name, problem.fn)
        return partial(fn, self.backend.namespace())

    def derivative(self, problem: ScalarProblem, order: int, strategy: str) -> Callable:
        """``problem``'s ``order``-th derivative, compiled for this mode, on backend arrays."""
        f = self.function(problem)
        return self.compiled(strategies.derivative(self.backend, f, order, strategy))

    def value(self, problem: ScalarProblem | GradientProblem) -> Callable:
        """``problem``'s function alone (the loss, or the elementwise function), compiled for this
        mode: what a gradient's or a derivative's cost is measured against."""
        return self.compiled(self.function(problem))

    def hand_written(self, problem: ScalarProblem | GradientProblem, order: int = 1) -> Callable:
        """``problem``'s derivative written out by hand (`GradientProblem.hand_written`), no
        automatic differentiation, on this backend's arrays, compiled for this mode."""
        if problem.hand_written is None:
            raise NotImplementedError(f"{problem.name} has no hand-written derivative")
        xp = self.backend.namespace()
        if isinstance(problem, GradientProblem):
            return self.compiled(partial(problem.hand_written, xp))
        return self.compiled(lambda x: problem.hand_written(xp, x, order))

    def value_and_grad(
        self, problem: GradientProblem, argnums: int | tuple[int, ...] | None = None
    ) -> Callable:
        """``problem``'s value and gradient w.r.t. ``argnums`` (default: the problem's own)."""
        f = self.function(problem)
        chosen = problem.argnums if argnums is None else argnums
        return self.compiled(self.backend.value_and_grad(f, chosen))

    def hvp(self, problem: GradientProblem, strategy: str) -> Callable:
        """``hvp(v, *args)``: ``problem``'s Hessian times ``v`` by ``strategy`` (`strategies.hvp`)."""
        f = self.function(problem)
        return self.compiled(strategies.hvp(self.backend, f, problem.argnums, strategy))

    def jacobian(self, problem: JacobianProblem, strategy: str) -> Callable:
        """``jac(basis, *args)``: ``problem``'s Jacobian by ``strategy`` (`strategies.jacobian`),
        in parts; `strategies.jacobian_basis` and `strategies.jacobian_matrix` go in and out."""
        f = self.function(problem)
        return self.compiled(strategies.jacobian(self.backend, f, problem.argnums, strategy))

    def nested(self, problem: NestedProblem, pair: str, part: str) -> Callable:
        """``problem`` with the derivative operators of ``pair`` (`strategies.nested_pair`): its
        ``"answer"`` (``fn``), or its ``"inner"`` or ``"outer"`` probe, a function of the
        problem's arguments. Its units of work (`NestedProblem.units`) are built once here,
        compiled in a compiled mode; the descents, which branch on values, stay in Python."""
        xp = self.backend.namespace()
        outer, inner = strategies.nested_pair(self.backend, pair)
        # A problem without units of work keeps the plain signatures.
        units = {"units": problem.units(xp, inner, self.compiled)} if problem.units else {}
        if part == "inner":
            return lambda *args: problem.inner_probe(xp, inner, *args, **units)
        if part == "outer":
            return lambda *args: problem.outer_probe(xp, outer, inner, *args, **units)
        return lambda *args: problem.fn(xp, outer, inner, *args, **units)

    def hessian_diagonal(self, problem: GradientProblem, strategy: str) -> Callable:
        """``diag(probes, *args)``: ``problem``'s gradient and Hessian diagonal by ``strategy``
        (`strategies.hessian_diagonal`); `strategies.diagonal_probes` makes the probes."""
        f = self.function(problem)
        return self.compiled(strategies.hessian_diagonal(self.backend, f, problem.argnums, strategy))
