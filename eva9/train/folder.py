"""The run folder and its one owner, :class:`RunFolder`: every read and write of its files goes through it::

    out/config.json      the TrainConfig (a folder without a valid one is not a run folder, and is never written to)
    out/history.json     one record per finished epoch, rewritten after every epoch
    out/checkpoint.pt    model, optimizer, scheduler, scaler, epoch, RNG states, history, data fingerprint, threads
    out/model.pt         final weights (a state_dict)
    out/metrics.json     final test loss/accuracy, per-class accuracy, confusion matrix, wall time, device, versions

Every file is written with :func:`eva9.files.write_atomic` (temp file, fsync, rename), so a kill leaves each one
old or new. The order of the writes keeps the folder describing one state: ``history.json`` is rewritten from the
checkpoint whenever training starts from it, ``model.pt`` and ``metrics.json`` are removed (metrics first) before
training changes the state and written last (metrics last), so a folder holding both is a finished run whose
``history.json`` matches them. A process training in the folder holds an exclusive ``flock`` on it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..files import write_atomic
from .config import TrainConfig
from .history import History

__all__ = ["RUN_FILES", "RunFolderError", "RunFolderBusy", "RunFolder"]

RUN_FILES = ("config.json", "history.json", "checkpoint.pt", "model.pt", "metrics.json")

_START_OVER = "Delete the run folder to start over, or choose another out folder"


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked; the message names the folder or file and what to do."""


class RunFolderBusy(RunFolderError):
    """Another process is training in the run folder."""


