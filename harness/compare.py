"""Side-by-side comparison of saved runs (pytest-benchmark JSON), the regression gate, and plots.

A run is read only if it was saved by gradient-harness (its benchmarks carry
``extra_info.harness_format``); a corrupt, truncated, foreign, newer or damaged file
(a time that is not a finite number above 0, a size that is not whole numbers) is
reported by name and the other files are still compared.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import reprlib
import shutil
import stat
import textwrap
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tabulate import SEPARATING_LINE, tabulate

from harness.timing import FORMAT_VERSION

NOISE_P = 0.01
"""A slowdown counts only if a one-sided Mann-Whitney U test gives p below this."""


class RunError(ValueError):
    """A results file that cannot be compared; the message names the file and what to do."""


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


def load(path: Path) -> list[Row]:
    """The rows of one saved run, or `RunError` saying what is wrong with the file and what to do."""
    try:
        return _load(path)
    except RunError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: cannot read it ({exc}); check the path and permissions, or "
                       "delete the file if it is not a saved run") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc}); the file is corrupt or truncated: "
                       "delete it and rerun the benchmarks") from None
    except RecursionError:
        raise RunError(f"{path}: JSON nested too deeply to be a saved run; delete it and rerun "
                       "the benchmarks") from None
    except _Damaged as exc:
        raise RunError(f"{path}: damaged run: {exc}; delete it and rerun the benchmarks") from None
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
        raise RunError(f"{path}: damaged run ({type(exc).__name__}: {exc}); delete it and "
                       "rerun the benchmarks") from None


class _Damaged(ValueError):
    """A value no saved run holds, said as ``what is VALUE, not WHAT IT SHOULD BE``."""


def _load(path: Path) -> list[Row]:
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list) \
            or not isinstance(doc.get("machine_info"), dict):
        raise RunError(f"{path}: not a pytest-benchmark run (no 'benchmarks' and 'machine_info'); "
                       "pass a file saved by `pytest --benchmark-only` or `compare --save`")
    extras = [b.get("extra_info") for b in doc["benchmarks"] if isinstance(b, dict)]
    if not extras or not all(isinstance(e, dict) and "harness_format" in e for e in extras):
        raise RunError(f"{path}: a pytest-benchmark run without gradient-harness fields (from "
                       "another project?); compare reads runs saved by gradient-harness only")
    newest = max(_whole(e["harness_format"], "extra_info.harness_format") for e in extras)
    if newest > FORMAT_VERSION:
        raise RunError(f"{path}: written by a newer gradient-harness (format {newest}; this one "
                       f"reads up to {FORMAT_VERSION}): upgrade gradient-harness to compare it")
    machine = doc["machine_info"].get("harness") or {}
    bounds = {device: _optional(machine, f"{name}_copy_bandwidth", "machine_info.harness", zero=False)
              for device, name in (("cpu", "host"), ("cuda", "cuda"))}
    rows = []
    for i, bench in enumerate(doc["benchmarks"]):
        try:
            rows.append(_row(Path(path).stem, bench, bounds))
        except _Damaged as exc:
            name = bench.get("name") if isinstance(bench, dict) else None
            raise _Damaged(f"benchmark {name if isinstance(name, str) else f'#{i + 1}'}: {exc}") from None
    return rows


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
    error = e.get("validation_error")  # NaN where the backend returned NaN: a finding, not damage
    if error is not None and not _is_number(error):
        raise _Damaged(f"extra_info.validation_error is {reprlib.repr(error)}, not a number")
    return Row(
        run=run, group=_text(bench, "group", "benchmark"), **text,
        size=tuple(_whole(n, f"extra_info.size[{i}]") for i, n in enumerate(size)),
        order=_whole(_field(e, "order", "extra_info"), "extra_info.order"),
        median=_seconds(s, "median"), iqr=_seconds(s, "iqr", zero=True), q1=_seconds(s, "q1"),
        q3=_seconds(s, "q3"), min=_seconds(s, "min"),
        first_call_s=_optional(e, "first_call_s"), bytes=_optional(e, "bytes"),
        flops=_optional(e, "flops"), validated=bool(validated),
        validation_error=None if error is None else float(error),
        bound=bounds.get(text["device"].split(":")[0]),
        data=None if data is None else [_amount(t, f"stats.data[{i}]", zero=False)
                                        for i, t in enumerate(data)])


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
        raise _Damaged(f"{what} is {reprlib.repr(value)}, not a finite number "
                       f"{'of 0 or more' if zero else 'above 0'}")
    return number


def _seconds(stats: dict, key: str, *, zero: bool = False) -> float:
    """A statistic of the timed calls: above 0 (a call cannot take 0 s), or 0 or more for a spread."""
    return _amount(_field(stats, key, "stats"), f"stats.{key}", zero=zero)


def _optional(section: dict, key: str, where: str = "extra_info", *, zero: bool = True) -> float | None:
    value = section.get(key)
    return None if value is None else _amount(value, f"{where}.{key}", zero=zero)


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds * 1e9:.4g} ns"


COLUMNS = ["group", "run", "backend / mode / strategy / dtype / device", "median", "IQR",
           "x fastest", "first call", "GB/s", "of bound", "validated"]

WRAPPED = {"run", COLUMNS[2]}
"""The columns whose text may wrap over lines to fit the terminal; numbers never wrap."""

NARROWEST = 10
"""A wrapped column is made no narrower than this (or its text, if shorter)."""

LEGEND = [
    ("median", "time per call: the median over the timed rounds"),
    ("IQR", "interquartile range of those times (q3 - q1): their spread"),
    ("x fastest", "median over the fastest median in the same group (1.00: the fastest)"),
    ("first call", "the first call, timed apart: trace + compile + run"),
    ("GB/s", "bytes moved per call by the problem's cost model, over the median"),
    ("of bound", "that GB/s over the machine's measured copy bandwidth for the device;"),
    ("", "the logistic gradient's cost model reads the N x D inputs twice"),
    ("validated", "the result agreed with its oracle before timing (NO: it did not)"),
]

HELP_COLUMNS = (
    "Columns: median is the median time per call over the timed rounds and IQR the "
    "interquartile range of those times; x fastest is the median over the fastest median in "
    "the same group; first call is the first call, timed apart (trace + compile + run); GB/s is "
    "the bytes moved per call by the problem's cost model over the median, and of bound that "
    "GB/s over the machine's measured copy bandwidth for the device (the logistic gradient's "
    "cost model reads the N x D inputs twice); validated says whether the result agreed with "
    "its oracle before timing.")
"""`LEGEND` as one paragraph, for ``compare --help`` (no ``%``: argparse formats help text)."""


def legend() -> str:
    """What each column of `table` means, to print under it."""
    return "\n".join(f"{name:<12}{text}".rstrip() for name, text in LEGEND)


def table(rows: list[Row], fmt: str = "table", width: int | None = None) -> str:
    """Rows grouped by problem, size and order, fastest first, in ``fmt`` (table, md, csv, json).

    ``table`` fits ``width`` characters (default: the terminal's, no limit when the output is
    not a terminal): the run column goes when there is one run, then the text wraps over
    lines; ``md`` keeps every column on one line. ``json`` is strict: NaN and infinity as null.
    """
    rows = sorted(rows, key=lambda r: (r.problem, r.size, r.order, r.group, r.median))
    fastest = defaultdict(lambda: float("inf"))
    for r in rows:
        fastest[r.group] = min(fastest[r.group], r.median)
    if fmt == "json":
        records = [{**{k: v for k, v in asdict(r).items() if k != "data"},
                    "gbps": r.gbps, "of_bound": r.of_bound,
                    "x_fastest": r.median / fastest[r.group]} for r in rows]
        return json.dumps(_finite(records), indent=2, allow_nan=False)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["group", "run", "backend", "mode", "strategy", "dtype", "device",
                         "median_s", "iqr_s", "x_fastest", "first_call_s", "gbps", "of_bound",
                         "validated"])
        for r in rows:
            writer.writerow([r.group, r.run, r.backend, r.mode, r.strategy, r.dtype, r.device,
                             r.median, r.iqr, r.median / fastest[r.group], r.first_call_s,
                             r.gbps, r.of_bound, r.validated])
        return out.getvalue()
    body = [[r.group, r.run, r.label, _time(r.median), _time(r.iqr),
             f"{r.median / fastest[r.group]:.2f}", _time(r.first_call_s),
             f"{r.gbps:.3g}" if r.gbps else "-",
             f"{r.of_bound:.0%}" if r.of_bound else "-", "yes" if r.validated else "NO"]
            for r in rows]
    if fmt == "md":
        return tabulate(body, headers=COLUMNS, tablefmt="github", disable_numparse=True)
    return _fitted(body, shutil.get_terminal_size((0, 0)).columns if width is None else width)


def _fitted(body: list[list[str]], width: int) -> str:
    """``body`` under `COLUMNS` as a plain text table, at most ``width`` wide (0: no limit) as far as
    the numbers allow. If the table is wider, each group's name goes on a line above its rows, the
    run column goes if there is one run, and the text columns and headers wrap."""
    table = tabulate(body, headers=COLUMNS, tablefmt="simple", disable_numparse=True)
    if not width or max(map(len, table.splitlines())) <= width:
        return table
    several = len({row[1] for row in body}) > 1
    keep = [i for i, name in enumerate(COLUMNS) if name != "group" and (several or name != "run")]
    headers = [COLUMNS[i] for i in keep]
    cells = [[row[i] for i in keep] for row in body]
    groups = [row[0] for row in body]
    rows: list = [headers, SEPARATING_LINE]  # the header as a row: tabulate pads real headers by 2
    for i, row in enumerate(cells):  # and a rule before each group, where its name will go
        rows += [SEPARATING_LINE, row] if i == 0 or groups[i] != groups[i - 1] else [row]
    text = tabulate(rows, tablefmt="simple", disable_numparse=True,
                    maxcolwidths=_widths(headers, cells, width))
    lines = text.splitlines()[1:-1]  # without headers, "simple" draws a rule above and below
    head = next(i for i, line in enumerate(lines) if line.startswith("-")) + 1
    out, names = lines[:head], iter(dict.fromkeys(groups))
    for line in lines[head:]:
        if line == lines[head - 1]:
            out += ([""] if len(out) > head else []) + textwrap.wrap(f"{next(names)}:", width)
        else:
            out.append(line)
    return "\n".join(out)


def _widths(headers: list[str], cells: list[list[str]], width: int) -> list[int]:
    """Each column's width to fit ``width``: the least first (the numbers whole, a header's longest
    word, `NARROWEST` for wrapped text), then what is left shared out, to the wrapped text first."""
    columns = list(zip(headers, *cells, strict=True))
    natural = [max(map(len, column)) for column in columns]
    least = [min(n, NARROWEST) if column[0] in WRAPPED else max(map(len, [*column[0].split(), *column[1:]]))
             for n, column in zip(natural, columns, strict=True)]
    room = width - sum(least) - 2 * (len(headers) - 1)
    for grow in ([i for i, h in enumerate(headers) if h in WRAPPED], range(len(headers))):
        while room > 0 and (short := [i for i in grow if least[i] < natural[i]]):
            for i in short[:room]:
                least[i] += 1
            room -= min(room, len(short))
    return least


def _finite(value):
    """``value`` with every NaN or infinity as ``None``: what strict JSON can hold."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def growth(rows: list[Row], fmt: str = "table") -> str:
    """Per backend/mode/strategy: the fitted cost growth per derivative order, steady and first call.

    The fit is least squares of log(time) against order over the validated
    orders (3 or more), so ``x3.1`` means each order costs 3.1 times the last.
    """
    import numpy as np

    series: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if len(r.size) <= 1 and r.validated:
            series[(r.run, r.problem, r.size, r.backend, r.mode, r.strategy, r.dtype, r.device)].append(r)

    def per_order(points):
        orders, times = zip(*points, strict=True)
        return float(np.exp(np.polyfit(orders, np.log(times), 1)[0]))

    body = []
    for key, group in sorted(series.items()):
        group.sort(key=lambda r: r.order)
        if len(group) < 3:
            continue
        first = [(r.order, r.first_call_s) for r in group if r.first_call_s]
        body.append([*key[3:], f"{group[0].order}-{group[-1].order}",
                     f"x{per_order([(r.order, r.median) for r in group]):.2f}",
                     f"x{per_order(first):.2f}" if len(first) >= 3 else "-",
                     _time(group[0].median), _time(group[-1].median),
                     f"{max(r.validation_error or 0.0 for r in group):.1e}"])
    if not body:
        return ""
    headers = ["backend", "mode", "strategy", "dtype", "device", "orders", "growth/order",
               "first-call growth", "time at first", "time at last", "max rel error"]
    return tabulate(body, headers=headers, tablefmt="github" if fmt == "md" else "simple",
                    disable_numparse=True)


