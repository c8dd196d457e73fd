"""What to time: the benchmark cases of a profile (`PROFILES`, `cases`), each made ready to
time by `prepare` and validated against its oracle before anything is timed.

`prepare` keeps a timing about the computation and nothing else:

- data goes to the device once and is passed to the function as arguments, never closed over
  (never baked into a compiled function);
- every call waits for its result (`Backend.block_until_ready`), so an engine that dispatches
  asynchronously is timed to the end of its work, not to the launch;
- the first call (trace, compile, run) is timed on its own and reported apart: compilation is
  never mixed into the steady-state times;
- the result is validated against an oracle (float64 numpy for the function alone, the
  closed-form gradient or complex step for a gradient, mpmath for an elementwise derivative):
  a wrong fast answer is not a result.

How a prepared call is timed is `harness.benchmark.measure`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from harness import problems, strategies
from harness.benchmark import validity
from harness.plugins import BackendEntry
from harness.problems import GradientProblem, JacobianProblem, NestedProblem, ScalarProblem
from harness.pytree import select, tree_map
from harness.results import runs
from harness.target import Target

PROFILES: dict[str, dict[str, Any]] = {
    # logistic sizes (N, D); elementwise derivative sizes M and orders; scalar-latency orders
    "quick": {
        "logistic": [(4, 3), (100_000, 64)],
        "points": [10_000],
        "orders": [1, 2, 4],
        "latency": [1, 2, 3],
        "budget": 0.05,
    },
    "cpu": {
        "logistic": [(4, 3), (1_000_000, 64)],
        "points": [10_000],
        "orders": list(range(1, 9)),
        "latency": [1, 2, 3],
        "budget": 0.3,
    },
    "gpu": {
        "logistic": [(4, 3), (4_194_304, 256), (16_777_216, 64)],
        "points": [16_777_216],
        "orders": list(range(1, 9)),
        "latency": [1, 2, 3],
        "budget": 0.3,
    },
    # the logistic gradient against the data's width D, N x D fixed at 64M floats (256 MB in
    # float32): what the memory layout does to each engine's X @ W and X.T @ r
    "width": {
        "logistic": [(4_000_000, 16), (2_000_000, 32), (1_000_000, 64), (500_000, 128)],
        "points": [],
        "orders": [],
        "latency": [],
        "budget": 0.3,
    },
    # the cost-against-order study: every strategy and mode, orders 1-10, float64
    "scaling": {
        "logistic": [],
        "points": [1_000],
        "orders": list(range(1, 11)),
        "latency": [],
        "budget": 0.05,
        "dtype": "float64",
        "min_rounds": 3,
    },
    # GradBench's evals by name: (size, modes or None for all[, Jacobian strategies]), in
    # float64: the objective alone, its gradient, and k-means' gradient with its Hessian's
    # diagonal (GradBench's dir, as GradBench's JAX tool computes it). GradBench's smallest
    # sizes but lstm's, c = 64, its c steps an unrolled Python loop that compilers trace step by
    # step: eager everywhere, and jit on JAX, whose own form scans them (`lstm.primal_jax`: first
    # value+grad call 3.7 s; torch.compile's took 87 s at c = 16 and grows with c, 2-core AMD
    # EPYC, torch 2.13: not worth it). A mode list may name modes per backend ("*": the rest).
    # The full Jacobians (ode, ba, ht) are composed of a jvp per input or
    # a vjp per output, which compilers would trace one by one: eager, ode at GradBench's
    # smallest size and ba dense at 5 cameras, 50 points, 100 observations (GradBench's
    # smallest, ba1, would be a dense 95529 x 55710 matrix: 42 GB in float64; its sparse form
    # is harness.evals.ba's); ht's (simple, hand1 of its small model) where HARNESS_HT_DATA
    # names GradBench's data, forward only as GradBench asks (its 300 x 26 Jacobian: 26 jvps,
    # where reverse takes 300 vjps, 51 s a call on autograd under load). The nested evals
    # (particle, saddle), whose whole descents take minutes, are timed by their unit of work:
    # the outer derivative at GradBench's start, through the inner one, in each mode pair,
    # eager and compiled (their Euler step, their inner objective and gradient compiled: a call
    # takes up to 10 s on JAX eager: NESTED_MIN_ROUNDS rounds)
    "gradbench": {
        "logistic": [],
        "points": [],
        "orders": [],
        "latency": [],
        "budget": 0.3,
        "dtype": "float64",
        "evals": {
            "lse": ((2500,), None),
            "llsq": ((16, 128), None),
            "det": ((5,), None),
            "kmeans": ((10, 1000, 8), None),
            "gmm": ((2, 5, 1000), None),
            "lstm": ((2, 64, 14), {"jax": ("eager", "jit"), "*": ("eager",)}),
            "ode": ((1000, 1), ("eager",)),
            "ba": ((5, 50, 100), ("eager",)),
            "ht": ((1,), ("eager",), ("forward",)),
            "particle": ((), None),
            "saddle": ((), None),
        },
    },
}
NESTED_MIN_ROUNDS = 3
"""Rounds of a nested eval's outer derivative (`Case.min_rounds`): JAX eager takes 2.7 to 9.5 s a
call on particle (2-core AMD EPYC, quiet; 20 s under load): ten rounds of each pair would take
ten minutes."""
DIAGONAL = "forward-over-reverse-diagonal"
"""A gradient with its Hessian's diagonal (`harness.strategies.hessian_diagonal`), by
forward-over-reverse Hessian-vector products."""


VALUE, HAND_WRITTEN = runs.VALUE, runs.HAND_WRITTEN

_LAST: dict[str, tuple[tuple, Any]] = {}


def _last(key: tuple, make: Callable[[], Any]) -> Any:
    """``make()``, or what it made for the same ``key`` last time: one entry per kind of key
    (``key[0]``), its problem compared by identity (problems need not be hashable). Cases are
    ordered so that those sharing arguments follow each other (`cases`)."""
    kind, problem, *rest = key
    held = _LAST.get(kind)
    if held is not None and held[0][0] is problem and held[0][1:] == tuple(rest):
        return held[1]
    _LAST.pop(kind, None)  # the old arrays go before the new ones are made
    made = make()
    _LAST[kind] = ((problem, *rest), made)
    return made


@dataclass(frozen=True)
class Case:
    """One thing to time: a problem on a target, at a size (and order, for derivatives)."""

    target: Target
    problem: ScalarProblem | GradientProblem | JacobianProblem | NestedProblem
    size: tuple[int, ...]
    order: int = 1
    strategy: str = "reverse"
    min_rounds: int | None = None
    """At least this many rounds, in place of the profile's (`NESTED_MIN_ROUNDS`)."""

    @property
    def group(self) -> str:
        value = self.strategy == VALUE
        if isinstance(self.problem, NestedProblem):
            return f"{self.problem.name} outer derivative at the start"
        if isinstance(self.problem, (GradientProblem, JacobianProblem)):
            what = "value" if value else "grad+diagonal" if self.strategy == DIAGONAL else "value+grad"
            what = "jacobian" if isinstance(self.problem, JacobianProblem) and not value else what
            return f"{self.problem.name} {what} {'x'.join(map(str, self.size)) or 'default size'}"
        what = "scalar latency" if self.size == () else f"over {self.size[0]} points"
        return f"{self.problem.name} {'value' if value else f'd^{self.order}'} {what}"

    @property
    def name(self) -> str:
        t = self.target
        return f"{self.group} | {t.entry.name} {t.mode} {self.strategy} {t.dtype} {t.device}"

    def __str__(self) -> str:
        return self.name

    def arguments(self) -> tuple:
        """The float64 numpy arguments of one call: the gradient problem's, or the points.
        The last ones made are reused by the next case of the same problem and size (read
        only): at the gpu profile's 4M x 256 they are 8 GB and take seconds to draw."""
        return _last(("arguments", self.problem, self.size), self._make_arguments)

    def _make_arguments(self) -> tuple:
        if isinstance(self.problem, (GradientProblem, JacobianProblem, NestedProblem)):
            return self.problem.make_args(self.size or None)
        return (np.array(2.0) if self.size == () else np.linspace(-3.0, 3.0, self.size[0]),)

    def rounded(self) -> tuple:
        """The arguments rounded to the target's dtype, in float64: what the oracles see."""
        dtype = self.target.dtype
        return _last(
            ("rounded", self.problem, self.size, dtype),
            lambda: tree_map(lambda a: np.asarray(a, dtype=dtype).astype(np.float64), self.arguments()),
        )

    def extra_info(self) -> dict:
        t = self.target
        return {
            "harness_format": runs.FORMAT_VERSION,
            "backend": t.entry.name,
            "version": t.entry.version,
            "device": t.device,
            "dtype": t.dtype,
            "mode": t.mode,
            "strategy": self.strategy,
            "problem": self.problem.name,
            "size": list(self.size),
            "order": self.order,
        }


