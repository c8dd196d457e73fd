"""Known outcomes: what a backend declares it does not support or is known to get wrong.

Each backend may name a versioned text file (its ``expected`` attribute), in
the manner of GradBench's per-tool ``evals.txt``. One line per known outcome::

    # problem  strategy  mode   dtype    orders  outcome  # why
    tanh       reverse   *      float32  6-8     fail     # g/cosh(x)**2 overflows when nested

``*`` matches anything; orders are ``1-4``, ``2,5`` or ``*``; the outcome is
``fail``, ``error`` or ``unsupported``. Reality must match in both directions:
a listed combination that passes is a *surprise*, as is an unlisted failure,
so the file stays an honest, versioned list of what does not work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

OUTCOMES = ("fail", "error", "unsupported")


@dataclass(frozen=True)
class Expectation:
    problem: str
    strategy: str
    mode: str
    dtype: str
    orders: frozenset[int] | None
    outcome: str
    reason: str
    source: str

    def matches(self, problem: str, strategy: str, mode: str, dtype: str, order: int) -> bool:
        fields = ((self.problem, problem), (self.strategy, strategy), (self.mode, mode), (self.dtype, dtype))
        return all(want in ("*", got) for want, got in fields) and (
            self.orders is None or order in self.orders
        )


def parse_orders(text: str, limit: int = 100) -> frozenset[int]:
    """``"1-4"``, ``"2,5"``: derivative orders in 1..``limit``; `ValueError` saying what is wrong."""
    orders: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi if dash else lo)
        except ValueError:
            raise ValueError(f"{text!r} is not an order list like 1-6 or 1,3") from None
        if first > last:
            raise ValueError(f"{part.strip()!r} is a reversed range: write {last}-{first}")
        if first < 1 or last > limit:
            raise ValueError(f"orders must lie in 1..{limit}, got {text!r}")
        orders.update(range(first, last + 1))
    return frozenset(orders)


def _orders(text: str) -> frozenset[int] | None:
    return None if text == "*" else parse_orders(text)


def parse(text: str, source: str) -> list[Expectation]:
    """The expectations in ``text``; `ValueError` naming ``source:line`` for a malformed line."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        body, _, reason = line.partition("#")
        fields = body.split()
        if not fields:
            continue
        where = f"{source}:{number}"
        if len(fields) != 6 or fields[5] not in OUTCOMES:
            raise ValueError(
                f"{where}: expected 'problem strategy mode dtype orders outcome' "
                f"with outcome one of {', '.join(OUTCOMES)}, got {line.strip()!r}"
            )
        try:
            orders = _orders(fields[4])
        except ValueError as exc:
            raise ValueError(f"{where}: bad orders {fields[4]!r}: {exc} (use 1-4, 2,5 or *)") from None
        found.append(Expectation(*fields[:4], orders, fields[5], reason.strip(), where))
    return found


def of_backend(backend) -> list[Expectation]:
    """The expectations a backend declares through its optional ``expected`` file path."""
    path = getattr(backend, "expected", None)
    return parse(Path(path).read_text(), str(path)) if path else []


def reconcile(checks: Iterable, expectations: dict[str, list[Expectation]]) -> list[str]:
    """Mark checks whose outcome was expected; return the surprises (expected, yet it passed).

    A check is expected when a line of its backend matches it with its status.
    An expectation is a surprise when checks it matches ran and none had its outcome.
    """
    outcomes: dict[tuple, set[str]] = {}
    for check in checks:
        for exp in expectations.get(check.backend, ()):
            if exp.matches(check.problem, check.strategy, check.mode, check.dtype, check.order):
                key = (exp, check.strategy, check.mode, check.dtype, check.order)
                outcomes.setdefault(key, set()).add(check.status)
                if check.status == exp.outcome:
                    check.expected = True
    return [
        f"{exp.source}: {exp.problem} {strategy} {mode} {dtype} order {order} is expected to "
        f"{exp.outcome} ({exp.reason or 'no reason given'}) but did not: update the file"
        for (exp, strategy, mode, dtype, order), seen in outcomes.items()
        if exp.outcome not in seen
    ]
