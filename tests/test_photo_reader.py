"""One photo reader (eva9.photos.read_photo) for the command line, the app, the book and photo_batch.

Every photo here is made by the test: the same grey picture at 8 bits, at 16 bits and as floats, and a PostScript
file named like a JPEG (which Pillow would hand to Ghostscript if it were allowed to open it).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from eva9 import app, photos
from eva9.cli import main

POSTSCRIPT = b"""%!PS-Adobe-3.0 EPSF-3.0
%%BoundingBox: 0 0 12 9
%%EndComments
0.5 setgray newpath 1 1 moveto 11 1 lineto 11 8 lineto closepath fill
showpage
%%EOF
"""


@pytest.fixture
def grey_photos(tmp_path):
    """The same 40×30 picture with a bright half at 8 bits (PNG), 16 bits (PNG) and 32-bit floats (TIFF)."""
    rng = np.random.default_rng(7)
    grey = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    grey[:, :20] = 245  # values that clipping 16-bit pixels to 255 would turn white
    paths = {"eight": tmp_path / "eight.png", "sixteen": tmp_path / "sixteen.png", "float": tmp_path / "float.tiff"}
    Image.fromarray(grey).save(paths["eight"])
    Image.fromarray(grey.astype(np.uint16) * 257).save(paths["sixteen"])
    Image.fromarray(grey.astype(np.float32) / 255).save(paths["float"])
    assert [Image.open(path).mode for path in paths.values()] == ["L", "I;16", "F"]
    return paths


@pytest.mark.parametrize("depth", ["sixteen", "float"])
def test_the_app_reads_16_bit_and_float_photos_like_the_same_photo_at_8_bits(grey_photos, depth):
    eight = np.asarray(app.read_photo(grey_photos["eight"]))
    wide = np.asarray(app.read_photo(grey_photos[depth]))
    assert wide.shape == (30, 40, 3) and wide.dtype == np.uint8
    assert np.abs(wide.astype(int) - eight.astype(int)).max() <= 1  # not white (16 bits) nor black (floats)
    assert np.array_equal(photos.load_photo(grey_photos[depth]), photos.load_photo(grey_photos["eight"]))


def test_the_app_and_the_command_line_read_a_photo_through_the_same_reader(grey_photos, monkeypatch):
    calls = []
    original = photos.read_photo
    monkeypatch.setattr(
        photos, "read_photo", lambda *args, **kwargs: calls.append(args[0]) or original(*args, **kwargs)
    )
    app.read_photo(grey_photos["sixteen"])
    photos.photo_batch([grey_photos["float"]])
    assert calls == [grey_photos["sixteen"], grey_photos["float"]]


@pytest.fixture
def postscript_named_jpeg(tmp_path, monkeypatch):
    """A PostScript file called photo.jpg, and a list that records whether Pillow's EPS plugin ever looked at it."""
    path = tmp_path / "photo.jpg"
    path.write_bytes(POSTSCRIPT)
    opened = []
    original = EpsImagePlugin.EpsImageFile._open

    def spy(self):
        opened.append(self)
        return original(self)

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", spy)
    return path, opened


def test_a_postscript_file_named_jpg_is_refused_in_one_line_before_pillow_parses_it(postscript_named_jpeg):
    path, opened = postscript_named_jpeg
    with pytest.raises(photos.PhotoError) as refused:
        photos.read_photo(path)
    message = str(refused.value)
    assert message.startswith(f"{path} is not an image that Pillow can read as JPEG, PNG, WebP, GIF, BMP, TIFF")
    assert "\n" not in message and opened == []  # the EPS plugin (and so Ghostscript) never saw the file
    with pytest.raises(app.BadInput, match="^photo.jpg is not an image that Pillow can read as JPEG"):
        app.read_photo(path)  # the app names the upload only, not the server's folder
    assert opened == []


def test_the_command_line_refuses_a_postscript_photo_in_one_line(postscript_named_jpeg, tmp_path, capsys):
    path, opened = postscript_named_jpeg
    assert main(["predict", str(path), "--weights", str(tmp_path / "unused.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("eva9 predict: error: ") and "JPEG, PNG, WebP, GIF" in err, err
    assert opened == []


def test_other_formats_pillow_knows_are_refused_too(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path, format="ICO")  # Pillow reads ICO, eva9 does not
    with pytest.raises(photos.PhotoError, match="not an image that Pillow can read as JPEG, PNG"):
        photos.read_photo(path)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path, format="WEBP", lossless=True)  # a WebP named .png: read
    assert photos.read_photo(path).getpixel((3, 3)) == (200, 10, 10)


def test_every_image_eva9_opens_is_opened_with_a_list_of_formats():
    import ast
    from pathlib import Path

    root = Path(photos.__file__).resolve().parents[1]
    bare = []
    for path in sorted([*root.glob("eva9/**/*.py"), *root.glob("benchmarks/*.py"), root / "app.py"]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "open"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "Image"
                and not any(keyword.arg == "formats" for keyword in node.keywords)
            ):
                bare.append(f"{path.relative_to(root)}:{node.lineno}")
    assert bare == [], f"Image.open without formats= (Pillow would try every format it knows, EPS too): {bare}"