@dataclass
class Prepared:
    """A case ready to time: ``call()`` runs it once and waits for the result."""

    case: Case
    call: Callable[[], Any]
    first_call_s: float
    validated: bool
    detail: str = ""
    error: float | None = None
    """Largest error against the oracle, relative to the largest |reference|."""
    cost: tuple[float | None, float | None] = (None, None)
    """(bytes moved, flops) per call, by the problem's cost model."""
    launch: Callable[[], Any] | None = None
    """The call without waiting for its result (for the device's own clock)."""

    def event_median(self, rounds: int) -> float | None:
        """Median seconds per call by the device's clock (`Backend.event_times`), after a
        warm-up call, or ``None`` where the backend has none for this device."""
        timer = getattr(self.case.target.backend, "event_times", None)
        if timer is None or self.launch is None:
            return None
        try:
            times = timer(self.launch, self.case.target.device, rounds + 1)[1:]
        except NotImplementedError:
            return None
        return float(np.median(times))

    def extra_info(self) -> dict:
        return {
            **self.case.extra_info(),
            "bytes": self.cost[0],
            "flops": self.cost[1],
            "first_call_s": self.first_call_s,
            "validated": self.validated,
            "validation": self.detail,
            "validation_error": self.error,
        }


def cases(
    entries: Iterable[BackendEntry],
    profile: str = "cpu",
    devices: Iterable[str] | None = None,
    registered: Iterable[problems.Problem] = (),
) -> list[Case]:
    """Every benchmark case of a profile for the given (available) backends and devices.

    The built-in logistic loss and tanh at the profile's sizes and orders, and each problem
    in ``registered`` that a plugin added (default ones): a scalar problem like tanh (every
    strategy, the profile's points and orders), a gradient problem at its own default size.
    Each also timed as the function alone (`VALUE`) and, where the problem has one, as its
    derivative written out by hand (`HAND_WRITTEN`), on the same backend, mode and device.
    """
    spec = PROFILES[profile]
    builtin = {p.name: p for p in problems.BUILTIN}
    named = spec.get("evals", {})  # timed at the profile's sizes, not again at their defaults
    extra = [p for p in registered if p.name not in builtin and p.default and p.name not in named]
    found: list[Case] = []
    for entry in entries:
        if entry.unavailable:
            continue
        backend = entry.backend
        seen = backend.devices()
        for device in seen if devices is None else [d for d in devices if d in seen]:
            for mode in backend.modes:
                t32 = Target(entry, device, "float32", mode)
                gradient = [(builtin["logistic"], size) for size in spec["logistic"]]
                gradient += [(p, tuple(p.size or ())) for p in extra if isinstance(p, GradientProblem)]
                for p, size in gradient:
                    found += [Case(t32, p, size, 0, VALUE), Case(t32, p, size)]
                    found += [Case(t32, p, size, 1, HAND_WRITTEN)] if p.hand_written else []
                elementwise = Target(entry, device, spec.get("dtype", "float32"), mode)
                scalar = [builtin["tanh"], *(p for p in extra if isinstance(p, ScalarProblem))]
                found += [Case(elementwise, p, (m,), 0, VALUE) for p in scalar for m in spec["points"]]
                for strategy in (*backend.strategies, HAND_WRITTEN):
                    found += [
                        Case(elementwise, p, (m,), order, strategy)
                        for p in scalar
                        if strategy != HAND_WRITTEN or p.hand_written
                        for m in spec["points"]
                        for order in spec["orders"]
                    ]
                t64 = Target(entry, device, "float64", mode)
                found += [Case(t64, builtin["tanh"], (), order, "reverse") for order in spec["latency"]]
                found += _eval_cases(
                    Target(entry, device, spec.get("dtype", "float64"), mode), spec, registered
                )
    # each problem and size's cases together (every target's in turn), so that they share
    # one drawing of the arguments (`Case.arguments`)
    return sorted(found, key=lambda c: (c.problem.name, c.size))


