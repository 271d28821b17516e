"""The command line's subcommands that use a trained network (``evaluate``, ``predict``, ``gradcam``, ``app``), and
the argument types every subcommand shares. :mod:`eva9.cli` assembles them with ``train`` and ``lr-find``.

Each subcommand is an ``add_<name>`` function (its arguments) and a ``run_<name>`` function (the parsed arguments
in, the exit code out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = [
    "ALL",
    "per_class",
    "int_at_least",
    "positive_int",
    "non_negative_int",
    "add_data_options",
    "add_evaluate",
    "run_evaluate",
    "add_predict",
    "run_predict",
    "add_gradcam",
    "run_gradcam",
    "add_app",
    "run_app",
]

ALL = "all"


def per_class(text: str) -> int | str:
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


def int_at_least(minimum: int):
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


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def add_data_options(parser: argparse.ArgumentParser, data_default: str = "$EVA9_DATA_DIR") -> None:
    """--data-dir, --device and --workers, as train, lr-find and evaluate take them."""
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
        type=non_negative_int,
        metavar="N",
        help="data-loader worker processes (default: usable CPU cores minus one, at most 32; 0 = load in this process)",
    )


# ---------------------------------------------------------------------------------------------------- evaluate


def add_evaluate(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``eva9 evaluate``."""
    parser.add_argument("--run", required=True, metavar="DIR", help="run folder written by `eva9 train --out DIR`")
    parser.add_argument(
        "--test-per-class",
        type=per_class,
        metavar="N",
        help="test images per class, or 'all' (default: the run's own test subset)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=256, metavar="N", help="evaluation batch size (default 256)"
    )
    add_data_options(parser, data_default="the run's own data folder, else $EVA9_DATA_DIR")


def run_evaluate(args: argparse.Namespace) -> int:
    """``eva9 evaluate``: a run's test accuracy, overall and per class, on this machine's best device."""
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


def add_predict(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``eva9 predict``."""
    _add_photo_arguments(parser)
    parser.add_argument(
        "--top", type=int_at_least(1), default=3, metavar="K", help="how many classes to list per image (default 3)"
    )


def run_predict(args: argparse.Namespace) -> int:
    """``eva9 predict``: each photo's top classes and their probabilities."""
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


def add_gradcam(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``eva9 gradcam``."""
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
        help="the figure to write (.png, .jpg, .pdf or .svg, in that format): one row per image, its GradCAM at "
        "each layer (default gradcam.png)",
    )


def run_gradcam(args: argparse.Namespace) -> int:
    """``eva9 gradcam``: a figure of each photo's class maps at the chosen layers."""
    from .analysis import SHORT_NAMES
    from .gradcam import CAM, METHODS
    from .photos import photo_batch
    from .plots import gradcam_grid
    from .plots.base import figure_format

    if args.method not in METHODS:
        raise ValueError(f"unknown method {args.method!r}; choose from {', '.join(METHODS)}")
    out = Path(args.out)
    figure_format(out)  # an extension eva9 cannot write: one line, before any work
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


def add_app(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``eva9 app``."""
    parser.add_argument(
        "--port", type=int_at_least(1), default=7860, metavar="N", help="port to serve on (default 7860)"
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


def run_app(args: argparse.Namespace) -> int:
    """``eva9 app``: serve the explorer app (an ImportError, such as Gradio missing, is one line)."""
    try:
        from .app import launch

        launch(args.host, args.port, share=args.share, weights_arg=args.weights, data_dir=args.data_dir)
    except ImportError as error:  # Gradio is an extra: say how to install it, in one line
        print(f"eva9 app: error: {error}", file=sys.stderr)
        return 1
    return 0
