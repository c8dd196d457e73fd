"""The runner's child that runs one world (`launch_world`): it computes the reference, starts the
world's processes (``python -m harness.distributed.worker FOLDER RANK``, `harness.distributed.worker`)
and emits one `harness.distributed.records.Record`.

Where the processes run: the runner gives each world to a child interpreter that leads its own
process group. This child starts the world's processes in the same group. A process that exits
early ends the world at once with an ``error`` record naming it; one that hangs (in a collective,
say) is ended by the runner's time limit, which kills the whole group, ranks and all.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import machine
from harness.distributed import folder
from harness.distributed.data import reference
from harness.distributed.plan import shape
from harness.distributed.records import failed_record, finished_record
from harness.jobs import Job

POLL_S = 0.05
"""How often the launcher checks whether the world's processes have exited."""
WORKER = "harness.distributed.worker"
"""The module each process of a world runs (``python -m``)."""


def launch_world(job: Job, version: str | None, emit: Callable) -> None:
    """Run one world (a `harness.jobs.Job` of kind ``scale``) and emit its `Record`.

    Its processes join this process's group, so the runner's kill at the time limit ends them
    too; whatever happens, they are killed before this returns.
    """
    started = time.monotonic()
    engine, world, size, dtype = job.engine, job.world, tuple(job.size), job.dtypes[0]
    processes, devices = shape(engine, world)
    emit(("total", 1))
    emit(("current", f"{engine} world {world} {'x'.join(map(str, size))} {dtype}: reference"))
    with tempfile.TemporaryDirectory(prefix="harness-scale-") as name:
        world_folder = Path(name)
        folder.write_reference(world_folder, reference(size, dtype))
        port, gpus = free_port(), len(machine.gpus())
        folder.write_spec(
            world_folder, {"engine": engine, "world": world, "size": list(size), "dtype": dtype, "port": port}
        )
        emit(("current", f"{engine} world {world} {'x'.join(map(str, size))} {dtype}"))
        procs = []
        try:
            for rank in range(processes):
                with open(folder.rank_output(world_folder, rank), "wb") as out:
                    procs.append(
                        subprocess.Popen(
                            [sys.executable, "-m", WORKER, str(world_folder), str(rank)],
                            env=rank_environment(engine, world, rank, port, gpus),
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    )
            died = first_failure(procs)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        seconds = time.monotonic() - started
        if died:
            rank, code = died
            message = death_message(world_folder, rank, code, processes)
            emit(("result", failed_record(job, version, "crash", message, seconds)))
        else:
            result = folder.read_result(world_folder)
            emit(("result", finished_record(job, version, result, seconds)))
    emit(("advance",))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_environment(engine: str, world: int, rank: int, port: int, gpus: int) -> dict[str, str]:
    """Process ``rank``'s environment: the forced host device count for JAX (one device per
    process for ``jax.distributed``, and one GPU each where there are GPUs and no
    ``CUDA_VISIBLE_DEVICES``), torchrun's variables for torch."""
    env = dict(os.environ)
    if engine.startswith("jax."):
        count = world if engine == "jax.sharding" else 1
        flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "", env.get("XLA_FLAGS", ""))
        env["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={count}".strip()
        if engine == "jax.distributed" and gpus and "CUDA_VISIBLE_DEVICES" not in env:
            env["CUDA_VISIBLE_DEVICES"] = str(rank % gpus)
    else:
        env.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank),
            LOCAL_WORLD_SIZE=str(world),
        )
    return env


def first_failure(procs: list[subprocess.Popen]) -> tuple[int, int] | None:
    """Wait until every process has exited; (rank, exit code) of the first to fail, if one does."""
    while True:
        codes = [p.poll() for p in procs]
        failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            return failed[0]
        if all(code == 0 for code in codes):
            return None
        time.sleep(POLL_S)


def death_message(world_folder: Path, rank: int, code: int, processes: int) -> str:
    """What the ``error`` record says of process ``rank`` that exited with ``code``: how, and the
    last lines of its output."""
    how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
    lines = folder.rank_output(world_folder, rank).read_text(errors="replace").strip().splitlines()
    tail = " | ".join(lines[-3:]) or "no output"
    others = "; the others were killed" if processes > 1 else ""
    return f"process {rank} of {processes} {how} before the world finished{others}: {tail}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
