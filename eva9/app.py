"""The explorer app: a photo of your own, or a bundled sample, classified and explained in the browser (Gradio).

``python -m eva9 app`` (or ``app.py`` at the repository root, for a Hugging Face Space) serves it on 127.0.0.1.
One tab takes a photo and shows the top classes, the 32×32 image the network sees and the class maps at the chosen
layers with a colour bar; the other browses the test set's most confident mistakes with their maps. Gradio is an
optional extra (``pip install "eva9[app]"``): this module imports it only to build and serve the page, so what the
app computes (:class:`Explorer`) runs and is tested without it.

Offline: the app turns Gradio's analytics and version check off, uses a theme of system fonts only, serves no
share link unless asked, and hides the footer links to the Hub; the browser test records every request the page
makes and every connection the server opens, and finds only the loopback address.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import logging
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from . import data, models, photos, weights
from .analysis import SHORT_NAMES, Mistakes, misclassified
from .constants import CLASSES
from .gradcam import CAM, METHODS, CAMResult
from .photos import photo_batch
from .plots import gradcam_grid

__all__ = [
    "LAYERS",
    "SAMPLES",
    "BadInput",
    "Explanation",
    "Explorer",
    "build",
    "cam_methods",
    "class_maps",
    "launch",
    "read_photo",
    "sample_photo",
]

LAYERS = ("layer1", "layer2", "layer3", "layer4")
"""The layers the app offers, shallowest first (all four are chosen at the start)."""

SAMPLES = {"Chelsea the cat": "chelsea", "a rocket": "rocket", "a cup of coffee": "coffee", "an astronaut": "astronaut"}
"""Sample photos, label → scikit-image's name: scikit-image ships them (none is from CIFAR-10)."""

MAX_PIXELS = 50_000_000
"""The largest photo the app decodes (50 megapixels: a phone's photo is 12 to 50)."""

MAX_FILE_SIZE = "50mb"
"""The largest upload the server accepts."""

MISTAKES_PER_CLASS = 100
"""Test images per class searched for mistakes: a stratified 1,000, searched once per weights and then kept."""

MISTAKES_KEPT = 24
"""How many of the most confident mistakes the tab can show."""

CONCURRENT_REQUESTS = 2
"""How many requests are answered at once (Gradio's concurrency limit, and the copies of each network): a second
visitor is answered while a first asks for every method at every layer (about 27 s on a CPU)."""

PHOTO_NOTE = (
    "Each photo is centre-cropped to a square and shrunk to 32×32 pixels, the only size the network has seen, "
    "so small or off-centre objects may be lost."
)

_log = logging.getLogger(__name__)


class BadInput(ValueError):
    """An input the app cannot use; its message is shown in the page."""


# ------------------------------------------------------------------------------------ methods and maps (issue 20)


def cam_methods() -> tuple[str, ...]:
    """The class-map methods the app offers: every method of :class:`eva9.gradcam.CAM`."""
    return METHODS


def class_maps(model: torch.nn.Module, images: torch.Tensor, layers: Sequence[str], method: str) -> CAMResult:
    """The maps of ``method`` at ``layers``, for the class the network predicts, from one pass."""
    if method not in cam_methods():
        raise BadInput(f"unknown method {method!r}; choose from {', '.join(cam_methods())}")
    with CAM(model, list(layers), method=method) as cam:
        return cam(images)


# ---------------------------------------------------------------------------------------------------- the inputs


def sample_photo(label: str) -> np.ndarray:
    """The bundled sample photo called ``label`` (a key of :data:`SAMPLES`) as an H×W×3 uint8 array."""
    if label not in SAMPLES:
        raise BadInput(f"no sample photo called {label!r}; choose from {', '.join(SAMPLES)}")
    try:
        from skimage import data as samples
    except ImportError:
        raise BadInput('the sample photos come with scikit-image: pip install "eva9[app]"') from None
    return getattr(samples, SAMPLES[label])()


def read_photo(path: str | os.PathLike) -> Image.Image:
    """An uploaded file as an 8-bit RGB image (:func:`eva9.photos.read_photo`), or BadInput saying why not (empty,
    not an image in an accepted format, too many pixels), naming the file only, not the server's upload folder."""
    try:
        return photos.read_photo(path, name=Path(path).name, max_pixels=MAX_PIXELS)
    except (ValueError, OSError) as error:
        raise BadInput(str(error)) from None


# ------------------------------------------------------------------------------------------------ what it computes


