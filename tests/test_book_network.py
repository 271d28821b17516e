"""The network the book's chapters explain: published weights when there are some and EVA9_PROFILE is unset,
else the run of the profile in force."""

from __future__ import annotations

import json

import pytest
import torch
from test_weights import published, reference_state, same_weights  # noqa: F401  (fixtures)

from eva9 import book, train, weights


@pytest.fixture
def with_configs(published):  # noqa: F811
    """The published records carry a real seed config, as full_runs.py writes them."""
    results_dir, _ = published
    for name in ("seed", "other"):
        path = results_dir / f"{name}.json"
        record = json.loads(path.read_text())
        record["config"] = train.profile("seed").to_dict()
        path.write_text(json.dumps(record))
    return published


@pytest.fixture
def fake_training(monkeypatch):
    """Replace training by a recorded call, so that the fallback is visible without training a network."""
    calls = []

    def trained_run(config):
        calls.append(config.profile)
        history = train.History.from_dict(
            {
                "epochs": [
                    {
                        "epoch": 1,
                        "train_loss": 2.0,
                        "train_acc": 0.1,
                        "test_loss": 2.0,
                        "test_acc": 0.1,
                        "lr": 0.01,
                        "seconds": 1.0,
                    }
                ]
            }
        )
        return train.Run(torch.nn.Linear(1, 1), config, history)

    monkeypatch.setattr(book, "trained_run", trained_run)
    monkeypatch.setattr(book, "_has_accelerator", lambda: False)
    return calls


def test_published_weights_are_used_when_there_are_some(
    with_configs,
    reference_state,  # noqa: F811  (a fixture)
    fake_training,
    monkeypatch,
    capsys,
):
    monkeypatch.delenv(train.ENV_PROFILE, raising=False)
    monkeypatch.setattr(book, "pick_device", lambda *a: torch.device("cpu"))
    network = book.trained_network()
    assert network.published and network.name == "seed" and fake_training == []
    assert same_weights(network.model, reference_state) and not network.model.training
    assert network.config.test_per_class == book.CPU_TEST_PER_CLASS and network.config.device == "cpu"
    assert [row["test_acc"] for row in network.history.epochs] == [0.5, 0.88]
    assert "Using the published weights 'seed'" in capsys.readouterr().out


def test_eva9_profile_asks_for_a_run_trained_here(with_configs, fake_training, monkeypatch, capsys):
    monkeypatch.setenv(train.ENV_PROFILE, "smoke")
    assert book.published_weights() is None
    network = book.trained_network()
    assert not network.published and fake_training == ["smoke"]
    assert "Using the network trained here" in capsys.readouterr().out


def test_without_published_weights_the_book_trains_as_before(with_configs, fake_training, monkeypatch):
    results_dir, _ = with_configs
    monkeypatch.delenv(train.ENV_PROFILE, raising=False)
    for path in (results_dir / "weights").glob("*.pt"):
        path.unlink()
    assert weights.preferred() is None and book.published_weights() is None
    network = book.trained_network(quiet=True)
    assert not network.published and fake_training == ["cpu"]  # no GPU: the cpu profile


def test_the_class_table_puts_the_published_network_beside_the_run_trained_here(with_configs, monkeypatch):
    """Two labelled columns, each counted over the test images: identical images get one class right."""

    class AlwaysCat(torch.nn.Module):
        def forward(self, images):
            return torch.nn.functional.one_hot(torch.full((len(images),), 3), 10).float()

    monkeypatch.delenv(train.ENV_PROFILE, raising=False)
    monkeypatch.setattr(book, "pick_device", lambda *a: torch.device("cpu"))
    labels = torch.arange(20) % 10
    monkeypatch.setattr(book, "test_loader", lambda config: [(torch.zeros(20, 3, 32, 32), labels)])
    history = train.History.from_dict({"epochs": []})
    monkeypatch.setattr(book, "trained_run", lambda config: train.Run(AlwaysCat(), config, history))
    table = book.class_accuracy_table(train.profile("cpu"))
    assert table.columns[1].startswith("published 'seed', 1,000 test images")
    assert table.columns[2] == "run trained here (cpu), 1,000 test images (100 per class)"
    assert [row[0] for row in table.rows] == [*book.analysis.SHORT_NAMES, "overall"]
    assert [row[2] for row in table.rows] == [0.0, 0.0, 0.0, 100.0, 0, 0, 0, 0, 0, 0, 10.0]
    published_column = [row[1] for row in table.rows]
    assert sorted(published_column[:10]) == [0.0] * 9 + [100.0] and published_column[10] == 10.0
