"""What the HTML report shows, as data: the runs it read (and those it left out, with why), each
run's rows as ``compare --format json`` gives them, baselines against candidates with the gate's
verdict per row, and each case's history across runs.

Runs are read by `harness.results.runs`, rows laid out by `harness.results.compare` and judged by
`harness.results.gate`, the same code ``compare`` uses, so the report's numbers are compare's.
"""

from __future__ import annotations

import datetime
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import RunError
from harness.results import compare, gate, runs
from harness.results.runs import Row

_STAMP = re.compile(r"(\d{8}T\d{6}Z)_")


@dataclass
class Run:
    name: str
    path: Path
    saved: datetime.datetime
    """When it was saved: the UTC time in its name (`runs.file_name`), else the file's time."""
    rows: list[Row]
    machine: dict
    records: list[dict] = field(default_factory=list)
    """Its rows as ``compare RUN --format json`` prints them (one run alone: x fastest within it)."""

    @property
    def page(self) -> str:
        return f"run-{self.name}.html"

    @property
    def profile(self) -> str:
        return str(self.machine.get("profile") or "-")


@dataclass
class Judged:
    """One row both runs have, as the gate judges it."""

    group: str
    label: str
    baseline: Row
    candidate: Row
    verdict: str
    evidence: str
    rule: str


@dataclass
class Comparison:
    baseline: Run
    candidate: Run
    stat: str
    threshold: float
    rows: list[Judged]

    @property
    def page(self) -> str:
        return f"compare-{self.baseline.name}--{self.candidate.name}.html"

    def count(self, verdict: str) -> int:
        return sum(j.verdict == verdict for j in self.rows)


def saved_at(path: Path) -> datetime.datetime:
    match = _STAMP.match(path.name)
    if match:
        return datetime.datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    return datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)


def read_runs(paths: list[Path]) -> tuple[list[Run], list[str]]:
    """The runs at ``paths`` in date order, and for each that cannot be read the message ``compare``
    prints for it (`harness.errors.RunError`: the file, what is wrong, what to do)."""
    found, left_out = [], []
    for path in paths:
        try:
            saved = runs.read(path)
        except RunError as exc:
            left_out.append(str(exc))
            continue
        run = Run(path.stem, path, saved_at(path), saved.rows, saved.machine)
        run.records = json.loads(compare.table(saved.rows, "json"))
        found.append(run)
    return sorted(found, key=lambda r: (r.saved, r.name)), left_out


def judge(baseline: Run, candidate: Run, fail_on: str) -> Comparison:
    """``candidate`` against ``baseline`` as ``compare CANDIDATE --baseline BASELINE --fail-on
    FAIL_ON`` judges it, every row both have with its verdict, evidence and rule."""
    stat, threshold = gate.parse_threshold(fail_on)
    judged = []
    for row, old in gate.pairs(candidate.rows, baseline.rows):
        verdict, evidence = gate.judge(row, old, stat, threshold)
        rule = "flagged: not judged" if verdict == "inconclusive" else gate.gate_rule(row, old)
        judged.append(Judged(row.group, row.label, old, row, verdict, evidence, rule))
    return Comparison(baseline, candidate, stat, threshold, judged)


def comparisons(found: list[Run], fail_on: str, baseline: Run | None = None) -> list[Comparison]:
    """Each run against ``baseline`` or, without one, against the latest earlier run that shares
    rows with it on the same machine (CPU model and GPUs): the previous run of the same cases, not
    another machine's, whose every row would differ."""
    pairs = []
    for i, run in enumerate(found):
        keys = {r.key for r in run.rows}
        if baseline is not None:
            base = baseline if run is not baseline else None
        else:
            base = next(
                (
                    b
                    for b in reversed(found[:i])
                    if _machine(b) == _machine(run) and keys & {r.key for r in b.rows}
                ),
                None,
            )
        if base is not None:
            pairs.append(judge(base, run, fail_on))
    return [c for c in pairs if c.rows]


def _machine(run: Run) -> tuple:
    return run.machine.get("cpu_model"), json.dumps(run.machine.get("gpus"), sort_keys=True)


def history(found: list[Run]) -> dict[str, dict[str, list[tuple[Run, Row]]]]:
    """Per group, per backend/mode/strategy/dtype/device: its rows in date order, for each case
    that is in two runs or more."""
    cases: dict[tuple, list[tuple[Run, Row]]] = defaultdict(list)
    for run in found:
        for row in run.rows:
            cases[row.key].append((run, row))
    by_group: dict[str, dict[str, list]] = defaultdict(dict)
    for key, points in sorted(cases.items()):
        if len(points) > 1:
            by_group[key[0]][" ".join(key[1:])] = points
    return dict(by_group)
