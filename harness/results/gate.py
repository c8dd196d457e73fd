"""The regression gate: rows of a run against a baseline's, slower beyond a threshold and beyond
noise; and rows it cannot judge (*inconclusive*): either side flagged as timed under contention
or too widely spread (`harness.benchmark.conditions`), so that a busy machine gives neither a
regression nor an all-clear."""

from __future__ import annotations

import re
from collections.abc import Iterator

from harness.results.compare import format_seconds
from harness.results.runs import Row

NOISE_P = 0.01
"""A slowdown counts only if a one-sided Mann-Whitney U test gives p below this."""
TEST_ROUNDS = 5
"""Rounds each side needs for that test: with 5 and 5 its smallest p is 1/252, below `NOISE_P`;
with 4 and 4 it is 1/70, so the test could never find a slowdown."""


def parse_threshold(text: str) -> tuple[str, float]:
    """``"median:10%"`` as ``("median", 0.10)``."""
    if not text.strip():
        raise ValueError(
            f"--fail-on is empty ({text!r}): give STAT:N% with STAT median or min, e.g. median:10%"
        )
    match = re.fullmatch(r"(median|min):(\d+(?:\.\d+)?)%", text.strip())
    if not match:
        raise ValueError(f"--fail-on takes STAT:N% with STAT median or min, e.g. median:10%, not {text!r}")
    return match[1], float(match[2]) / 100


def pairs(current: list[Row], baseline: list[Row]) -> Iterator[tuple[Row, Row]]:
    """Each row of ``current`` that ``baseline`` also has (the same case), with the baseline's."""
    base = {r.key: r for r in baseline}
    return ((row, base[row.key]) for row in current if row.key in base)


def gate_rule(row: Row, old: Row) -> str:
    """How the gate tells a slowdown from noise for this pair of rows: ``Mann-Whitney`` when
    both have `TEST_ROUNDS` rounds or more, else ``quartiles`` (apart: slower)."""
    enough = row.data and old.data and min(len(row.data), len(old.data)) >= TEST_ROUNDS
    return "Mann-Whitney" if enough else "quartiles"


def gate_rules(current: list[Row], baseline: list[Row]) -> dict[str, int]:
    """How many of the rows both runs have, neither flagged, each rule judges."""
    rules = [gate_rule(row, old) for row, old in pairs(current, baseline) if not (row.flags or old.flags)]
    return {rule: rules.count(rule) for rule in ("Mann-Whitney", "quartiles")}


def inconclusive(current: list[Row], baseline: list[Row]) -> list[str]:
    """Rows both runs have whose either side is flagged, described: the gate judges none of them."""
    found = []
    for row, old in pairs(current, baseline):
        if row.flags or old.flags:
            why = [f"{', '.join(r.flags)} in {r.run}" for r in (row, old) if r.flags]
            found.append(f"{row.group} | {row.label}: {'; '.join(why)}")
    return found


VERDICTS = ("regression", "improvement", "inconclusive", "same")
"""What the gate says of a row against its baseline's (`judge`)."""


def judge(row: Row, old: Row, stat: str, threshold: float) -> tuple[str, str]:
    """The gate's verdict on ``row`` against the baseline's ``old`` (one of `VERDICTS`) and its
    evidence: *inconclusive* when either is flagged; *regression* (*improvement*) when ``stat`` is
    slower (faster) by more than ``threshold`` and beyond noise (`gate_rule`); else *same*."""
    from scipy.stats import mannwhitneyu

    if row.flags or old.flags:
        return "inconclusive", "; ".join(f"{', '.join(r.flags)} in {r.run}" for r in (row, old) if r.flags)
    ratio = getattr(row, stat) / getattr(old, stat)
    slower = ratio > 1 + threshold
    if not slower and ratio >= 1 / (1 + threshold):
        return "same", f"x{ratio:.2f}, within {threshold:.0%}"
    if gate_rule(row, old) == "Mann-Whitney":
        p = mannwhitneyu(row.data, old.data, alternative="greater" if slower else "less").pvalue
        noise, evidence = p >= NOISE_P, f"Mann-Whitney p={p:.2g}"
    else:
        apart = row.q1 > old.q3 if slower else row.q3 < old.q1
        noise, evidence = not apart, "quartiles " + ("apart" if apart else "overlap")
    verdict = "same" if noise else "regression" if slower else "improvement"
    return verdict, f"x{ratio:.2f}, {evidence}"


def regressions(current: list[Row], baseline: list[Row], stat: str, threshold: float) -> list[str]:
    """Rows slower than the baseline by more than ``threshold`` and beyond noise, described; rows
    flagged on either side are `inconclusive`, never regressions."""
    found = []
    for row, old in pairs(current, baseline):
        verdict, evidence = judge(row, old, stat, threshold)
        if verdict == "regression":
            found.append(
                f"{row.group} | {row.label}: {stat} {format_seconds(getattr(row, stat))} vs "
                f"{format_seconds(getattr(old, stat))} in {old.run} ({evidence})"
            )
    return found
