"""What the book's chapters share: the data folder, the profile in force, and the trained network they explain.

Chapters run as notebooks with ``book/`` as their working directory, and Colab opens one chapter at a time, so
every chapter that needs a trained network asks :func:`trained_network`. Where weights are published (a recorded
full run in ``results/``, or in the repository when there is no checkout) and ``$EVA9_PROFILE`` is not set, that
is the published network, the ``seed`` run's first: a reader on any CPU sees a trained network in seconds, as the
UvA deep-learning notebooks do with their checkpoints. Otherwise it is the run of the profile in force, which
:func:`trained_run` loads from ``runs/`` or trains there.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import analysis, data, gradcam, models, results, train, weights
from .results import rankings
from .utils import pick_device

__all__ = [
    "REPOSITORY_URL",
    "RUNS_DIR",
    "in_colab",
    "setup",
    "profile_name",
    "training_config",
    "run_dir",
    "trained_run",
    "Network",
    "published_weights",
    "recorded_run",
    "trained_network",
    "test_loader",
    "class_samples",
    "class_accuracy_table",
    "faithfulness_scores",
    "RANKING_COMMAND",
]

REPOSITORY_URL = f"https://github.com/{weights.REPOSITORY}"
"""Where Colab installs the package from (the same URL as ``repository.url`` in ``_config.yml``)."""

CPU_TEST_PER_CLASS = 100
"""Test images per class the chapters evaluate a published network on without a GPU (1,000 in all; a GPU takes
all 10,000), so that each evaluation takes seconds on a laptop."""

RUNS_DIR = Path("runs")
"""Run folders of the book, relative to the chapter's working directory (``book/runs/`` in a checkout)."""


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def _data_dir_candidates(value: str) -> list[Path]:
    bases = [Path.cwd()]
    if os.environ.get("PWD"):  # the shell's directory when the run began (nbval and jupyter-book keep it)
        bases.append(Path(os.environ["PWD"]))
    bases += list(Path.cwd().parents)
    return [base / value for base in bases]