class Explanation(NamedTuple):
    """What the photo tab shows: a message, the top classes, the 32×32 input enlarged, and the overlays figure."""

    message: str
    top_classes: dict[str, float] | None = None
    seen: np.ndarray | None = None
    overlays: Image.Image | None = None


def _figure_image(figure) -> Image.Image:
    """A matplotlib figure of :mod:`eva9.plots` as an RGB image, with a margin for the page's label and buttons."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.35)
    return Image.open(buffer, formats=["PNG"]).convert("RGB")


def _enlarged(batch: torch.Tensor, factor: int = 6) -> np.ndarray:
    """The first image of a normalized batch as uint8 H×W×3, each pixel a factor×factor block (no smoothing)."""
    from .transforms import denormalize

    pixels = (denormalize(batch[0]).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return pixels.repeat(factor, axis=0).repeat(factor, axis=1)


class Explorer:
    """The app's state and answers: the weights on offer, their networks (loaded once), and the mistakes found."""

    def __init__(self, extra_weights: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None):
        self.weights: dict[str, Any] = dict(weights.published())
        if extra_weights is not None:
            self.weights.setdefault(str(extra_weights), str(extra_weights))
        if not self.weights:
            raise weights.WeightsError(
                "no published weights here; pass --weights with a .pt file or a run folder (`eva9 train --out DIR`)"
            )
        preferred = weights.preferred()
        if extra_weights is not None:
            self.default = str(extra_weights)
        else:
            self.default = preferred.name if preferred is not None else next(iter(self.weights))
        self.data_dir = data_dir
        self._networks: dict[str, torch.nn.Module] = {}
        self._mistakes: dict[str, Mistakes] = {}
        self._loading = threading.Lock()  # loads each network and finds each set of mistakes once
        # Gradio answers in threads, and the hooks of one request must not see another's: each of the
        # CONCURRENT_REQUESTS seats has its own copy of each network, so two visitors are answered at once.
        self._seats: queue.Queue[dict[str, torch.nn.Module]] = queue.Queue()
        for _ in range(CONCURRENT_REQUESTS):
            self._seats.put({})

    def network(self, name: str) -> torch.nn.Module:
        """The float32 network with the weights called ``name``, in eval mode on the CPU (loaded on first use)."""
        if name not in self.weights:
            raise BadInput(f"no weights called {name!r}; choose from {', '.join(self.weights)}")
        with self._loading:
            if name not in self._networks:
                self._networks[name] = models.resnet18(weights=self.weights[name], progress=False).eval()
            return self._networks[name]

    @contextlib.contextmanager
    def _seat(self, name: str) -> Iterator[torch.nn.Module]:
        """A network with the weights ``name`` that no other request uses until this one is done (waits for a
        free seat when :data:`CONCURRENT_REQUESTS` requests are being answered)."""
        network = self.network(name)
        seat = self._seats.get()
        try:
            if name not in seat:
                seat[name] = copy.deepcopy(network)
            yield seat[name]
        finally:
            self._seats.put(seat)

    def explain(
        self,
        upload: str | os.PathLike | None,
        sample: str | None,
        weights_name: str,
        methods: Sequence[str],
        layers: Sequence[str],
        opacity: float = 0.5,
        top: int = 3,
    ) -> Explanation:
        """The photo tab: ``upload`` (a file) or else ``sample``, classified, and its maps at ``layers``."""
        try:
            photo: Image.Image | np.ndarray
            if upload:
                photo, name = read_photo(upload), Path(upload).name
            elif sample:
                photo, name = sample_photo(sample), sample
            else:
                return Explanation("Upload a photo, or pick a sample photo.")
            methods, layers = _chosen(methods, cam_methods(), "method"), _chosen(layers, LAYERS, "layer")
            images = photo_batch([photo])
            with self._seat(weights_name) as model:
                maps = {method: class_maps(model, images, layers, method) for method in methods}
        except (ValueError, FileNotFoundError) as error:  # BadInput, WeightsError, a bad weights file
            return Explanation(f"**Cannot explain this:** {error}")
        except Exception as error:  # a surprise: said in the page, logged in full, and the app keeps serving
            _log.exception("explaining %s failed", upload or sample)
            return Explanation(f"**Something went wrong:** {type(error).__name__}: {error}")
        first = next(iter(maps.values()))
        probabilities = first.logits.softmax(dim=1)[0]
        ranked = probabilities.topk(max(1, min(int(top), len(CLASSES))))
        predicted = int(first.predictions[0])
        titles = [f"{method}: {SHORT_NAMES[predicted]} {float(probabilities[predicted]):.0%}" for method in maps]
        figure = gradcam_grid(
            images.repeat(len(maps), 1, 1, 1),
            {layer: torch.cat([result[layer] for result in maps.values()]) for layer in layers},
            None,
            [predicted] * len(maps),
            layers,
            titles=titles,
            alpha=float(opacity),
        )
        return Explanation(
            f"**{name}**: {SHORT_NAMES[predicted]} ({float(probabilities[predicted]):.1%}) with the weights "
            f"{weights_name}; the maps show where the network looked for that class. {PHOTO_NOTE}",
            {SHORT_NAMES[int(i)]: float(p) for p, i in zip(ranked.values, ranked.indices)},
            _enlarged(images),
            _figure_image(figure),
        )

    def preview(self, upload: str | os.PathLike | None, sample: str | None) -> np.ndarray | None:
        """The 32×32 image the network will see, enlarged as :meth:`explain` shows it, the moment a photo is chosen:
        no network needed. None without a photo or for one that cannot be read (:meth:`explain` says why)."""
        try:
            photo: Image.Image | np.ndarray | None = (
                read_photo(upload) if upload else sample_photo(sample) if sample else None
            )
        except (ValueError, FileNotFoundError):
            return None
        return None if photo is None else _enlarged(photo_batch([photo]))

    def mistakes(
        self, weights_name: str, methods: Sequence[str], layers: Sequence[str], opacity: float = 0.5, count: int = 8
    ) -> tuple[str, Image.Image | None]:
        """The mistakes tab: a message and a figure of the ``count`` most confident mistakes with their maps."""
        try:
            methods, layers = _chosen(methods, cam_methods(), "method"), _chosen(layers, LAYERS, "layer")
            count = max(1, min(int(count), MISTAKES_KEPT))
            found = self._most_confident_mistakes(weights_name)
            shown = Mistakes(*(field[:count] for field in found))
            with self._seat(weights_name) as model:
                maps = class_maps(model, shown.images, layers, methods[0])
        except (ValueError, FileNotFoundError, data.CIFAR10Error) as error:
            return f"**Cannot show the mistakes:** {error}", None
        except Exception as error:
            _log.exception("finding the mistakes of %s failed", weights_name)
            return f"**Something went wrong:** {type(error).__name__}: {error}", None
        if len(shown.labels) == 0:
            return f"The weights {weights_name} make no mistake on these {10 * MISTAKES_PER_CLASS} test images.", None
        titles = [
            f"{SHORT_NAMES[int(t)]} → {SHORT_NAMES[int(p)]} {float(c):.0%}"
            for t, p, c in zip(shown.labels, shown.preds, shown.confidences)
        ]
        figure = gradcam_grid(
            shown.images, maps, shown.labels, shown.preds, layers, titles=titles, alpha=float(opacity)
        )
        message = (
            f"The {len(shown.labels)} most confident mistakes of the weights {weights_name} on "
            f"{10 * MISTAKES_PER_CLASS:,} test images ({MISTAKES_PER_CLASS} per class): true → predicted class and "
            f"its probability, with the {methods[0]} maps of the (wrong) predicted class."
        )
        return message, _figure_image(figure)

    def _most_confident_mistakes(self, weights_name: str) -> Mistakes:
        """The :data:`MISTAKES_KEPT` most confident mistakes on the stratified test subset, found once per weights."""
        if weights_name not in self._mistakes:
            loader = data.test_loader(
                self.data_dir, batch_size=250, workers=0, per_class=MISTAKES_PER_CLASS, download=False
            )
            with self._seat(weights_name) as model:
                found = misclassified(model, loader, limit=MISTAKES_KEPT)
            self._mistakes.setdefault(weights_name, found)  # two visitors at once may both search: the same answer
        return self._mistakes[weights_name]


