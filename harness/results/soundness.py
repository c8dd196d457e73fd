"""Whether a run's timings can be trusted, said beside its table: what the machine was doing
(load before and after, CPUs allowed, frequency, thread settings) and a warning naming the rows
flagged as timed under contention or too widely spread, with what to do."""

from __future__ import annotations

from harness.results.runs import Row


def flag_warning(rows: list[Row]) -> str:
    """A warning for the rows whose timing is flagged, or "" when none is."""
    flagged = [r for r in rows if r.flags]
    if not flagged:
        return ""
    contended = sum("contended" in r.flags for r in flagged)
    spread = sum("spread" in r.flags for r in flagged)
    return (
        f"warning: {len(flagged)} of {len(rows)} rows are flagged ({contended} C: their threads waited "
        f"for CPUs other processes held, {spread} S: too widely spread for the median to mean much); "
        "their times and ratios (x fastest, x value) may be off by far more than the spread shows. "
        "Rerun on a quiet machine, or give every backend the same threads (--threads 1) beside a "
        "load you cannot stop; the gate calls flagged rows inconclusive."
    )


def _load(state: dict | None) -> str:
    load = (state or {}).get("load_average")
    return "?" if not load else f"{load[0]:.2f}"


def machine_lines(run: str, info: dict) -> list[str]:
    """What the machine was doing during ``run`` (its ``machine_info.harness``), in a few lines;
    none for a run saved before this was recorded."""
    before, after = info.get("state_before"), info.get("state_after")
    if not before and not after:
        return []
    state = before or after
    cpus = state.get("cpus_allowed")
    lines = [
        f"{run}: load average {_load(before)} before, {_load(after)} after (1 min); "
        f"CPUs allowed {cpus if cpus is not None else '?'} of {info.get('cpu_count', '?')}; "
        f"frequency {_mhz(state.get('cpu_mhz'))}, governor {state.get('governor') or 'not readable'}"
    ]
    requested = info.get("threads_requested")
    chosen = "each framework its own choice" if requested is None else f"{requested} for every backend"
    passes = info.get("passes")
    lines.append(f"  threads: {chosen}" + (f"; {passes} interleaved passes" if (passes or 1) > 1 else ""))
    by_backend = info.get("threads_by_backend") or {"": (after or before).get("threads")}
    for backend, threads in by_backend.items():
        lines.append(f"  {backend + ': ' if backend else ''}{_threads(threads or {})}")
    return lines


def _mhz(mhz: dict | None) -> str:
    if not mhz:
        return "not readable"
    values = sorted(mhz.values())
    return f"{values[0]:.0f}-{values[-1]:.0f} MHz" if values[0] != values[-1] else f"{values[0]:.0f} MHz"


def _threads(threads: dict) -> str:
    parts = [
        f"{name} intra-op {t.get('intra_op')}, inter-op {t.get('inter_op')}"
        for name, t in threads.items()
        if name != "env" and isinstance(t, dict)
    ]
    env = {k: v for k, v in (threads.get("env") or {}).items() if v is not None}
    parts.append(", ".join(f"{k}={v}" for k, v in env.items()) if env else "no thread variables set")
    return "; ".join(parts)
