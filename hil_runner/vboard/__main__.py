import logging
import os
import signal
import sys

# Until serve() installs its own handler, Ctrl-C (sent to the whole group of `aed hil run`) ends a board
# quietly instead of printing a KeyboardInterrupt traceback from the middle of an import.
signal.signal(signal.SIGINT, signal.SIG_DFL)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

from hil_runner.vboard.cli import main  # noqa: E402

sys.exit(main())
