"""``python -m harness``: list backends and problems, validate derivatives, compare benchmarks,
time distributed gradients, speak GradBench's protocol.

Each command is a module of this package with the same shape: ``add_parser`` adds its
subcommand and options, and sets a handler that turns ``args`` into keyword arguments at the
edge. Exit codes: 0 everything passed (``unsupported`` is not a failure), 1 a check failed or
errored, 2 a usage error (unknown name, bad order, ...); 130 or 143 when SIGINT or SIGTERM
stopped the run.
"""

from __future__ import annotations

import argparse
import signal
import sys

from harness import __version__
from harness.cli import compare, gradbench, listing, report, scale, tolerances, validate
from harness.cli.output import EXIT_USAGE
from harness.errors import UsageError

COMMANDS = (listing, validate, compare, report, scale, tolerances, gradbench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Validate and benchmark automatic-differentiation backends.",
        epilog="Exit codes: 0 all checks pass, 1 a check failed or errored, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"gradient-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command's exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # outside a run (which reports what it finished): before or after
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
