"""Runs: :func:`fit` trains a config epoch by epoch (:mod:`eva9.train.loop`) into a run folder, whose files
:class:`~eva9.train.folder.RunFolder` alone reads and writes (one checkpoint holds everything a resumed run needs);
:func:`load_run` reads a run back and :func:`prune` slims it.

A folder holding ``model.pt`` and ``metrics.json`` is a finished run: ``fit`` never trains there again unless asked
to extend it, and :func:`prune` drops its ``checkpoint.pt`` (twice the size of ``model.pt``) when only the
weights are wanted. Each checkpoint remembers what it was trained on (a fingerprint of the data, the CPU thread
count), so a resume on other data is refused and one on another thread count is announced.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import nn

from ..constants import SHORT_NAMES
from ..metrics import class_accuracy, confusion_matrix
from ..provenance import machine, versions
from ..utils import pick_device, seed_everything
from ..weights import check_finite
from . import distributed
from .config import TrainConfig, build_model, profile
from .distributed import World
from .folder import RUN_FILES, RunFolder, RunFolderError
from .history import History
from .loop import Predictions, _loss_and_accuracy, _want_progress, train_one_epoch
from .parts import _loaders, _training_parts, _TrainingParts
from .tensorboard import EpochLogger, check_writable

__all__ = ["RUN_FILES", "Run", "fit", "load_run", "prune"]


class Run(NamedTuple):
    """A run: its model (eval mode; on the CPU when read back from a folder), config and history."""

    model: nn.Module
    config: TrainConfig
    history: History


def _rng_states(train_loader) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(np.asarray(keys).astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": None,
    }
    generator = getattr(train_loader, "generator", None)
    if generator is not None:
        states["loader"] = generator.get_state()
    return states


def _set_rng_states(states: dict[str, Any], train_loader) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    generator = getattr(train_loader, "generator", None)
    if generator is not None and states["loader"] is not None:
        generator.set_state(states["loader"])


def _check_resumable(saved: TrainConfig, config: TrainConfig, completed: int, out: os.PathLike) -> None:
    """Refuse to resume with a config that would compute something else than the interrupted run."""
    old, new = saved.to_dict(), config.to_dict()
    changed = [k for k in old if old[k] != new[k] and k not in TrainConfig.RESUMABLE and k != "epochs"]
    if changed:
        details = ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed)
        raise ValueError(
            f"cannot resume {out} with a different config ({details}); only {', '.join(TrainConfig.RESUMABLE)}"
            " and, for a constant schedule, epochs may change. Use another out folder for a new run"
        )
    if old["epochs"] != new["epochs"]:
        if config.schedule != "constant":
            raise ValueError(
                f"cannot resume {out} with epochs {old['epochs']} -> {new['epochs']}: the {config.schedule} schedule"
                " depends on the total number of epochs. Use another out folder for a longer run"
            )
        if new["epochs"] < completed:
            raise ValueError(f"cannot resume {out} with epochs={new['epochs']}: {completed} epochs are already done")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({machine()['cpu']})"


def _metrics(preds: Predictions, history: History, device: torch.device, wall_seconds: float) -> dict[str, Any]:
    test_loss, test_acc = _loss_and_accuracy(preds)
    per_class = class_accuracy(preds.preds, preds.labels)
    metrics = {
        "test_acc": test_acc,
        "test_loss": test_loss,
        "train_acc": history.epochs[-1]["train_acc"],
        "train_loss": history.epochs[-1]["train_loss"],
        "epochs": len(history),
        "test_images": int(preds.labels.numel()),
        "class_accuracy": {n: (None if math.isnan(a) else float(a)) for n, a in zip(SHORT_NAMES, per_class)},
        "confusion_matrix": confusion_matrix(preds.preds, preds.labels).tolist(),
        "wall_seconds": wall_seconds,
        "device": _device_name(device),
        "versions": versions(),
    }
    return metrics


def _images_per_epoch(loader) -> int:
    """Images one pass over ``loader`` yields: a DataLoader's sampler length (less a dropped partial batch)."""
    sampler, batch_size = getattr(loader, "sampler", None), getattr(loader, "batch_size", None)
    if sampler is not None and batch_size:
        images = len(sampler)
        return images - images % batch_size if loader.drop_last else images
    return sum(len(labels) for _, labels in loader)  # a list of (images, labels) batches


