"""Command line: ``python -m eva9 train|lr-find|evaluate|predict|gradcam ...`` (also installed as ``eva9``).

Each subcommand is one function taking the parsed arguments and returning an exit code; :data:`COMMANDS` maps
names to (add-arguments, run) pairs, so a new subcommand is one more entry. ``train`` and ``lr-find`` are here;
the subcommands that use a trained network, and the argument types all share, are in :mod:`eva9.commands`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from . import commands
from .commands import ALL, add_data_options, int_at_least, non_negative_int, per_class, positive_int

__all__ = ["main", "build_parser", "COMMANDS"]


# ------------------------------------------------------------------------------------------------------- train


def _add_train(parser: argparse.ArgumentParser) -> None:
    from .train import PROFILES

    parser.add_argument(
        "--profile",
        choices=list(PROFILES),
        help="recipe: seed = the course's reference (50 epochs, batch 128, SGD lr 0.01, constant lr); "
        "fast = one-cycle, Nesterov, weight decay, label smoothing, batch 512, 30 epochs; "
        "cpu = the fast recipe for 4 epochs on 2,000 train / 1,000 test images (the book's live run without a GPU, "
        "about 3 minutes); smoke = 1 epoch on 500 train / 250 test images (about a minute on a CPU). "
        "Default: $EVA9_PROFILE, else what this machine affords (seed with a GPU, cpu without one, as the book "
        "chooses); with --resume, the run folder's own config",
    )
    parser.add_argument(
        "--epochs", type=positive_int, metavar="N", help="number of epochs (overrides the profile and $EVA9_EPOCHS)"
    )
    parser.add_argument("--batch-size", type=positive_int, metavar="N", help="batch size (overrides the profile)")
    parser.add_argument(
        "--lr", type=float, metavar="LR", help="learning rate: constant, or the one-cycle peak (overrides the profile)"
    )
    parser.add_argument("--seed", type=non_negative_int, metavar="N", help="random seed (default 0)")
    parser.add_argument(
        "--train-per-class",
        type=per_class,
        metavar="N",
        help="train on a stratified subset of N images per class, or 'all' (overrides the profile)",
    )
    parser.add_argument(
        "--test-per-class",
        type=per_class,
        metavar="N",
        help="evaluate on a stratified subset of N test images per class, or 'all'",
    )
    add_data_options(parser)
    parser.add_argument("--no-amp", action="store_true", help="train in fp32 on CUDA too (no mixed precision)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="run folder for config.json, history.json, checkpoint.pt, model.pt, metrics.json "
        "(default: runs/PROFILE-YYYYmmdd-HHMMSS)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last completed epoch, or start it if --out holds none yet "
        "(a finished run is left as is; without --profile the run's own config is used)",
    )
    parser.add_argument(
        "--keep-weights-only",
        action="store_true",
        help="once the run is finished, delete its checkpoint.pt (about twice the size of model.pt); "
        "the run still loads and evaluates but can no longer be extended to more epochs",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars or per-epoch lines; print only the final test accuracy"
    )
    parser.add_argument(
        "--augment-on", choices=["workers", "device"], help="augment in loader workers (default) or on the device"
    )
    parser.add_argument("--compile", action="store_true", help="compile the model with torch.compile")
    parser.add_argument(
        "--no-sync-batchnorm",
        action="store_true",
        help="under torchrun: each process's BatchNorm normalises its own slice of the batch (faster; another network)",
    )
    parser.add_argument(
        "--tensorboard", metavar="DIR", help="log each epoch to TensorBoard in DIR; at the end, two figures"
    )


_OVERRIDABLE = ("epochs", "batch_size", "lr", "seed", "device", "workers", "data_dir", "augment_on", "tensorboard")


def _config_overrides(args: argparse.Namespace) -> dict:
    """The TrainConfig fields the command line set (the options a command lacks or the user left out stay out)."""
    overrides = {name: getattr(args, name, None) for name in _OVERRIDABLE}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    for name in ("train_per_class", "test_per_class"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = None if value == ALL else value
    if getattr(args, "no_amp", False):
        overrides["amp"] = False
    if getattr(args, "compile", False):
        overrides["compile"] = True
    if getattr(args, "no_sync_batchnorm", False):
        overrides["sync_batchnorm"] = False
    return overrides


def _chosen_profile(name: str | None, quiet: bool) -> str:
    """``--profile``, else the profile this machine affords (saying which and why)."""
    from .train import affordable_profile

    if name is not None:
        return name
    name, why = affordable_profile()
    if not quiet:
        print(f"eva9 train: no --profile given, so {name}: {why}", flush=True)
    return name


def _train(args: argparse.Namespace) -> int:
    from .train import RunFolder, fit, profile, prune
    from .train.distributed import is_main_process

    overrides = _config_overrides(args)

    if args.resume:
        if args.out is None:
            raise ValueError("--resume needs --out, the run folder to continue")
        out = Path(args.out)
        folder = RunFolder(out)
        if args.profile is None and folder.has_config:
            folder.check_is_run_or_empty()
            config = folder.config().replace(**overrides).validate()
        else:
            config = profile(_chosen_profile(args.profile, args.quiet), **overrides)
    else:
        config = profile(_chosen_profile(args.profile, args.quiet), **overrides)
        out = Path(args.out) if args.out else Path("runs") / f"{config.profile}-{time.strftime('%Y%m%d-%H%M%S')}"
    if config.tensorboard is not None:  # before any work: a missing package fails in one line, nothing written
        from .train.tensorboard import require_tensorboard

        require_tensorboard()
    if not args.quiet:
        print(
            f"eva9 train: profile {config.profile}, {config.epochs} epoch(s), batch {config.batch_size}, "
            f"run folder {out}",
            flush=True,
        )
    history = fit(config, out=out, resume=args.resume, progress=None, quiet=args.quiet).history
    if not is_main_process():  # under torchrun rank 0 alone reports, logs figures and prunes
        return 0
    last = history.epochs[-1]
    print(
        f"final test accuracy: {100 * last['test_acc']:.2f} % (test loss {last['test_loss']:.4f}, "
        f"{len(history)} epochs); run folder {out}"
    )
    if config.tensorboard is not None:
        from .dashboard import log_run_figures

        log_run_figures(out, config.tensorboard, device=config.device)
        print(f"TensorBoard: tensorboard --logdir {config.tensorboard}")
    if args.keep_weights_only:
        freed = prune(out)
        print(f"dropped {out / 'checkpoint.pt'} ({freed / 2**20:.1f} MiB); model.pt and metrics.json are kept")
    return 0


def _add_lr_find(parser: argparse.ArgumentParser) -> None:
    from .train import PROFILES

    parser.add_argument("--profile", choices=list(PROFILES), help="recipe to test (default: $EVA9_PROFILE, else seed)")
    parser.add_argument("--start", type=float, default=1e-5, metavar="LR", help="first learning rate (1e-5)")
    parser.add_argument("--end", type=float, default=10.0, metavar="LR", help="last learning rate (10)")
    parser.add_argument("--steps", type=int_at_least(2), default=100, metavar="N", help="training steps (100)")
    parser.add_argument("--batch-size", type=positive_int, metavar="N", help="batch size (overrides the profile)")
    parser.add_argument("--train-per-class", type=per_class, metavar="N", help="stratified subset, or 'all'")
    add_data_options(parser)
    parser.add_argument("--out", default="lr.png", metavar="FILE.png", help="the plot to write (default lr.png)")


def _lr_find(args: argparse.Namespace) -> int:
    from .plots import lr_range_test
    from .train import lr_find, profile

    out = Path(args.out)
    if out.suffix.lower() != ".png" or not out.parent.is_dir():
        raise ValueError(f"--out {out}: name a .png file in an existing folder")
    config = profile(args.profile, **_config_overrides(args))
    found = lr_find(config, start=args.start, end=args.end, steps=args.steps)
    lr_range_test(found, peak=config.lr, path=out)
    print(f"{found.summary()}; profile {config.profile} peak {config.lr:g}; wrote {out}")
    return 0


# -------------------------------------------------------------------------------------------------------- main

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "train": ("train ResNet18 on CIFAR-10 with a named profile and write a run folder", _add_train, _train),
    "lr-find": ("run the learning-rate range test on a profile and plot it", _add_lr_find, _lr_find),
    "evaluate": (
        "print a trained run's test accuracy, overall and per class",
        commands.add_evaluate,
        commands.run_evaluate,
    ),
    "predict": (
        "classify photos of your own with trained weights: the top classes and their probabilities",
        commands.add_predict,
        commands.run_predict,
    ),
    "gradcam": (
        "explain photos of your own: a figure of GradCAM maps at the chosen layers",
        commands.add_gradcam,
        commands.run_gradcam,
    ),
    "app": (
        "explain photos of your own in the browser: the explorer app (needs eva9[app])",
        commands.add_app,
        commands.run_app,
    ),
}
"""Subcommands: name → (help, add its arguments, run it and return the exit code)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``eva9`` argument parser with one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="eva9",
        description="ResNet18 on CIFAR-10: train with a named profile, evaluate a run folder, classify and "
        "explain photos of your own.",
        epilog="Examples: eva9 train --profile smoke --data-dir ../shared/cifar10 --out runs/smoke && "
        "eva9 evaluate --run runs/smoke; eva9 predict cat.jpg; "
        "eva9 gradcam cat.jpg --weights seed --layers layer3 layer4 --out cam.png",
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        sub = subcommands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        add_arguments(sub)
        sub.set_defaults(handler=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 1 failure, 2 bad usage, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except Exception:
        if os.environ.get("EVA9_DEBUG"):  # the full traceback, for developers
            raise
        return _fail(args.command, sys.exc_info()[1] or RuntimeError("unknown error"))
    except KeyboardInterrupt:
        print(f"eva9 {args.command}: interrupted (a run folder can be continued with --resume)", file=sys.stderr)
        return 130


def _fail(command: str, error: BaseException) -> int:
    """Print one line naming what went wrong (see :func:`eva9.messages.failure_line`); return exit status 1."""
    from .messages import failure_line

    print(f"eva9 {command}: error: {failure_line(error)}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