def _chosen(values: Sequence[str] | None, offered: Sequence[str], what: str) -> list[str]:
    """The chosen ``values`` in the order offered, or BadInput when none (or an unknown one) is chosen."""
    values = list(values or [])
    unknown = [value for value in values if value not in offered]
    if unknown or not values:
        raise BadInput(f"choose at least one {what} of {', '.join(offered)}" + (f", not {unknown}" if unknown else ""))
    return [value for value in offered if value in values]


# --------------------------------------------------------------------------------------------- the page (Gradio)


def _gradio():
    """The gradio module, with its analytics and telemetry off, or ImportError saying how to install it."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no analytics and no version check to api.gradio.app
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    try:
        import gradio
    except ImportError:
        raise ImportError('the app needs Gradio: pip install "eva9[app]"') from None
    return gradio


def _theme(gr):
    """Gradio's default theme with system fonts only: nothing to fetch from a font server."""
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "Consolas", "monospace"]
    )


_BUTTONS = ["download", "fullscreen"]  # not "share", which posts to the Hugging Face Hub


def build(explorer: Explorer):
    """The app's page, a ``gradio.Blocks`` serving ``explorer``'s answers (not launched)."""
    gr = _gradio()
    picture = functools.partial(gr.Image, interactive=False, format="png", buttons=_BUTTONS)  # an answer's image
    with gr.Blocks(title="eva9: explain your own photo", analytics_enabled=False) as page:
        gr.Markdown(
            "# Explain your own photo\nA ResNet18 trained on CIFAR-10 classifies the photo and GradCAM shows where "
            f"it looked for the class it chose. {PHOTO_NOTE}"
        )
        with gr.Row():
            weights_in = gr.Dropdown(list(explorer.weights), value=explorer.default, label="Weights", elem_id="weights")
            methods_in = gr.CheckboxGroup(list(cam_methods()), value=[cam_methods()[0]], label="Method")
            layers_in = gr.CheckboxGroup(list(LAYERS), value=list(LAYERS), label="Layers", elem_id="layers")
            opacity_in = gr.Slider(0, 1, value=0.5, step=0.05, label="Opacity of the maps", elem_id="opacity")
        shared = [weights_in, methods_in, layers_in, opacity_in]
        with gr.Tab("Your photo"):
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(label="Upload a photo", type="filepath", elem_id="photo")
                    sample = gr.Dropdown(list(SAMPLES), value=None, label="… or pick a sample photo", elem_id="sample")
                    top = gr.Slider(1, len(CLASSES), value=3, step=1, label="Top classes", elem_id="top")
                    explain = gr.Button("Explain", variant="primary", elem_id="explain")
                with gr.Column(scale=3):
                    status = gr.Markdown(elem_id="status")
                    with gr.Row():
                        top_classes = gr.Label(label="Top classes", elem_id="top-classes")
                        seen = picture(label="As the network sees it (32×32)", elem_id="seen")
                    overlays = picture(label="Where it looked", elem_id="overlays")
        with gr.Tab("Mistakes"):
            count = gr.Slider(1, MISTAKES_KEPT, value=8, step=1, label="How many", elem_id="count")
            find = gr.Button("Show the most confident mistakes", variant="primary", elem_id="find-mistakes")
            mistakes_status = gr.Markdown(elem_id="mistakes-status")
            mistakes = picture(label="Mistakes and their maps", elem_id="mistakes")

        inputs, outputs = [upload, sample, *shared, top], [status, top_classes, seen, overlays]

        def answer(*values):
            return tuple(explorer.explain(*values))

        explain.click(answer, inputs, outputs)
        # an upload replaces the sample, and a sample the upload; the 32×32 input shows at once, and stays in view
        # (no progress animation over it) while the maps are computed
        computing = [status, top_classes, overlays]
        for chosen, other in ((upload.upload, sample), (sample.input, upload)):
            cleared = chosen(lambda: None, None, other)
            shown = cleared.then(explorer.preview, [upload, sample], seen)
            shown.then(answer, inputs, outputs, show_progress_on=computing)
        for control in (weights_in, methods_in, layers_in):
            control.input(answer, inputs, outputs)
        for control in (opacity_in, top):
            control.release(answer, inputs, outputs)
        find.click(explorer.mistakes, [*shared, count], [mistakes_status, mistakes])
    return page


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    share: bool = False,
    weights_arg: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    block: bool = True,
):
    """Serve the app at http://host:port with the published weights (and ``weights_arg``), the default one loaded.

    ``share=True`` asks Gradio for a public link (through its servers: no longer offline). Returns the page; with
    ``block=False`` it serves in the background until ``page.close()``.
    """
    gr = _gradio()
    explorer = Explorer(weights_arg, data_dir)
    explorer.network(explorer.default)  # loaded before the first request
    page = build(explorer)
    page.queue(default_concurrency_limit=CONCURRENT_REQUESTS)
    page.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=not block,
        theme=_theme(gr),
        max_file_size=MAX_FILE_SIZE,
        footer_links=[],
        run_history=False,
        enable_monitoring=False,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        show_error=False,
    )
    return page
