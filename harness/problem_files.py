"""Problems from a file or a module, no packaging: ``validate --problems my_problems.py`` (or
``--problems mypackage.checks:PROBLEMS``).

A file (or module) registers problems the way a plugin does, either

- with a ``harness_register_problems`` function decorated by ``@harness.hookimpl``, or
- with a module-level ``PROBLEMS``: a list or tuple of `harness.problems.ScalarProblem`,
  `GradientProblem` and `JacobianProblem`.

``module:attribute`` names either such a module or object, a list or tuple of problems, or one
problem. Jobs carry the same spec to their child interpreters (`harness.jobs.Job.problem_files`),
which load it again: a file path is made absolute first. A file that cannot be loaded (a syntax
error, an import error, no problems, something that is no problem) is a `UsageError` naming it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import harness
from harness import plugins
from harness.errors import UsageError
from harness.plugins import Registry
from harness.problems import KINDS

ATTRIBUTE = "PROBLEMS"
HOOK = "harness_register_problems"


class _Listed:
    """A plugin registering a list of problems."""

    def __init__(self, found: list[Any]):
        self.found = found

    @harness.hookimpl
    def harness_register_problems(self, register):
        for problem in self.found:
            register(problem)


def absolute(spec: str) -> str:
    """A file path made absolute (a child may start elsewhere); ``module:attribute`` as given."""
    return str(Path(spec).resolve()) if _is_file(spec) else spec


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or Path(spec).is_file()


def plugin(spec: str) -> Any:
    """The plugin ``spec`` (a ``.py`` file or ``module:attribute``) stands for.

    :raises UsageError: naming ``spec`` and what is wrong with it.
    """
    if _is_file(spec):
        source, attribute = _load_file(spec), None
    else:
        module_name, _, attribute = spec.partition(":")
        if not module_name:
            raise UsageError(f"problems {spec!r}: give a file (my_problems.py) or module:attribute")
        source = _import(spec, lambda: importlib.import_module(module_name))
    found = getattr(source, attribute, _MISSING) if attribute else source
    if found is _MISSING:
        raise UsageError(f"problems {spec!r}: module {module_name!r} has no attribute {attribute!r}")
    if isinstance(found, KINDS):
        return _Listed([found])
    if isinstance(found, list | tuple):
        return _Listed(_problems(spec, found))
    if callable(getattr(found, HOOK, None)):
        return found
    if callable(found) and getattr(found, "__name__", None) == HOOK:  # module:harness_register_problems
        return types.SimpleNamespace(**{HOOK: found})
    listed = getattr(found, ATTRIBUTE, None)
    if isinstance(listed, list | tuple):
        return _Listed(_problems(spec, listed))
    raise UsageError(
        f"problems {spec!r} defines no problems: give it a module-level {ATTRIBUTE} = [...] of "
        f"ScalarProblem, GradientProblem or JacobianProblem (harness.problems), or a @harness.hookimpl "
        f"{HOOK}(register)"
    )


_MISSING = object()


def _problems(spec: str, found: list | tuple) -> list:
    kinds = ", ".join(kind.__name__ for kind in KINDS)
    if not found:
        raise UsageError(f"problems {spec!r}: its problem list is empty; add a {kinds} to it")
    bad = [p for p in found if not isinstance(p, KINDS)]
    if bad:
        raise UsageError(f"problems {spec!r}: {bad[0]!r} is none of {kinds} (harness.problems)")
    return list(found)


def _load_file(spec: str) -> Any:
    path = Path(spec).resolve()
    if not path.is_file():
        raise UsageError(f"problems file {spec!r} does not exist")
    # One module name per path, so that a child loading the same file gets the same names.
    name = f"harness_problems_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickle look modules up by name

    def run() -> Any:
        module_spec.loader.exec_module(module)
        return module

    try:
        return _import(spec, run)
    except UsageError:
        del sys.modules[name]
        raise


def _import(spec: str, load) -> Any:
    try:
        return load()
    except SyntaxError as exc:
        raise UsageError(
            f"problems {spec!r} has a syntax error at line {exc.lineno}: {exc.msg}; fix the file"
        ) from None
    except Exception as exc:
        raise UsageError(f"problems {spec!r} failed to import: {type(exc).__name__}: {exc}") from None


def registry_with(specs: tuple[str, ...] | list[str] = ()) -> Registry:
    """The registry (`harness.plugins.load`) with the problems of each spec in ``specs`` added.

    :raises UsageError: a spec that cannot be loaded, registers nothing, registers something that
        is no problem, or a name already taken.
    """
    extra = [(spec, plugin(spec)) for spec in specs]
    registry = plugins.load(extra) if extra else plugins.load()  # no files: the plain call
    for spec in specs:
        broken = [e for e in registry.errors if e.plugin == spec]
        if broken:
            raise UsageError(f"problems {spec!r}: {broken[0].message}")
        if spec not in registry.origins.values():
            raise UsageError(f"problems {spec!r} registered no problems")
        registry.loadable.add(spec)  # jobs carry the spec, and their children load it again
    return registry
