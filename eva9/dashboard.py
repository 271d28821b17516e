"""What a run shows in TensorBoard once it has finished: the confusion matrix of its test predictions and a
GradCAM grid of a few test images, as figures beside the per-epoch scalars that :mod:`eva9.train.tensorboard`
logged during training.

It sits above the figures (:mod:`eva9.plots`) and GradCAM (:mod:`eva9.gradcam`), which the engine may not import;
``eva9 train --tensorboard DIR`` calls :func:`log_run_figures` after :func:`~eva9.train.fit`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from .data import test_loader
from .gradcam import GradCAM
from .metrics import confusion_matrix
from .plots import confusion_matrix_heatmap, gradcam_grid
from .train import load_run, predict
from .train.tensorboard import summary_writer
from .utils import pick_device

__all__ = ["FIGURES", "log_run_figures"]

FIGURES = ("confusion_matrix", "gradcam")
"""The TensorBoard figure tags :func:`log_run_figures` writes."""


def log_run_figures(
    run_dir: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    images: int = 6,
    layers: Sequence[str] = ("layer1", "layer2", "layer3", "layer4"),
    device: str | None = None,
) -> tuple[str, ...]:
    """Write the run's confusion matrix and the GradCAM grid of its first ``images`` test images to the TensorBoard
    ``folder``, at the run's last epoch; return the tags written."""
    run = load_run(run_dir)
    config = run.config
    model = run.model.to(pick_device(device if device is not None else config.device))
    loader = test_loader(config.data_dir, batch_size=256, workers=0, per_class=config.test_per_class, seed=config.seed)
    predictions = predict(model, loader)
    model.cpu()
    batch, labels = next(iter(torch.utils.data.DataLoader(loader.dataset, batch_size=images)))
    with GradCAM(model, list(layers)) as cam:
        maps = cam(batch)
    step = len(run.history)
    writer = summary_writer(folder)
    try:
        cm = confusion_matrix(predictions.preds, predictions.labels)
        writer.add_figure("confusion_matrix", confusion_matrix_heatmap(cm), global_step=step, close=False)
        writer.add_figure("gradcam", gradcam_grid(batch, maps, labels), global_step=step, close=False)
    finally:
        writer.close()
    return FIGURES