def _summary_line(record: dict, epochs: int) -> str:
    return (
        f"epoch {record['epoch']:>3}/{epochs}  train loss {record['train_loss']:.4f} acc {record['train_acc']:6.2%}"
        f"  test loss {record['test_loss']:.4f} acc {record['test_acc']:6.2%}  lr {record['lr']:.4g}"
        f"  {record['seconds']:.1f}s"
        + (
            f" ({record['train_images_per_s']:,.0f} img/s train, {record['eval_images_per_s']:,.0f} eval)"
            if "train_images_per_s" in record
            else ""
        )
    )


def _data_fingerprint(train_loader, test_loader) -> dict[str, Any] | None:
    """What the run trains and tests on (layout, size, hash of labels and images or file list), if the loaders'
    datasets can say; None for loaders given by hand."""
    datasets = [getattr(loader, "dataset", None) for loader in (train_loader, test_loader)]
    prints = [getattr(dataset, "fingerprint", None) for dataset in datasets]
    if prints[0] is None or prints[1] is None:
        return None
    return {"train": prints[0](), "test": prints[1]()}


def _check_same_machine_and_data(checkpoint: dict[str, Any], fingerprint: dict | None, folder: RunFolder) -> None:
    """Refuse to resume on other data than the checkpoint's; say so in one line when the thread count changed."""
    saved = checkpoint.get("data")
    if saved is not None and fingerprint is not None and saved != fingerprint:
        changed = [split for split in ("train", "test") if saved.get(split) != fingerprint.get(split)]
        raise RunFolderError(
            f"cannot resume {folder.path}: its {' and '.join(changed)} data changed since the checkpoint "
            f"(was {saved[changed[0]]}, now {fingerprint[changed[0]]}). Point data_dir at the data it was trained on, "
            "or train a new run in another out folder"
        )
    threads = checkpoint.get("threads")
    if threads is not None and threads != torch.get_num_threads():
        print(
            f"warning: {folder.path} was trained with {threads} CPU thread(s), this process uses "
            f"{torch.get_num_threads()}: on the CPU the numbers will differ slightly from an uninterrupted run",
            file=sys.stderr,
        )


def _finished_as_is(folder: RunFolder | None, config: TrainConfig | None, resume: bool, quiet: bool) -> bool:
    """Whether ``resume`` finds a finished run with all the epochs asked for (its checkpoint is never read)."""
    if folder is None or not resume or not folder.has_config or not folder.is_finished:
        return False
    saved = folder.config()
    config = (config if config is not None else saved).validate()
    completed = folder.finished_epochs()
    _check_resumable(saved, config, completed, folder.path)
    if completed < config.epochs:
        return False
    if not quiet:
        print(f"{folder.path} already holds a finished run of {completed} epochs; nothing to do")
    return True


def _start(folder: RunFolder | None, config: TrainConfig | None, resume: bool) -> tuple[TrainConfig, dict | None]:
    """The config to train and the checkpoint to continue from (None: start at epoch 1); refuse what cannot be."""
    if folder is not None and resume and folder.has_config:
        saved = folder.config()
        config = (config if config is not None else saved).validate()
        checkpoint = folder.checkpoint() if folder.has_checkpoint else None
        if folder.is_finished and checkpoint is None:
            raise RunFolderError(
                f"{folder.path} holds a finished run of {folder.finished_epochs()} epochs whose checkpoint.pt was "
                f"dropped, so it cannot grow to {config.epochs} epochs. Train the longer run in another out folder"
            )
        _check_resumable(saved, config, checkpoint["epoch"] if checkpoint is not None else 0, folder.path)
        return config, checkpoint
    config = (config if config is not None else profile()).validate()
    if folder is not None and (folder.is_finished or folder.has_checkpoint):
        if resume:
            raise RunFolderError(f"{folder.path} holds a run but no config.json; delete the folder to start over")
        raise RunFolderError(
            f"{folder.path} already holds a run; pass resume=True to continue it, or choose another out folder"
        )
    return config, None


