"""``python -m eva9 ...``: the command line of :mod:`eva9.cli`."""

import sys

from .cli import main

sys.exit(main())
