"""The benchmark suite's pytest plugin, registered through the ``pytest11`` entry point (as
pytest-benchmark itself is), so its options work wherever gradient-harness is installed.

- ``--harness-profile quick|cpu|gpu|scaling|width|gradbench`` chooses the cases (default: ``gpu`` when a
  backend sees one, else ``cpu``); ``$HARNESS_BACKENDS`` chooses the backends and
  ``--harness-device`` the devices.
- A test that takes an argument named ``harness_case`` is run once per `harness.benchmark.cases.Case` of
  the profile: the installed backends on the built-in problems and on every default
  problem a plugin registers.
- The ``harness_benchmark`` fixture is pytest-benchmark's ``benchmark``, probed (the share of
  its CPUs others used and its threads' run-queue wait while the test ran, and the flags they
  and the spread give: `harness.benchmark.conditions`) and recorded: at the end
  of the session the recorded benchmarks are saved as one new run under ``results/`` (or
  ``--harness-results DIR``), made with pytest-benchmark's public hooks and written by
  `harness.results.runs`. Sessions that record nothing save nothing. A benchmark session
  stopped by SIGTERM (a time limit's ``timeout``, a batch scheduler) ends as Ctrl-C does: the
  rows it finished are saved.
- The ``assert_gradients`` fixture is `harness.assert_gradients` (check your own function's
  derivatives, `harness.api`) whose failure shows the mismatch report alone, no traceback.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from harness import machine, plugins
from harness.benchmark import cases, conditions
from harness.results import files, runs

RECORDED = pytest.StashKey[list]()
PROFILE = pytest.StashKey[str]()
STATE = pytest.StashKey[dict]()
"""The machine's state when the session began (`harness.machine.state`)."""


def pytest_addoption(parser):
    group = parser.getgroup("gradient-harness")
    group.addoption(
        "--harness-profile",
        choices=sorted(cases.PROFILES),
        default=None,
        help="benchmark sizes and orders (default: gpu if a GPU is seen, else cpu)",
    )
    group.addoption(
        "--harness-device",
        action="append",
        default=None,
        metavar="DEVICE",
        help="time on this device only, e.g. cuda:0 (repeatable; default: every device a backend sees)",
    )
    group.addoption(
        "--harness-results",
        default=None,
        metavar="DIR",
        help="folder for saved runs (default: results/ in the rootdir)",
    )


def pytest_configure(config):
    config.stash[RECORDED] = []
    config.stash[STATE] = machine.state()
    folder = config.getoption("--harness-results")
    why = folder and files.unwritable(folder, folder=True)
    if why:
        raise pytest.UsageError(f"--harness-results {folder}: {why}")


def pytest_generate_tests(metafunc):
    if "harness_case" not in metafunc.fixturenames:
        return
    registry = plugins.load()
    entries = [e for e in registry.select_backends() if not e.unavailable]
    profile = metafunc.config.getoption("--harness-profile")
    if profile is None:
        gpu = any(d != "cpu" for e in entries for d in e.backend.devices())
        profile = "gpu" if gpu else "cpu"
    metafunc.config.stash[PROFILE] = profile
    devices = metafunc.config.getoption("--harness-device")
    found = cases.cases(entries, profile, devices, registered=registry.problems.values())
    metafunc.parametrize("harness_case", found, ids=[c.name for c in found])
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


_STOPPED: list[str] = []


def _interrupt(signum, frame):
    """SIGTERM as Ctrl-C: pytest stops and still finishes its session, so what was timed is
    saved (`pytest_sessionfinish`) rather than lost with the process. Where a framework
    swallows the KeyboardInterrupt (seen once inside a compile), the session stops after the
    test in hand (`pytest_runtest_teardown`)."""
    _STOPPED.append(f"stopped by signal {signum}")
    raise KeyboardInterrupt(_STOPPED[-1])


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    if _STOPPED:
        item.session.shouldstop = _STOPPED[-1]


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt(excinfo):
    """A signal can land between bytecodes that have no line number (CPython 3.11+ then gives a
    traceback entry ``tb_lineno = None``), and pytest's report of the interrupt crashes on such an
    entry (its ``lineno - 1``; pytest-xdist#1196 shows the same crash), losing the "stopped by
    signal" line and the exit status. Keep only the entries that have a line; ours, where the
    KeyboardInterrupt is raised, always does."""
    if _STOPPED:
        excinfo.traceback = excinfo.traceback.filter(_has_line)


def _has_line(entry) -> bool:
    try:
        return entry.lineno >= 0
    except TypeError:
        return False


@pytest.fixture
def harness_profile(request) -> dict:
    """The chosen profile's settings (`harness.benchmark.cases.PROFILES`)."""
    return cases.PROFILES[request.config.stash.get(PROFILE, "cpu")]


@pytest.fixture
def harness_benchmark(benchmark, request):
    """pytest-benchmark's ``benchmark``, grouped by the test's ``harness_case`` where it has one
    (a saved run's rows are read by group); what it times goes into this session's saved run."""
    if "harness_case" in request.fixturenames:
        benchmark.group = request.getfixturevalue("harness_case").group
    cpus = conditions.allowed_cpus()
    before = conditions.sample(cpus)
    yield benchmark
    after = conditions.sample(cpus)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        others, waited = conditions.contention(before, after, len(cpus)), conditions.waiting(before, after)
        found = conditions.flags(others, waited, stats.stats.median, stats.stats.iqr)
        benchmark.extra_info.update(contention=others, run_queue_wait=waited, flags=found)
        request.config.stash[RECORDED].append(stats)


@pytest.fixture
def assert_gradients():
    """``assert_gradients(fn, *args, **options)``: `harness.api.assert_gradients`; a failing
    check fails the test with the mismatch report as its message."""
    from harness import api  # here: a session that never asks for it imports no validation

    def assert_(fn, *args, **options):
        try:
            return api.assert_gradients(fn, *args, **options)
        except AssertionError as exc:
            pytest.fail(str(exc), pytrace=False)

    return assert_


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["harness"] = {**machine.info(), **machine.around(config.stash.get(STATE, {}))}


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    recorded = config.stash.get(RECORDED, [])
    if not recorded:
        return
    hook = config.hook
    machine_info = hook.pytest_benchmark_generate_machine_info(config=config)
    hook.pytest_benchmark_update_machine_info(config=config, machine_info=machine_info)
    commit_info = hook.pytest_benchmark_generate_commit_info(config=config)
    hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    run = hook.pytest_benchmark_generate_json(
        config=config,
        benchmarks=recorded,
        include_data=True,
        machine_info=machine_info,
        commit_info=commit_info,
    )
    if not run["benchmarks"]:
        return
    run["machine_info"]["harness"]["profile"] = config.stash.get(PROFILE, None)
    gpus = machine_info["harness"]["gpus"]
    folder = Path(config.getoption("--harness-results") or Path(config.rootpath) / "results")
    name = folder / runs.file_name(gpus[0]["name"] if gpus else "cpu")
    where, why = files.write_with_fallback(name, runs.text(run), "benchmarks", overwrite=False)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    say = reporter.write_line if reporter else print
    if why:
        say(f"gradient-harness: could not write {name} ({why}); the run is kept in {where}")
    else:
        say(f"gradient-harness: saved this run to {where}")
