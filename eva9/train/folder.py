"""The run folder and its one owner, :class:`RunFolder`: every read and write of its files goes through it::

    out/.eva9-run        the format marker, written first: eva9 made this folder a run folder (and its lock file)
    out/config.json      the TrainConfig (a folder without a valid one is not a run folder, and is never written to)
    out/history.json     one record per finished epoch, rewritten after every epoch
    out/checkpoint.pt    model, optimizer, scheduler, scaler, epoch, RNG states, history, data fingerprint, threads
    out/model.pt         final weights (a state_dict)
    out/metrics.json     final test loss/accuracy, per-class accuracy, confusion matrix, wall time, device, versions

Every file is written with :func:`eva9.files.write_atomic` (temp file, fsync, rename), so a kill leaves each one
old or new. The order of the writes keeps the folder describing one state: ``history.json`` is rewritten from the
checkpoint whenever training starts from it, ``model.pt`` and ``metrics.json`` are removed (metrics first) before
training changes the state and written last (metrics last), so a folder holding both is a finished run whose
``history.json`` matches them.

eva9 writes only into a new or empty folder, or into one it made a run folder: one holding the marker
``.eva9-run`` (``{"format": 1, ...}``), or, from eva9 versions before the marker, a *legacy* run folder, recognised
only when all of these hold: every entry is one of :data:`RUN_FILES` (or the temp file of a killed write, or the
run's own TensorBoard folder), ``config.json`` is a JSON object with every field the first TrainConfig had and
validates as a TrainConfig, and ``history.json`` is a history (``{"epochs": [{"epoch": 1, ...}, ...]}``). A legacy
folder gets the marker when it is next opened for training. Anything else (a user's folder, even one with a
``config.json`` that parses) is refused and nothing in it is touched. Opening a run folder to train also removes
the temp files a killed write left (``.config.json.abcd1234.tmp``).

A process training in the folder holds an exclusive POSIX record lock (``fcntl.lockf``) on the marker. A forked
child (a DataLoader worker) does not hold it, and the kernel drops it when its process dies, so a killed trainer
frees its folder at once, and "in use" names only a live process.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..files import write_atomic
from ..weights import unreadable
from .config import TrainConfig
from .history import History

__all__ = ["RUN_FILES", "MARKER", "FORMAT", "RunFolderError", "RunFolderBusy", "RunFolder"]

RUN_FILES = ("config.json", "history.json", "checkpoint.pt", "model.pt", "metrics.json")

MARKER = ".eva9-run"
"""The format marker: eva9 writes it first into a folder it makes a run folder, and locks it while training."""

FORMAT = 1
"""The run-folder format this eva9 writes (the marker's ``format``); a folder of a later format is refused."""

_TEMP_FILE = re.compile(r"\.(" + "|".join(re.escape(name) for name in RUN_FILES) + r")\.[A-Za-z0-9_]{8}\.tmp")
"""The name :func:`eva9.files.write_atomic` gives a run file's temp file (``tempfile.mkstemp``'s 8 random letters)."""

_FIRST_CONFIG_FIELDS = frozenset(
    "profile model epochs batch_size lr momentum nesterov weight_decay schedule warmup label_smoothing seed "
    "train_per_class test_per_class device amp workers data_dir".split()
)
"""The TrainConfig fields every eva9 version wrote into config.json (the first TrainConfig's): a legacy folder's
config holds them all."""

_START_OVER = "Delete the run folder to start over, or choose another out folder"


_HELD: dict[str, int] = {}
"""The markers this process holds the lock of (real path -> descriptor): POSIX drops a process's lock on a file when
it closes any descriptor of that file, so the marker is never opened again while locked, and a second lock in the
same process (which POSIX would grant) is refused."""


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
        """Refuse (RunFolderError) a path that is a file, or a folder that is neither empty nor a run folder eva9
        made (its marker, or the legacy rule in the module docstring); nothing is written."""
        self._kind()

    def _kind(self, marker: bytes | None = None) -> str:
        """``"new"`` (no folder, or an empty one), ``"run"`` (eva9's marker) or ``"legacy"``; else RunFolderError.
        ``marker``: the marker's bytes as read through the held lock (opening it again would drop the lock)."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path} is a file, not a run folder; choose another out folder")
        if not self.path.is_dir():
            return "new"
        names = {entry.name for entry in os.scandir(self.path)}
        if not names:
            return "new"
        if MARKER in names:
            self._check_marker(marker if marker is not None else self._read_marker())
            return "run"
        why = self._not_legacy(names)
        if why is not None:
            raise RunFolderError(
                f"{self.path} is not an eva9 run folder ({why}); nothing was written. Choose an empty or new out folder"
            )
        return "legacy"

    def _read_marker(self) -> bytes:
        held = _HELD.get(self._marker_key())
        if held is not None:  # read through the lock's descriptor: closing another one would drop the lock
            return os.pread(held, 4096, 0)
        try:
            with open(self.file(MARKER), "rb") as f:
                return f.read(4096)
        except OSError as error:
            raise RunFolderError(f"cannot read {self.file(MARKER)} ({error.strerror}). {_START_OVER}") from None

    def _check_marker(self, content: bytes) -> None:
        """An empty marker is one whose writer was stopped before it wrote; else it must be ``{"format": n}``."""
        if not content:
            return
        try:
            marker = json.loads(content)
            version = marker["format"]
            if type(version) is not int:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise RunFolderError(f"{self.file(MARKER)} is damaged (not eva9's format marker). {_START_OVER}") from None
        if version > FORMAT:
            raise RunFolderError(
                f"{self.path} is a run folder of format {version}, written by a newer eva9 (this one reads format "
                f"{FORMAT}); upgrade eva9 (pip install -U eva9), or choose another out folder"
            )

    def _not_legacy(self, names: set[str]) -> str | None:
        """Why the folder (without a marker) is no run folder of an earlier eva9; None if it is one."""
        if "config.json" not in names:
            return "no config.json"
        try:
            config = json.loads(self.file("config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "its config.json is not JSON"
        if not isinstance(config, dict) or not _FIRST_CONFIG_FIELDS <= set(config):
            return "its config.json is no eva9 TrainConfig"
        try:
            TrainConfig.from_dict(config).validate()
        except (TypeError, ValueError) as error:
            return f"its config.json is no valid eva9 TrainConfig: {' '.join(str(error).split())[:120]}"
        tensorboard, own = config.get("tensorboard"), set(RUN_FILES)
        if isinstance(tensorboard, str) and self._inside(tensorboard):
            own.add(Path(tensorboard).name)
        others = sorted(name for name in names if name not in own and not _TEMP_FILE.fullmatch(name))
        if others:
            return f"it holds {', '.join(others[:3])}{', ...' if len(others) > 3 else ''}, which eva9 never writes"
        if any(not self.file(name).is_file() for name in names & set(RUN_FILES)):
            return "one of its run files is not a file"
        if "history.json" not in names:
            return "no history.json"
        try:
            history = json.loads(self.file("history.json").read_text(encoding="utf-8"))
            epochs = History.from_dict(history).epochs
        except (OSError, ValueError):
            return "its history.json is no eva9 history"
        if any(type(record.get("epoch")) is not int for record in epochs):
            return "its history.json is no eva9 history"
        return None

    def _inside(self, folder: str) -> bool:
        """Whether ``folder`` (a config's TensorBoard folder) is a folder directly inside this run folder."""
        try:
            return Path(folder).resolve().parent == self.path.resolve() and Path(folder).is_dir()
        except (OSError, RuntimeError):
            return False

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
            raise RunFolderError(f"cannot read {what} {path}: {unreadable(path, error)}. {_START_OVER}") from None

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
        """Hold an exclusive lock on the folder while training: a POSIX record lock (``fcntl.lockf``) on its
        marker, written first into a new folder, then removing the temp files of killed writes.

        A user's folder is refused before anything is written (RunFolderError). A second process gets RunFolderBusy
        at once, naming the folder and the live process holding it, and writes nothing. A folder that was new or
        empty and holds nothing but the marker at the end (training failed before its first write) is left as it
        was (removed again if it was created here).
        """
        kind = self._kind()
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            self._mark(None, self._read_marker() if self.file(MARKER).is_file() else b"")
            with self._removed_if_unused(created, kind):
                yield self
            return
        key = self._marker_key()
        if key in _HELD:
            raise RunFolderBusy(
                f"{self.path} is in use: this process (pid {os.getpid()}) is training there already; wait for it to "
                "finish, or choose another out folder"
            )
        handle = self._locked_marker(fcntl)
        _HELD[key] = handle
        try:
            content = os.pread(handle, 4096, 0)
            self._kind(content)  # the holder before us may have left it in another state
            self._mark(handle, content)
            self._remove_temp_files()
            with self._removed_if_unused(created, kind):
                yield self
        finally:
            del _HELD[key]
            os.close(handle)  # closing releases the lock

    def _marker_key(self) -> str:
        return os.path.realpath(self.file(MARKER))

    def _locked_marker(self, fcntl: Any) -> int:
        """An open descriptor of the marker (created if missing) holding its lock; RunFolderBusy if another has it."""
        marker = self.file(MARKER)
        for _ in range(3):  # the marker can be replaced between open and lock (a folder emptied again): open anew
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
            try:  # never through a link: the marker is written, and must be this folder's own file
                handle = os.open(marker, flags, 0o666)
            except OSError as error:
                raise RunFolderError(f"cannot open {marker} ({error.strerror}). {_START_OVER}") from None
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(handle)
                if error.errno not in (errno.EACCES, errno.EAGAIN):
                    raise RunFolderError(f"cannot lock {marker} ({error.strerror}). {_START_OVER}") from None
                holder = _lock_holder(marker)
                raise RunFolderBusy(
                    f"{self.path} is in use: another eva9 process"
                    + (f" (pid {holder})" if holder is not None else "")
                    + " is training there and holds the folder's lock; wait for it to finish, or choose another out"
                    " folder"
                ) from None
            try:
                same = os.path.samestat(os.fstat(handle), os.stat(marker))
            except OSError:
                same = False
            if same:
                return handle
            os.close(handle)
        raise RunFolderBusy(f"{self.path} is in use: its marker keeps changing; wait, or choose another out folder")

    def _mark(self, handle: int | None, content: bytes) -> None:
        """Write the marker's content, unless it is there already (through the locked descriptor: never reopened)."""
        if content:
            return
        text = json.dumps({"format": FORMAT, "written_by": f"eva9 {__version__}"}).encode() + b"\n"
        if handle is None:
            write_atomic(self.file(MARKER), text)
            return
        os.pwrite(handle, text, 0)
        os.fsync(handle)

    def _remove_temp_files(self) -> None:
        """Delete the temp files that writes killed in this folder left (only eva9's own names)."""
        for entry in os.scandir(self.path):
            if _TEMP_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _removed_if_unused(self, created: bool, kind: str) -> Iterator[None]:
        try:
            yield
        finally:
            if kind == "new" and self.path.is_dir() and {e.name for e in os.scandir(self.path)} == {MARKER}:
                self.file(MARKER).unlink(missing_ok=True)
                if created:
                    self.path.rmdir()


def _lock_holder(path: Path) -> int | None:
    """The pid holding a POSIX record lock on ``path``, where Linux's ``/proc/locks`` tells; None elsewhere."""
    try:
        status = os.stat(path)
        where = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
        with open("/proc/locks", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:  # "1: POSIX  ADVISORY  WRITE 1234 fd:01:567890 0 EOF"
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "POSIX" and parts[5] == where and parts[4].isdigit():
            return int(parts[4])
    return None
