"""Figures the command line writes (`eva9 gradcam --out`, `eva9 lr-find --out`): in the format the file name's
extension says, whole or not at all (eva9.files.write_atomic), and an extension eva9 cannot write refused in one
line before any work."""

from __future__ import annotations

import io

import pytest
from matplotlib.figure import Figure
from PIL import Image
from test_cli_photos import photo, weights_file  # noqa: F401 - the fixtures

from eva9 import photos
from eva9.cli import main
from eva9.plots import lr_range_test
from eva9.train.lr_range import LRFinding

MAGIC = {".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff", ".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-"}


@pytest.mark.parametrize("suffix", [".jpg", ".JPEG", ".png", ".pdf"])
def test_gradcam_writes_the_format_its_name_says(suffix, photo, weights_file, tmp_path, capsys):  # noqa: F811
    out = tmp_path / f"cam{suffix}"
    assert main(["gradcam", str(photo), "--weights", str(weights_file), "--out", str(out)]) == 0, capsys.readouterr()
    assert out.read_bytes().startswith(MAGIC[suffix.lower()])
    if suffix.lower() in (".jpg", ".jpeg"):
        assert Image.open(out, formats=["JPEG"]).size[0] > 100
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([out.name, photo.name, weights_file.name])


@pytest.mark.parametrize("name", ["cam.txt", "cam", "cam.eps", "cam.png.exe"])
def test_gradcam_refuses_an_extension_it_cannot_write_before_any_work(
    name,
    photo,  # noqa: F811
    weights_file,  # noqa: F811
    tmp_path,
    capsys,
    monkeypatch,
):
    out = tmp_path / name
    if name == "cam.txt":
        out.write_bytes(b"the user's own file")
    work: list[object] = []
    monkeypatch.setattr(photos, "photo_batch", lambda *args, **kwargs: work.append(args))
    assert main(["gradcam", str(photo), "--weights", str(weights_file), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out}: name a .png, .jpg, .jpeg, .pdf, .svg file" in err, err
    assert work == []  # no photo read, no network loaded
    assert (out.read_bytes() == b"the user's own file") if name == "cam.txt" else not out.exists()


def test_a_figure_that_fails_midway_leaves_the_old_file_whole_and_no_temp_file(tmp_path, monkeypatch):
    out = tmp_path / "lr.png"
    out.write_bytes(b"last week's figure")
    found = LRFinding([1e-3, 1e-2, 1e-1], [2.3, 2.0, 3.0], [2.3, 2.1, 2.4], 1e-2, False)

    def half_then_fail(self, file, **kwargs):
        file.write(b"\x89PNG half a figure")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    with pytest.raises(OSError, match=f"could not write {out}: no space left on device"):
        lr_range_test(found, peak=0.1, path=out)
    assert out.read_bytes() == b"last week's figure" and [path.name for path in tmp_path.iterdir()] == ["lr.png"]
    monkeypatch.undo()
    lr_range_test(found, peak=0.1, path=out)
    assert Image.open(io.BytesIO(out.read_bytes()), formats=["PNG"]).format == "PNG"
