"""A fake installed distribution of faulty backends, for the fault-injection and runner tests.

`install` writes, under a tmp folder put on ``PYTHONPATH``, ``faulty-0.1.dist-info``
whose ``entry_points.txt`` lists plugin modules in the ``harness`` group. Each
registers a wrapper around an installed built-in backend (autograd, else jax)
with one planted fault: a segfault, a hang, a hang with a helper process, a
SIGKILL (what the kernel's OOM killer sends), an exception, a NaN, a wrong shape
or a wrong gradient structure. ``python -m harness`` then runs them in child
processes, as a user would. The plugin sources are self-contained on purpose
(they are imported from that folder, not from ``tests/``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from harness import plugins

PIDS_ENV = "FAULTY_PIDS"
"""File to which the helper-starting backends append ``role pid`` lines."""

INNERS = (("autograd", "AutogradBackend"), ("jax", "JaxBackend"))
SMALL = ["-p", "tanh", "-o", "1-2", "--dtype", "float64", "--mode", "eager"]
PLANTED_MESSAGE = "RuntimeError: planted failure in derivative"

COMMON = '''\
"""Faulty wrappers around INNER_CLASS, written by tests/faulty.py."""

import os
import signal
import subprocess
import sys
import threading

import harness
from harness_backends.INNER_MODULE import INNER_CLASS
from harness.strategies import derivative

PLANTED = 1e-3


class Wrapper:
    """A renamed INNER_CLASS that delegates every method of the spec."""

    def __init__(self, name, expected=None, inner=None):
        self.inner = inner or INNER_CLASS()
        self.name = name
        self.requires = tuple(self.inner.requires)
        self.install_hint = self.inner.install_hint
        self.strategies = tuple(self.inner.strategies)
        self.modes = tuple(self.inner.modes)
        self.dtypes = tuple(self.inner.dtypes)
        if expected is not None:
            self.expected = expected

    def devices(self):
        return self.inner.devices()

    def namespace(self):
        return self.inner.namespace()

    def asarray(self, x, dtype, device):
        return self.inner.asarray(x, dtype, device)

    def to_numpy(self, x):
        return self.inner.to_numpy(x)

    def value_and_grad(self, f, argnums):
        return self.inner.value_and_grad(f, argnums)

    def jvp(self, f, primals, tangents):
        return self.inner.jvp(f, primals, tangents)

    def derivative(self, f, order, strategy):
        return derivative(self.inner, f, order, strategy)

    def compile(self, fn, mode):
        return self.inner.compile(fn, mode)

    def block_until_ready(self, x):
        return self.inner.block_until_ready(x)


class Segv(Wrapper):
    def derivative(self, f, order, strategy):
        if order == 2:
            os.kill(os.getpid(), signal.SIGSEGV)
        return derivative(self.inner, f, order, strategy)


class Killed(Wrapper):
    """What the out-of-memory killer does: SIGKILL, no chance to clean up."""

    def derivative(self, f, order, strategy):
        if order == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return derivative(self.inner, f, order, strategy)


class Hang(Wrapper):
    def derivative(self, f, order, strategy):
        if order == 2:
            threading.Event().wait()  # forever
        return derivative(self.inner, f, order, strategy)


class HangWithHelper(Wrapper):
    """Starts a helper process that inherits stdout and stderr, records both pids in the file
    named by $FAULTY_PIDS, then hangs: only killing its process group ends both."""

    def devices(self):
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        with open(os.environ["FAULTY_PIDS"], "a") as fh:
            fh.write(f"child {os.getpid()}\\nhelper {helper.pid}\\n")
        threading.Event().wait()


class Raises(Wrapper):
    def derivative(self, f, order, strategy):
        raise RuntimeError("planted failure in derivative")


class Nan(Wrapper):
    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)
        return (lambda x: d(x) * float("nan")) if order == 2 else d


class Shape(Wrapper):
    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)
        return lambda x: d(x)[:1]


class BadGrad(Wrapper):
    """The gradient w.r.t. (W, b) comes back as W alone."""

    def value_and_grad(self, f, argnums):
        vg = self.inner.value_and_grad(f, argnums)
        if isinstance(argnums, int):
            return vg

        def only_first(*args):
            value, grads = vg(*args)
            return value, grads[0]

        return only_first


class BadHvp(Wrapper):
    """jvp drops the last leaf of a tuple tangent: only forward-over-reverse HVPs see it."""

    def jvp(self, f, primals, tangents):
        out, tangent = self.inner.jvp(f, primals, tangents)
        return out, (tangent[0] if isinstance(tangent, tuple) else tangent)


class BadJit(Wrapper):
    """Offers a jit mode whose compile raises."""

    def __init__(self, name, **kwargs):
        super().__init__(name, **kwargs)
        self.modes = ("eager", "jit")

    def compile(self, fn, mode):
        raise RuntimeError("planted: compile is broken")


class WrongSecond(Wrapper):
    """Order 2 is off by a relative PLANTED."""

    def derivative(self, f, order, strategy):
        d = derivative(self.inner, f, order, strategy)
        return (lambda x: d(x) * (1 + PLANTED)) if order == 2 else d
'''

PLUGIN = """\
import harness
from faulty_common import {cls}