def parse_threshold(text: str) -> tuple[str, float]:
    """``"median:10%"`` as ``("median", 0.10)``."""
    match = re.fullmatch(r"(median|min):(\d+(?:\.\d+)?)%", text.strip())
    if not match:
        raise ValueError(f"--fail-on takes STAT:N% with STAT median or min, e.g. median:10%, "
                         f"not {text!r}")
    return match[1], float(match[2]) / 100


def regressions(current: list[Row], baseline: list[Row], stat: str, threshold: float
                ) -> list[str]:
    """Rows slower than the baseline by more than ``threshold`` and beyond noise, described."""
    from scipy.stats import mannwhitneyu

    base = {r.key: r for r in baseline}
    found = []
    for row in current:
        old = base.get(row.key)
        if old is None:
            continue
        ratio = getattr(row, stat) / getattr(old, stat)
        if ratio <= 1 + threshold:
            continue
        if row.data and old.data and min(len(row.data), len(old.data)) >= 5:
            p = mannwhitneyu(row.data, old.data, alternative="greater").pvalue
            noise, evidence = p >= NOISE_P, f"Mann-Whitney p={p:.2g}"
        else:
            noise, evidence = row.q1 <= old.q3, "quartiles " + (
                "overlap" if row.q1 <= old.q3 else "apart")
        if not noise:
            found.append(f"{row.group} | {row.label}: {stat} {_time(getattr(row, stat))} vs "
                         f"{_time(getattr(old, stat))} in {old.run} (x{ratio:.2f}, {evidence})")
    return found


