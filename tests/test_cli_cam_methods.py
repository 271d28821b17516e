"""``eva9 gradcam --method``: any method of the CAM family draws its figure; an unknown one gets one line that
lists the methods, exit status 1, and nothing written."""

from __future__ import annotations

import numpy as np
from PIL import Image
from test_cli_photos import photo, weights_file  # noqa: F401 - the fixtures

from eva9.cli import main
from eva9.gradcam import METHODS


def test_gradcam_draws_the_chosen_methods_maps_at_the_chosen_layers(photo, weights_file, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "cam.png"
    arguments = ["gradcam", str(photo), "--weights", str(weights_file), "--method", "layercam"]
    assert main([*arguments, "--layers", "layer1", "layer4", "--out", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape[1] > 100
    assert (
        "wrote" in (printed := capsys.readouterr().out)
        and "layercam of the predicted class at layer1, layer4" in printed
    )


def test_an_unknown_method_gets_one_line_listing_the_methods_and_exit_1(photo, weights_file, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "cam.png"
    code = main(["gradcam", str(photo), "--weights", str(weights_file), "--method", "gradcam+", "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown method 'gradcam+'; choose from " + ", ".join(METHODS) in err, err
    assert not out.exists()
