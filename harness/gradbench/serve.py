"""A backend as a GradBench tool: answer GradBench's messages on stdin/stdout.

``start`` names the tool and the backend's version; ``define`` succeeds for an eval the harness
has (`harness.gradbench.eval_modules`) when the backend offers the mode, float64 and the device
and its expected outcomes (`harness.expected`) list no failure for the eval's functions;
``evaluate`` computes the eval's function in float64 through `harness.target.Target` (the
function's ``prepare``, `harness.evals.adapter`), once untimed by the score (``first-call``: a
compile, a warm-up; ``warmup=False`` leaves it out and times the first call as a run, as
GradBench's own Python tools do), then at least ``min_runs`` times and until the runs add up to
``min_seconds``, one ``evaluate`` timing each (the call and the wait for its result, the
backend's ``block_until_ready``; the last result is brought back as numpy after the runs, as
GradBench's tools convert their output after timing it); ``analysis`` is recorded. Whatever goes wrong is
``success: false`` with the reason; a NaN or infinity in a result is one of them.

The first ``define`` a backend can serve also warms the backend (`Server.warm`): one eager
gradient of a 3-element function, untimed, as GradBench's PyTorch tool computes one at import.
It loads kernels and starts thread pools, which are the process's cost and not any eval's. The
eval's own functions are not called, so with ``warmup=False`` their first call and its compile
are still timed.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback
from typing import IO, Any

import numpy as np

from harness import plugins
from harness.errors import ProtocolError
from harness.evals.adapter import finite
from harness.gradbench import eval_modules, problem_of, protocol
from harness.target import Target

DTYPE = "float64"
"""GradBench's outputs are float64 throughout."""


