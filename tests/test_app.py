"""The explorer app's answers (eva9.app.Explorer) without a browser, and `eva9 app` on the command line.

The page itself, served by Gradio and driven by Chromium, is tested in tests/html/test_explorer_app.py.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from eva9 import app, cli, models, photos, weights
from eva9.constants import SHORT_NAMES

pytestmark = pytest.mark.skipif(weights.preferred() is None, reason="the app explains published weights")


@pytest.fixture(scope="module")
def explorer() -> app.Explorer:
    return app.Explorer()


@pytest.fixture(scope="module")
def cat() -> np.ndarray:
    samples = pytest.importorskip("skimage.data")
    return samples.chelsea()


def test_a_sample_photo_gets_the_networks_own_top_classes_its_32x32_view_and_one_overlay_per_layer(explorer, cat):
    answer = explorer.explain(None, "Chelsea the cat", explorer.default, ["gradcam"], ["layer4", "layer2"], 0.4, 3)
    images = photos.photo_batch([cat])
    with torch.no_grad():
        expected = models.resnet18(weights=explorer.default, progress=False).eval()(images).softmax(dim=1)[0]
    top = expected.topk(3)
    assert list(answer.top_classes) == [SHORT_NAMES[int(i)] for i in top.indices]
    np.testing.assert_allclose(list(answer.top_classes.values()), top.values.tolist(), rtol=1e-4)
    assert answer.message.startswith(f"**Chelsea the cat**: {SHORT_NAMES[int(top.indices[0])]} (")
    assert answer.seen.shape == (192, 192, 3) and answer.seen.dtype == np.uint8  # each input pixel a 6×6 block
    assert (answer.seen[::6, ::6] == answer.seen[5::6, 5::6]).all()
    width, height = answer.overlays.size
    assert width > 2 * height  # one row: the image, layer2, layer4 and the colour bar


def test_each_class_has_one_name_in_the_top_classes_the_message_and_the_map_titles(explorer, monkeypatch):
    titles = []
    drawn = app.gradcam_grid
    monkeypatch.setattr(
        app, "gradcam_grid", lambda *args, **kwargs: titles.extend(kwargs["titles"]) or drawn(*args, **kwargs)
    )
    answer = explorer.explain(None, "a rocket", explorer.default, ["gradcam"], ["layer4"], top=10)
    assert sorted(answer.top_classes) == sorted(SHORT_NAMES), "every class by the name the book's figures use"
    predicted = next(iter(answer.top_classes))
    assert titles == [f"gradcam: {predicted} {answer.top_classes[predicted]:.0%}"]
    assert answer.message.startswith(f"**a rocket**: {predicted} (")


def test_the_preview_is_the_32x32_input_that_explain_shows_and_needs_no_network(cat, tmp_path):
    path = tmp_path / "my-cat.png"
    Image.fromarray(cat).save(path)
    fresh = app.Explorer()
    seen = fresh.preview(path, "a rocket")  # the upload wins, as in explain
    assert not fresh._networks, "the preview loaded a network"
    np.testing.assert_array_equal(seen, fresh.explain(path, None, fresh.default, ["gradcam"], ["layer4"]).seen)
    assert fresh.preview(None, "Chelsea the cat").shape == (192, 192, 3)
    (tmp_path / "notes.txt").write_text("not a photo\n")
    assert fresh.preview(tmp_path / "notes.txt", None) is None and fresh.preview(None, None) is None


def test_choosing_a_photo_shows_its_32x32_input_before_the_network_answers(explorer):
    pytest.importorskip("gradio")
    page = app.build(explorer)
    ids = {block.elem_id: block._id for block in page.blocks.values() if getattr(block, "elem_id", None)}
    steps = list(page.fns.values())
    for trigger in ((ids["photo"], "upload"), (ids["sample"], "input")):
        (step,) = [step for step in steps if trigger in step.targets]
        chain = []
        while step is not None:
            chain.append(step)
            step = next((then for then in steps if then.trigger_after == step._id), None)
        shown = [[block.elem_id for block in step.outputs] for step in chain]
        previews = [i for i, outputs in enumerate(shown) if outputs == ["seen"]]
        answers = [i for i, outputs in enumerate(shown) if "overlays" in outputs]
        assert previews and answers and previews[0] < answers[0], f"{trigger[1]}: the steps' outputs are {shown}"
        assert chain[previews[0]].fn == explorer.preview
        progress = [block.elem_id for block in chain[answers[0]].show_progress_on or chain[answers[0]].outputs]
        assert "seen" not in progress, "the answer's progress animation hides the preview"


def test_an_uploaded_file_wins_over_the_sample(explorer, cat, tmp_path):
    path = tmp_path / "upside-down.png"
    Image.fromarray(np.ascontiguousarray(cat[::-1])).save(path)
    answer = explorer.explain(path, "Chelsea the cat", explorer.default, ["gradcam"], ["layer4"])
    assert answer.message.startswith("**upside-down.png**")


def write_huge_png(path) -> None:
    Image.new("1", (10_000, 6_000)).save(path)  # 60 megapixels in a small file: one bit per pixel, all black


@pytest.mark.parametrize(
    "name, write, message",
    [
        ("notes.txt", lambda path: path.write_text("not a photo\n"), "notes.txt is not an image that Pillow can read"),
        ("empty.jpg", lambda path: path.write_bytes(b""), "empty.jpg is empty"),
        ("cut.jpg", lambda path: path.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 64), "cut.jpg is not an image"),
        ("huge.png", write_huge_png, "huge.png is 10000×6000 pixels, more than the 50 megapixels"),
    ],
)
def test_a_bad_upload_gets_a_one_line_message_and_no_answer(explorer, tmp_path, name, write, message):
    path = tmp_path / name
    write(path)
    answer = explorer.explain(path, None, explorer.default, ["gradcam"], list(app.LAYERS))
    assert message in answer.message and "\n" not in answer.message
    assert answer.message.startswith("**Cannot explain this:**")
    assert answer.top_classes is None and answer.seen is None and answer.overlays is None
    assert str(tmp_path) not in answer.message  # the server's upload folder is not shown


@pytest.mark.parametrize(
    "upload, sample, weights_name, layers, message",
    [
        (None, None, None, ["layer4"], "Upload a photo, or pick a sample photo."),
        (None, "Chelsea the cat", "no-such-weights", ["layer4"], "no weights called 'no-such-weights'"),
        (None, "Chelsea the cat", None, [], "choose at least one layer of layer1, layer2, layer3, layer4"),
        (None, "a dog", None, ["layer4"], "no sample photo called 'a dog'"),
    ],
)
def test_missing_or_unknown_choices_get_a_message(explorer, upload, sample, weights_name, layers, message):
    answer = explorer.explain(upload, sample, weights_name or explorer.default, ["gradcam"], layers)
    assert message in answer.message and answer.overlays is None


def test_the_mistakes_are_the_most_confident_wrong_predictions_with_their_maps(
    explorer, make_batches_folder, monkeypatch
):
    folder = make_batches_folder(n_per_batch=20)  # 2 test images per class
    monkeypatch.setattr(app, "MISTAKES_PER_CLASS", 2)
    found = app.Explorer(data_dir=folder.parent)
    message, figure = found.mistakes(found.default, ["gradcam"], ["layer3", "layer4"], 0.5, 3)
    mistakes = found._mistakes[found.default]
    assert (mistakes.preds != mistakes.labels).all() and len(mistakes.labels) >= 3  # random images fool it often
    assert (mistakes.confidences[:-1] >= mistakes.confidences[1:]).all()
    assert message.startswith(f"The 3 most confident mistakes of the weights {found.default} on 20 test images")
    assert figure.size[1] > figure.size[0] / 2  # three rows of image, layer3, layer4


def test_the_mistakes_tab_says_where_to_find_cifar10_when_it_is_missing(tmp_path):
    message, figure = app.Explorer(data_dir=tmp_path / "nowhere").mistakes(
        weights.preferred().name, ["gradcam"], ["layer4"]
    )
    assert message.startswith("**Cannot show the mistakes:**") and figure is None


def test_eva9_app_serves_on_loopback_with_the_options_given(monkeypatch):
    calls = []
    monkeypatch.setattr(app, "launch", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert cli.main(["app", "--port", "8123", "--weights", "runs/smoke"]) == 0
    assert calls == [(("127.0.0.1", 8123), {"share": False, "weights_arg": "runs/smoke", "data_dir": None})]


def test_eva9_app_without_gradio_says_how_to_install_it_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    assert cli.main(["app", "--port", "8124"]) == 1
    error = capsys.readouterr().err.strip()
    assert error == 'eva9 app: error: the app needs Gradio: pip install "eva9[app]"'


def test_the_core_package_and_the_app_module_import_without_gradio():
    import subprocess

    script = "import sys; sys.modules['gradio'] = None; import eva9.app, eva9.cli; print(eva9.app.LAYERS[-1])"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "layer4", done.stderr


def test_the_app_offers_every_cam_method_and_draws_one_row_per_chosen_method(explorer):
    from eva9 import gradcam

    assert app.cam_methods() == gradcam.METHODS
    one = explorer.explain(None, "Chelsea the cat", explorer.default, ["gradcam"], ["layer4"])
    two = explorer.explain(None, "Chelsea the cat", explorer.default, ["gradcam", "layercam"], ["layer4"])
    assert abs(one.overlays.size[0] - two.overlays.size[0]) < 0.05 * one.overlays.size[0]  # the image, layer4, the bar
    assert two.overlays.size[1] > 1.5 * one.overlays.size[1]  # and a second row, LayerCAM's
    unknown = explorer.explain(None, "Chelsea the cat", explorer.default, ["saliency"], ["layer4"])
    assert unknown.message.startswith("**Cannot explain this:**") and "saliency" in unknown.message


def test_a_second_visitor_is_answered_while_a_first_asks_for_every_method_at_every_layer(explorer, monkeypatch):
    import threading

    held, release = threading.Event(), threading.Event()
    original = app.class_maps

    def hold_the_first_visitors_last_method(model, images, layers, method):
        if method == app.cam_methods()[-1]:  # the first visitor's request is still being worked on
            held.set()
            release.wait(timeout=300)
        return original(model, images, layers, method)

    alone = explorer.explain(None, "a rocket", explorer.default, ["gradcam"], ["layer4"])
    monkeypatch.setattr(app, "class_maps", hold_the_first_visitors_last_method)
    answers: dict[str, app.Explanation] = {}

    def ask(who: str, sample: str, methods: list[str], layers: list[str]) -> threading.Thread:
        def run() -> None:
            answers[who] = explorer.explain(None, sample, explorer.default, methods, layers)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    first = ask("first", "Chelsea the cat", list(app.cam_methods()), list(app.LAYERS))
    try:
        assert held.wait(timeout=300), "the first request never reached its last method"
        second = ask("second", "a rocket", ["gradcam"], ["layer4"])
        second.join(timeout=120)
        assert not second.is_alive(), "the second visitor waited for the first"
        assert first.is_alive()  # answered while the first request was still being worked on
    finally:
        release.set()
        first.join(timeout=300)
    assert answers["second"].message == alone.message and answers["second"].top_classes == alone.top_classes
    assert np.array_equal(np.asarray(answers["second"].overlays), np.asarray(alone.overlays))  # no hook crossed over
    assert answers["first"].overlays is not None and answers["first"].message.startswith("**Chelsea the cat**")


def test_the_page_answers_two_requests_at_once(monkeypatch):
    pytest.importorskip("gradio")
    calls = {}

    class Page:
        def queue(self, **kwargs):
            calls["queue"] = kwargs

        def launch(self, **kwargs):
            calls["launch"] = kwargs

    monkeypatch.setattr(app, "build", lambda explorer: Page())
    app.launch(block=False)
    assert calls["queue"] == {"default_concurrency_limit": 2} and app.CONCURRENT_REQUESTS == 2
