"""The report's figures, drawn by Plotly: cost against derivative order, time against size, the
derivative's cost over the function's (x value) per eval and framework, time and efficiency
against world size, and a case's time across runs.

Why Plotly: its Python package carries its own JavaScript (``plotly.min.js``, written once beside
the pages, so the site opens from the file system with no network), its figures are interactive
where that helps (hover shows the exact row; zoom; a click on a history point opens its run), and
they are built from the same rows in Python. matplotlib's PNGs (``compare --plot``) cannot show a
row on hover; Altair's renderer comes from a CDN unless another package bundles it.

Each function returns ``(title, figure)`` pairs, none where the rows have nothing to draw.
"""

from __future__ import annotations

from collections import defaultdict

from harness.results import runs
from harness.results.compare import format_seconds
from harness.results.runs import VALUE, Row

DASH = {
    "reverse": "solid",
    "forward": "dash",
    "forward-over-reverse": "dot",
    "taylor": "dashdot",
    "hand-written": "longdash",
}
"""A line's dash: its strategy; its colour: its backend and mode (as ``compare --plot`` draws)."""


def _palette() -> list[str]:
    """Plotly's 24 distinct colours: more lines than its ten default colours, none repeated."""
    from plotly.colors import qualitative

    return qualitative.Dark24


HOVER = "<b>%{fullData.name}</b><br>%{customdata}<extra></extra>"


def _figure():
    """An empty figure in a plain style: Plotly's own templates are deep-copied into every figure,
    which took most of the report's time (40 ms a figure against 2 ms)."""
    import plotly.graph_objects as go

    axis = {"gridcolor": "#e5e8ec", "linecolor": "#b8bec6", "zeroline": False, "automargin": True}
    return go.Figure(
        layout={
            "template": "none",
            "colorway": _palette(),
            "font": {"family": "system-ui, sans-serif", "size": 12},
            "xaxis": axis,
            "yaxis": axis,
            "hovermode": "closest",
        }
    )


def _layout(fig, title: str, x: str, y: str, *, log_x: bool = False, log_y: bool = True):
    fig.update_layout(
        title=title,
        height=420,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"font": {"size": 10}},
    )
    fig.update_xaxes(title=x, type="log" if log_x else None)
    fig.update_yaxes(title=y, type="log" if log_y else None)
    return fig


def _row_text(r: Row) -> str:
    return (
        f"{r.group}<br>median {format_seconds(r.median)} (IQR {format_seconds(r.iqr)}), "
        f"fastest {format_seconds(r.min)}<br>first call {format_seconds(r.first_call_s)}; "
        f"validated {'yes' if r.validated else 'NO'}"
        + (f"; error {r.validation_error:.1e}" if r.validation_error is not None else "")
        + (f"<br>flagged: {', '.join(r.flags)}" if r.flags else "")
    )


