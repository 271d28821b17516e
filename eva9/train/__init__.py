"""Training, the engine: configuration profiles, one explicit epoch loop, evaluation, run folders and resume.

Written in the style of torchvision's ``references/classification/train.py``: :func:`train_one_epoch` trains one
epoch, evaluation (:func:`evaluate`, :func:`predict`) is separate, and one checkpoint holds everything a resumed
run needs. :func:`fit` ties them together and keeps a run folder (see :mod:`eva9.train.runs`). One module per idea,
every public name importable from here:

- :mod:`eva9.train.config`: :class:`TrainConfig`, :data:`PROFILES`, :func:`profile`, :func:`build_model`;
- :mod:`eva9.train.loop`: :func:`train_one_epoch`, :func:`predict`, :func:`evaluate`;
- :mod:`eva9.train.parts`: what a run trains with (loss, SGD, schedule, mixed precision, channels-last);
- :mod:`eva9.train.history`: :class:`History`, the per-epoch records;
- :mod:`eva9.train.folder`: :class:`RunFolder`, the one owner of a run folder's files (lock, atomic writes);
- :mod:`eva9.train.runs`: :func:`fit`, :func:`load_run`, :func:`prune`, checkpoints and resume;
- :mod:`eva9.train.lr_range`: :func:`lr_find`, the learning-rate range test;
- :mod:`eva9.train.tensorboard`: :class:`EpochLogger`, each epoch's numbers as TensorBoard scalars.
- :mod:`eva9.train.distributed`: several processes under torchrun (process group, DDP, synchronised BatchNorm,
  sharded evaluation), the thin layer :func:`fit` uses; its names stay in that module.

The engine knows data and models and nothing above them: the analysis, the results, the plots and the book use it,
never the other way round (the import-linter contracts in ``pyproject.toml``).
"""

from __future__ import annotations

from .config import (
    ENV_EPOCHS,
    ENV_PROFILE,
    PROFILES,
    SCHEDULES,
    TrainConfig,
    affordable_profile,
    build_model,
    profile,
)
from .folder import RunFolder, RunFolderBusy, RunFolderError
from .history import History
from .loop import NonFiniteLossError, Predictions, evaluate, predict, train_one_epoch
from .lr_range import DIVERGE, LRFinding, lr_find, read_range_test, steepest_descent
from .parts import CHANNELS_LAST_ON_CPU
from .runs import RUN_FILES, Run, fit, load_run, prune
from .tensorboard import EpochLogger

__all__ = [
    "SCHEDULES",
    "PROFILES",
    "ENV_PROFILE",
    "ENV_EPOCHS",
    "NonFiniteLossError",
    "TrainConfig",
    "profile",
    "affordable_profile",
    "History",
    "Predictions",
    "Run",
    "evaluate",
    "predict",
    "train_one_epoch",
    "fit",
    "load_run",
    "prune",
    "build_model",
    "CHANNELS_LAST_ON_CPU",
    "RUN_FILES",
    "RunFolder",
    "RunFolderError",
    "RunFolderBusy",
    "LRFinding",
    "lr_find",
    "steepest_descent",
    "read_range_test",
    "DIVERGE",
    "EpochLogger",
]