def setup() -> Path | None:
    """Make a relative ``$EVA9_DATA_DIR`` absolute, so that it names the same folder from ``book/``.

    ``EVA9_DATA_DIR=../shared/cifar10`` is usually set in the repository root, while chapters run in ``book/``:
    the first of the working directory, the shell's starting directory and their parents that holds the folder
    wins. Without the variable nothing changes (``eva9.data`` then downloads CIFAR-10 into ``data/``). Returns
    the folder in use, or None.
    """
    value = os.environ.get(data.ENV_VAR, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = next((p for p in _data_dir_candidates(value) if p.is_dir()), path)
    path = path.resolve() if path.is_dir() else path  # a missing folder is left for eva9.data's clear error
    os.environ[data.ENV_VAR] = str(path)
    return path


def _has_accelerator() -> bool:
    return pick_device().type != "cpu"


def profile_name() -> str:
    """``$EVA9_PROFILE`` if set, else ``seed`` with a GPU and ``cpu`` without one (saying so in one line)."""
    name, _ = train.affordable_profile(_has_accelerator())
    if name == "cpu" and not os.environ.get(train.ENV_PROFILE, "").strip():
        cpu = train.profile("cpu")
        print(
            f"No GPU here: training uses the cpu profile ({cpu.epochs} epochs on {cpu.train_size:,} images, a few "
            "minutes), far from a full run."
        )
    return name


def training_config(**overrides) -> train.TrainConfig:
    """The TrainConfig of the profile in force (``$EVA9_EPOCHS`` applies through ``eva9.train.profile``)."""
    setup()
    return train.profile(profile_name(), **overrides)


def run_dir(config: train.TrainConfig) -> Path:
    """``runs/<profile>``, or ``runs/<profile>-<N>ep`` when the number of epochs differs from the profile's."""
    default_epochs = train.PROFILES.get(config.profile, {}).get("epochs")
    name = config.profile if config.epochs == default_epochs else f"{config.profile}-{config.epochs}ep"
    return RUNS_DIR / name


def trained_run(config: train.TrainConfig) -> train.Run:
    """The finished run of ``config`` in :func:`run_dir`, trained (or resumed) first if it is not there yet.

    The model comes back in eval mode on the config's device.
    """
    run = train.fit(config, out=run_dir(config), resume=True, quiet=True)  # a finished run returns at once
    run.model.to(pick_device(config.device))
    return run


class Network(NamedTuple):
    """The trained network a chapter explains, in eval mode on the best device, and where it came from."""

    model: torch.nn.Module
    config: train.TrainConfig
    """Its training config, with the test subset and device this machine evaluates it on."""
    history: train.History
    published: bool
    """True for published weights, False for a run of the profile in force."""
    name: str
    """The published name (``seed``) or the run folder."""


def published_weights() -> weights.Weights | None:
    """The published weights the chapters use: ``seed`` first, else the most accurate; None if there are none or
    ``$EVA9_PROFILE`` asks for a run of that profile instead."""
    if os.environ.get(train.ENV_PROFILE, "").strip():
        return None
    return weights.preferred()


def recorded_run(name: str) -> dict:
    """The recorded-run dict (``results/<name>.json``) of published weights, with its history and metrics."""
    for run in results.load_recorded_runs():
        if run["name"] == name:
            return run
    raise weights.WeightsError(f"no recorded run called {name!r}")


def _test_images(config: train.TrainConfig) -> str:
    per_class = config.test_per_class
    return "all 10,000 test images" if per_class is None else f"{10 * per_class:,} test images ({per_class} per class)"


def trained_network(quiet: bool = False) -> Network:
    """The published network if there is one (see :func:`published_weights`), else the profile's run.

    Prints one line saying which network it is, on what it was trained and how accurate it was.
    """
    entry = published_weights()
    if entry is None:
        config = training_config()
        run = trained_run(config)
        if not quiet:
            print(
                textwrap.fill(
                    f"Using the network trained here: {run_dir(config)} ({config.profile} profile, "
                    f"{len(run.history)} epoch(s)), {run.history.epochs[-1]['test_acc']:.1%} test "
                    f"accuracy on {_test_images(config)}.",
                    88,
                )
            )
        return Network(run.model, config, run.history, False, str(run_dir(config)))
    setup()
    record = recorded_run(entry.name)
    device = pick_device()
    config = train.TrainConfig.from_dict(record["config"]).replace(
        device=str(device),
        workers=None,
        data_dir=None,
        test_per_class=None if device.type != "cpu" else CPU_TEST_PER_CLASS,
    )
    model = models.resnet18(weights=entry).eval().to(device)
    if not quiet:
        print(
            textwrap.fill(
                f"Using the published weights {entry.describe()}, {results.data_description(record)}; "
                f"evaluated here on {_test_images(config)} of {_copy_in_use()}. Set EVA9_PROFILE to use a run "
                "trained here.",
                88,
            )
        )
    return Network(model, config, train.History.from_dict(record["history"]), True, entry.name)


def _copy_in_use() -> str:
    return "the official images" if data.copy_kind() == "official" else "the image-folder copy in use"


def class_accuracy_table(config: train.TrainConfig) -> results.Table:
    """Per-class test accuracy (%) of the published network (if any) and of the run of ``config`` trained here,
    each on the test images this machine evaluates it on: one labelled column each, then the overall accuracy."""
    network = trained_network(quiet=True)
    run = trained_run(config)
    columns = {f"run trained here ({config.profile}), {_test_images(config)}": (run.model, config)}
    if network.published:
        columns = {f"published '{network.name}', {_test_images(network.config)}": network[:2], **columns}
    table = results.Table(["class (test accuracy, %)"], [[name] for name in analysis.SHORT_NAMES] + [["overall"]])
    for label, (model, model_config) in columns.items():
        out = train.predict(model, test_loader(model_config))
        accuracy = list(analysis.class_accuracy(out.preds, out.labels)) + [(out.preds == out.labels).float().mean()]
        table.columns.append(label)
        for row, value in zip(table.rows, accuracy):
            row.append(round(100 * float(value), 1))
    return table


RANKING_COMMAND = "python benchmarks/record_ranking.py"
"""The command that records the GradCAM chapter's ranking for the published weights (``--check`` recomputes it)."""

RANKING_METHODS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam")
"""The methods the GradCAM chapter ranks (every gradient method and EigenCAM; ScoreCAM costs too much here)."""


def faithfulness_scores(
    network: Network, images: torch.Tensor, layers: list[str], steps: int, seed: int = 0, quiet: bool = False
) -> gradcam.Faithfulness:
    """:func:`eva9.gradcam.faithfulness_scores` of the network on ``images``, read from its recorded ranking
    (``results/rankings/<name>.json``) where one was computed for these weights, images and settings, else
    computed here; prints one line saying which."""
    recorded = None
    if network.published:
        entry = weights.get(network.name)
        settings = rankings.ranking_settings(entry.sha256, images, RANKING_METHODS, layers, steps, seed)
        recorded = rankings.recorded_ranking(network.name, settings)
    if recorded is None:
        if not quiet:
            print(f"Computing the ranking here for {images.shape[0]} images (some minutes on a CPU).")
        return gradcam.faithfulness_scores(network.model, images, RANKING_METHODS, layers, steps=steps, seed=seed)
    scores, record = recorded
    if not quiet:
        machine = record["machine"]
        print(
            textwrap.fill(
                f"Recorded, not computed here: this ranking of the published weights '{network.name}' on these "
                f"{images.shape[0]} images was computed as this cell would compute it, on {record['date'][:10]} "
                f"(eva9 commit {record.get('commit', '?')}, {machine['cores']}-core {machine['cpu']}, "
                f"{record.get('seconds', 0) / 60:.0f} min), and is read from "
                f"results/{rankings.RANKINGS}/{network.name}.json. `{RANKING_COMMAND} --check` recomputes it "
                "and compares.",
                88,
            )
        )
    return scores


def test_loader(config: train.TrainConfig) -> DataLoader:
    """The test images ``fit`` evaluated ``config`` on (its per-class subset, if any), in order, test-transformed."""
    setup()
    return data.test_loader(
        config.data_dir, batch_size=config.batch_size, workers=0, per_class=config.test_per_class, seed=config.seed
    )


def class_samples(dataset, per_class: int, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """``per_class`` images of every class as one B×3×H×W tensor, grouped by class, and their labels."""
    subset = data.per_class_subset(dataset, per_class, seed)
    order = np.argsort(subset.targets, kind="stable")  # type: ignore[attr-defined]  # per_class_subset keeps them
    items = [subset[int(i)] for i in order]
    return torch.stack([image for image, _ in items]), [label for _, label in items]