def by_order(rows: list[Row]) -> list[tuple[str, object]]:
    """Per device and problem of single-axis size: median, first call and validation error against
    the derivative order, a line per backend/mode/strategy/dtype."""
    import plotly.graph_objects as go

    panels = [
        ("median time per call (s)", lambda r: r.median),
        ("first call: trace + compile + run (s)", lambda r: r.first_call_s),
        ("max error / max |reference|", lambda r: r.validation_error),
    ]
    figures = []
    series: dict[tuple, dict[tuple, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if len(r.size) == 1 and r.world is None and r.order >= 1:
            series[(r.device, r.problem, r.size)][(r.backend, r.mode, r.strategy, r.dtype)].append(r)
    for (device, problem, size), lines in sorted(series.items()):
        if max(len({r.order for r in group}) for group in lines.values()) < 2:
            continue
        palette = _palette()
        colours = {k: palette[i % len(palette)] for i, k in enumerate(sorted({k[:2] for k in lines}))}
        for y, value in panels:
            fig = _figure()
            for key, group in sorted(lines.items()):
                points = sorted((r for r in group if value(r)), key=lambda r: r.order)
                if points:
                    fig.add_trace(
                        go.Scatter(
                            x=[r.order for r in points],
                            y=[value(r) for r in points],
                            name=" ".join(key),
                            mode="lines+markers",
                            line={"dash": DASH.get(key[2], "solid"), "color": colours[key[:2]]},
                            customdata=[_row_text(r) for r in points],
                            hovertemplate=HOVER,
                        )
                    )
            if fig.data:
                title = f"{problem} over {size[0]} points, {device}: {y} against derivative order"
                figures.append((title, _layout(fig, title, "derivative order", y)))
    return figures


def by_size(rows: list[Row]) -> list[tuple[str, object]]:
    """Per device, problem and order of two-axis sizes (N x D): median time against N x D."""
    import plotly.graph_objects as go

    series: dict[tuple, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if len(r.size) == 2 and r.world is None:
            series[(r.device, r.problem, r.order)][f"{r.backend} {r.mode} {r.strategy} {r.dtype}"].append(r)
    figures = []
    for (device, problem, order), lines in sorted(series.items()):
        if max(len({r.size for r in group}) for group in lines.values()) < 2:
            continue
        fig = _figure()
        for name, group in sorted(lines.items()):
            group.sort(key=lambda r: r.size[0] * r.size[1])
            fig.add_trace(
                go.Scatter(
                    x=[r.size[0] * r.size[1] for r in group],
                    y=[r.median for r in group],
                    name=name,
                    mode="lines+markers",
                    customdata=[_row_text(r) for r in group],
                    hovertemplate=HOVER,
                )
            )
        what = "value" if order == 0 else f"order {order}"
        title = f"{problem} ({what}), {device}: median time against N x D"
        figures.append((title, _layout(fig, title, "N x D", "median time per call (s)", log_x=True)))
    return figures


def x_value(records: list[dict]) -> list[tuple[str, object]]:
    """The derivative's cost in units of the function's own (``x value`` of ``compare --format
    json``) per eval and framework: the GradBench profile's table as a chart."""
    import plotly.graph_objects as go

    bars: dict[str, dict[str, float]] = defaultdict(dict)
    hover: dict[str, dict[str, str]] = defaultdict(dict)
    for rec in records:
        if rec["x_value"] is None or rec["strategy"] == VALUE:
            continue
        name = f"{rec['backend']} {rec['mode']} {rec['strategy']}"
        bars[name][rec["group"]] = rec["x_value"]
        hover[name][rec["group"]] = f"{rec['group']}<br>x value {rec['x_value']:.3g}"
    if not bars:
        return []
    groups = sorted({g for values in bars.values() for g in values})
    fig = _figure()
    for name, values in sorted(bars.items()):
        fig.add_trace(
            go.Bar(
                x=[g for g in groups if g in values],
                y=[values[g] for g in groups if g in values],
                name=name,
                customdata=[hover[name][g] for g in groups if g in values],
                hovertemplate=HOVER,
            )
        )
    title = "derivative's cost over the function's (x value), per eval and framework"
    fig = _layout(fig, title, "eval", "x value (fastest round over f's)")
    fig.update_layout(barmode="group", height=520)
    fig.add_hline(y=1, line={"dash": "dot", "color": "grey"}, annotation_text="f's own cost")
    return [(title, fig)]


def by_world(rows: list[Row]) -> list[tuple[str, object]]:
    """``scale`` runs: median step time and parallel efficiency against world size, a line per
    engine and size (the efficiency against the same line's world 1, where the run has it)."""
    import plotly.graph_objects as go

    figures = []
    for scaling in ("strong", "weak"):
        lines: dict[str, dict[int, Row]] = defaultdict(dict)
        for r in rows:
            if r.world is not None and r.scaling == scaling:
                n = r.size[0] // r.world if scaling == "weak" else r.size[0]
                lines[f"{r.backend} {r.mode} {r.dtype} {n}x{r.size[1]} {r.device}"][r.world] = r
        if not lines:
            continue
        time, efficiency = _figure(), _figure()
        for name, by in sorted(lines.items()):
            worlds = sorted(by)
            text = [_row_text(by[w]) for w in worlds]
            time.add_trace(go.Scatter(x=worlds, y=[by[w].median for w in worlds], name=name, customdata=text))
            if 1 in by:
                eff = [runs.speedup(by[1].median, by[w].median, w, scaling) / w for w in worlds]
                efficiency.add_trace(go.Scatter(x=worlds, y=eff, name=name, customdata=text))
        worlds = sorted({w for by in lines.values() for w in by})
        for fig in (time, efficiency):
            fig.update_traces(mode="lines+markers", hovertemplate=HOVER)
            fig.update_xaxes(tickvals=worlds)  # the world sizes, not log ticks between them
        title = f"{scaling} scaling: median time per step against world size"
        figures.append((title, _layout(time, title, "world size", "median time per step (s)", log_x=True)))
        if efficiency.data:
            title = f"{scaling} scaling: parallel efficiency against world size (1: perfect)"
            figures.append(
                (title, _layout(efficiency, title, "world size", "efficiency", log_x=True, log_y=False))
            )
    return figures


def history(group: str, lines: dict[str, list]) -> tuple[str, object]:
    """One case's median time across runs in date order, a line per backend/mode/strategy; each
    point carries its run's page (``customdata[1]``), which a click opens."""
    import plotly.graph_objects as go

    fig = _figure()
    for name, points in sorted(lines.items()):
        fig.add_trace(
            go.Scatter(
                x=[run.saved.strftime("%Y-%m-%d %H:%M:%S") for run, _ in points],
                y=[row.median for _, row in points],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [row.q3 - row.median for _, row in points],
                    "arrayminus": [row.median - row.q1 for _, row in points],
                },
                name=name,
                mode="lines+markers",
                customdata=[[f"{run.name}<br>{_row_text(row)}", run.page] for run, row in points],
                hovertemplate="<b>%{fullData.name}</b><br>%{customdata[0]}<extra></extra>",
            )
        )
    title = f"{group}: median time per call across runs (bars: quartiles; click a point for its run)"
    return title, _layout(fig, title, "run saved (UTC)", "median time per call (s)")
