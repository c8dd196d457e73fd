"""``list``: backends (availability, version, devices, strategies, modes) and problems."""

from __future__ import annotations

import json
import sys

from tabulate import tabulate

from harness import devices, plugins
from harness.cli.output import EXIT_OK


def add_parser(sub) -> None:
    lister = sub.add_parser("list", help="backends (availability, version, devices), problems")
    lister.add_argument("--format", choices=("table", "json"), default="table")
    lister.add_argument(
        "--no-devices",
        action="store_true",
        help="skip device detection (it imports each framework in a subprocess)",
    )
    lister.add_argument(
        "--refresh",
        action="store_true",
        help="detect devices again, even if this environment's are remembered",
    )
    lister.set_defaults(handler=lambda args: list_all(args.format, not args.no_devices, args.refresh))


def list_all(fmt: str, detect_devices: bool, refresh: bool) -> int:
    registry = plugins.load()
    entries = list(registry.backends.values())
    found, no_gpu, detected = devices.detect(entries, refresh) if detect_devices else ({}, {}, None)
    backends = [
        {
            "name": e.name,
            "plugin": e.plugin,
            "available": e.unavailable is None,
            "reason": e.unavailable,
            "version": e.version,
            "devices": found.get(e.name),
            "no_gpu_reason": no_gpu.get(e.name),
            "strategies": list(e.backend.strategies),
            "modes": list(e.backend.modes),
            "dtypes": list(e.backend.dtypes),
        }
        for e in entries
    ]
    problems = [
        {
            "name": p.name,
            "kind": type(p).__name__,
            "default": p.default,
            "description": p.description,
            "unavailable": unavailable(p),
        }
        for p in registry.problems.values()
    ]
    errors = [{"plugin": e.plugin, "message": e.message} for e in registry.errors]
    if fmt == "json":
        print(
            json.dumps(
                {
                    "backends": backends,
                    "devices_detected": detected or "now" if detect_devices else None,
                    "problems": problems,
                    "plugin_errors": errors,
                },
                indent=2,
            )
        )
        return EXIT_OK
    rows = [
        [
            b["name"],
            b["version"] or "-",
            "yes" if b["available"] else f"no: {b['reason']}",
            b["devices"] or "-",
            " ".join(b["strategies"]),
            " ".join(b["modes"]),
        ]
        for b in backends
    ]
    print(tabulate(rows, headers=["backend", "version", "available", "devices", "strategies", "modes"]))
    for name, reason in no_gpu.items():
        print(f"\n{name} sees no GPU on this machine, which has one: {reason}")
    if detected:
        print(
            f"\ndevices as detected at {detected} in this same environment (interpreter, "
            "installed packages, GPU nodes, device variables); --refresh detects them again"
        )
    print()
    print(
        tabulate(
            [
                [
                    p["name"],
                    p["kind"],
                    "yes" if p["default"] else "-",
                    f"not runnable: {p['unavailable']}. {p['description']}"
                    if p["unavailable"]
                    else p["description"],
                ]
                for p in problems
            ],
            headers=["problem", "kind", "default", "description"],
        )
    )
    for error in registry.errors:
        print(f"\nbroken {error}", file=sys.stderr)
    return EXIT_OK


def unavailable(problem) -> str | None:
    """Why ``problem`` cannot run here (a problem reading data that is absent), or ``None``."""
    check = getattr(problem, "unavailable", None)
    return check() if check else None