def _eval_cases(target: Target, spec: dict, registered: Iterable[problems.Problem]) -> list[Case]:
    """The profile's ``evals`` (name: (size, modes)) among the registered problems, default or
    not, in ``target``'s mode if listed: each timed alone and with its gradient, and with its
    Hessian's diagonal where it has one; a vector-valued one alone and with its full Jacobian by
    each of `strategies.JACOBIAN_STRATEGIES`; a nested one by its outer derivative in each of
    `strategies.NESTED_PAIRS`; one whose data is absent not at all."""
    kinds = (GradientProblem, JacobianProblem, NestedProblem)
    named = {p.name: p for p in registered if isinstance(p, kinds)}
    found = []
    for name, (size, modes, *chosen) in spec.get("evals", {}).items():
        if isinstance(modes, dict):
            modes = modes.get(target.backend.name, modes["*"])
        if name in named and (modes is None or target.mode in modes):
            p = named[name]
            if getattr(p, "unavailable", None) and p.unavailable():  # its data is absent (ht's)
                continue
            if isinstance(p, NestedProblem):
                found += [
                    Case(target, p, size, 2, pair, NESTED_MIN_ROUNDS) for pair in strategies.NESTED_PAIRS
                ]
                continue
            if isinstance(p, JacobianProblem):
                found += [Case(target, p, size, 0, VALUE)]
                jacobians = chosen[0] if chosen else strategies.JACOBIAN_STRATEGIES
                found += [Case(target, p, size, 1, s) for s in jacobians]
                continue
            found += [Case(target, p, size, 0, VALUE), Case(target, p, size)]
            found += [Case(target, p, size, 2, DIAGONAL)] if p.hessian_diagonal else []
    return found