@harness.hookimpl
def harness_register_backends(register):
    register({cls}({name!r}{extra}))
"""

CRASHERS = {
    "hang": "Hang",
    "helper": "HangWithHelper",
    "segv": "Segv",
    "killed": "Killed",
    "raises": "Raises",
    "nan": "Nan",
    "shape": "Shape",
    "badgrad": "BadGrad",
    "badhvp": "BadHvp",
    "badjit": "BadJit",
}


def inner_of(registry: plugins.Registry) -> tuple[str, str] | None:
    """(module, class) of the installed built-in backend the faulty wrappers delegate to."""
    return next(((m, c) for m, c in INNERS if not registry.backends[m].unavailable), None)


def common_source(inner: tuple[str, str]) -> str:
    module, cls = inner
    return COMMON.replace("INNER_MODULE", module).replace("INNER_CLASS", cls)


def install(
    path: Path, inner: tuple[str, str], backends: dict[str, str], distribution: str = "faulty"
) -> dict:
    """``faulty-0.1.dist-info`` under ``path``, one entry point per backend; the env that finds it.

    ``backends`` maps a backend (and plugin) name to ``"Class"`` or ``"Class, keyword=value"``.
    A second installation beside the first needs a ``distribution`` name of its own.
    """
    path.mkdir(parents=True, exist_ok=True)
    (path / "faulty_common.py").write_text(common_source(inner))
    lines = ["[harness]"]
    for name, spec in backends.items():
        cls, _, extra = spec.partition(",")
        module = "faulty_" + name.replace("-", "_")
        (path / f"{module}.py").write_text(
            PLUGIN.format(cls=cls.strip(), name=name, extra=f", {extra.strip()}" if extra else "")
        )
        lines.append(f"{name} = {module}")
    info = path / f"{distribution}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    env = dict(os.environ)
    env.pop(plugins.BACKENDS_ENV, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    return env


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @cached_property
    def report(self) -> dict:
        return json.loads(self.stdout)

    @property
    def checks(self) -> list[dict]:
        return self.report["checks"]

    def of(self, backend: str, **fields) -> list[dict]:
        return [
            c for c in self.checks if c["backend"] == backend and all(c[k] == v for k, v in fields.items())
        ]

    def __str__(self) -> str:
        return f"exit {self.code}\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"


def harness_cli(*args: str, env: dict, cwd: Path, timeout: float = 120) -> Run:
    result = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(result.returncode, result.stdout, result.stderr)


def harness_in_terminal(args: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    """``python -m harness ARGS`` started as a terminal starts it, to be interrupted: leading its
    own process group (Ctrl-C reaches the group), SIGINT at its default disposition (a command
    started in the background by a non-interactive shell, a CI script's ``cmd &``, inherits it
    ignored, and Python then never raises KeyboardInterrupt), stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def kept_on_interrupt(err: str, signum: int) -> tuple[list[dict], int]:
    """The checks an interrupted run kept, read from the file its ``interrupted:`` line on
    stderr names, and the count that line gives; the file must name the signal."""
    [line] = [ln for ln in err.splitlines() if ln.startswith("interrupted:")]
    match = re.fullmatch(r"interrupted: (\d+) checks finished, kept in (.+)", line)
    assert match, line
    kept = json.loads(Path(match[2]).read_text())
    assert kept["interrupted"] == signal.Signals(signum).name
    return kept["checks"], int(match[1])


def pids_of(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    return {role: int(pid) for role, pid in (line.split() for line in path.read_text().splitlines())}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped by init counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        os.kill(pid, 0)
        return True


def wait_gone(pids, within: float = 30.0) -> list[int]:
    """The pids still alive after up to ``within`` s (killed processes take a moment to go)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]