def _restore(checkpoint: dict | None, model: nn.Module, parts: _TrainingParts, train_loader) -> tuple[History, float]:
    """Load the checkpoint's model, optimizer, scheduler, scaler and RNG states; its history and training seconds."""
    if checkpoint is None:
        return History(), 0.0
    model.load_state_dict(checkpoint["model"])
    parts.optimizer.load_state_dict(checkpoint["optimizer"])
    if parts.scheduler is not None:
        parts.scheduler.load_state_dict(checkpoint["scheduler"])
    if parts.scaler is not None and checkpoint.get("scaler"):
        parts.scaler.load_state_dict(checkpoint["scaler"])
    _set_rng_states(checkpoint["rng"], train_loader)
    return History.from_dict(checkpoint["history"]), float(checkpoint.get("train_seconds", 0.0))


def _checkpoint(
    epoch: int, config: TrainConfig, model: nn.Module, parts: _TrainingParts, train_loader, **extra
) -> dict:
    return {
        "epoch": epoch,
        "config": config.to_dict(),
        "model": model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else None,
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "rng": _rng_states(train_loader),
        "threads": torch.get_num_threads(),
        **extra,
    }


def _epoch(model, parts: _TrainingParts, train_loader, test_loader, device, epoch: int, bar: bool, group: World):
    """Train one epoch, then evaluate in float32: the epoch's history record and the test predictions. In a group,
    ``model`` is the DDP-wrapped one: the record's loss, accuracy and images per second are the group's."""
    set_epoch = getattr(getattr(train_loader, "sampler", None), "set_epoch", None)
    if set_epoch is not None:
        set_epoch(epoch - 1)  # the epoch's order and augmentation, whatever happened before
    started = time.perf_counter()
    lr = parts.optimizer.param_groups[0]["lr"]
    train_loss, train_acc = train_one_epoch(
        model, train_loader, parts.optimizer, parts.criterion, device, parts.scheduler, parts.scaler,
        parts.amp_dtype, progress=bar, epoch=epoch,
    )  # fmt: skip
    train_loss, train_acc = distributed.mean_over_ranks(group, train_loss, train_acc)  # alone: as they are
    trained = time.perf_counter()  # train_one_epoch ends by reading its sums, so the device has finished
    preds = distributed.predict_whole(_unwrapped(model), test_loader)  # float32, as `eva9 evaluate` will score
    test_loss, test_acc = _loss_and_accuracy(preds)
    finished = time.perf_counter()
    record = dict(
        epoch=epoch,
        train_loss=train_loss,
        train_acc=train_acc,
        test_loss=test_loss,
        test_acc=test_acc,
        lr=lr,
        seconds=finished - started,
        train_images_per_s=_images_per_epoch(train_loader) * group.size / (trained - started),
        eval_images_per_s=preds.labels.numel() / (finished - trained),
    )
    return record, preds


