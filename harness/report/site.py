"""The report as a static site: ``index.html`` (the runs, what was left out and why, the
comparisons), a page per run, per comparison and one of history, beside the scripts and styles they
use, so that it opens from the file system with no network and no server.

Pages are rendered by Jinja2 from ``templates/``; the figures come from `harness.report.figures`
(Plotly, whose ``plotly.min.js`` is copied from its Python package beside the pages once) and
``static/report.js`` sorts and filters the tables. Every file is written atomically
(`harness.results.files`) into the output folder, and nowhere else.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from harness.report import figures
from harness.report.model import Comparison, Run
from harness.results import compare, files, gate, soundness

_ratio = "{:.2f}".format
CELLS = {
    "backend / mode / strategy / dtype / device": ("label", str),
    "median": ("median", compare.format_seconds),
    "IQR": ("iqr", compare.format_seconds),
    "x fastest": ("x_fastest", _ratio),
    "first call": ("first_call_s", compare.format_seconds),
    "GB/s": ("gbps", "{:.3g}".format),
    "of bound": ("of_bound", "{:.0%}".format),
    "x value": ("x_value", _ratio),
    "peak mem": ("peak_memory", compare.format_bytes),
    "mem x value": ("memory_x_value", _ratio),
    "x hand-written": ("x_hand_written", _ratio),
    "validated": ("validated", lambda v: "yes" if v else "NO"),
}
"""Each of compare's columns (but group and run, a run page's sections and title): the field of
``compare --format json`` it shows and how compare's table writes it."""

FLAGS = {
    "contended": "C: its threads waited for CPUs other processes held",
    "spread": "S: its IQR is over its median, too widely spread to mean much",
}
STATIC = ("report.css", "report.js")
PLOTLY_JS = "plotly.min.js"


def columns() -> list[tuple[str, str]]:
    """(header, JSON field) of the run tables, in compare's order (a column compare adds and the
    report lacks is a `KeyError` here, not a silent gap)."""
    return [(name, CELLS[name][0]) for name in compare.COLUMNS if name not in ("group", "run")]


def cell(record: dict, header: str) -> dict:
    """One table cell: the exact value (sorting, tests), the text compare's table shows, a title."""
    key, fmt = CELLS[header]
    if key == "label":
        value = " ".join(record[k] for k in ("backend", "mode", "strategy", "dtype", "device"))
        return {"value": value, "text": value, "title": ""}
    value = record[key]
    text = "-" if value is None or (key == "gbps" and not value) else fmt(value)
    title = ""
    if key == "median" and record["flags"]:
        text += " " + "".join(f[0].upper() for f in record["flags"])
        title = "; ".join(FLAGS.get(f, f) for f in record["flags"])
        title += (
            f" (contention {_share(record['contention'])}, run-queue wait {_share(record['run_queue_wait'])})"
        )
    if key == "validated":
        error = record["validation_error"]
        title = ("agreed with its oracle before timing" if value else "did NOT agree with its oracle") + (
            f"; max error / max |reference| {error:.2e}" if error is not None else ""
        )
    return {"value": value, "text": text, "title": title}


def _share(x: float | None) -> str:
    return "not measured" if x is None else f"{x:.0%}"


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["seconds"] = compare.format_seconds
    env.filters["json"] = lambda v: json.dumps(v, allow_nan=False)
    env.globals.update(cell=cell, columns=columns(), legend=compare.LEGEND, verdicts=gate.VERDICTS)
    return env


def _figure_html(fig, div_id: str) -> str:
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


def _figures(pairs, prefix: str) -> list[dict]:
    return [
        {"title": title, "id": f"{prefix}-{i}", "html": _figure_html(fig, f"{prefix}-{i}")}
        for i, (title, fig) in enumerate(pairs)
    ]


def run_figures(run: Run) -> list[dict]:
    pairs = figures.by_order(run.rows) + figures.by_size(run.rows) + figures.by_world(run.rows)
    if run.profile == "gradbench":
        pairs += figures.x_value(run.records)
    return _figures(pairs, "figure")


