"""The one way into validation: `validate` takes the checks to run and gives back the document
and verdict, the same for ``python -m harness validate`` (backends' jobs, isolated or not),
``gradbench check`` (a GradBench tool's answers) and `harness.check` (a user's function).

Each door supplies its checks through ``run`` and says how it delivers them; the rest is here:
agreement between backends, the backends' expected outcomes (`harness.expected`), what makes the
run fail, the JSON document and the report text (`harness.validation.report`).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from harness import __version__, expected
from harness.jobs import Interrupted
from harness.validation import report, verdicts
from harness.validation.verdicts import Check

Emit = Callable[[Check], None]
Run = Callable[[Emit], tuple[Iterable[Check], Interrupted | None]]
"""Runs the checks, handing each to ``emit`` as it finishes (or as the door streams them); gives
back every check in report order, and the interrupt that cut the run short, if one did."""


def _ignore(check: Check) -> None:
    pass


@dataclass
class Validation:
    """What a validation found, and its verdict."""

    checks: list[Check]
    seconds: float
    surprises: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    plugin_errors: list[str] = field(default_factory=list)
    broken: bool = False
    """A plugin the run needed is broken or unavailable (`validate`'s ``strict``)."""
    interrupted: Interrupted | None = None

    @property
    def failed(self) -> bool:
        """A broken plugin, a surprise, or a check that failed or erred and was not expected to."""
        return (
            self.broken
            or bool(self.surprises)
            or any(c.status in ("fail", "error") and not c.expected for c in self.checks)
        )

    def document(self, about: dict | None = None, more: dict | None = None) -> dict:
        """The JSON document: ``about`` (what was checked) after the version, ``more`` at the end."""
        return {
            "harness": __version__,
            **(about or {}),
            "seconds": round(self.seconds, 3),
            "interrupted": signal.Signals(self.interrupted.signum).name if self.interrupted else None,
            "unavailable": self.unavailable,
            "plugin_errors": self.plugin_errors,
            "surprises": self.surprises,
            "checks": [c.to_json() for c in self.checks],
            **(more or {}),
        }

    def text(self) -> str:
        """The report: summary, mismatches, surprises, unavailable and broken plugins, tally."""
        return report.text(
            self.checks,
            report.tally(self.checks, self.seconds, self.failed),
            self.surprises,
            self.unavailable,
            self.plugin_errors,
        )

    def render(self, fmt: str, document: dict | None = None, appendix: str = "") -> str:
        """The report in ``fmt``: ``jsonl`` (a check a line), ``json`` (``document``, by default
        `document`'s) or ``table`` (`text`, then ``appendix`` where given)."""
        if fmt == "jsonl":
            return "\n".join(json.dumps(c.to_json(), allow_nan=False) for c in self.checks)
        if fmt == "json":
            return json.dumps(self.document() if document is None else document, indent=2, allow_nan=False)
        return self.text() + (f"\n\n{appendix}" if appendix else "")


def validate(
    run: Run,
    *,
    emit: Emit = _ignore,
    agreement: bool = False,
    expectations: dict[str, list[expected.Expectation]] | None = None,
    unavailable: dict[str, str] | None = None,
    plugin_errors: Iterable[str] = (),
    strict: bool = False,
) -> Validation:
    """Run the checks (``run``, each handed to ``emit``) and judge them.

    ``agreement``: add each backend's results against the others' (`verdicts.agreement`,
    also handed to ``emit``). ``expectations``: each backend's expected outcomes, which mark its
    checks and name the surprises (none for an interrupted run: a combination cut short may lack
    the very check its expectation names). ``unavailable`` and ``plugin_errors``: backends that
    could not load, and plugins that broke; ``strict`` (backends chosen by name, which must run):
    an unavailable one fails the run, else only a broken plugin does.
    """
    started = time.perf_counter()
    found, interrupted = run(emit)
    checks = list(found)
    if agreement:
        agreed = list(verdicts.agreement(checks))
        for check in agreed:
            emit(check)
        checks += agreed
    seconds = time.perf_counter() - started
    unavailable, errors = dict(unavailable or {}), list(plugin_errors)
    surprises = expected.reconcile(checks, expectations or {})
    return Validation(
        checks,
        seconds,
        [] if interrupted else surprises,
        unavailable,
        errors,
        bool(unavailable) if strict else bool(errors),
        interrupted,
    )