class RunFolder:
    """One run folder: reads and writes its files, refuses folders that are not runs, and locks it for training."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        """The path of one of :data:`RUN_FILES`."""
        return self.path / name

    # ------------------------------------------------------------------------------------------- what it holds

    @property
    def is_finished(self) -> bool:
        """A finished run: ``model.pt`` and ``metrics.json`` (metrics is written last, and removed first)."""
        return self.file("model.pt").is_file() and self.file("metrics.json").is_file()

    @property
    def has_config(self) -> bool:
        """Whether the folder holds a ``config.json`` (read it with :meth:`config`)."""
        return self.file("config.json").is_file()

    @property
    def has_checkpoint(self) -> bool:
        """Whether the folder holds a ``checkpoint.pt``."""
        return self.file("checkpoint.pt").is_file()

    def check_is_run_or_empty(self) -> None:
        """Refuse (RunFolderError) a path that is a file, or a folder holding files but no valid eva9 config.json."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path} is a file, not a run folder; choose another out folder")
        if not self.path.is_dir() or not any(self.path.iterdir()):
            return
        if not self.has_config:
            raise RunFolderError(
                f"{self.path} holds files but is not an eva9 run folder (no config.json); nothing was written. "
                "Choose an empty or new out folder"
            )
        try:
            TrainConfig.from_dict(self._json("config.json"))
        except (RunFolderError, TypeError, ValueError) as error:
            raise RunFolderError(
                f"{self.path} is not an eva9 run folder ({error}); nothing was written. Choose another out folder"
            ) from None

    # -------------------------------------------------------------------------------------------------- reading

    def _json(self, name: str) -> Any:
        path = self.file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no {name} in {self.path}: is it a run folder written by fit(out=...)?") from None
        except (OSError, ValueError) as error:
            raise RunFolderError(f"cannot read {path} ({error}). {_START_OVER}") from None

    def config(self) -> TrainConfig:
        """The run's TrainConfig (``config.json``)."""
        try:
            return TrainConfig.from_dict(self._json("config.json"))
        except (TypeError, ValueError) as error:
            if isinstance(error, RunFolderError):
                raise
            raise RunFolderError(f"{self.file('config.json')} is no eva9 config ({error}). {_START_OVER}") from None

    def history(self) -> History:
        """The per-epoch records (``history.json``)."""
        try:
            return History.from_dict(self._json("history.json"))
        except RunFolderError:
            raise
        except ValueError as error:
            raise RunFolderError(f"{self.file('history.json')}: {error}. {_START_OVER}") from None

    def metrics(self) -> dict[str, Any]:
        """The finished run's final metrics (``metrics.json``)."""
        metrics = self._json("metrics.json")
        if not isinstance(metrics, dict):
            raise RunFolderError(f"{self.file('metrics.json')} is no metrics object. {_START_OVER}")
        return metrics

    def finished_epochs(self) -> int:
        """How many epochs the finished run's ``metrics.json`` records."""
        try:
            return int(self.metrics()["epochs"])
        except (KeyError, TypeError) as error:
            raise RunFolderError(f"cannot read {self.file('metrics.json')}: {error!r}. {_START_OVER}") from None

    def _torch(self, name: str, what: str) -> Any:
        path = self.file(name)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - torch raises several kinds for a truncated or foreign file
            raise RunFolderError(f"cannot read {what} {path}: {' '.join(str(error).split())}. {_START_OVER}") from None

    def checkpoint(self) -> dict[str, Any]:
        """Everything a resumed run needs (``checkpoint.pt``)."""
        state = self._torch("checkpoint.pt", "checkpoint")
        if not isinstance(state, dict) or not {"epoch", "model", "history"} <= set(state):
            raise RunFolderError(f"{self.file('checkpoint.pt')} is no eva9 checkpoint. {_START_OVER}")
        return state

    def model_state(self) -> dict[str, Any]:
        """The final weights (``model.pt``) of a finished run."""
        return self._torch("model.pt", "weights file")

    # -------------------------------------------------------------------------------------------------- writing

    def _write_json(self, name: str, value: Any) -> None:
        write_atomic(self.file(name), json.dumps(value, indent=2))

    def _write_torch(self, name: str, value: Any) -> None:
        buffer = io.BytesIO()
        torch.save(value, buffer)
        write_atomic(self.file(name), buffer.getvalue())

    def begin(self, config: TrainConfig, history: History, training: bool) -> None:
        """Before the first epoch of this call: drop an older state's final files (if ``training``), then write
        the config and the history the run continues from (the checkpoint's, so the two agree)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if training:
            for name in ("metrics.json", "model.pt"):  # metrics first: no finished-looking folder of an older state
                self.file(name).unlink(missing_ok=True)
        self._write_json("config.json", config.to_dict())
        self._write_json("history.json", history.to_dict())

    def save_epoch(self, checkpoint: dict[str, Any], history: History) -> None:
        """After an epoch: the checkpoint (which holds the history too), then ``history.json``."""
        self._write_torch("checkpoint.pt", checkpoint)
        self._write_json("history.json", history.to_dict())

    def finish(self, model_state: dict[str, Any], metrics: dict[str, Any]) -> None:
        """The final weights, then ``metrics.json``, which marks the run finished."""
        self._write_torch("model.pt", model_state)
        self._write_json("metrics.json", metrics)

    def prune(self) -> int:
        """Delete a finished run's ``checkpoint.pt``; return the bytes freed (0 if there was none)."""
        if not self.is_finished:
            raise RunFolderError(
                f"{self.path} holds no finished run (model.pt and metrics.json); only a finished run's checkpoint may"
                " be dropped. Finish it with resume=True (or `eva9 train --out DIR --resume`) first"
            )
        path = self.file("checkpoint.pt")
        if not path.is_file():
            return 0
        size = path.stat().st_size
        path.unlink()
        return size

    # ---------------------------------------------------------------------------------------------------- lock

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunFolder]:
        """Hold an exclusive lock on the folder (``flock`` on the folder itself; created if needed) while training.

        A second process gets RunFolderBusy at once, naming the folder, and writes nothing. A folder created here
        and still empty at the end (training failed before its first write) is removed again.
        """
        self.check_is_run_or_empty()
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            with self._removed_if_unused(created):
                yield self
            return
        handle = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(self.path)
                raise RunFolderBusy(
                    f"{self.path} is in use: another eva9 process"
                    + (f" (pid {holder})" if holder is not None else "")
                    + " is training there and holds the folder's lock; wait for it to finish, or choose another out"
                    " folder"
                ) from None
            self.check_is_run_or_empty()  # the holder before us may have left it in another state
            with self._removed_if_unused(created):
                yield self
        finally:
            os.close(handle)  # closing releases the lock

    @contextlib.contextmanager
    def _removed_if_unused(self, created: bool) -> Iterator[None]:
        try:
            yield
        finally:
            if created and self.path.is_dir() and not any(self.path.iterdir()):
                self.path.rmdir()


def _lock_holder(path: Path) -> int | None:
    """The pid holding an flock on ``path``, where Linux's ``/proc/locks`` tells; None elsewhere."""
    try:
        status = os.stat(path)
        where = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
        with open("/proc/locks", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:567890 0 EOF"
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == where and parts[4].isdigit():
            return int(parts[4])
    return None
