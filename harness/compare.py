"""Side-by-side comparison of saved runs (pytest-benchmark JSON), the regression gate, and plots.

A run is read only if it was saved by gradient-harness (its benchmarks carry
``extra_info.harness_format``); a corrupt, truncated, foreign or newer file is
reported by name and the other files are still compared.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from tabulate import tabulate

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
    """Files for run arguments: a path, or a run name (file name, stem or unique prefix) in ``folder``."""
    paths = []
    for name in names:
        path = Path(name)
        if path.is_file():
            paths.append(path)
            continue
        runs = sorted(folder.glob("*.json")) if folder.is_dir() else []
        found = [p for p in runs if p.name == name or p.stem == name] or \
                [p for p in runs if p.stem.startswith(name)]
        if name == "latest" and runs:
            found = [max(runs, key=lambda p: p.stat().st_mtime)]
        if len(found) != 1:
            known = ", ".join(p.stem for p in runs) or "none"
            why = "matches several" if found else "is neither a file nor a run"
            raise FileNotFoundError(f"{name!r} {why} in {folder}/ (runs: {known})")
        paths.append(found[0])
    return paths


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
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise RunError(f"{path}: damaged run ({type(exc).__name__}: {exc}); delete it and "
                       "rerun the benchmarks") from None


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
    newest = max(int(e["harness_format"]) for e in extras)
    if newest > FORMAT_VERSION:
        raise RunError(f"{path}: written by a newer gradient-harness (format {newest}; this one "
                       f"reads up to {FORMAT_VERSION}): upgrade gradient-harness to compare it")
    machine = doc["machine_info"].get("harness") or {}
    bounds = {"cpu": machine.get("host_copy_bandwidth"), "cuda": machine.get("cuda_copy_bandwidth")}
    rows = []
    for bench in doc["benchmarks"]:
        e, s = bench["extra_info"], bench["stats"]
        rows.append(Row(
            run=Path(path).stem, group=bench["group"], backend=e["backend"], mode=e["mode"],
            strategy=e["strategy"], dtype=e["dtype"], device=e["device"],
            problem=e["problem"], size=tuple(e["size"]), order=e["order"],
            median=float(s["median"]), iqr=float(s["iqr"]), q1=float(s["q1"]), q3=float(s["q3"]),
            min=float(s["min"]), first_call_s=e.get("first_call_s"), bytes=e.get("bytes"),
            flops=e.get("flops"), validated=bool(e.get("validated")),
            validation_error=e.get("validation_error"),
            bound=bounds.get(e["device"].split(":")[0]), data=s.get("data")))
    return rows


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds * 1e9:.4g} ns"


COLUMNS = ["group", "run", "backend / mode / strategy / dtype / device", "median", "IQR",
           "x fastest", "first call", "GB/s", "of bound", "validated"]


def table(rows: list[Row], fmt: str = "table") -> str:
    """Rows grouped by problem, size and order, fastest first, in ``fmt`` (table, md, csv, json)."""
    rows = sorted(rows, key=lambda r: (r.problem, r.size, r.order, r.group, r.median))
    fastest = defaultdict(lambda: float("inf"))
    for r in rows:
        fastest[r.group] = min(fastest[r.group], r.median)
    if fmt == "json":
        return json.dumps([{**{k: v for k, v in asdict(r).items() if k != "data"},
                            "gbps": r.gbps, "of_bound": r.of_bound,
                            "x_fastest": r.median / fastest[r.group]} for r in rows], indent=2)
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
    return tabulate(body, headers=COLUMNS, tablefmt="github" if fmt == "md" else "simple",
                    disable_numparse=True)


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
