"""Human-readable reports: the validation summary, mismatch reports, the tolerance table."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from tabulate import tabulate

from harness.validation.checks import DEFAULT_ORDERS, FD_RTOL
from harness.validation.tolerances import TOLERANCES, tolerance
from harness.validation.verdicts import STATUSES, Check


def orders_text(orders: Iterable[int]) -> str:
    """``[1, 2, 3, 5]`` as ``"1-3,5"``."""
    runs: list[list[int]] = []
    for order in sorted(set(orders)):
        if runs and order == runs[-1][-1] + 1:
            runs[-1].append(order)
        else:
            runs.append([order])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def summary(checks: list[Check]) -> str:
    """One row per backend/device/dtype/mode/strategy/problem, counting statuses."""
    groups: dict[tuple, list[Check]] = defaultdict(list)
    for c in checks:
        groups[(c.backend, c.device, c.dtype, c.mode, c.strategy, c.problem)].append(c)
    rows = []
    for key, group in groups.items():
        counts = {s: sum(c.status == s for c in group) for s in ("pass", "fail", "unsupported", "error")}
        ratios = [c.err_over_allowed for c in group if c.err_over_allowed is not None]
        unexpected = [c for c in group if c.status in ("fail", "error") and not c.expected]
        verdict = (
            "FAIL"
            if unexpected
            else "expected fail"
            if counts["fail"] or counts["error"]
            else "unsupported"
            if counts["unsupported"] and not counts["pass"]
            else "ok"
        )
        rows.append(
            [
                *key,
                orders_text(c.order for c in group),
                counts["pass"],
                counts["fail"],
                counts["unsupported"],
                counts["error"],
                _ratio(max(ratios)) if ratios else "-",
                verdict,
            ]
        )
    headers = [
        "backend",
        "device",
        "dtype",
        "mode",
        "strategy",
        "problem",
        "orders",
        "pass",
        "fail",
        "unsup",
        "error",
        "worst err/allowed",
        "verdict",
    ]
    return tabulate(rows, headers=headers)


def text(checks: list[Check], verdict: str, surprises=(), unavailable=None, errors=()) -> str:
    """The report as ``validate``, ``gradbench check`` and `harness.check` print it: the summary,
    each failure's mismatch report, what else is wrong with the run, and the ``verdict`` line."""
    parts = [summary(checks)] if checks else ["no checks ran"]
    parts += [mismatch(c) for c in checks if c.status in ("fail", "error")]
    parts += [f"surprise: {s}" for s in surprises]
    parts += [f"unavailable: {name}: {why}" for name, why in (unavailable or {}).items()]
    parts += [f"broken {e}" for e in errors]
    return "\n\n".join(parts + [verdict])


def tally(checks: list[Check], seconds: float, failed: bool) -> str:
    """The command's verdict line: the checks of each status, and whether all went as expected."""
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    known = sum(c.expected for c in checks)
    return (
        ", ".join(f"{n} {s}" for s, n in counts.items())
        + (f" ({known} of them expected)" if known else "")
        + f" in {seconds:.1f} s"
        + (": FAILED" if failed else ": all as expected" if known else ": all passed")
    )


def _ratio(value: float) -> str:
    return f"{value:.2g}" if math.isfinite(value) else "not finite"


def mismatch(check: Check) -> str:
    """A full mismatch report for one failing or erroring check."""
    lines = [
        f"{check.status.upper()} [{check.classification or check.status}] "
        f"{check.problem} order {check.order} vs {check.oracle}"
        + (" (expected: listed in the backend's expected-outcomes file)" if check.expected else ""),
        f"  backend  {check.backend} {check.version or ''} | strategy {check.strategy} | "
        f"mode {check.mode} | dtype {check.dtype} | device {check.device}",
    ]
    if check.points is not None:
        lines.append(f"  points   {check.points}")
    if check.value is not None:
        lines += [
            f"  value    {check.value}",
            f"  ref      {check.reference} ({check.oracle})",
            f"  errors   abs {check.max_abs_err:.3g}, rel {check.max_rel_err:.3g}; "
            f"rtol {check.tolerance:.3g}",
        ]
    if check.message:
        lines.append(f"  note     {check.message}")
    return "\n".join(lines)


def tolerance_table() -> str:
    orders = range(0, 11)
    rows = [[dtype, *(f"{tolerance(dtype, n):.0e}" for n in orders)] for dtype in TOLERANCES]
    note = (
        f"rtol by dtype and derivative order (0 = the loss value); allowed gap "
        f"|a - r| <= rtol*|r| + rtol*max|r|. Against finite differences rtol is at least "
        f"{FD_RTOL:g}, plus 4x the difference's own error estimate. Default orders: "
        + ", ".join(f"{d} {orders_text(o)}" for d, o in DEFAULT_ORDERS.items())
    )
    return tabulate(rows, headers=["dtype", *map(str, orders)]) + "\n\n" + note
