"""GradBench's evals (github.com/gradbench/gradbench, MIT), written once against an array namespace
``xp``: one module per eval, each with its definition (``primal``), its seeded inputs (``args``),
its derivatives in closed form or by an exact oracle, and the problems it registers (``PROBLEMS``).

Each follows GradBench's golden C++ code (``cpp/gradbench/evals/<eval>.hpp``) and its input
generator (``python/gradbench/gradbench/evals/<eval>/run.py``): the same formula, the same
order of operations where it matters (det's expansion, ode's Runge-Kutta stages), and inputs
drawn as GradBench draws them (`harness.evals.inputs`). This package is a built-in plugin
(`harness.plugins.BUILTIN`): a new eval is a module here and a line in `MODULES`.
"""

from __future__ import annotations

import harness
from harness.evals import ba, det, ht, llsq, lse, ode

MODULES = (lse, llsq, det, ode, ba, ht)
"""The evals, in the order `list` shows them."""

PROBLEMS = tuple(problem for module in MODULES for problem in module.PROBLEMS)


@harness.hookimpl
def harness_register_problems(register):
    for problem in PROBLEMS:
        register(problem)