def prepare(case: Case) -> Prepared:
    """Move data to the device, run and time the first call, validate the result."""
    target = case.target
    args64 = case.arguments()
    args = target.array(args64)
    problem, itemsize = case.problem, np.dtype(target.dtype).itemsize
    if isinstance(problem, NestedProblem):
        fn = target.nested(problem, case.strategy, "outer")
    elif case.strategy == VALUE:
        fn = target.value(problem)
    elif case.strategy == HAND_WRITTEN:
        fn = target.hand_written(problem, case.order)
    elif case.strategy == DIAGONAL:
        probes = strategies.diagonal_probes(select(args64, problem.argnums), problem.diagonal_hessian)
        fn = partial(
            target.hessian_diagonal(problem, DIAGONAL.removesuffix("-diagonal")), target.array(probes)
        )
    elif isinstance(problem, JacobianProblem):
        outputs = np.size(problem.fn(np, *args64))
        basis = strategies.jacobian_basis(case.strategy, select(args64, problem.argnums), outputs)
        fn = partial(target.jacobian(problem, case.strategy), target.array(basis))
    elif isinstance(problem, GradientProblem):
        fn = target.value_and_grad(problem)
    else:
        fn = target.derivative(problem, case.order, case.strategy)
    if isinstance(problem, (JacobianProblem, NestedProblem)):
        cost = (None, None)  # no cost model: x value is its measure
    elif isinstance(problem, GradientProblem):
        cost = problem.bytes_and_flops(args64, itemsize)
    else:
        cost = problem.bytes_and_flops(args64[0], itemsize)
    if case.strategy == VALUE and cost[0] is not None:
        cost = (cost[0] / 2 if isinstance(problem, GradientProblem) else cost[0], None)  # one pass

    def launch():
        return fn(*args)

    def call():
        return target.backend.block_until_ready(launch())

    started = time.perf_counter()
    result = call()
    first = time.perf_counter() - started
    validated, detail, error = validity.assess(case, target.numpy(result))
    return Prepared(case, call, first, validated, detail, error, cost, launch)


def known_failure(case: Case):
    """The backend's expectation that this case fails, if it declares one (`harness.expected`).
    None for the function alone and the hand-written derivative: no differentiation by the
    backend is involved."""
    t = case.target
    if case.strategy in (VALUE, HAND_WRITTEN):
        return None
    return next(
        (
            e
            for e in t.entry.expected
            if e.outcome == "fail"
            and e.matches(case.problem.name, case.strategy, t.mode, t.dtype, case.order)
        ),
        None,
    )
