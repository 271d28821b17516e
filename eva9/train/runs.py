"""Run folders: :func:`fit` trains a config epoch by epoch (:mod:`eva9.train.loop`) and keeps a run folder in which one
checkpoint holds everything a resumed run needs; :func:`load_run` reads it back and :func:`prune` slims it::

    out/config.json      the TrainConfig
    out/history.json     one record per finished epoch, rewritten after every epoch
    out/checkpoint.pt    model, optimizer, scheduler, scaler, epoch, RNG states, history (atomic: temp + rename)
    out/model.pt         final weights (a state_dict)
    out/metrics.json     final test loss/accuracy, per-class accuracy, confusion matrix, wall time, device, versions

A folder holding ``model.pt`` and ``metrics.json`` is a finished run: ``fit`` never trains there again unless asked
to extend it, and :func:`prune` drops its ``checkpoint.pt`` (twice the size of ``model.pt``) when only the
weights are wanted. ``metrics.json`` is written last and removed first, so the two exist only while they describe
the same state as ``history.json``.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ..constants import SHORT_NAMES
from ..metrics import class_accuracy, confusion_matrix
from ..provenance import machine, versions
from ..utils import pick_device, seed_everything
from .config import TrainConfig, build_model, profile
from .history import History, _save_atomic, _write_text_atomic
from .loop import Predictions, _loss_and_accuracy, _want_progress, predict, train_one_epoch
from .parts import _loaders, _training_parts
from .tensorboard import EpochLogger

__all__ = ["RUN_FILES", "Run", "fit", "load_run", "prune"]

RUN_FILES = ("config.json", "history.json", "checkpoint.pt", "model.pt", "metrics.json")


class Run(NamedTuple):
    """A finished (or interrupted) run read back from its folder: model (CPU, eval mode), config, history."""

    model: nn.Module
    config: TrainConfig
    history: History


def _rng_states(train_loader) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
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


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint gets the same clear message
        raise ValueError(f"cannot read checkpoint {path}: {error}. Delete the run folder to start over") from None


def _check_resumable(saved: TrainConfig, config: TrainConfig, completed: int, out: Path) -> None:
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


def _write_metrics(
    out: Path, preds: Predictions, history: History, device: torch.device, wall_seconds: float
) -> dict[str, Any]:
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
    _write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
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


def fit(
    model: nn.Module | None,
    config: TrainConfig | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    *,
    progress: bool | None = None,
    quiet: bool = False,
    train_loader=None,
    test_loader=None,
) -> History:
    """Train ``model`` with ``config``, evaluating after every epoch; return the History.

    ``model=None`` builds ``config.model`` after seeding (so the seed fixes the initial weights too).
    ``config=None`` takes :func:`profile` (or, when resuming, the run folder's own config.json).
    ``out`` is the run folder (see the module docstring); ``resume=True`` continues from its last completed epoch
    with the saved model, optimizer, scheduler, scaler and RNG states, returns a finished run (a folder holding
    ``model.pt`` and ``metrics.json``) as it is, checkpoint or not, and starts a new run where ``out`` holds none
    yet (so re-running the same call after an interruption always continues). Without ``resume``, a folder that
    holds a run is refused. Resuming with a config that computes something else is an error;
    ``TrainConfig.RESUMABLE`` fields may change, and ``epochs`` may grow when the schedule is constant (which needs
    the checkpoint; the finished run's model.pt and metrics.json are removed before the first new epoch).
    The loaders' :class:`~eva9.data.EpochSampler` is set to each epoch, so the same seed gives the same batches
    whatever the workers and interruptions. The recorded test metrics are computed in float32, without autocast.
    ``progress``: tqdm bar per epoch (None = on a terminal or in a notebook); ``quiet`` silences bars and the
    per-epoch summary lines. ``train_loader``/``test_loader`` replace the CIFAR-10 loaders the config describes
    (then its data fields are not used).
    """
    out = Path(out) if out is not None else None
    checkpoint: dict[str, Any] | None = None
    if resume and out is None:
        raise ValueError("resume=True needs out=, the run folder to continue")
    finished = out is not None and _is_finished(out)
    if resume and (out / "config.json").is_file():
        saved = TrainConfig.load(out)
        config = config if config is not None else saved
        config.validate()
        if (out / "checkpoint.pt").is_file():
            checkpoint = _load_checkpoint(out / "checkpoint.pt")
        completed = _finished_epochs(out) if finished else checkpoint["epoch"] if checkpoint is not None else 0
        _check_resumable(saved, config, completed, out)
        if finished and completed >= config.epochs:
            if not quiet:
                print(f"{out} already holds a finished run of {completed} epochs; nothing to do")
            return History.load(out)
        if finished and checkpoint is None:
            raise ValueError(
                f"{out} holds a finished run of {completed} epochs whose checkpoint.pt was dropped, so it cannot"
                f" grow to {config.epochs} epochs. Train the longer run in another out folder"
            )
    else:
        config = (config if config is not None else profile()).validate()
        if out is not None and (finished or (out / "checkpoint.pt").exists()):
            if resume:
                raise ValueError(f"{out} holds a run but no config.json; delete the folder to start over")
            raise ValueError(f"{out} already holds a run; pass resume=True to continue it, or choose another out")
    show_bar = _want_progress(progress) and not quiet

    device = pick_device(config.device)
    seed_everything(config.seed)
    if model is None:
        model = build_model(config.model)
    if train_loader is None or test_loader is None:
        default_train, default_test = _loaders(config, device)
        train_loader = train_loader if train_loader is not None else default_train
        test_loader = test_loader if test_loader is not None else default_test

    criterion, optimizer, scheduler, amp_dtype, scaler = _training_parts(model, config, device, len(train_loader))

    history = History()
    start_epoch = 1
    train_seconds = 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        _set_rng_states(checkpoint["rng"], train_loader)
        history = History.from_dict(checkpoint["history"])
        start_epoch = checkpoint["epoch"] + 1
        train_seconds = float(checkpoint.get("train_seconds", 0.0))
        if not quiet:
            print(f"resuming {out} after epoch {checkpoint['epoch']}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if start_epoch <= config.epochs:  # training will change the state: final files of an older one must go
            _remove_final_files(out)
        _write_text_atomic(out / "config.json", json.dumps(config.to_dict(), indent=2))
        if checkpoint is None:
            history.save(out / "history.json")

    sampler = getattr(train_loader, "sampler", None)
    last_preds: Predictions | None = None
    logger = EpochLogger(config.tensorboard)  # a no-op without a TensorBoard folder
    try:
        for epoch in range(start_epoch, config.epochs + 1):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch - 1)  # the epoch's order and augmentation, whatever happened before
            started = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train_loss, train_acc = train_one_epoch(
                model,
                train_loader,
                optimizer,
                criterion,
                device,
                scheduler,
                scaler,
                amp_dtype,
                progress=show_bar,
                epoch=epoch,
            )
            trained = time.perf_counter()  # train_one_epoch ends by reading its sums, so the device has finished
            last_preds = predict(model, test_loader)  # float32: the accuracy `eva9 evaluate` and the book will find
            test_loss, test_acc = _loss_and_accuracy(last_preds)
            finished = time.perf_counter()
            seconds = finished - started
            train_seconds += seconds
            record = dict(
                epoch=epoch,
                train_loss=train_loss,
                train_acc=train_acc,
                test_loss=test_loss,
                test_acc=test_acc,
                lr=lr,
                seconds=seconds,
                train_images_per_s=_images_per_epoch(train_loader) / (trained - started),
                eval_images_per_s=last_preds.labels.numel() / (finished - trained),
            )
            history.epochs.append(record)
            if out is not None:
                _save_atomic(
                    {
                        "epoch": epoch,
                        "config": config.to_dict(),
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None,
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "rng": _rng_states(train_loader),
                        "history": history.to_dict(),
                        "train_seconds": train_seconds,
                    },
                    out / "checkpoint.pt",
                )
                history.save(out / "history.json")
            logger.log_epoch(record)
            if not quiet:
                print(_summary_line(record, config.epochs), flush=True)

    finally:
        logger.close()

    if out is not None:
        if last_preds is None:  # training had finished before; only the final files were missing
            last_preds = predict(model, test_loader)
        _save_atomic(model.state_dict(), out / "model.pt")
        _write_metrics(out, last_preds, history, device, train_seconds)  # last: it marks the run finished
    return history


def _is_finished(out: Path) -> bool:
    """A run folder holding model.pt and metrics.json (fit writes metrics.json last, and removes it first)."""
    return (out / "model.pt").is_file() and (out / "metrics.json").is_file()


def _finished_epochs(out: Path) -> int:
    try:
        return int(json.loads((out / "metrics.json").read_text(encoding="utf-8"))["epochs"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"cannot read {out / 'metrics.json'}: {error!r}. Delete the run folder to start over"
        ) from None


def _remove_final_files(out: Path) -> None:
    """Remove metrics.json, then model.pt: a kill in between leaves no finished-looking run of an older state."""
    for name in ("metrics.json", "model.pt"):
        (out / name).unlink(missing_ok=True)


def prune(out: str | os.PathLike) -> int:
    """Delete the checkpoint.pt of a finished run, keeping model.pt, metrics.json, history and config; return the
    bytes freed (0 if there was none).

    A pruned run still loads (:func:`load_run`), evaluates and resumes as finished, but can no longer be extended
    to more epochs. Also ``eva9 train --out DIR --resume --keep-weights-only``.
    """
    out = Path(out)
    if not _is_finished(out):
        raise ValueError(
            f"{out} holds no finished run (model.pt and metrics.json); only a finished run's checkpoint may be"
            " dropped. Finish it with resume=True (or `eva9 train --out DIR --resume`) first"
        )
    checkpoint = out / "checkpoint.pt"
    if not checkpoint.is_file():
        return 0
    size = checkpoint.stat().st_size
    checkpoint.unlink()
    return size


def load_run(out: str | os.PathLike) -> Run:
    """The model (final weights of a finished run, else the last checkpoint's), config and history of a run."""
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"no run folder at {out}; train one with `python -m eva9 train --out {out}`")
    config = TrainConfig.load(out)
    if _is_finished(out):
        try:
            state = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable weights file gets the same clear message
            raise ValueError(f"cannot read {out / 'model.pt'}: {error}. Retrain the run") from None
        history = History.load(out)
    elif (out / "checkpoint.pt").is_file():
        checkpoint = _load_checkpoint(out / "checkpoint.pt")
        state, history = checkpoint["model"], History.from_dict(checkpoint["history"])
    else:
        raise FileNotFoundError(f"{out} holds no model.pt or checkpoint.pt: the run has not finished an epoch yet")
    model = build_model(config.model)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"the weights in {out} do not fit a {config.model}: {error}") from None
    model.eval()
    return Run(model, config, history)
