"""Saved runs: the format, its version, file names, writing and reading, and damaged files.

A saved run is pytest-benchmark's JSON (its statistics and layout) whose
benchmarks carry gradient-harness fields in ``extra_info`` (``harness_format``
and the case: backend, device, dtype, mode, strategy, problem, size, order, ...;
``scale`` runs add world, scaling, engine, processes and devices, with the engine as
the mode) and whose ``machine_info.harness`` says where it ran and what the machine was doing
(`harness.machine`: ``state_before`` and ``state_after`` the run, thread settings). Since
the contention probe, a benchmark's ``extra_info`` also holds ``contention`` (the share of
its CPUs others used while it was timed), ``run_queue_wait`` (how long its threads waited
for a CPU, over the wall time), ``flags`` (why its timing is unsound, if it is)
and ``peak_memory_bytes``; runs saved before lack them and load with none.
The pytest suite, ``compare --save``, ``scale --save`` and ``compare`` all go through
this module.

A run is read only if it was saved by gradient-harness; a corrupt, truncated,
foreign, newer or damaged file (a time that is not a finite number above 0, a
size that is not whole numbers) is a `RunError` naming the file and what to do.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import reprlib
import stat
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import RunError
from harness.results import files

FORMAT_VERSION = 1
"""Version of the harness fields in a saved run; `read` refuses newer ones."""


def file_name(tag: str) -> str:
    """A new run's file name: UTC time, a tag (profile or card), a random suffix."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tag = re.sub(r"[^A-Za-z0-9]+", "-", tag).strip("-").lower() or "run"
    return f"{stamp}_{tag}_{uuid.uuid4().hex[:8]}.json"


def document(benchmarks: list[dict], machine_info: dict) -> dict:
    """A run holding ``benchmarks`` (entries shaped as pytest-benchmark writes them)."""
    import pytest_benchmark

    return {
        "machine_info": {"harness": machine_info},
        "commit_info": {},
        "benchmarks": benchmarks,
        "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "version": pytest_benchmark.__version__,
    }


def merge_machines(machines: list[tuple[str, dict]]) -> dict:
    """One ``machine_info.harness`` for backends timed in turn, each in its own process, as
    (backend, its machine info) in the order they ran: the first's, with the state before the
    first and after the last, and each backend's thread settings (``threads_by_backend``)."""
    if not machines:
        return {}
    merged = {**machines[0][1]}
    if "state_after" in machines[-1][1]:
        merged["state_after"] = machines[-1][1]["state_after"]
    merged["threads_by_backend"] = {
        name: (info.get("state_after") or info.get("state_before") or {}).get("threads")
        for name, info in machines
    }
    return merged


