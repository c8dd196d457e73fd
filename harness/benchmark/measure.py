"""How to time: the measurement protocol for a prepared case (`harness.benchmark.cases.prepare`),
and the benchmark entries and runs it gives.

On top of what `prepare` guards against (data passed as arguments, a wait for every result,
the first call timed apart, validation before timing), the protocol guards against:

- a timer too coarse for the call: `calibrate` times one warm call (the first was `prepare`'s)
  and runs enough iterations per round to lift a round above ~100 us;
- too few samples: rounds fill the time budget, at least `MIN_ROUNDS` (what the regression
  gate's test needs), at most 1000;
- a cold first round: `measure` runs one warm-up round before the timed ones;
- garbage-collector pauses: the GC is off while `measure` times;
- timing a wrong answer: `bench` times nothing that disagrees with its oracle (logged instead);
- the host clock's own overhead: where the backend has the device's clock (CUDA events), the
  median by that clock for the same call is saved beside (``event_median_s``) to compare with;
- a busy machine: the share of this process's CPUs that other processes used while the row was
  timed (``contention``) and how long its threads waited for a CPU (``run_queue_wait``) are
  kept with it, and a row timed under contention or too widely spread for its median to mean
  much is flagged (``flags``; `harness.benchmark.conditions`).

Beside the time, each row keeps the peak memory one call adds over its inputs
(``peak_memory_bytes``): the resident set's high-water mark on the CPU, the device allocator's
peak where the backend reports it (`Backend.peak_memory`).

``tests/benchmarks`` times prepared cases with pytest-benchmark's ``benchmark.pedantic``
(the same calibration and warm-up round). `measure` is the same loop for ``python -m harness
compare``'s quick run, which has no pytest session to lean on; both write pytest-benchmark's
JSON format and statistics (`pytest_benchmark.stats`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from typing import Any

from harness import machine
from harness.benchmark import conditions
from harness.benchmark.cases import Case, known_failure, prepare
from harness.results import runs

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
    cpus = conditions.allowed_cpus()
    try:
        before = conditions.sample(cpus)
        rounds, iterations = calibrate(prepared.call, budget, case.min_rounds or min_rounds)
        times = measure(prepared.call, rounds, iterations)
        after = conditions.sample(cpus)
        memory = peak_memory(prepared)
    except Exception as exc:
        log(f"error: {case.name}: {type(exc).__name__}: {exc} (while timing)")
        return None
    events = prepared.event_median(rounds)
    extra = {**prepared.extra_info(), **({} if events is None else {"event_median_s": events})}
    made = runs.entry(case.group, case.name, extra, times, iterations)
    others, waited = conditions.contention(before, after, len(cpus)), conditions.waiting(before, after)
    stats = made["stats"]
    made["extra_info"].update(
        contention=others,
        run_queue_wait=waited,
        flags=conditions.flags(others, waited, stats["median"], stats["iqr"]),
        peak_memory_bytes=memory,
    )
    return made


def peak_memory(prepared) -> int | None:
    """Peak bytes one call adds over its inputs: the device allocator's on a device where the
    backend reports it (`Backend.peak_memory`), else the resident set's on the CPU."""
    target = prepared.case.target
    if target.device != "cpu":
        reader = getattr(target.backend, "peak_memory", None)
        try:
            found = None if reader is None else reader(prepared.call, target.device)
        except NotImplementedError:
            return None
        return None if found is None else int(found)
    return conditions.peak_rss_added(prepared.call)


def merge_passes(entries: list[dict]) -> list[dict]:
    """Entries of the same case from interleaved passes (each backend's cases in turn, several
    times over) as one entry per case, in first-seen order: the rounds of every pass pooled (so
    a load that comes or goes mid-run weighs on every backend alike), each pass's median kept
    (``pass_medians``), the worst probe readings and every flag of any pass."""
    by_name: dict[str, list[dict]] = {}
    for e in entries:
        by_name.setdefault(e["name"], []).append(e)
    merged = []
    for name, found in by_name.items():
        if len(found) == 1:
            merged.append(found[0])
            continue
        extra = {**found[0]["extra_info"]}
        worst = [e["extra_info"] for e in found]
        for key in ("contention", "run_queue_wait", "peak_memory_bytes"):
            values = [x[key] for x in worst if x.get(key) is not None]
            extra[key] = max(values) if values else None
        times = [t for e in found for t in e["stats"]["data"]]
        made = runs.entry(found[0]["group"], name, extra, times, found[0]["stats"]["iterations"])
        stats = made["stats"]
        flags = {f for x in worst for f in x.get("flags", [])}
        flags |= set(conditions.flags(None, None, stats["median"], stats["iqr"]))
        made["extra_info"].update(
            flags=sorted(flags),
            pass_medians=[e["stats"]["median"] for e in found],
        )
        merged.append(made)
    return merged


def timed_run(
    found: Iterable[Case], budget: float, log: Callable[[str], None] = print, min_rounds: int = MIN_ROUNDS
) -> dict:
    """`bench` each case in this process; the run. A case that fails is logged and left out."""
    before = machine.state()
    timed = [bench(case, budget, min_rounds, log) for case in found]
    return runs.document([b for b in timed if b is not None], {**machine.info(), **machine.around(before)})
