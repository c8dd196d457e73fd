"""The exceptions one module raises and another catches, in one place; each says what it means.

Nothing here imports anything of the harness's, so that every layer can import it.
"""

from __future__ import annotations


class UsageError(ValueError):
    """The user asked for something that does not exist (exit code 2)."""


class DestinationError(ValueError):
    """A destination that cannot be written; the message names it and what to do."""


class RunError(ValueError):
    """A results file that cannot be compared; the message names the file and what to do."""


class ShapeMismatch(ValueError):
    """A backend's result has the wrong shape or pytree structure (classification ``wrong shape``)."""


class ProtocolError(ValueError):
    """A GradBench line that breaks the protocol: not JSON, a missing field, a wrong id."""


class ToolFailure(Exception):
    """A GradBench tool cannot go on: ``classification`` is ``crash``, ``timeout`` or ``protocol``."""

    def __init__(self, classification: str, message: str) -> None:
        super().__init__(message)
        self.classification = classification


class RayUnavailable(RuntimeError):
    """Ray cannot take the jobs: it is not installed, no Ray cluster answers at the address,
    or no node of the cluster has what a job asks for."""
