"""``python -m eva9 ...``: the command line of :mod:`eva9.cli`. Under torchrun (``torchrun -m eva9 train ...``),
rank 0 alone prints: the other processes' output is dropped (their errors still show)."""

import os
import sys

from .cli import main
from .train.distributed import is_main_process

if not is_main_process():
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the whole life of the process

sys.exit(main())