def entry(group: str, name: str, extra_info: dict, times, iterations: int) -> dict:
    """One benchmark entry as pytest-benchmark writes it: per-round ``times`` (seconds per call,
    ``iterations`` calls each) summarised by its `Stats`, the harness fields in ``extra_info``."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for seconds in times:
        stats.update(seconds)
    return {
        "group": group,
        "name": name,
        "fullname": name,
        "params": None,
        "param": None,
        "extra_info": {"harness_format": FORMAT_VERSION, **extra_info},
        "options": {"disable_gc": True, "timer": "perf_counter", "warmup": 1},
        "stats": {**stats.as_dict(), "data": list(stats.data), "iterations": iterations},
    }


def speedup(t1: float, tw: float, world: int, scaling: str) -> float:
    """Throughput at ``world`` over throughput at world 1: ``t1 / tw`` for strong scaling (the same
    rows), ``world * t1 / tw`` for weak (``world`` times the rows)."""
    return (world if scaling == "weak" else 1) * t1 / tw


def text(run: dict) -> str:
    return json.dumps(run, indent=2, default=str) + "\n"


def save(run: dict, folder: str | Path, tag: str) -> Path:
    """Write ``run`` atomically under a new name in ``folder``; its path."""
    return files.write_text(Path(folder) / file_name(tag), text(run), overwrite=False)


VALUE, HAND_WRITTEN = "value", "hand-written"
"""Two strategies beside the backends' own: the function alone (order 0, what a derivative's
cost is measured against) and the derivative written out by hand, no automatic
differentiation (`harness.target.Target.hand_written`), the reference it is measured against."""


@dataclass
class Row:
    run: str
    group: str
    backend: str
    mode: str
    strategy: str
    dtype: str
    device: str
    problem: str
    size: tuple[int, ...]
    order: int
    median: float
    iqr: float
    q1: float
    q3: float
    min: float
    first_call_s: float | None
    bytes: float | None
    flops: float | None
    validated: bool
    validation_error: float | None
    bound: float | None
    """The device's measured copy bandwidth in bytes/s, from the run's machine info."""
    data: list[float] | None = None
    event_median: float | None = None
    """Median seconds per call by the device's own clock (CUDA events), where measured."""
    world: int | None = None
    """Devices or processes the data was sharded over (``scale`` runs), else ``None``."""
    scaling: str | None = None
    """``strong`` or ``weak`` (``scale`` runs), else ``None``."""
    contention: float | None = None
    """Share of the process's CPUs other processes used while the row was timed (0 to 1)."""
    run_queue_wait: float | None = None
    """Time the process's threads waited for a CPU while the row was timed, over the wall time."""
    flags: tuple[str, ...] = ()
    """Why the row's timing is unsound: ``contended``, ``spread`` (empty: sound, or not probed)."""
    peak_memory: float | None = None
    """Peak bytes one call adds over its inputs (resident set, or the device allocator's)."""

    @property
    def key(self) -> tuple:
        """What a row is compared across runs by."""
        return (self.group, self.backend, self.mode, self.strategy, self.dtype, self.device)

    @property
    def label(self) -> str:
        return f"{self.backend} {self.mode} {self.strategy} {self.dtype} {self.device}"

    @property
    def gbps(self) -> float | None:
        return self.bytes / self.median / 1e9 if self.bytes and self.median else None

    @property
    def of_bound(self) -> float | None:
        return self.bytes / self.median / self.bound if self.bytes and self.bound else None


def resolve(names: Iterable[str], folder: Path) -> list[Path]:
    """Files for run arguments: a path, or a run name (file name, stem or unique prefix) in ``folder``.

    The runs in ``folder`` are its regular ``*.json`` files (or links to one); hidden files
    (an interrupted writer's temporary files) and entries that cannot be read (a broken link,
    a link loop) are passed over, so ``latest`` is the newest readable run.
    """
    paths = []
    for name in names:
        path = Path(name)
        if _modified(path) is not None:
            paths.append(path)
            continue
        runs = _runs(folder)
        if name == "latest" and runs:
            paths.append(max(runs, key=runs.get))
            continue
        found = [p for p in runs if p.name == name or p.stem == name]
        if not found:
            for entry in (path, folder / name, folder / f"{name}.json"):
                _refuse_unreadable(entry)
            found = [p for p in runs if p.stem.startswith(name)]
        if len(found) != 1:
            known = ", ".join(p.stem for p in runs) or "none"
            why = "matches several" if found else "is neither a file nor a run"
            raise FileNotFoundError(f"{name!r} {why} in {folder}/ (runs: {known})")
        paths.append(found[0])
    return paths


def in_folder(folder: Path) -> list[Path]:
    """The saved runs in ``folder`` (as `resolve` sees them), by name."""
    return list(_runs(folder))


def _modified(path: Path) -> float | None:
    """The modification time of ``path`` if it is a regular file (through links), else ``None``."""
    try:
        status = path.stat()
    except (OSError, ValueError):  # missing, a broken link, a link loop; a NUL in the name
        return None
    return status.st_mtime if stat.S_ISREG(status.st_mode) else None


def _runs(folder: Path) -> dict[Path, float]:
    """The saved runs in ``folder`` by name, each with its modification time."""
    if not folder.is_dir():
        return {}
    found = {p: _modified(p) for p in sorted(folder.glob("*.json")) if not p.name.startswith(".")}
    return {p: mtime for p, mtime in found.items() if mtime is not None}


