"""The GradCAM chapter's ranking, recorded (eva9.results.rankings, benchmarks/record_ranking.py): the scores survive
the JSON record exactly, a record is used only for the same weights, images and settings, a damaged one is refused
in one line, and the recorded ranking of the published weights is what the code computes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from eva9 import book, gradcam, models
from eva9.gradcam.curves import FaithfulnessCurve
from eva9.results import rankings

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = os.environ.get("EVA9_DATA_DIR")


def tiny_scores(images: int = 3, steps: int = 2) -> gradcam.Faithfulness:
    generator = torch.Generator().manual_seed(0)
    fractions = torch.linspace(0, 1, steps + 1, dtype=torch.float64)

    def curve(kind):
        probabilities = torch.rand(images, steps + 1, generator=generator, dtype=torch.float64)
        return FaithfulnessCurve(kind, fractions, probabilities, torch.arange(images))

    rows = ["gradcam @ layer4", "random map"]
    randomization = {"gradcam @ layer4": torch.tensor([0.1, -0.2, 0.3][:images], dtype=torch.float64)}
    randomization["random map"] = torch.full((images,), float("nan"), dtype=torch.float64)
    return gradcam.Faithfulness(
        {r: curve("deletion") for r in rows}, {r: curve("insertion") for r in rows}, randomization, steps
    )


def test_scores_survive_their_json_record_exactly():
    scores = tiny_scores()
    back = gradcam.Faithfulness.from_dict(json.loads(json.dumps(scores.to_dict())))
    assert back.table() == scores.table()
    for row in scores.deletion:
        assert torch.equal(back.deletion[row].probabilities, scores.deletion[row].probabilities)
        assert torch.equal(back.insertion[row].targets, scores.insertion[row].targets)
    assert back.randomization["random map"].isnan().all()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d["deletion"]["random map"]["probabilities"][0].__setitem__(0, 1.5), "probabilities in"),
        (lambda d: d["insertion"].pop("random map"), "same rows"),
        (lambda d: d.__setitem__("steps", 3), "4 fractions"),
        (lambda d: d["randomization"]["random map"].append(0.0), "different image counts"),
        (lambda d: d.pop("deletion"), "deletion"),
    ],
)
def test_a_damaged_ranking_is_refused_naming_its_file(damage, message):
    raw = tiny_scores().to_dict()
    damage(raw)
    with pytest.raises(ValueError, match=f"ranks.json: not a valid ranking of the CAM family.*{message}"):
        gradcam.Faithfulness.from_dict(raw, "ranks.json")


def test_a_record_is_used_only_for_the_same_weights_images_and_settings(tmp_path):
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    settings = rankings.ranking_settings("ab" * 32, images, ["gradcam"], ["layer4"], 2, 0)
    path = rankings.write_ranking(rankings.ranking_path("seed", tmp_path), tiny_scores(), settings, seconds=1.0)
    assert path == tmp_path / "rankings" / "seed.json"
    scores, record = rankings.recorded_ranking("seed", settings, tmp_path)
    assert scores.table() == tiny_scores().table()
    assert record["settings"] == settings and record["seconds"] == 1.0 and record["machine"]["cores"] >= 1
    other_images = images.clone()
    other_images[0, 0, 0, 0] += 1e-3
    for changed in [
        rankings.ranking_settings("cd" * 32, images, ["gradcam"], ["layer4"], 2, 0),
        rankings.ranking_settings("ab" * 32, other_images, ["gradcam"], ["layer4"], 2, 0),
        rankings.ranking_settings("ab" * 32, images, ["gradcam"], ["layer4"], 3, 0),
    ]:
        assert rankings.recorded_ranking("seed", changed, tmp_path) is None
    assert rankings.recorded_ranking("fast", settings, tmp_path) is None  # nothing recorded for it


def test_a_file_that_is_not_a_ranking_is_refused_in_one_line(tmp_path):
    path = tmp_path / "rankings" / "seed.json"
    path.parent.mkdir()
    for content, message in [("{", "not valid JSON"), ('{"schema": 99}', "not a recorded ranking of schema 1")]:
        path.write_text(content)
        with pytest.raises(ValueError, match=message):
            rankings.load_ranking(path)


def test_the_chapter_reads_a_matching_record_and_computes_otherwise(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EVA9_RESULTS_DIR", str(tmp_path))
    entry = type("Entry", (), {"sha256": "ef" * 32})()
    monkeypatch.setattr(book.weights, "get", lambda name: entry)
    model = models.resnet18().eval()
    network = book.Network(model, None, None, True, "seed")  # type: ignore[arg-type]
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    calls = []

    def computed(*args, **kwargs):
        calls.append((args, kwargs))
        return tiny_scores(images=2)

    monkeypatch.setattr(book.gradcam, "faithfulness_scores", computed)
    live = book.faithfulness_scores(network, images, ["layer4"], steps=2)
    assert capsys.readouterr().out.startswith("Computing the ranking here for 2 images")
    assert calls == [((model, images, book.RANKING_METHODS, ["layer4"]), {"steps": 2, "seed": 0})]
    settings = rankings.ranking_settings(entry.sha256, images, book.RANKING_METHODS, ["layer4"], 2, 0)
    rankings.write_ranking(rankings.ranking_path("seed"), live, settings, seconds=60.0, commit="abc1234")

    def never(*args, **kwargs):
        raise AssertionError("computed although a matching ranking is recorded")

    monkeypatch.setattr(book.gradcam, "faithfulness_scores", never)
    read = book.faithfulness_scores(network, images, ["layer4"], steps=2)
    said = " ".join(capsys.readouterr().out.split())
    assert said.startswith("Recorded, not computed here: this ranking of the published weights 'seed' on these 2")
    assert "eva9 commit abc1234" in said and "record_ranking.py --check` recomputes it" in said
    assert read.table() == live.table()
    with pytest.raises(AssertionError, match="computed although"):  # other images: no record matches
        book.faithfulness_scores(network, images[:1], ["layer4"], steps=2)


@pytest.mark.skipif(not DATA_DIR or not Path(DATA_DIR).is_dir(), reason="EVA9_DATA_DIR is not set")
def test_the_recorded_ranking_of_the_published_weights_is_what_the_code_computes():
    """Recompute the first of the chapter's twenty images (each image's curves and correlation depend on it alone)
    and compare it with the record, as `record_ranking.py --check` does for all twenty."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import record_ranking

    network, images = record_ranking.chapter_inputs()
    settings = rankings.ranking_settings(
        book.weights.get(network.name).sha256, images, book.RANKING_METHODS, record_ranking.LAYERS,
        record_ranking.STEPS, 0,
    )  # fmt: skip
    recorded = rankings.recorded_ranking(network.name, settings)
    if recorded is None:  # e.g. another copy of CIFAR-10 (other images): the chapter computes the ranking itself
        pytest.skip(f"no ranking of '{network.name}' recorded for these images: python benchmarks/record_ranking.py")
    first = gradcam.faithfulness_scores(
        network.model, images[:1], book.RANKING_METHODS, record_ranking.LAYERS, steps=record_ranking.STEPS, seed=0
    )
    # Not bit for bit: another batch size (or CPU) moves the maps by float noise, which can swap two nearly tied
    # pixels in a curve's order; each area and correlation still agrees within 0.02 (the table prints 3 decimals).
    record = recorded[0].subset(slice(0, 1))
    for measure in ("deletion", "insertion", "randomization"):
        ours, theirs = first.per_image(measure), record.per_image(measure)
        assert ours.keys() == theirs.keys()
        for row in ours:
            difference = (ours[row] - theirs[row]).nan_to_num(0.0).abs().max()
            assert difference <= 0.02, f"{measure} of {row}: recomputed {ours[row]}, recorded {theirs[row]}"
