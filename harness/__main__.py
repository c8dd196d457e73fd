import os
import signal
import sys

# A reader that goes away (`python -m harness list | head`) ends the harness as it ends `cat`:
# by SIGPIPE, quietly.
if hasattr(signal, "SIGPIPE"):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


class StdoutFailed(Exception):
    """Writing to stdout failed (a full disk, a closed descriptor): told apart from a failed write
    to a file the command chose, which the command reports itself."""


class _GuardedStdout:
    """sys.stdout, whose write errors raise `StdoutFailed`."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise StdoutFailed(exc.strerror or str(exc)) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise StdoutFailed(exc.strerror or str(exc)) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _run() -> int:
    sys.stdout = _GuardedStdout(sys.stdout)
    try:
        from harness.cli.main import main  # Ctrl-C while importing is an interrupt like any other

        code = main()
        sys.stdout.flush()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except StdoutFailed as exc:
        print(f"error: could not write the output to stdout: {exc}", file=sys.stderr)
        # Python flushes stdout again at exit: point it at /dev/null so that fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
        return 1
    return code


sys.exit(_run())
