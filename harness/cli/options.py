"""Argument types and the option groups several commands share.

Each type turns one command-line string into a value or raises `argparse.ArgumentTypeError`
with what is wrong and what to give instead; argparse then exits with code 2.
"""

from __future__ import annotations

import argparse
import math
import re

from harness import expected, plugins, problem_files

MAX_ORDER = 30
MAX_WORLD = 128


def parse_orders(text: str) -> tuple[int, ...]:
    """``"1-6"``, ``"2,4"`` or ``"3"`` as a tuple of derivative orders in 1..MAX_ORDER."""
    try:
        return tuple(sorted(expected.parse_orders(text, MAX_ORDER)))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def names(text: str) -> list[str]:
    """Comma-separated names; at least one."""
    found = [n.strip() for n in text.split(",") if n.strip()]
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing: give one or more names, comma-separated")
    return found


def devices(text: str) -> list[str]:
    """Device names: ``cpu``, ``cuda`` or ``cuda:N``."""
    found = names(text)
    bad = [n for n in found if not re.fullmatch(r"cpu|cuda(:\d+)?", n)]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown device {', '.join(map(repr, bad))}; use cpu, cuda or cuda:N"
        )
    return [n if n != "cuda" else "cuda:0" for n in found]


def choices(allowed):
    """Comma-separated names, each one of ``allowed``."""

    def parse(text: str) -> list[str]:
        found = names(text)
        bad = [n for n in found if n not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, bad))}; choose from {', '.join(allowed)}"
            )
        return found

    return parse


def seconds(text: str) -> float:
    """A time limit: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time limit: give seconds above 0, e.g. 600")
    return value


def positive_int(text: str) -> int:
    """A count such as threads: a whole number of 1 or more."""
    if not re.fullmatch(r"\s*[0-9]+\s*", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count: give a whole number of 1 or more, e.g. 1")
    return int(text)


def worlds(text: str) -> list[int]:
    """World sizes: whole numbers from 1 to MAX_WORLD, comma-separated; sorted, each once."""
    found = [n.strip() for n in text.split(",")]  # every entry counts: "1,,2" has an empty one
    bad = [n for n in found if not (re.fullmatch("[0-9]+", n) and 1 <= int(n) <= MAX_WORLD)]
    if bad:
        raise argparse.ArgumentTypeError(
            f"{', '.join(map(repr, bad))} is not a world size: give whole numbers from 1 to "
            f"{MAX_WORLD}, comma-separated, e.g. 1,2,4"
        )
    return sorted({int(n) for n in found})


def size(text: str) -> tuple[int, int]:
    """``NxD``: N rows of D features, each 1 or more."""
    match = re.fullmatch(r"\s*([0-9]+)\s*[xX]\s*([0-9]+)\s*", text)
    if not match or not (int(match[1]) >= 1 and int(match[2]) >= 1):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: give NxD with N and D 1 or more, e.g. 200000x64"
        )
    return int(match[1]), int(match[2])


def run_name(text: str) -> str:
    """A saved run's file, name or ``latest``: not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name: give a run's file, name or 'latest'")
    return text


def address(text: str) -> str:
    """A Ray head's address: not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty address: give the Ray head's HOST:PORT, or 'auto'")
    return text


def as_tuple(values) -> tuple | None:
    """An option's list as a tuple, ``None`` when not given (everything the backend offers)."""
    return tuple(values) if values else None


# --- Option groups -----------------------------------------------------------------------------


def add_backends(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument(
        "-b",
        "--backend",
        type=names,
        action="extend",
        help=help or f"backends to run, comma-separated (default: ${plugins.BACKENDS_ENV} or all installed)",
    )


def add_problem_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--problems",
        metavar="FILE",
        type=problem_file,
        action="append",
        help="also register the problems a Python file defines (a PROBLEMS list, or a "
        "harness_register_problems hookimpl), or MODULE:ATTRIBUTE; repeatable",
    )


def problem_file(text: str) -> str:
    """A problems file (made absolute: child processes load it again) or ``module:attribute``."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name: give a problems file or module:attribute")
    return problem_files.absolute(text)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no live progress on the terminal")


def add_results_folder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default="results", help="folder of saved runs (default: results)")


def add_plot(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plot", metavar="DIR", help="write PNG figures to DIR")


def add_timeout(parser: argparse.ArgumentParser, default: float, help: str) -> None:
    parser.add_argument("--timeout", type=seconds, default=default, help=f"{help} (default {default:g})")


def add_jobs(parser: argparse.ArgumentParser, isolate_help: str, timeout: float, timeout_help: str) -> None:
    """Where a command's jobs run: isolated or not, their time limit, the executor and its cluster."""
    parser.add_argument(
        "--isolate", action=argparse.BooleanOptionalAction, default=True, help=f"{isolate_help} (default: on)"
    )
    add_timeout(parser, timeout, timeout_help)
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where isolated jobs run: child processes here (local), or Ray tasks on a Ray "
        "cluster's nodes, each job isolated there the same way (ray; needs the [ray] extra). "
        "Under ray, validate's jobs are one per backend and device named with --device (a job "
        "for a cuda device asks Ray for a GPU), or one per backend checking the devices of the "
        "node it lands on; compare's benchmarks run in turn on one node (default: local)",
    )
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        type=address,
        help="with --executor ray: the head node of the cluster to join (or 'auto'); default: "
        "Ray's own, $RAY_ADDRESS, else a cluster 'ray start' started on this machine, else a "
        "new local Ray instance for this run",
    )
    add_quiet(parser)
