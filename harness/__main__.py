import os
import signal
import sys


class StdoutFailed(Exception):
    """Writing to stdout failed (a full disk, a closed descriptor): told apart from a failed write
    to a file the command chose, which the command reports itself."""


class ReaderGone(Exception):
    """Whoever read stdout went away (``python -m harness list | head``)."""


class _GuardedStdout:
    """sys.stdout, whose write errors raise `ReaderGone` or `StdoutFailed`.

    SIGPIPE stays ignored, as Python sets it, so that a pipe to a child that died (a detection
    child killed on SIGTERM, say) is an error where it is written, not the death of the harness;
    only stdout's reader going away ends the harness by SIGPIPE, as it ends ``cat``."""

    def __init__(self, stream):
        self._stream = stream

    def _guarded(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise ReaderGone from None
        except OSError as exc:
            raise StdoutFailed(exc.strerror or str(exc)) from None

    def write(self, text: str) -> int:
        return self._guarded(self._stream.write, text)

    def flush(self) -> None:
        self._guarded(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: Python flushes it again at exit, and that must fail no more."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())


def _run() -> int:
    sys.stdout = _GuardedStdout(sys.stdout)
    try:
        from harness.cli.main import main  # Ctrl-C while importing is an interrupt like any other

        code = main()
        sys.stdout.flush()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except ReaderGone:
        _quiet_stdout()
        if hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGPIPE)
        return 128 + 13
    except StdoutFailed as exc:
        print(f"error: could not write the output to stdout: {exc}", file=sys.stderr)
        _quiet_stdout()
        return 1
    return code


sys.exit(_run())
