"""GradBench's protocol both ways (github.com/gradbench/gradbench, MIT): `serve` answers it as a
GradBench tool for any backend the harness loads; `drive` runs a tool (or an eval and a tool) as
GradBench's intermediary does, and `judge` holds a tool's answers to the harness's oracles.
`protocol` reads and writes the lines. The evals come from `harness.evals` (its adapter convention:
``gradbench_input``, ``from_gradbench``, ``GRADBENCH``)."""

from __future__ import annotations

from types import ModuleType

from harness import evals


def eval_modules() -> dict[str, ModuleType]:
    """The harness's evals that speak GradBench's protocol, by GradBench's module name."""
    return {m.__name__.rsplit(".", 1)[-1]: m for m in evals.MODULES if hasattr(m, "GRADBENCH")}


def problem_of(module: ModuleType):
    """The problem an eval module's GradBench functions apply to: the one named as the eval."""
    name = module.__name__.rsplit(".", 1)[-1]
    (problem,) = (p for p in module.PROBLEMS if p.name == name)
    return problem
