import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

from hil_runner.vboard.cli import main  # noqa: E402

sys.exit(main())
