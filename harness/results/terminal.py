"""Tables fitted to a terminal's width: `compare`'s rows as one small table per group, and the
growth fit with what is the same on every row said once.

Fourteen columns do not fit 80 or 100 side by side, and wrapping a row's label word by word
makes each row four lines tall. So, per group (one problem, size and order): what every row of
the group shares (run, backend, mode, strategy, dtype, device) is said once in its heading, a
column that holds nothing (``-``) on every row of the group is left out, the label (what
differs) stays on one line, and only headers wrap, by words; numbers never wrap. A group still
too wide loses columns in the order of `DROPPED_FIRST`, and a line under the tables names them.
A table that fits as it is is printed as it is: wider terminals show more.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

from harness.results.runs import Row

LABEL_PARTS = ("run", "backend", "mode", "strategy", "dtype", "device")
"""What a row's label is made of; the parts a group shares go into its heading."""

KEPT_IN_LABEL = ("backend", "mode", "strategy")
"""A group whose rows share every part (one row) keeps these in its label, the rest in its heading."""

DROPPED_FIRST = ("IQR", "GB/s", "peak mem", "mem x value", "first call", "x hand-written", "of bound")
"""Columns left out of a group, in this order, while it is wider than the terminal."""


SHORTER = {"forward-over-reverse": "fwd-over-rev"}
"""A label's words written shorter in a group still too wide with all but the last of
`DROPPED_FIRST` gone (before the last goes)."""
SHORTEN = "shorten the labels"


def short_names(runs: set[str]) -> dict[str, str]:
    """Each run's name without its random suffix (``20261126T051830Z_cpu``), where that stays
    unique: a prefix `compare` takes as the run's name."""
    short = {run: re.sub(r"_[0-9a-f]{8}$", "", run) for run in runs}
    return short if len(set(short.values())) == len(short) else {run: run for run in runs}


def widest(text: str) -> int:
    return max(map(len, text.splitlines()), default=0)


def words(header: str) -> list[str]:
    """The pieces a header may wrap between: at spaces, and after hyphens (``first-`` ``call``)."""
    return [piece for word in header.split() for piece in re.split(r"(?<=-)(?=\w)", word)]


def render(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> list[str]:
    """A plain table: each column as wide as its widest cell or its header's longest word, the
    headers wrapped by words over as many lines as the longest needs, a rule under them."""
    widths = [
        max([len(w) for w in words(header)] + [len(row[i]) for row in cells])
        for i, header in enumerate(headers)
    ]
    wrapped = [textwrap.wrap(h, w, break_long_words=False) for h, w in zip(headers, widths, strict=True)]
    height = max(map(len, wrapped))

    def line(texts: Sequence[str]) -> str:
        return "  ".join(t.ljust(w) for t, w in zip(texts, widths, strict=True)).rstrip()

    head = [line([(w[i] if i < len(w) else "") for w in wrapped]) for i in range(height)]
    return [*head, "  ".join("-" * w for w in widths), *(line(row) for row in cells)]


def width_of(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> int:
    return widest("\n".join(render(headers, cells)))


def grouped(rows: list[Row], body: list[list[str]], columns: list[str], width: int) -> str:
    """``body`` (rows of ``columns``: group, run, label, then the figures) as one table per group,
    each within ``width`` as far as its figures allow (see the module's docstring)."""
    several_runs = len({r.run for r in rows}) > 1
    names = short_names({r.run for r in rows})
    figures = list(range(3, len(columns)))
    out: list[str] = []
    dropped: list[str] = []
    shortened: set[str] = set()
    start = 0
    while start < len(rows):
        end = start
        while end < len(rows) and body[end][0] == body[start][0]:
            end += 1
        members, cells = rows[start:end], body[start:end]
        parts = [[names[r.run], *(str(getattr(r, name)) for name in LABEL_PARTS[1:])] for r in members]
        varying = [i for i, name in enumerate(LABEL_PARTS) if len({p[i] for p in parts}) > 1]
        if not varying:
            varying = [LABEL_PARTS.index(name) for name in KEPT_IN_LABEL]
        shared = [
            parts[0][i]
            for i, name in enumerate(LABEL_PARTS)
            if i not in varying and (several_runs or name != "run")
        ]
        keep = [i for i in figures if any(row[i] != "-" for row in cells)]
        headers = [" / ".join(LABEL_PARTS[i] for i in varying)]

        def table(keep: list[int], short=False, parts=parts, cells=cells, varying=varying, headers=headers):
            labels = [[" ".join(SHORTER.get(p[i], p[i]) if short else p[i] for i in varying)] for p in parts]
            return headers + [columns[i] for i in keep], [
                label + [row[i] for i in keep] for label, row in zip(labels, cells, strict=True)
            ]

        short = False
        for step in (*DROPPED_FIRST[:-1], SHORTEN, DROPPED_FIRST[-1]):
            if width_of(*table(keep, short)) <= width:
                break
            if step is SHORTEN:
                short = True
            elif columns.index(step) in keep:
                keep.remove(columns.index(step))
                dropped.append(step)
        if short:
            shortened.update(w for p in parts for w in p if w in SHORTER)
        heading = f"{body[start][0]} ({' '.join(shared)}):" if shared else f"{body[start][0]}:"
        out += ([""] if out else []) + textwrap.wrap(heading, width) + render(*table(keep, short))
        start = end
    if dropped:
        names = ", ".join(dict.fromkeys(dropped))
        note = f"({names} left out of some groups to fit {width} columns; --format md has all)"
        out += ["", *textwrap.wrap(note, width)]
    if shortened:
        out += textwrap.wrap(f"({', '.join(f'{SHORTER[w]}: {w}' for w in sorted(shortened))})", width)
    return "\n".join(out)


GROWTH_HEADING = ("backend", "dtype", "device")
"""The growth table's columns said in the heading of each of its groups where it is too wide."""


def growth_groups(headers: list[str], body: list[list[str]], width: int) -> str:
    """``body`` under ``headers`` within ``width`` as far as its figures allow: one table per
    backend, dtype and device, those said in its heading, the headers wrapped by words."""
    said = [headers.index(name) for name in GROWTH_HEADING]
    keep = [i for i in range(len(headers)) if i not in said]
    out: list[str] = []
    for key in dict.fromkeys(tuple(row[i] for i in said) for row in body):
        cells = [[row[i] for i in keep] for row in body if tuple(row[i] for i in said) == key]
        out += ([""] if out else []) + textwrap.wrap(f"{' '.join(key)}:", width)
        out += render([headers[i].replace("/", " per ") for i in keep], cells)
    return "\n".join(out)
