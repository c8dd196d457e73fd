import signal
import sys

from harness.cli import main

if hasattr(signal, "SIGPIPE"):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `python -m harness ... | head` ends quietly
sys.exit(main())
