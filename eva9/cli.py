"""Command line: ``python -m eva9 train|lr-find|evaluate|predict|gradcam ...`` (also installed as ``eva9``).

Each subcommand is one function taking the parsed arguments and returning an exit code; :data:`COMMANDS` maps
names to (add-arguments, run) pairs, so a new subcommand is one more entry.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

__all__ = ["main", "build_parser", "COMMANDS"]


ALL = "all"


def _per_class(text: str) -> int | str:
    """argparse type: a positive integer, or "all" for the whole split (absent options stay None)."""
    if text.strip().lower() == ALL:
        return ALL
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of images per class or 'all', not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 image per class, not {value}")
    return value


def _int_at_least(minimum: int):
    """argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, not {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _add_data_options(parser: argparse.ArgumentParser, data_default: str = "$EVA9_DATA_DIR") -> None:
    parser.add_argument(
        "--data-dir",
        metavar="D",
        help="CIFAR-10 folder (image-folder train/ and test/, or cifar-10-batches-py/); "
        f"default: {data_default}, else download into ./data",
    )
    parser.add_argument(
        "--device", help='"auto" (CUDA, then MPS, then CPU; the default), "cpu", "cuda", "cuda:1", "mps"'
    )
    parser.add_argument(
        "--workers",
        type=_non_negative_int,
        metavar="N",
        help="data-loader worker processes (default: usable CPU cores minus one, at most 32; 0 = load in this process)",
    )


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
        "--epochs", type=_positive_int, metavar="N", help="number of epochs (overrides the profile and $EVA9_EPOCHS)"
    )
    parser.add_argument("--batch-size", type=_positive_int, metavar="N", help="batch size (overrides the profile)")
    parser.add_argument(
        "--lr", type=float, metavar="LR", help="learning rate: constant, or the one-cycle peak (overrides the profile)"
    )
    parser.add_argument("--seed", type=_non_negative_int, metavar="N", help="random seed (default 0)")
    parser.add_argument(
        "--train-per-class",
        type=_per_class,
        metavar="N",
        help="train on a stratified subset of N images per class, or 'all' (overrides the profile)",
    )
    parser.add_argument(
        "--test-per-class",
        type=_per_class,
        metavar="N",
        help="evaluate on a stratified subset of N test images per class, or 'all'",
    )
    _add_data_options(parser)
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
    parser.add_argument("--steps", type=_int_at_least(2), default=100, metavar="N", help="training steps (100)")
    parser.add_argument("--batch-size", type=_positive_int, metavar="N", help="batch size (overrides the profile)")
    parser.add_argument("--train-per-class", type=_per_class, metavar="N", help="stratified subset, or 'all'")
    _add_data_options(parser)
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


# ---------------------------------------------------------------------------------------------------- evaluate


def _add_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="DIR", help="run folder written by `eva9 train --out DIR`")
    parser.add_argument(
        "--test-per-class",
        type=_per_class,
        metavar="N",
        help="test images per class, or 'all' (default: the run's own test subset)",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=256, metavar="N", help="evaluation batch size (default 256)"
    )
    _add_data_options(parser, data_default="the run's own data folder, else $EVA9_DATA_DIR")


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from .analysis import class_accuracy, format_class_accuracy
    from .data import test_loader
    from .train import load_run, predict
    from .utils import pick_device

    run = load_run(args.run)
    config = run.config
    per_class = config.test_per_class
    if args.test_per_class is not None:
        per_class = None if args.test_per_class == ALL else args.test_per_class
    device = pick_device(args.device)  # where this machine computes best, not where the run trained
    loader = test_loader(
        args.data_dir if args.data_dir is not None else config.data_dir,
        batch_size=args.batch_size,
        workers=args.workers,
        per_class=per_class,
        seed=config.seed,
        device=device,
    )
    model = run.model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    out = predict(model, loader)
    accuracy = float((out.preds == out.labels).double().mean())
    print(f"Accuracy of the network on the {len(out.labels)} test images: {100 * accuracy:.2f} %")
    print(format_class_accuracy(class_accuracy(out.preds, out.labels)))
    return 0


# ------------------------------------------------------------------------------------------ predict, gradcam

_PHOTO_NOTE = (
    "each photo is centre-cropped to a square and shrunk to 32×32 pixels, the only size the network "
    "has ever seen, so small or off-centre objects may be lost"
)


def _add_photo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help=f"photos in any format Pillow reads (JPEG, PNG, ...); {_PHOTO_NOTE}"
    )
    parser.add_argument(
        "--weights",
        metavar="W",
        help="published weights by name (seed, fast, ...: see eva9.weights.published()), a .pt "
        "state_dict, or a run folder; default: seed if published, else the most accurate",
    )