def _refuse_unreadable(path: Path) -> None:
    """`FileNotFoundError` saying why ``path`` is not a run, if it is there but no regular file."""
    try:
        path.lstat()
    except (OSError, ValueError):
        return  # nothing there
    try:
        if stat.S_ISREG(path.stat().st_mode):
            return
        why = "not a regular file"
    except OSError as exc:
        why = "a broken symbolic link" if isinstance(exc, FileNotFoundError) else exc.strerror
    raise FileNotFoundError(f"{path} is not a saved run ({why}); fix or delete it, or name another run")


@dataclass
class Saved:
    """A run as read: its rows, and its ``machine_info.harness`` (empty where there is none)."""

    rows: list[Row]
    machine: dict


def read(path: Path) -> Saved:
    """One saved run, its file parsed once, or `RunError` saying what is wrong with the file and
    what to do."""
    path = Path(path)
    return _checked(path, lambda: _parse(path.read_text(encoding="utf-8-sig"), path.stem, path))


def load(path: Path) -> list[Row]:
    """The rows of one saved run (`read`)."""
    return read(path).rows


def from_text(text: str, name: str) -> Saved:
    """A run in memory as `text` wrote it, read as the saved run ``name`` would be (no file)."""
    return _checked(name, lambda: _parse(text, name, name))


def _checked(where, parse) -> Saved:
    """``parse()``, its failures as `RunError` naming ``where``."""
    try:
        return parse()
    except RunError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(
            f"{where}: cannot read it ({exc}); check the path and permissions, or "
            "delete the file if it is not a saved run"
        ) from None
    except json.JSONDecodeError as exc:
        raise RunError(
            f"{where}: not valid JSON ({exc}); the file is corrupt or truncated: "
            "delete it and rerun the benchmarks"
        ) from None
    except RecursionError:
        raise RunError(
            f"{where}: JSON nested too deeply to be a saved run; delete it and rerun the benchmarks"
        ) from None
    except _Damaged as exc:
        raise RunError(f"{where}: damaged run: {exc}; delete it and rerun the benchmarks") from None
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
        raise RunError(
            f"{where}: damaged run ({type(exc).__name__}: {exc}); delete it and rerun the benchmarks"
        ) from None


class _Damaged(ValueError):
    """A value no saved run holds, said as ``what is VALUE, not WHAT IT SHOULD BE``."""


def _parse(content: str, run_name: str, path) -> Saved:
    """The run in ``content`` (a byte-order mark already dropped), its rows named ``run_name``;
    ``path`` is what messages name."""
    doc = json.loads(content)
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("benchmarks"), list)
        or not isinstance(doc.get("machine_info"), dict)
    ):
        raise RunError(
            f"{path}: not a pytest-benchmark run (no 'benchmarks' and 'machine_info'); "
            "pass a file saved by `pytest --benchmark-only` or `compare --save`"
        )
    extras = [b.get("extra_info") for b in doc["benchmarks"] if isinstance(b, dict)]
    if not extras or not all(isinstance(e, dict) and "harness_format" in e for e in extras):
        raise RunError(
            f"{path}: a pytest-benchmark run without gradient-harness fields (from "
            "another project?); compare reads runs saved by gradient-harness only"
        )
    newest = max(_whole(e["harness_format"], "extra_info.harness_format") for e in extras)
    if newest > FORMAT_VERSION:
        raise RunError(
            f"{path}: written by a newer gradient-harness (format {newest}; this one "
            f"reads up to {FORMAT_VERSION}): upgrade gradient-harness to compare it"
        )
    machine = doc["machine_info"].get("harness") or {}
    bounds = {
        device: _optional(machine, f"{name}_copy_bandwidth", "machine_info.harness", zero=False)
        for device, name in (("cpu", "host"), ("cuda", "cuda"))
    }
    rows = []
    for i, bench in enumerate(doc["benchmarks"]):
        try:
            rows.append(_row(run_name, bench, bounds))
        except _Damaged as exc:
            name = bench.get("name") if isinstance(bench, dict) else None
            raise _Damaged(f"benchmark {name if isinstance(name, str) else f'#{i + 1}'}: {exc}") from None
    return Saved(rows, machine if isinstance(machine, dict) else {})


