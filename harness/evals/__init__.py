"""GradBench's evals (github.com/gradbench/gradbench, MIT), written once against an array namespace
``xp``: one module per eval, each with its definition (``primal``), its seeded inputs (``args``),
its derivatives in closed form or by an exact oracle, and the problems it registers (``PROBLEMS``).

Each follows GradBench's golden C++ code (``cpp/gradbench/evals/<eval>.hpp``) and its input
generator (``python/gradbench/gradbench/evals/<eval>/run.py``): the same formula, the same
order of operations where it matters (det's expansion, ode's Runge-Kutta stages), and inputs
drawn as GradBench draws them (`harness.evals.inputs`). This package is a built-in plugin
(`harness.plugins.BUILTIN`): a new eval is a module here and a line in `MODULES`.

**GradBench's protocol.** An eval module that also defines these three names is served by
``python -m harness gradbench serve`` and sent to tools by ``gradbench check``
(`harness.gradbench`), with no change there:

- ``gradbench_input(size=None) -> dict``: GradBench's ``evaluate`` input at ``size`` (the size
  tuple ``args`` takes), without ``min_runs``/``min_seconds``, drawn as GradBench draws it;
- ``from_gradbench(input) -> tuple``: what its ``GRADBENCH`` functions take, in float64 numpy,
  from such an input, GradBench's own included: the problem's arguments
  (``from_gradbench(gradbench_input(s))`` equals ``args(s)``), but for ba its observations with
  integer indices (the dense problem's one-hot selections would be 2 GB at GradBench's ba1);
- ``GRADBENCH``: ``{GradBench's function name: adapter.Function}``, in the order GradBench's
  eval sends them. `adapter.value` (``primal``), `adapter.gradient` (a loss's gradient by
  reverse mode, flattened) and `adapter.jacobian_row` (one row of a vector function's
  Jacobian: ode's ``gradient`` is that of ``y_{n-1}``) cover lse, llsq, det and ode,
  `adapter.jacobian` (a whole Jacobian, forward mode) ht, `adapter.nested` (a nested
  optimization's answer in one mode pair) particle and saddle; an eval
  whose output has a shape of its own (gmm's dict, kmeans's ``dir``, ba's CSR cut) builds its
  `adapter.Function` from a ``prepare`` on `harness.target.Target`, an ``output`` and
  ``parse`` for its JSON, and the float64 `adapter.Oracle` references that judge it.

The functions apply to the module's problem named as the eval (``lse`` in ``lse.PROBLEMS``).
"""

from __future__ import annotations

import harness
from harness.evals import ba, det, gmm, ht, kmeans, llsq, lse, lstm, ode, particle, saddle

MODULES = (lse, llsq, det, kmeans, gmm, ode, lstm, ba, ht, particle, saddle)
"""The evals, in the order `list` shows them."""

PROBLEMS = tuple(problem for module in MODULES for problem in module.PROBLEMS)


@harness.hookimpl
def harness_register_problems(register):
    for problem in PROBLEMS:
        register(problem)
