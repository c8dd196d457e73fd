"""Load plugins from the ``harness`` entry-point group, check them against the spec, isolate faults.

A plugin that fails to import, breaks the spec or raises while registering is
recorded in `Registry.errors` with its name and what is wrong; every other
plugin still loads. Nothing here imports a framework.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from harness import expected, hookspecs, problems
from harness.errors import UsageError
from harness.hookspecs import DTYPES, MODES, OPTIONAL_METHODS, REQUIRED_METHODS, STRATEGIES

ENTRY_POINT_GROUP = "harness"
BUILTIN = ("harness.problems", "harness.evals")
"""The problems that come with the harness, registered as plugins are: the notebook's, then
GradBench's evals."""
BACKENDS_ENV = "HARNESS_BACKENDS"
"""Comma-separated backend names to run; the CLI's ``--backend`` overrides it."""

_ATTRIBUTES = ("name", "requires", "install_hint", "strategies", "modes", "dtypes")


@dataclass
class PluginError:
    plugin: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r}: {self.message}"


@dataclass
class BackendEntry:
    """A registered backend with what the host knows about it without importing its framework."""

    backend: hookspecs.Backend
    plugin: str
    version: str | None
    unavailable: str | None
    expected: list[expected.Expectation] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.backend.name


@dataclass
class Registry:
    backends: dict[str, BackendEntry] = field(default_factory=dict)
    problems: dict[str, problems.Problem] = field(default_factory=dict)
    errors: list[PluginError] = field(default_factory=list)
    loadable: set[str] = field(default_factory=lambda: set(BUILTIN))
    """Plugins a fresh interpreter finds too (entry points, built-ins): what isolation can run."""
    origins: dict[str, str] = field(default_factory=dict)
    """The plugin that registered each problem."""

    def portable(self, entry: BackendEntry, chosen: Iterable[problems.Problem]) -> bool:
        """Whether a child interpreter can load ``entry`` and every problem in ``chosen``."""
        return entry.plugin in self.loadable and all(
            self.origins.get(p.name) in self.loadable for p in chosen
        )

    def add_backend(self, backend: Any, plugin: str) -> None:
        problem = spec_violation(backend)
        if problem is None and backend.name in self.backends:
            problem = f"backend name {backend.name!r} is already taken"
        if problem is not None:
            self.errors.append(PluginError(plugin, f"registered a backend that breaks the spec: {problem}"))
            return
        try:
            known = expected.of_backend(backend)
        except (OSError, ValueError) as exc:
            self.errors.append(PluginError(plugin, f"has an unreadable expected-outcomes file: {exc}"))
            return
        version, unavailable = _availability(backend)
        self.backends[backend.name] = BackendEntry(backend, plugin, version, unavailable, known)

    def add_problem(self, problem: Any, plugin: str) -> None:
        if not isinstance(problem, problems.KINDS):
            kinds = ", ".join(kind.__name__ for kind in problems.KINDS)
            self.errors.append(PluginError(plugin, f"registered {problem!r}, which is none of {kinds}"))
        elif problem.name in self.problems:
            self.errors.append(PluginError(plugin, f"problem name {problem.name!r} is already taken"))
        elif isinstance(problem, problems.ScalarProblem) and not len(problem.points):
            self.errors.append(
                PluginError(
                    plugin,
                    f"registered problem {problem.name!r} with no points: its checks would test "
                    "nothing; give it points=(...) to evaluate the derivatives at",
                )
            )
        else:
            self.problems[problem.name] = problem
            self.origins[problem.name] = plugin

    def select_backends(self, names: Iterable[str] | None = None) -> list[BackendEntry]:
        """Backends by name (default: ``$HARNESS_BACKENDS``, else all), in registration order."""
        if names is None and os.environ.get(BACKENDS_ENV):
            names = os.environ[BACKENDS_ENV].split(",")
        if names is None:
            return list(self.backends.values())
        names = [n.strip() for n in names if n.strip()]
        broken = [e for e in self.errors if e.plugin in names and e.plugin not in self.backends]
        if broken:
            raise UsageError(
                f"backend {broken[0].plugin!r} cannot run: {broken[0]}; fix or "
                "uninstall that plugin (python -m harness list shows every broken one)"
            )
        return [self.backends[n] for n in _known(names, self.backends, "backend")]

    def select_problems(self, names: Iterable[str] | None = None) -> list[problems.Problem]:
        """Problems by name; by default those marked ``default``; ``all`` for every one."""
        if names is None:
            return [p for p in self.problems.values() if p.default]
        names = list(names)
        if "all" in names:
            return list(self.problems.values())
        return [self.problems[n] for n in _known(names, self.problems, "problem")]