class Server:
    """Answers one message at a time (`answer`); keeps what the session needs between them."""

    def __init__(
        self,
        entry: plugins.BackendEntry,
        mode: str = "eager",
        device: str = "cpu",
        warmup: bool = True,
        freeze: bool = False,
    ) -> None:
        """``freeze``: after the warm-up, `gc.freeze` what exists (see `warm`); a process-wide
        change, so only `serve`, which owns its process, asks for it."""
        self.entry, self.mode, self.device, self.warmup, self.freeze = entry, mode, device, warmup, freeze
        self.target = Target(entry, device, DTYPE, mode)
        self.modules = eval_modules()
        self.prepared: dict[tuple, Any] = {}
        self.verdicts: dict[str, int] = {"valid": 0, "invalid": 0}
        self.warmed = False

    def answer(self, message: dict) -> dict:
        """The response to ``message`` (parsed by `protocol.parse_message`)."""
        kind = message["kind"]
        reply: dict[str, Any] = {"id": message["id"]}
        if kind == "start":
            reply["tool"] = f"gradient-harness {self.entry.name}"
            reply["config"] = {
                "backend": self.entry.name,
                "version": self.entry.version,
                "mode": self.mode,
                "device": self.device,
                "dtype": DTYPE,
                "warmup": self.warmup,
            }
        elif kind == "define":
            reason = self.undefined(message["module"])
            if reason is None:
                try:
                    self.warm()
                except Exception as exc:
                    reason = f"{self.entry.name} failed a warm-up, a gradient of sum(exp(x)): {_reason(exc)}"
            reply["success"] = reason is None
            if reason:
                reply["error"] = reason
        elif kind == "evaluate":
            try:
                with np.errstate(all="ignore"):  # overflow is answered as a failure, not warned about
                    reply |= self.evaluate(message["module"], message["function"], message["input"])
            except Exception as exc:  # any failure is an answer, never a crash
                reply |= {"success": False, "error": _reason(exc)}
        elif kind == "analysis":
            self.verdicts["valid" if message.get("valid") else "invalid"] += 1
        return reply

    def undefined(self, name: str) -> str | None:
        """Why this backend cannot serve eval ``name`` (``None``: it can)."""
        entry, backend = self.entry, self.entry.backend
        if name not in self.modules:
            return f"the harness has no eval {name!r} (it has {', '.join(sorted(self.modules))})"
        unavailable = getattr(problem_of(self.modules[name]), "unavailable", None)
        missing = unavailable() if unavailable else None
        if missing:
            return missing
        if entry.unavailable:
            return f"backend {entry.name} is unavailable: {entry.unavailable}"
        for what, value, offered in (("mode", self.mode, backend.modes), ("dtype", DTYPE, backend.dtypes)):
            if value not in offered:
                return f"{entry.name} does not offer {what} {value!r} (offers {', '.join(offered)})"
        try:
            devices = list(backend.devices())
        except Exception as exc:
            return f"{entry.name} could not list its devices: {_reason(exc)}"
        if self.device not in devices:
            return f"{entry.name} has no device {self.device!r} here (has {', '.join(devices)})"
        for function_name, function in self.modules[name].GRADBENCH.items():
            why = function.unoffered(self.mode)
            if why:
                return f"{name} {function_name} cannot run in mode {self.mode!r}: {why}"
            for exp in entry.expected:
                if exp.matches(name, function.strategy, self.mode, DTYPE, max(function.order, 1)):
                    return (
                        f"{entry.name}'s expected outcomes ({exp.source}) list {name} {function_name} "
                        f"as {exp.outcome}: {exp.reason or 'no reason given'}"
                    )
        return None

    def warm(self) -> None:
        """Once a session: one untimed eager gradient through the backend (see the module's
        docstring); no eval's function is called."""
        if self.warmed:
            return
        backend = self.entry.backend
        xp = backend.namespace()
        x = backend.asarray(np.arange(1.0, 4.0), DTYPE, self.device)
        backend.to_numpy(backend.value_and_grad(lambda x: xp.sum(xp.exp(x)), 0)(x)[1])
        self.warmed = True
        # What the imports and the warm-up made lives as long as the process: out of the cyclic
        # garbage collector's way (`gc.freeze`), so that its full collections during evaluations
        # walk what the session makes, not the framework's hundred thousand objects (GradBench's
        # kmeans session on JAX jit, on one idle core: full collections of 83 and 73 ms during
        # its evaluations before, none after; this collection takes about 76 ms, at define).
        if self.freeze:
            gc.collect()
            gc.freeze()

    def evaluate(self, name: str, function_name: str, input: Any) -> dict:
        if name not in self.modules:
            raise ValueError(f"the harness has no eval {name!r}")
        module = self.modules[name]
        if function_name not in module.GRADBENCH:
            raise ValueError(f"{name} has no function {function_name!r} (has {', '.join(module.GRADBENCH)})")
        function, problem = module.GRADBENCH[function_name], problem_of(module)
        min_runs, min_seconds = protocol.runs(input)
        target, clock = self.target, time.perf_counter
        ready = target.backend.block_until_ready
        started = clock()
        args64 = module.from_gradbench(input)
        key = (name, function_name, tuple(getattr(a, "shape", ()) for a in args64))
        if key not in self.prepared:
            self.prepared = {key: function.prepare(target, problem, args64)}  # keep one: inputs grow
        compute, args = self.prepared[key], target.array(args64)
        timings = [protocol.timing("prepare", clock() - started)]
        if self.warmup:
            started = clock()
            ready(compute(*args))
            timings.append(protocol.timing("first-call", clock() - started))
        # Each run is the call and the wait for its result (block_until_ready), as GradBench's
        # tools time theirs; bringing the last result back as float64 numpy is after the runs.
        runs, total = [], 0.0
        while len(runs) < min_runs or total < min_seconds:
            started = clock()
            out = ready(compute(*args))
            seconds = clock() - started
            runs.append(seconds)
            total += seconds
        result = target.numpy(out)
        timings += [protocol.timing("evaluate", seconds) for seconds in runs]
        bad = finite(result)
        if bad:
            return {"success": False, "error": f"{self.entry.name}'s {name} {function_name}: {bad}"}
        return {"success": True, "output": function.output(result), "timings": timings}


def _reason(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def serve(
    entry: plugins.BackendEntry, mode: str, device: str, log: str | None = None, warmup: bool = True
) -> int:
    """Answer GradBench's messages on stdin until it closes; only protocol lines reach stdout (fd 1
    is pointed at stderr meanwhile, so a framework's prints and warnings land there)."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server = Server(entry, mode, device, warmup, freeze=True)
    logfile: IO[str] | None = open(log, "w", buffering=1) if log else None  # noqa: SIM115
    began = time.perf_counter_ns()

    def record(side: str, obj: Any) -> None:
        if logfile:
            logfile.write(protocol.log_line(time.perf_counter_ns() - began, side, obj) + "\n")

    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                message = protocol.parse_message(line)
            except ProtocolError as exc:
                record("message", {"unreadable": line.rstrip("\n")})
                reply = {"id": _id_of(line), "success": False, "error": str(exc)}
            else:
                record("message", message)
                reply = server.answer(message)
            record("response", reply)
            out.write(protocol.dumps(reply) + "\n")
    except BrokenPipeError:  # the eval went away: the session is over
        pass
    finally:
        if logfile:
            logfile.close()
        v = server.verdicts
        print(f"gradbench serve {entry.name}: {v['valid']} valid, {v['invalid']} invalid", file=sys.stderr)
    return 0


def _id_of(line: str) -> Any:
    try:
        return json.loads(line).get("id")
    except (ValueError, AttributeError):
        return None
