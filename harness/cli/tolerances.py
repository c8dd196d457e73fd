"""``tolerances``: the tolerance table by dtype and order."""

from __future__ import annotations

from harness.cli.output import EXIT_OK
from harness.validation import report


def add_parser(sub) -> None:
    sub.add_parser("tolerances", help="the tolerance table by dtype and order").set_defaults(handler=show)


def show(args=None) -> int:
    print(report.tolerance_table())
    return EXIT_OK
