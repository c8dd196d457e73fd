"""Benchmark cases and the measurement protocol shared by the pytest-benchmark suite and ``compare``.

The protocol (see DESIGN.md's pitfalls):

- data goes to the device once and is passed as arguments, never closed over;
- every timed call waits for its result (`Backend.block_until_ready`);
- the first call (trace, compile, run) is timed on its own and reported apart;
- the result is validated against an oracle before anything is timed: a wrong
  fast answer is not a result;
- rounds and iterations are calibrated on a warm call; GC is off while timing.

``tests/benchmarks`` times prepared cases with pytest-benchmark's
``benchmark.pedantic``. `measure` is the same loop for ``python -m harness
compare``'s quick run, which has no pytest session to lean on; both
write pytest-benchmark's JSON format and statistics (`pytest_benchmark.stats`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness import machine, oracles, problems
from harness.plugins import BackendEntry
from harness.problems import GradientProblem, ScalarProblem
from harness.pytree import flatten, tree_map
from harness.results import runs
from harness.target import Target
from harness.validation import tolerances

SAMPLES = 16
"""Points of an elementwise derivative that are validated against mpmath before timing."""

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
}


VALUE, HAND_WRITTEN = runs.VALUE, runs.HAND_WRITTEN


@dataclass(frozen=True)
class Case:
    """One thing to time: a problem on a target, at a size (and order, for derivatives)."""

    target: Target
    problem: ScalarProblem | GradientProblem
    size: tuple[int, ...]
    order: int = 1
    strategy: str = "reverse"

    @property
    def group(self) -> str:
        value = self.strategy == VALUE
        if isinstance(self.problem, GradientProblem):
            what = "value" if value else "value+grad"
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
        """The float64 numpy arguments of one call: the gradient problem's, or the points."""
        if isinstance(self.problem, GradientProblem):
            return self.problem.make_args(self.size or None)
        return (np.array(2.0) if self.size == () else np.linspace(-3.0, 3.0, self.size[0]),)

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
    extra = [p for p in registered if p.name not in builtin and p.default]
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
    return found


def prepare(case: Case) -> Prepared:
    """Move data to the device, run and time the first call, validate the result."""
    target = case.target
    args64 = case.arguments()
    args = target.array(args64)
    problem, itemsize = case.problem, np.dtype(target.dtype).itemsize
    if case.strategy == VALUE:
        fn = target.value(problem)
    elif case.strategy == HAND_WRITTEN:
        fn = target.hand_written(problem, case.order)
    elif isinstance(problem, GradientProblem):
        fn = target.value_and_grad(problem)
    else:
        fn = target.derivative(problem, case.order, case.strategy)
    if isinstance(problem, GradientProblem):
        cost = problem.bytes_and_flops(args64, itemsize)
    else:
        cost = problem.bytes_and_flops(args64[0], itemsize)
    if case.strategy == VALUE:
        cost = (cost[0] / 2 if isinstance(problem, GradientProblem) else cost[0], None)  # one pass

    def launch():
        return fn(*args)

    def call():
        return target.backend.block_until_ready(launch())

    started = time.perf_counter()
    result = call()
    first = time.perf_counter() - started
    validated, detail, error = _validate(case, target.numpy(result), args64)
    return Prepared(case, call, first, validated, detail, error, cost, launch)