def _row(run: str, bench: dict, bounds: dict[str, float | None]) -> Row:
    """One benchmark of a saved run, every field checked (`_Damaged` names the first bad one)."""
    e, s = _field(bench, "extra_info", "benchmark"), _field(bench, "stats", "benchmark")
    text = {key: _text(e, key) for key in ("backend", "mode", "strategy", "dtype", "device", "problem")}
    size = _field(e, "size", "extra_info")
    if not isinstance(size, list):
        raise _Damaged(f"extra_info.size is {reprlib.repr(size)}, not a list of whole numbers")
    data = s.get("data")
    if data is not None and not isinstance(data, list):
        raise _Damaged(f"stats.data is {reprlib.repr(data)}, not a list of times")
    validated = e.get("validated")
    if validated is not None and not isinstance(validated, bool):
        raise _Damaged(f"extra_info.validated is {reprlib.repr(validated)}, not true or false")
    world, scaling = e.get("world"), e.get("scaling")
    if world is not None and (_whole(world, "extra_info.world") < 1):
        raise _Damaged(f"extra_info.world is {world}, not a world size of 1 or more")
    if scaling not in (None, "strong", "weak"):
        raise _Damaged(f"extra_info.scaling is {reprlib.repr(scaling)}, not 'strong' or 'weak'")
    flags = e.get("flags") or []
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise _Damaged(f"extra_info.flags is {reprlib.repr(flags)}, not a list of strings")
    error = e.get("validation_error")  # NaN where the backend returned NaN: a finding, not damage
    if error is not None and not _is_number(error):
        raise _Damaged(f"extra_info.validation_error is {reprlib.repr(error)}, not a number")
    return Row(
        run=run,
        group=_text(bench, "group", "benchmark"),
        **text,
        size=tuple(_whole(n, f"extra_info.size[{i}]") for i, n in enumerate(size)),
        order=_whole(_field(e, "order", "extra_info"), "extra_info.order"),
        median=_seconds(s, "median"),
        iqr=_seconds(s, "iqr", zero=True),
        q1=_seconds(s, "q1"),
        q3=_seconds(s, "q3"),
        min=_seconds(s, "min"),
        first_call_s=_optional(e, "first_call_s"),
        bytes=_optional(e, "bytes"),
        flops=_optional(e, "flops"),
        validated=bool(validated),
        validation_error=None if error is None else float(error),
        bound=bounds.get(text["device"].split(":")[0]),
        event_median=_optional(e, "event_median_s"),
        data=None
        if data is None
        else [_amount(t, f"stats.data[{i}]", zero=False) for i, t in enumerate(data)],
        world=world,
        scaling=scaling,
        contention=_optional(e, "contention"),
        run_queue_wait=_optional(e, "run_queue_wait"),
        flags=tuple(flags),
        peak_memory=_optional(e, "peak_memory_bytes"),
    )


def _field(section, key: str, where: str):
    if not isinstance(section, dict):
        raise _Damaged(f"{where} is {reprlib.repr(section)}, not an object")
    if key not in section:
        raise _Damaged(f"{where} has no {key!r}")
    return section[key]


def _text(section: dict, key: str, where: str = "extra_info") -> str:
    value = _field(section, key, where)
    if not isinstance(value, str):
        raise _Damaged(f"{where}.{key} is {reprlib.repr(value)}, not a string")
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Damaged(f"{what} is {reprlib.repr(value)}, not a whole number")
    return value


def _amount(value, what: str, *, zero: bool = True) -> float:
    """``value`` as a float: a finite number, 0 or more (above 0 unless ``zero``); else `_Damaged`."""
    try:
        number = float(value) if _is_number(value) else math.nan
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        raise _Damaged(
            f"{what} is {reprlib.repr(value)}, not a finite number {'of 0 or more' if zero else 'above 0'}"
        )
    return number


def _seconds(stats: dict, key: str, *, zero: bool = False) -> float:
    """A statistic of the timed calls: above 0 (a call cannot take 0 s), or 0 or more for a spread."""
    return _amount(_field(stats, key, "stats"), f"stats.{key}", zero=zero)


def _optional(section: dict, key: str, where: str = "extra_info", *, zero: bool = True) -> float | None:
    value = section.get(key)
    return None if value is None else _amount(value, f"{where}.{key}", zero=zero)