def _known(names: Iterable[str], known: dict, what: str) -> list[str]:
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise UsageError(f"no {what} named; known: {', '.join(known) or 'none'}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"unknown {what} {', '.join(map(repr, unknown))}; known: {', '.join(known) or 'none'}"
        )
    return names


def spec_violation(backend: Any) -> str | None:
    """What ``backend`` lacks of the `hookspecs.Backend` spec, or ``None`` if it conforms."""
    missing = [a for a in _ATTRIBUTES if not hasattr(backend, a)]
    missing += [m for m in REQUIRED_METHODS if not callable(getattr(backend, m, None))]
    if missing:
        return f"missing {', '.join(missing)} (see harness/hookspecs.py)"
    broken = [m for m in OPTIONAL_METHODS if hasattr(backend, m) and not callable(getattr(backend, m))]
    if broken:
        return f"{', '.join(broken)} must be methods (see harness/hookspecs.py)"
    if not isinstance(backend.name, str) or not backend.name:
        return "name must be a non-empty string"
    checks = [("strategies", STRATEGIES), ("modes", MODES), ("dtypes", DTYPES)]
    for attribute, allowed in checks:
        values = getattr(backend, attribute)
        bad = [v for v in values if v not in allowed] if isinstance(values, tuple | list) else [values]
        if bad:
            return f"{attribute} has {bad!r}; allowed: {', '.join(allowed)}"
    if "eager" not in backend.modes:
        return "modes must include 'eager'"
    if set(backend.modes) != {"eager"} and not callable(getattr(backend, "compile", None)):
        return f"modes {', '.join(backend.modes)} need a compile method (see harness/hookspecs.py)"
    return None


def _availability(backend: hookspecs.Backend) -> tuple[str | None, str | None]:
    """(version of the first required distribution, reason it is unavailable), from metadata alone.

    A requirement is a distribution name or a tuple of alternatives (``("tensorflow",
    "tensorflow-cpu")``): the first alternative installed meets it.
    """
    versions = []
    for requirement in backend.requires:
        alternatives = (requirement,) if isinstance(requirement, str) else tuple(requirement)
        version = next(filter(None, map(_installed_version, alternatives)), None)
        if version is None:
            return None, f"{' or '.join(alternatives)} is not installed ({backend.install_hint})"
        versions.append(version)
    return (versions[0] if versions else None), None


def _installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _moved(exc: Exception) -> str:
    """What to import instead, when a plugin imports a built-in backend by its old top-level name
    (``backends.autograd``): they are installed as ``harness_backends`` (no top-level ``backends``
    package, which another distribution's would collide with)."""
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if name is None or name.split(".")[0] != "backends":
        return ""
    return (
        "; the built-in backends moved to harness_backends: import harness_backends.NAME "
        "(jax, autograd, torch, tensorflow) instead of backends.NAME"
    )


def _manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def _register(pm: pluggy.PluginManager, plugin: Any, name: str, errors: list[PluginError]) -> None:
    if pm.is_registered(plugin):
        errors.append(PluginError(name, f"is already registered as {pm.get_name(plugin)!r}"))
        return
    try:
        pm.register(plugin, name=name)
        pm.check_pending()  # a misspelt hook name fails here instead of being ignored
    except Exception as exc:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        errors.append(PluginError(name, f"does not fit the hook spec: {exc}"))


def load(extra: Iterable[tuple[str, Any]] = (), entry_points: bool = True) -> Registry:
    """Load the built-in problems, the ``harness`` entry points and ``extra`` (name, plugin) pairs.

    pluggy's ``load_setuptools_entrypoints`` stops at the first plugin that fails
    to import, and one hook call stops at the first implementation that raises,
    so both loops are written out here to keep one plugin's fault its own.
    """
    pm = _manager()
    registry = Registry()
    for module in BUILTIN:
        _register(pm, importlib.import_module(module), module, registry.errors)
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                plugin = ep.load()
            except Exception as exc:
                why = f"failed to import {ep.value}: {type(exc).__name__}: {exc}{_moved(exc)}"
                registry.errors.append(PluginError(ep.name, why))
                continue
            _register(pm, plugin, ep.name, registry.errors)
            registry.loadable.add(ep.name)
    for name, plugin in extra:
        _register(pm, plugin, name, registry.errors)

    hooks = [
        (pm.hook.harness_register_problems, registry.add_problem),
        (pm.hook.harness_register_backends, registry.add_backend),
    ]
    for hook, add in hooks:
        # get_hookimpls() lists implementations in load order (calls run LIFO).
        for impl in hook.get_hookimpls():
            name = impl.plugin_name
            try:
                impl.function(register=lambda obj, _name=name, _add=add: _add(obj, _name))
            except Exception as exc:
                registry.errors.append(
                    PluginError(name, f"raised while registering: {type(exc).__name__}: {exc}")
                )
    return registry