def machine(run: Run) -> dict:
    """The machine and its conditions, as the run recorded them."""
    info = run.machine
    state = info.get("state_before") or info.get("state_after") or {}
    cpus = state.get("cpus_allowed")
    bandwidth = {
        device: f"{info[key] / 1e9:.3g} GB/s"
        for device, key in (("host", "host_copy_bandwidth"), ("cuda", "cuda_copy_bandwidth"))
        if info.get(key)
    }
    return {
        "CPU": f"{info.get('cpu_model', '?')}, {info.get('cpu_count', '?')} cores",
        "CPUs allowed": ", ".join(map(str, cpus)) if cpus else "not recorded",
        "copy bandwidth": ", ".join(f"{k} {v}" for k, v in bandwidth.items()) or "not measured",
        "GPUs": "; ".join(
            f"{g.get('name', '?')} (driver {g.get('driver', '?')}, {g.get('memory', '?')})"
            for g in info.get("gpus") or []
        )
        or "none",
        "versions": ", ".join(f"{k} {v}" for k, v in sorted((info.get("versions") or {}).items()) if v),
        "profile": run.profile,
    }


def write(
    found: list[Run],
    left_out: list[str],
    pairs: list[Comparison],
    history: dict[str, dict[str, list]],
    folder: Path,
) -> list[Path]:
    """The site in ``folder``; the pages written."""
    env = _environment()
    written = []

    def page(name: str, template: str, **context) -> None:
        html = env.get_template(template).render(runs=found, **context)
        written.append(files.write_text(folder / name, html))

    page("index.html", "index.html", title="gradient-harness results", left_out=left_out, comparisons=pairs)
    for run in found:
        groups: dict[str, list[dict]] = {}
        for record in run.records:
            groups.setdefault(record["group"], []).append(record)
        page(
            run.page,
            "run.html",
            title=f"run {run.name}",
            run=run,
            groups=groups,
            machine=machine(run),
            conditions=soundness.machine_lines(run.name, run.machine),
            warning=soundness.flag_warning(run.rows),
            figures=run_figures(run),
            filters={k: sorted({r[k] for r in run.records}) for k in ("backend", "mode", "strategy")},
        )
    for pair in pairs:
        page(
            pair.page,
            "compare.html",
            title=f"{pair.candidate.name} against {pair.baseline.name}",
            pair=pair,
            noise_p=gate.NOISE_P,
            test_rounds=gate.TEST_ROUNDS,
            filters={
                k: sorted({getattr(j.candidate, k) for j in pair.rows})
                for k in ("backend", "mode", "strategy")
            },
        )
    cases = sorted(history.items())
    plots = _figures([figures.history(group, lines) for group, lines in cases], "history")
    page(
        "history.html",
        "history.html",
        title="history across runs",
        figures=plots,
        cases=[(*_history_table(lines), fig) for (_, lines), fig in zip(cases, plots, strict=True)],
    )
    for name in STATIC:
        text = resources.files("harness.report").joinpath("static", name).read_text(encoding="utf-8")
        written.append(files.write_text(folder / name, text))
    written.append(_plotly_js(folder / PLOTLY_JS))
    return written


def _history_table(lines: dict[str, list]) -> tuple[list[Run], dict[str, dict]]:
    """A case's table under its figure: the runs that have it, in date order, and per line its
    row in each (by run name)."""
    columns = {run.name: run for points in lines.values() for run, _ in points}
    return (
        sorted(columns.values(), key=lambda r: (r.saved, r.name)),
        {name: {run.name: row for run, row in points} for name, points in lines.items()},
    )


def _plotly_js(path: Path) -> Path:
    """Plotly's own script, from its Python package, beside the pages (left as it is if the same)."""
    from plotly.offline import get_plotlyjs

    script = get_plotlyjs().encode("utf-8")
    try:
        if path.read_bytes() == script:
            return path
    except OSError:
        pass
    return files.write_bytes(path, script)