STYLES = {"reverse": "-", "forward": "--", "forward-over-reverse": ":", "taylor": "-."}


def plot(rows: list[Row], folder: Path) -> list[Path]:
    """PNG figures per device: cost against order (steady state, first call, validation error,
    one line per backend/mode/strategy), and time against size per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for device in sorted({r.device for r in rows}):
        on = [r for r in rows if r.device == device]
        ordered = [r for r in on if len(r.size) == 1]
        if ordered:
            fig, axes = plt.subplots(1, 3, figsize=(16, 5))
            lines = defaultdict(list)
            for r in ordered:
                lines[(r.backend, r.mode, r.strategy, r.dtype)].append(r)
            # colour: backend and mode; line style: strategy
            colours = {k: f"C{i}" for i, k in enumerate(sorted({k[:2] for k in lines}))}
            panels = [("median time per call (s)", lambda r: r.median),
                      ("first call: trace + compile + run (s)", lambda r: r.first_call_s),
                      ("max error / max |reference|", lambda r: r.validation_error)]
            for ax, (title, value) in zip(axes, panels, strict=True):
                for key, group in sorted(lines.items()):
                    points = sorted((r.order, value(r)) for r in group if value(r))
                    if points:
                        ax.plot(*zip(*points, strict=True), marker="o", markersize=3,
                                color=colours[key[:2]], linestyle=STYLES.get(key[2], "-"),
                                label=" ".join(key))
                ax.set_yscale("log")
                ax.set_xlabel("derivative order")
                ax.set_title(title)
                ax.grid(True, which="both", alpha=0.3)
            axes[0].legend(fontsize=7)
            size = ordered[0].size[0]
            fig.suptitle(f"{ordered[0].problem}: n-th derivative over {size} points, {device}")
            fig.tight_layout()
            written.append(_save(fig, folder, f"time-vs-order-{device}"))
        sized = [r for r in on if len(r.size) == 2]
        if sized:
            fig, ax = plt.subplots(figsize=(8, 5))
            lines = defaultdict(list)
            for r in sized:
                lines[f"{r.backend} {r.mode} {r.dtype} ({r.run})"].append((r.size[0] * r.size[1], r.median))
            for label, points in sorted(lines.items()):
                ax.plot(*zip(*sorted(points), strict=True), marker="o", label=label)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("N x D")
            ax.set_ylabel("median time per call (s)")
            ax.set_title(f"{sized[0].problem} value and gradient, {device}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            written.append(_save(fig, folder, f"time-vs-size-{device}"))
        plt.close("all")
    return written


def _save(fig, folder: Path, stem: str) -> Path:
    path = folder / f"{re.sub(r'[^a-z0-9]+', '-', stem.lower())}.png"
    fig.savefig(path, dpi=110)
    return path