def _unwrapped(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel (torchvision's ``model_without_ddp``), else the model."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _given_or_config_loaders(config: TrainConfig, device: torch.device, train_loader, test_loader, group: World):
    """The loaders given, else those the config describes (built only when one is missing): this rank's shards."""
    if train_loader is None or test_loader is None:
        default_train, default_test = _loaders(config, device, group.rank, group.size)
        train_loader = train_loader if train_loader is not None else default_train
        test_loader = test_loader if test_loader is not None else default_test
    return train_loader, test_loader


def fit(
    config: TrainConfig | None = None,
    *,
    model: nn.Module | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool | None = None,
    quiet: bool = False,
    train_loader=None,
    test_loader=None,
) -> Run:
    """Train ``config`` (default :func:`profile`, or the run folder's own when resuming), evaluating in float32
    after every epoch; return the :class:`Run` (model in eval mode on its device, config, history).

    ``model=None`` builds ``config.model`` after seeding; a given model starts from its own weights (build it after
    ``seed_everything(config.seed)`` for a repeatable run). ``out``: the run folder (:class:`RunFolder`), locked while
    training; one holding other files, or (without ``resume``) a run, is refused. ``resume=True`` continues the
    last completed epoch with every saved state on the same data, returns a finished run as it is (its checkpoint
    unread) and starts a run where there is none; ``TrainConfig.RESUMABLE`` fields may change, and ``epochs`` may
    grow under a constant schedule. ``progress``: a tqdm bar per epoch (None = on a terminal or in a notebook);
    ``quiet``: no bars or lines. ``train_loader``/``test_loader`` replace the loaders the config describes.

    Under torchrun every process calls ``fit`` alike (``torchrun -m eva9 train`` does): rank 0 alone opens ``out``,
    prints and decides (its config and checkpoint are every rank's), each rank trains its slice of every global
    batch in ``DistributedDataParallel``, and every rank returns the same run (:mod:`eva9.train.distributed`).
    """
    group = distributed.world()  # rank 0 of 1 without torchrun
    if resume and out is None:
        raise ValueError("resume=True needs out=, the run folder to continue")
    folder = RunFolder(out) if out is not None and group.is_main else None  # rank 0 alone opens it
    quiet = quiet or not group.is_main
    with distributed.process_group(group), contextlib.ExitStack() as held:
        finished_here: list[Run] = []  # rank 0's finished run, returned as it is

        def plan() -> tuple[TrainConfig, dict | None, tuple[dict, History] | None]:
            """On rank 0 only (every rank gets the result): the config, the checkpoint, a finished run's state."""
            if group.size > 1 and (train_loader is not None or test_loader is not None):
                raise ValueError("under torchrun fit builds each process's loaders from the config; pass none")
            if folder is not None:
                held.enter_context(folder.lock())  # held until training ends
            if _finished_as_is(folder, config, resume, quiet):
                finished_here.append(_read_run(folder, model))  # type: ignore[arg-type]
                run = finished_here[0]
                return run.config, None, (run.model.state_dict(), run.history)
            chosen, checkpoint = _start(folder, config, resume)
            distributed.check_world(chosen, group)
            return chosen, checkpoint, None

        given = config
        config, checkpoint, finished = distributed.from_main(group, plan)
        if finished is not None:
            return finished_here[0] if group.is_main else _run_like(config, *finished, model)
        if not group.is_main and given is not None:
            config = config.replace(data_dir=given.data_dir)  # rank 0's recipe, read from this machine's copy
        device = distributed.device_for(group, pick_device(config.device))
        seed_everything(config.seed)
        model = model if model is not None else build_model(config.model)
        train_loader, test_loader = _given_or_config_loaders(config, device, train_loader, test_loader, group)
        if group.size > 1 and config.sync_batchnorm:
            model = distributed.sync_batchnorm(model, device)
        parts = _training_parts(model, config, device, len(train_loader))
        data = _data_fingerprint(train_loader, test_loader)
        main_data = distributed.from_main(group, lambda: data)
        if main_data != data:  # every rank must train and test on rank 0's images
            changed = [split for split in ("train", "test") if (main_data or {}).get(split) != (data or {}).get(split)]
            raise RunFolderError(
                f"rank {group.rank}'s {' and '.join(changed) or 'loader'} data ({config.data_dir or '$EVA9_DATA_DIR'})"
                " differs from rank 0's. Give every machine the same CIFAR-10 copy (data_dir, or EVA9_DATA_DIR)"
            )
        if checkpoint is not None:
            # rank 0 compares the data with the checkpoint's; the others wait for its verdict
            distributed.from_main(
                group, lambda: _check_same_machine_and_data(checkpoint, data, cast(RunFolder, folder))
            )
        history, train_seconds = _restore(checkpoint, model, parts, train_loader)
        trained = distributed.wrap(model, device, group)  # DDP in a group; `model` is what is saved and evaluated
        start_epoch = len(history) + 1
        if checkpoint is not None and not quiet:
            print(f"resuming {out} after epoch {checkpoint['epoch']}")
        check_writable(config.tensorboard)  # before the run folder's first write
        if folder is not None:
            folder.begin(config, history, training=start_epoch <= config.epochs)
        preds, bar = None, _want_progress(progress) and not quiet
        watched = distributed.peers_watched(group, lambda: len(history), out)  # a lost peer: a clear message
        with watched, EpochLogger(config.tensorboard if group.is_main else None) as logger:  # no-op without a folder
            for epoch in range(start_epoch, config.epochs + 1):
                record, preds = _epoch(trained, parts, train_loader, test_loader, device, epoch, bar, group)
                train_seconds += record["seconds"]
                history.epochs.append(record)
                if folder is not None:
                    state = _checkpoint(
                        epoch, config, model, parts, train_loader, data=data, train_seconds=train_seconds
                    )
                    folder.save_epoch({**state, "history": history.to_dict()}, history)
                logger.log_epoch(record)
                if not quiet:
                    print(_summary_line(record, config.epochs), flush=True)
        if out is not None:
            preds = preds if preds is not None else distributed.predict_whole(model, test_loader)  # final files
            if folder is not None:
                folder.finish(model.state_dict(), _metrics(preds, history, device, train_seconds))
    return Run(model.eval(), config, history)


def _run_like(config: TrainConfig, state: dict, history: History, model: nn.Module | None) -> Run:
    """Rank 0's finished run on another rank: its weights in ``model`` (default: a new ``config.model``)."""
    model = model.cpu() if model is not None else build_model(config.model)
    model.load_state_dict(state)
    return Run(model.eval(), config, history)


def prune(out: str | os.PathLike) -> int:
    """Delete the checkpoint.pt of a finished run, keeping model.pt, metrics.json, history and config; return the
    bytes freed (0 if there was none).

    A pruned run still loads (:func:`load_run`), evaluates and resumes as finished, but can no longer be extended
    to more epochs. Also ``eva9 train --out DIR --resume --keep-weights-only``.
    """
    folder = RunFolder(out)
    with folder.lock():
        return folder.prune()


def load_run(out: str | os.PathLike) -> Run:
    """The model (final weights of a finished run, else the last checkpoint's), config and history of a run."""
    return _read_run(RunFolder(out))


def _read_run(folder: RunFolder, model: nn.Module | None = None) -> Run:
    """The run in ``folder``, its weights loaded into ``model`` (default: a new ``config.model``) on the CPU."""
    out = folder.path
    if not folder.path.is_dir():
        raise FileNotFoundError(f"no run folder at {out}; train one with `python -m eva9 train --out {out}`")
    config = folder.config()
    if folder.is_finished:
        state, history = folder.model_state(), folder.history()
    elif folder.has_checkpoint:
        checkpoint = folder.checkpoint()
        state, history = checkpoint["model"], History.from_dict(checkpoint["history"])
    else:
        raise FileNotFoundError(f"{out} holds no model.pt or checkpoint.pt: the run has not finished an epoch yet")
    check_finite(state, folder.file("model.pt" if folder.is_finished else "checkpoint.pt"))
    model = model.cpu() if model is not None else build_model(config.model)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise RunFolderError(f"the weights in {out} do not fit a {config.model}: {error}") from None
    model.eval()
    return Run(model, config, history)
