"""Run the ``tndiagram`` command as ``python -m tndiagram``."""

import sys

from .cli import main

sys.exit(main())