def _validate(case: Case, result: Any, args64: tuple) -> tuple[bool, str, float]:
    """(agrees with the oracle?, which oracle, largest error relative to the largest |reference|)."""
    dtype = case.target.dtype
    rounded = tree_map(lambda a: np.asarray(a, dtype=dtype).astype(np.float64), args64)
    problem = case.problem
    if case.strategy == VALUE:
        reference = np.asarray(problem.fn(np, *rounded), dtype=np.float64)
        ok = tolerances.agrees(result, reference, dtype, 1)
        return ok, "float64 numpy", tolerances.relative_error(result, reference)
    if isinstance(problem, GradientProblem):
        grad = flatten(result[1])
        magnitude = flatten(problem.magnitude(*rounded)) if problem.magnitude else np.zeros_like(grad)
        if problem.gradient is not None:
            reference = flatten(problem.gradient(*rounded))
            ok = tolerances.agrees(grad, reference, dtype, 1, magnitude)
            return ok, "closed-form gradient", tolerances.relative_error(grad, reference)
        F, theta = oracles.of_flat_parameters(problem.fn, np, rounded, problem.argnums)
        rows = oracles.directions(theta.size)
        claimed, reference = rows @ grad, oracles.complex_step(F, theta, rows)
        ok = tolerances.agrees(claimed, reference, dtype, 1, np.abs(rows) @ magnitude)
        return ok, f"complex step along {len(rows)} directions", tolerances.relative_error(claimed, reference)
    x = rounded[0]
    pick = np.linspace(0, x.size - 1, min(SAMPLES, x.size)).astype(int) if x.ndim else ()
    sample, claimed = (x[pick], result[pick]) if x.ndim else (x, result)
    reference = oracles.mpmath_derivative(problem.fn, sample, case.order)
    ok = tolerances.agrees(claimed, reference, dtype, case.order)
    return ok, f"mpmath at {np.size(sample)} points", tolerances.relative_error(claimed, reference)


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


MIN_ROUNDS = 10
"""Enough samples for the regression gate's Mann-Whitney test to reach p < 0.01 (5 cannot
when a single pair is out of order)."""


def calibrate(call: Callable[[], Any], budget: float, min_rounds: int = MIN_ROUNDS) -> tuple[int, int]:
    """(rounds, iterations): iterations lift a round above ~100 us; rounds fill ``budget`` seconds
    (at least ``min_rounds``)."""
    started = time.perf_counter()
    call()
    once = max(time.perf_counter() - started, 1e-9)
    iterations = max(1, int(1e-4 / once))
    rounds = int(min(max(budget / (once * iterations), min_rounds), 1000))
    return rounds, iterations


def measure(call: Callable[[], Any], rounds: int, iterations: int) -> list[float]:
    """Seconds per call for each round, after one warm-up round, with the GC off."""
    call()
    enabled = gc.isenabled()
    gc.disable()
    try:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(iterations):
                call()
            times.append((time.perf_counter() - started) / iterations)
    finally:
        if enabled:
            gc.enable()
    return times


def bench(
    case: Case, budget: float, min_rounds: int = MIN_ROUNDS, log: Callable[[str], None] = print
) -> dict | None:
    """Prepare, validate and time one case: its pytest-benchmark entry, or ``None`` (logged) when
    it is unsupported (raises `NotImplementedError`), raises, or disagrees with its oracle."""
    try:
        prepared = prepare(case)
    except NotImplementedError as exc:  # the backend's (or its compiler's) refusal, as in validate
        log(f"unsupported: {case.name}: {exc}")
        return None
    except Exception as exc:
        log(f"error: {case.name}: {type(exc).__name__}: {exc}")
        return None
    if not prepared.validated:
        known = known_failure(case)
        why = f"a known failure ({known.source})" if known else "NOT an expected failure"
        log(f"wrong: {case.name}: disagrees with {prepared.detail}, {why}; not timed")
        return None
    try:
        rounds, iterations = calibrate(prepared.call, budget, min_rounds)
        times = measure(prepared.call, rounds, iterations)
    except Exception as exc:
        log(f"error: {case.name}: {type(exc).__name__}: {exc} (while timing)")
        return None
    events = prepared.event_median(rounds)
    extra = {**prepared.extra_info(), **({} if events is None else {"event_median_s": events})}
    return runs.entry(case.group, case.name, extra, times, iterations)


def run(
    found: Iterable[Case], budget: float, log: Callable[[str], None] = print, min_rounds: int = MIN_ROUNDS
) -> dict:
    """`bench` each case in this process; the run. A case that fails is logged and left out."""
    timed = [bench(case, budget, min_rounds, log) for case in found]
    return runs.document([b for b in timed if b is not None], machine.info())