def _network(weights_arg: str | None):
    """The float32 ResNet18 in eval mode with the chosen weights, and a line naming them."""
    from .models import resnet18
    from .weights import Weights, WeightsError, preferred

    chosen: str | Weights | None = weights_arg if weights_arg is not None else preferred()
    if chosen is None:
        raise WeightsError(
            "no published weights here; pass --weights with a .pt file or a run folder "
            "(`eva9 train --out DIR` writes one)"
        )
    described = chosen.describe() if isinstance(chosen, Weights) else repr(str(chosen))
    return resnet18(weights=chosen, progress=False).eval(), described


def _add_predict(parser: argparse.ArgumentParser) -> None:
    _add_photo_arguments(parser)
    parser.add_argument(
        "--top", type=_int_at_least(1), default=3, metavar="K", help="how many classes to list per image (default 3)"
    )


def _predict(args: argparse.Namespace) -> int:
    import torch

    from .analysis import SHORT_NAMES
    from .photos import photo_batch

    images = photo_batch(args.images)
    model, described = _network(args.weights)
    with torch.no_grad():
        probabilities = model(images).softmax(dim=1)
    top = probabilities.topk(min(args.top, probabilities.shape[1]), dim=1)
    print(f"weights {described}\n({_PHOTO_NOTE})")
    for path, values, indices in zip(args.images, top.values.tolist(), top.indices.tolist()):
        ranked = ", ".join(f"{SHORT_NAMES[i]} {100 * p:.1f} %" for p, i in zip(values, indices))
        print(f"{path}: {ranked}")
    return 0


def _add_gradcam(parser: argparse.ArgumentParser) -> None:
    _add_photo_arguments(parser)
    parser.add_argument(
        "--layers",
        nargs="+",
        default=["layer1", "layer2", "layer3", "layer4"],
        metavar="LAYER",
        help="layers to explain (default: layer1 layer2 layer3 layer4)",
    )
    methods = "gradcam (default), gradcam++, xgradcam, hirescam, layercam, eigencam or scorecam (slow)"
    parser.add_argument("--method", default="gradcam", metavar="METHOD", help=f"the CAM method: {methods}")
    parser.add_argument(
        "--out",
        default="gradcam.png",
        metavar="FILE",
        help="the figure to write: one row per image, its GradCAM at each layer (default gradcam.png)",
    )


def _gradcam(args: argparse.Namespace) -> int:
    from .analysis import SHORT_NAMES
    from .gradcam import CAM, METHODS
    from .photos import photo_batch
    from .plots import gradcam_grid

    if args.method not in METHODS:
        raise ValueError(f"unknown method {args.method!r}; choose from {', '.join(METHODS)}")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"no folder {out.parent} to write {out.name} into")
    images = photo_batch(args.images)
    model, described = _network(args.weights)
    with CAM(model, args.layers, args.method) as cam:
        maps = cam(images)
    probabilities = maps.logits.softmax(dim=1)
    titles = [
        f"{Path(path).name[:18]}\n{SHORT_NAMES[int(i)]} {100 * float(probabilities[row, i]):.0f} %"
        for row, (path, i) in enumerate(zip(args.images, maps.predictions))
    ]
    gradcam_grid(images, maps, None, titles=titles, path=out)
    print(f"weights {described}\n({_PHOTO_NOTE})")
    print(f"wrote {out}: {args.method} of the predicted class at {', '.join(maps)} for {len(args.images)} image(s)")
    return 0


# ------------------------------------------------------------------------------------------------------------ app


def _add_app(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=_int_at_least(1), default=7860, metavar="N", help="port to serve on (default 7860)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument(
        "--share", action="store_true", help="also ask Gradio for a public link, through its servers (default: off)"
    )
    parser.add_argument(
        "--weights",
        metavar="W",
        help="a .pt state_dict or a run folder to offer beside the published weights, chosen at the start",
    )
    parser.add_argument(
        "--data-dir",
        metavar="D",
        help="CIFAR-10 folder for the mistakes tab (default: $EVA9_DATA_DIR, else ./data; never downloaded)",
    )


def _app(args: argparse.Namespace) -> int:
    try:
        from .app import launch

        launch(args.host, args.port, share=args.share, weights_arg=args.weights, data_dir=args.data_dir)
    except ImportError as error:  # Gradio is an extra: say how to install it, in one line
        print(f"eva9 app: error: {error}", file=sys.stderr)
        return 1
    return 0


# -------------------------------------------------------------------------------------------------------- main

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "train": ("train ResNet18 on CIFAR-10 with a named profile and write a run folder", _add_train, _train),
    "lr-find": ("run the learning-rate range test on a profile and plot it", _add_lr_find, _lr_find),
    "evaluate": ("print a trained run's test accuracy, overall and per class", _add_evaluate, _evaluate),
    "predict": (
        "classify photos of your own with trained weights: the top classes and their probabilities",
        _add_predict,
        _predict,
    ),
    "gradcam": ("explain photos of your own: a figure of GradCAM maps at the chosen layers", _add_gradcam, _gradcam),
    "app": ("explain photos of your own in the browser: the explorer app (needs eva9[app])", _add_app, _app),
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
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
