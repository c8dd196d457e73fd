"""Figures of saved runs (PNG, by matplotlib): cost against derivative order, time against size,
and, for ``scale`` runs, time and parallel efficiency against world size.

Runs are read by `harness.results.runs` (rows, one per benchmark); this module only draws
them. It imports no framework, oracle or validation code.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from pathlib import Path

from harness.results import files, runs
from harness.results.runs import Row

STYLES = {"reverse": "-", "forward": "--", "forward-over-reverse": ":", "taylor": "-."}


def plot(rows: list[Row], folder: Path) -> list[Path]:
    """PNG figures per device: cost against order (steady state, first call, validation error,
    one line per backend/mode/strategy), time against size per backend, and for ``scale`` runs
    time and parallel efficiency against world size."""
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
            panels = [
                ("median time per call (s)", lambda r: r.median),
                ("first call: trace + compile + run (s)", lambda r: r.first_call_s),
                ("max error / max |reference|", lambda r: r.validation_error),
            ]
            for ax, (title, value) in zip(axes, panels, strict=True):
                for key, group in sorted(lines.items()):
                    points = sorted((r.order, value(r)) for r in group if value(r))
                    if points:
                        ax.plot(
                            *zip(*points, strict=True),
                            marker="o",
                            markersize=3,
                            color=colours[key[:2]],
                            linestyle=STYLES.get(key[2], "-"),
                            label=" ".join(key),
                        )
                ax.set_yscale("log")
                ax.set_xlabel("derivative order")
                ax.set_title(title)
                ax.grid(True, which="both", alpha=0.3)
            axes[0].legend(fontsize=7)
            size = ordered[0].size[0]
            fig.suptitle(f"{ordered[0].problem}: n-th derivative over {size} points, {device}")
            fig.tight_layout()
            written.append(_save(fig, folder, f"time-vs-order-{device}"))
        sized = [r for r in on if len(r.size) == 2 and r.world is None]
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
        for scaling in ("strong", "weak"):
            scaled = [r for r in on if r.world is not None and r.scaling == scaling]
            if scaled:
                written.append(_scaling_figure(plt, scaled, folder, scaling, device))
        plt.close("all")
    return written


def _scaling_figure(plt, rows: list[Row], folder: Path, scaling: str, device: str) -> Path:
    """Median step time and parallel efficiency against world size, a line per engine and size
    (the efficiency against the same line's world 1, where the run has it)."""

    lines = defaultdict(dict)
    for r in rows:
        n = r.size[0] // r.world if scaling == "weak" else r.size[0]
        per = " per process" if scaling == "weak" else ""
        lines[f"{r.backend} {r.mode} {r.dtype} {n}x{r.size[1]}{per} ({r.run})"][r.world] = r.median
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for label, times in sorted(lines.items()):
        worlds = sorted(times)
        left.plot(worlds, [times[w] for w in worlds], marker="o", label=label)
        if 1 in times:
            right.plot(
                worlds,
                [runs.speedup(times[1], times[w], w, scaling) / w for w in worlds],
                marker="o",
                label=label,
            )
    worlds = sorted({r.world for r in rows})
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(worlds, [str(w) for w in worlds])
        ax.minorticks_off()
        ax.set_xlabel("world size (devices or processes)")
        ax.grid(True, which="both", alpha=0.3)
    left.set_yscale("log")
    left.set_ylabel("median time per step (s)")
    right.set_ylabel("parallel efficiency (1: perfect)")
    right.axhline(1.0, color="grey", linewidth=0.8)
    left.legend(fontsize=7)
    fig.suptitle(f"logistic value and gradient, {scaling} scaling, {device}")
    fig.tight_layout()
    return _save(fig, folder, f"scaling-{scaling}-{device}")


def _save(fig, folder: Path, stem: str) -> Path:
    path = folder / f"{re.sub(r'[^a-z0-9]+', '-', stem.lower())}.png"
    buffer = io.BytesIO()  # rendered whole first: a failed write leaves no half-written figure
    fig.savefig(buffer, format="png", dpi=110)
    files.write_bytes(path, buffer.getvalue())
    return path
