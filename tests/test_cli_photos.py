"""``eva9 predict`` and ``eva9 gradcam`` on photos of any size: the answers, the figure, and one clear line for
every bad input (missing file, not an image, unknown layer, no weights) with exit status 1."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eva9 import models, photos
from eva9.analysis import SHORT_NAMES
from eva9.cli import main


@pytest.fixture
def photo(tmp_path) -> Path:
    """A 120×80 JPEG: wider than tall, so the centre crop matters."""
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def weights_file(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "weights.pt"
    torch.save(models.resnet18().state_dict(), path)
    return path


def test_a_photo_becomes_its_centred_square_at_32_pixels(tmp_path):
    image = np.zeros((60, 180, 3), dtype=np.uint8)
    image[:, 60:120] = 255  # the centred 60×60 square is white, the sides black
    Image.fromarray(image).save(tmp_path / "wide.png")
    square = photos.load_photo(tmp_path / "wide.png")
    assert square.shape == (32, 32, 3) and square.dtype == np.uint8
    assert square.min() >= 200  # the black sides are cropped away (Lanczos lets a trace in at the edge)
    batch = photos.photo_batch([tmp_path / "wide.png"] * 2)
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == torch.float32
    assert batch.mean() > 1.5  # normalized: white is about (1 - 0.49) / 0.25 ≈ 2


def test_predict_lists_the_top_classes_with_probabilities(photo, weights_file, capsys):
    assert main(["predict", str(photo), str(photo), "--weights", str(weights_file), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "32×32" in out
    lines = [line for line in out.splitlines() if line.startswith(str(photo))]
    assert len(lines) == 2
    ranked = re.findall(r"(\w+) ([\d.]+) %", lines[0])
    assert len(ranked) == 3 and all(name in SHORT_NAMES for name, _ in ranked)
    probabilities = [float(p) for _, p in ranked]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 100.05
    model = models.resnet18(weights=weights_file).eval()
    with torch.no_grad():
        expected = model(photos.photo_batch([photo])).softmax(1)[0]
    assert ranked[0][0] == SHORT_NAMES[int(expected.argmax())]
    assert probabilities[0] == pytest.approx(100 * float(expected.max()), abs=0.05)


def test_gradcam_writes_one_row_per_photo_and_one_column_per_layer(photo, weights_file, tmp_path, capsys):
    out = tmp_path / "cam.png"
    code = main(
        [
            "gradcam",
            str(photo),
            str(photo),
            "--weights",
            str(weights_file),
            "--layers",
            "layer3",
            "layer4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    figure = np.asarray(Image.open(out))
    assert figure.shape[0] > 100 and figure.shape[1] > 100
    assert "layer3, layer4" in capsys.readouterr().out


@pytest.mark.parametrize(
    "case", ["missing file", "not an image", "unknown layer", "no weights", "bad weights", "no output folder"]
)
def test_bad_input_gets_one_line_and_exit_status_1(case, photo, weights_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EVA9_RESULTS_DIR", str(tmp_path / "empty-results"))  # no published weights
    (tmp_path / "empty-results").mkdir()
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    command, expected = {
        "missing file": (["predict", str(tmp_path / "absent.jpg"), "--weights", str(weights_file)], "no image file at"),
        "not an image": (["predict", str(text), "--weights", str(weights_file)], "is not an image"),
        "unknown layer": (
            [
                "gradcam",
                str(photo),
                "--weights",
                str(weights_file),
                "--layers",
                "layer9",
                "--out",
                str(tmp_path / "x.png"),
            ],
            "no layer named 'layer9'; choose from",
        ),
        "no weights": (["predict", str(photo)], "no published weights here; pass --weights"),
        "bad weights": (["predict", str(photo), "--weights", "sead"], "no published weights called 'sead'"),
        "no output folder": (
            ["gradcam", str(photo), "--weights", str(weights_file), "--out", str(tmp_path / "absent" / "cam.png")],
            "no folder",
        ),
    }[case]
    assert main(command) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_a_photo_at_16_bits_integer_or_float_gets_the_same_input_and_prediction_as_at_8_bits(
    tmp_path, weights_file, mode
):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    gray[:, :24] = 250  # a bright half: what 16-bit values clipped to 255 would turn white
    Image.fromarray(gray).save(tmp_path / "eight.png")
    wide = {"I;16": gray.astype(np.uint16) * 257, "I": gray.astype(np.int32) * 257, "F": gray / np.float32(255)}[mode]
    suffix = ".png" if mode == "I;16" else ".tiff"
    Image.fromarray(wide).save(tmp_path / f"wide{suffix}")
    assert Image.open(tmp_path / f"wide{suffix}").mode == mode
    batch = photos.photo_batch([tmp_path / "eight.png", tmp_path / f"wide{suffix}"])
    assert torch.equal(batch[0], batch[1])
    model = models.resnet18(weights=weights_file).eval()
    with torch.no_grad():
        first, second = model(batch).argmax(dim=1).tolist()
    assert first == second
