"""Published weights: the shipped manifest, where files come from (results folder, $EVA9_WEIGHTS_DIR, hub cache,
download), hash checks, names that cannot leave their folder, clear errors for every way it can go wrong, torch.hub,
and the real files in results/."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from test_results import synthetic_run

from eva9 import models, results, weights
from eva9.results import records

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def reference_state() -> dict:
    """A seeded ResNet18's state_dict (float32), the weights the tests publish."""
    torch.manual_seed(123)
    return models.resnet18().state_dict()


@pytest.fixture
def published(tmp_path, monkeypatch, reference_state):
    """A results folder with two records (``seed`` and ``other``) and their weights, their manifest in place of the
    package's, a copy of the folder served as the "repository" through a file:// URL, and an empty hub cache;
    returns (results_dir, remote_dir)."""
    results_dir, remote = tmp_path / "results", tmp_path / "remote"
    for name, accuracy in (("seed", 0.88), ("other", 0.90)):
        path = results.save_weights(reference_state, name, results_dir / "weights")
        run = synthetic_run("seed" if name == "seed" else "fast", test_accs=(0.5, accuracy))
        run["config"] = {"model": "resnet18", "batch_size": 128, "lr": 0.01, "schedule": "constant", "epochs": 2}
        run["weights"] = {"file": path.name, "sha256": weights.sha256_of(path), "dtype": "float16"}
        (results_dir / f"{name}.json").write_text(json.dumps(run))
    results.write_index(results_dir)
    monkeypatch.setattr(weights, "MANIFEST", tmp_path / "published.json")
    results.write_manifest(results_dir, weights.MANIFEST)
    shutil.copytree(results_dir, remote)
    monkeypatch.setenv("EVA9_RESULTS_DIR", str(results_dir))
    monkeypatch.setenv("EVA9_RESULTS_URL", remote.as_uri())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return results_dir, remote


def no_checkout(monkeypatch, tmp_path) -> None:
    """As after `pip install` (Colab): no results folder next to the package, no EVA9_RESULTS_DIR."""
    monkeypatch.delenv("EVA9_RESULTS_DIR", raising=False)
    monkeypatch.setattr(weights, "_CHECKOUT_RESULTS", tmp_path / "no-checkout" / "results")


def same_weights(model: torch.nn.Module, state: dict, float16: bool = True) -> bool:
    """The model holds ``state`` (rounded to float16 if ``float16``, as published files are) in float32."""
    loaded = model.state_dict()
    return all(
        loaded[k].dtype == v.dtype
        and torch.equal(loaded[k], v.half().to(v.dtype) if float16 and v.is_floating_point() else v)
        for k, v in state.items()
    )


def test_the_registry_describes_each_run_without_loading_weights(published, monkeypatch):
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("the registry loaded a weights file"))
    entries = weights.published()
    assert sorted(entries) == ["other", "seed"]
    seed = entries["seed"]
    assert seed.file.startswith("resnet18-seed-") and seed.file.endswith(f"-{seed.sha256[:8]}.pt")
    assert seed.url == f"{published[1].as_uri()}/weights/{seed.file}"
    meta = seed.meta
    assert (meta["profile"], meta["epochs"], meta["final_test_acc"], meta["num_params"]) == (
        "seed",
        2,
        0.88,
        11_173_962,
    )
    assert meta["class_accuracy"]["cat"] == 0.9 and len(meta["class_accuracy"]) == 10
    assert meta["device"] == "NVIDIA H100 80GB HBM3" and meta["date"] == "2025-01-02"
    assert "88.00% test accuracy" in seed.describe() and "'seed'" in seed.describe()


def test_the_manifest_is_all_the_registry_reads(published, monkeypatch):
    results_dir, _ = published
    for record in results_dir.glob("*.json"):
        record.unlink()  # no records, no index: listing needs only the manifest
    monkeypatch.setenv("EVA9_RESULTS_URL", "http://127.0.0.1:9/results")
    assert sorted(weights.published()) == ["other", "seed"]
    assert weights.get("seed").meta["data"] == {
        "train": "CIFAR-10 train, all 50,000 images",
        "test": "CIFAR-10 test, all 10,000 images",
    }


def test_a_name_loads_the_results_folder_file_into_a_float32_model(published, reference_state, monkeypatch):
    monkeypatch.setenv("EVA9_RESULTS_URL", "file:///nowhere")  # it must not download
    model = models.resnet18(weights="seed")
    assert same_weights(model, reference_state)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not weights.cache_dir().exists() or not any(weights.cache_dir().iterdir())


def test_without_the_file_in_the_checkout_it_downloads_once_checks_the_hash_and_caches(
    published, reference_state, monkeypatch
):
    results_dir, remote = published
    (results_dir / "weights" / weights.get("seed").file).unlink()
    model = models.resnet18(weights="seed", progress=False)
    assert same_weights(model, reference_state)
    cached = weights.cache_dir() / weights.get("seed").file
    assert weights.sha256_of(cached) == weights.get("seed").sha256
    shutil.rmtree(remote)  # the second time comes from the hub cache, with no network
    assert same_weights(models.resnet18(weights="seed"), reference_state)


def test_a_damaged_download_is_refused_and_not_kept(published, monkeypatch):
    results_dir, remote = published
    entry = weights.get("seed")
    (results_dir / "weights" / entry.file).unlink()
    served = remote / "weights" / entry.file
    served.write_bytes(served.read_bytes()[: served.stat().st_size // 2])  # truncated on the server
    with pytest.raises(weights.WeightsError) as error:
        models.resnet18(weights="seed", progress=False)
    message = str(error.value)
    assert entry.file in message and entry.url in message and str(weights.cache_dir()) in message
    assert entry.sha256 in message
    assert not weights.cache_dir().exists() or list(weights.cache_dir().iterdir()) == []


def test_no_network_gives_one_clear_error(published, monkeypatch):
    results_dir, remote = published
    entry = weights.get("seed")
    (results_dir / "weights" / entry.file).unlink()
    monkeypatch.setenv("EVA9_RESULTS_URL", "http://127.0.0.1:9/results")  # nothing listens on the discard port
    with pytest.raises(weights.WeightsError, match="could not get the weights 'seed'.*put it in") as error:
        models.resnet18(weights="seed", progress=False)
    assert "http://127.0.0.1:9/results/weights/" in str(error.value)
    assert not weights.cache_dir().exists() or list(weights.cache_dir().iterdir()) == []


def test_a_damaged_file_in_the_checkout_is_never_loaded_nor_deleted(published, monkeypatch):
    results_dir, _ = published
    path = results_dir / "weights" / weights.get("seed").file
    path.write_bytes(path.read_bytes()[:1000])
    monkeypatch.setenv("EVA9_RESULTS_URL", "http://127.0.0.1:9/results")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a file with the wrong hash was loaded"))
    with pytest.raises(weights.WeightsError, match="did not have its SHA-256") as error:
        models.resnet18(weights="seed")
    assert str(path) in str(error.value)
    assert path.stat().st_size == 1000  # the reader's own file is reported, not deleted


def test_a_damaged_copy_in_one_place_does_not_hide_a_good_copy_in_the_next(published, reference_state, monkeypatch):
    results_dir, _ = published
    entry = weights.get("seed")
    good = (results_dir / "weights" / entry.file).read_bytes()
    (results_dir / "weights" / entry.file).write_bytes(b"damaged")
    by_hand = results_dir.parent / "by-hand"
    by_hand.mkdir()
    (by_hand / entry.file).write_bytes(good)
    monkeypatch.setenv("EVA9_WEIGHTS_DIR", str(by_hand))
    monkeypatch.setenv("EVA9_RESULTS_URL", "http://127.0.0.1:9/results")  # it must not download
    assert same_weights(models.resnet18(weights="seed"), reference_state)
    assert (results_dir / "weights" / entry.file).read_bytes() == b"damaged"


def test_a_damaged_copy_in_the_cache_is_fetched_again(published, reference_state):
    results_dir, _ = published
    entry = weights.get("seed")
    (results_dir / "weights" / entry.file).unlink()
    weights.cache_dir().mkdir(parents=True)
    (weights.cache_dir() / entry.file).write_bytes(b"not the weights")
    assert same_weights(models.resnet18(weights="seed", progress=False), reference_state)


def test_an_unknown_name_lists_the_published_ones(published):
    with pytest.raises(weights.WeightsError, match=r"no published weights called 'sead' \(published: other, seed\)"):
        models.resnet18(weights="sead")


def test_a_path_loads_a_file_or_a_run_folder(published, reference_state, tmp_path):
    state = {k: v.clone() for k, v in reference_state.items()}
    torch.save(state, tmp_path / "mine.pt")
    (tmp_path / "run").mkdir()
    torch.save(state, tmp_path / "run" / "model.pt")
    assert same_weights(models.resnet18(weights=tmp_path / "mine.pt"), reference_state, float16=False)
    assert same_weights(models.resnet18(weights=str(tmp_path / "run")), reference_state, float16=False)
    with pytest.raises(weights.WeightsError, match="no weights file at"):
        models.resnet18(weights=tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(weights.WeightsError, match="could not be read as a PyTorch state_dict"):
        models.resnet18(weights=tmp_path / "junk.pt")


def test_weights_of_another_network_do_not_fit(tmp_path):
    torch.save(models.resnet34().state_dict(), tmp_path / "resnet34.pt")
    with pytest.raises(weights.WeightsError, match="do not fit this network"):
        models.resnet18(weights=tmp_path / "resnet34.pt")


def test_preferred_is_seed_then_the_most_accurate_with_its_file_here(published):
    results_dir, _ = published
    assert weights.preferred().name == "seed"
    (results_dir / "weights" / weights.get("seed").file).unlink()
    assert weights.preferred().name == "other"
    (results_dir / "weights" / weights.get("other").file).unlink()
    assert weights.preferred() is None  # a checkout never reaches for the network to decide


def test_without_a_checkout_records_and_weights_come_from_the_repository(
    published, reference_state, monkeypatch, tmp_path
):
    no_checkout(monkeypatch, tmp_path)
    assert weights.results_dir() is None
    runs = results.load_recorded_runs()
    assert [run["name"] for run in runs] == ["seed", "other"]  # profiles seed, then fast
    assert weights.preferred().name == "seed"
    assert same_weights(models.resnet18(weights="seed", progress=False), reference_state)
    # A record changed on the server without a new index is refused, not trusted.
    cached = next(records._records_cache().glob("*/seed.json"))
    cached.unlink()
    served = published[1] / "seed.json"
    served.write_text(served.read_text().replace("0.88", "0.99"))
    with pytest.raises(weights.WeightsError, match="does not have the SHA-256"):
        results.load_recorded_runs()


def test_hubconf_loads_through_torch_hub(published, reference_state):
    model = torch.hub.load(str(REPO), "resnet18", source="local", weights="seed")
    assert same_weights(model, reference_state)
    plain = torch.hub.load(str(REPO), "resnet18", source="local")
    assert sum(p.numel() for p in plain.parameters()) == 11_173_962


# ------------------------------------------------------------------------------------------- the real files


def test_the_repository_index_lists_every_record_with_its_hash():
    assert json.loads((REPO / "results" / "index.json").read_text()) == results.index(REPO / "results"), (
        "results/index.json is out of date: run `python -c 'from eva9 import results; results.write_listings()'`"
    )


def test_the_shipped_manifest_is_the_one_the_records_give():
    assert json.loads(weights.MANIFEST.read_text()) == results.manifest(REPO / "results"), (
        "eva9/published.json is out of date: run `python -c 'from eva9 import results; results.write_listings()'`"
    )


def test_every_published_file_is_the_one_its_record_names(monkeypatch):
    monkeypatch.delenv("EVA9_RESULTS_DIR", raising=False)
    entries = weights.published()
    for run in results.load_recorded_runs(REPO / "results"):
        entry = entries[run["name"]]
        path = REPO / "results" / "weights" / entry.file
        assert path.is_file() and weights.sha256_of(path) == run["weights"]["sha256"] == entry.sha256
        assert entry.file == f"resnet18-{run['name']}-{entry.sha256[:8]}.pt"
        assert entry.meta["final_test_acc"] == run["final_test_acc"]


# ------------------------------------------------------------------------------ names that cannot leave the cache

CRAFTED_NAMES = ["../../escaped.json", "ABSOLUTE", "..\\escaped.json", "x" * 200 + ".json", ".."]


def _crafted(name: str, victim: Path) -> str:
    return str(victim) if name == "ABSOLUTE" else name


@pytest.mark.parametrize("name", CRAFTED_NAMES)
def test_a_crafted_index_entry_can_neither_write_nor_delete_outside_the_cache(published, monkeypatch, tmp_path, name):
    no_checkout(monkeypatch, tmp_path)
    remote = published[1]
    victim = tmp_path / "victim.json"
    victim.write_text("the user's own file")
    attack = b'{"owned": true}'
    file = _crafted(name, victim)
    if name in ("../../escaped.json", "ABSOLUTE"):  # served where the URL that the name makes points
        served = remote / file if name != "ABSOLUTE" else remote / file.lstrip("/")
        served.parent.mkdir(parents=True, exist_ok=True)
        served.write_bytes(attack)
    digest = hashlib.sha256(attack).hexdigest()
    (remote / "index.json").write_text(json.dumps({"records": [{"file": file, "sha256": digest}]}))
    before = sorted(p for p in tmp_path.rglob("*") if "torch-home" not in p.parts)
    with pytest.raises(weights.WeightsError, match="refused the record file name"):
        results.load_recorded_runs()
    assert victim.read_text() == "the user's own file"
    assert sorted(p for p in tmp_path.rglob("*") if "torch-home" not in p.parts) == before


@pytest.mark.parametrize("name", CRAFTED_NAMES)
def test_a_crafted_manifest_entry_is_refused_and_touches_nothing(published, monkeypatch, tmp_path, name):
    victim = tmp_path / "victim.pt"
    victim.write_bytes(b"the user's own file")
    listing = json.loads(weights.MANIFEST.read_text())
    listing["weights"][0]["file"] = _crafted(name, victim)
    weights.MANIFEST.write_text(json.dumps(listing))
    monkeypatch.setenv("EVA9_RESULTS_URL", "http://127.0.0.1:9/results")
    with pytest.raises(weights.WeightsError, match=f"{weights.MANIFEST}.*refused the weights file name"):
        models.resnet18(weights=listing["weights"][0]["name"])
    assert victim.read_bytes() == b"the user's own file"


def test_a_manifest_sha256_must_be_64_hex_digits(published):
    listing = json.loads(weights.MANIFEST.read_text())
    listing["weights"][0]["sha256"] = "ac30730b"
    weights.MANIFEST.write_text(json.dumps(listing))
    with pytest.raises(weights.WeightsError, match="a SHA-256 is 64 hex digits"):
        weights.published()


def test_an_oversized_index_is_refused_and_a_malformed_one_never_replaces_the_cached_copy(
    published, monkeypatch, tmp_path
):
    no_checkout(monkeypatch, tmp_path)
    remote = published[1]
    assert [run["name"] for run in results.load_recorded_runs()] == ["seed", "other"]
    cached = records._records_cache() / "index.json"
    good = cached.read_bytes()
    records._INDEX_FETCHED.clear()
    (remote / "index.json").write_text("{not json")
    assert [run["name"] for run in results.load_recorded_runs()] == ["seed", "other"]  # the cached copy, kept
    assert cached.read_bytes() == good
    records._INDEX_FETCHED.clear()
    (remote / "index.json").write_bytes(b" " * (records.MAX_INDEX_BYTES + 1))
    assert [run["name"] for run in results.load_recorded_runs()] == ["seed", "other"]
    assert cached.read_bytes() == good and [p.name for p in cached.parent.iterdir() if p.is_file()] == ["index.json"]
    cached.unlink()
    records._INDEX_FETCHED.clear()
    with pytest.raises(weights.WeightsError, match="larger than 1,048,576 bytes"):
        results.load_recorded_runs()


def test_a_download_larger_than_its_cap_is_refused_and_not_kept(published, monkeypatch):
    results_dir, remote = published
    entry = weights.get("seed")
    (results_dir / "weights" / entry.file).unlink()
    listing = json.loads(weights.MANIFEST.read_text())
    for raw in listing["weights"]:
        raw["size"] = 1000
    weights.MANIFEST.write_text(json.dumps(listing))
    with pytest.raises(weights.WeightsError, match="larger than 1,000 bytes"):
        models.resnet18(weights="seed")
    assert not weights.cache_dir().exists() or list(weights.cache_dir().iterdir()) == []


def test_without_a_checkout_or_network_a_hub_cache_copy_loads(published, reference_state, monkeypatch, tmp_path):
    results_dir, _ = published
    entry = weights.get("seed")
    weights.cache_dir().mkdir(parents=True)
    shutil.copy(results_dir / "weights" / entry.file, weights.cache_dir() / entry.file)
    no_checkout(monkeypatch, tmp_path)
    monkeypatch.setenv("EVA9_RESULTS_URL", "http://127.0.0.1:9/results")  # nothing listens on the discard port
    monkeypatch.setattr(records, "_remote_record_paths", lambda: pytest.fail("the records were downloaded"))
    assert same_weights(models.resnet18(weights="seed"), reference_state)


def test_without_a_checkout_network_or_copy_the_error_names_url_file_and_folder(published, monkeypatch, tmp_path):
    no_checkout(monkeypatch, tmp_path)
    monkeypatch.delenv("EVA9_RESULTS_URL")  # the manifest's own URL, made unreachable below

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    entry = weights.get("seed")
    with pytest.raises(weights.WeightsError) as error:
        models.resnet18(weights="seed")
    message = str(error.value)
    assert "\n" not in message and entry.url in message and entry.file in message
    assert str(weights.cache_dir()) in message and entry.url.startswith(weights.RESULTS_URL)


# ------------------------------------------------------------------------------------ symbolic links (issue 26)


def test_a_link_whose_target_matches_is_used_read_only(published, reference_state, monkeypatch, tmp_path):
    results_dir, _ = published
    entry = weights.get("seed")
    shared = tmp_path / "shared-drive"  # a folder elsewhere, as a lab's shared copy
    shared.mkdir()
    target = shared / "the-copy.pt"
    shutil.move(results_dir / "weights" / entry.file, target)
    target.chmod(0o444)
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    (by_hand / entry.file).symlink_to(target)
    monkeypatch.setenv("EVA9_WEIGHTS_DIR", str(by_hand))
    monkeypatch.setenv("EVA9_RESULTS_URL", "http://127.0.0.1:9/results")  # it must not download
    assert same_weights(models.resnet18(weights="seed"), reference_state)
    assert (by_hand / entry.file).is_symlink() and weights.sha256_of(target) == entry.sha256


@pytest.mark.parametrize("where", ["weights dir", "hub cache"])
def test_a_link_whose_target_does_not_match_is_skipped_and_kept(where, published, reference_state, monkeypatch):
    results_dir, _ = published
    entry = weights.get("seed")
    good = results_dir / "weights" / entry.file
    wrong = results_dir.parent / "elsewhere" / "other.pt"
    wrong.parent.mkdir()
    wrong.write_bytes(b"the user's other file")
    by_hand = results_dir.parent / "by-hand"
    by_hand.mkdir()
    weights.cache_dir().mkdir(parents=True)
    if where == "weights dir":  # results/ damaged, a bad link in $EVA9_WEIGHTS_DIR, a good copy in the hub cache
        shutil.move(good, weights.cache_dir() / entry.file)
        link = by_hand / entry.file
    else:  # results/ damaged, a bad link in the hub cache, a good copy served
        good.unlink()
        link = weights.cache_dir() / entry.file
    link.symlink_to(wrong)
    monkeypatch.setenv("EVA9_WEIGHTS_DIR", str(by_hand))
    if where == "weights dir":
        monkeypatch.setenv("EVA9_RESULTS_URL", "http://127.0.0.1:9/results")  # it must not download
        assert same_weights(models.resnet18(weights="seed"), reference_state)
    else:
        with pytest.raises(weights.WeightsError) as error:
            models.resnet18(weights="seed")
        message = str(error.value)
        assert "\n" not in message and f"{link} (a link to {wrong}) did not have its SHA-256" in message
        assert f"{link} is a link, left as it is; remove it to download a fresh copy" in message
    assert link.is_symlink() and os.readlink(link) == str(wrong) and wrong.read_bytes() == b"the user's other file"


def test_a_dangling_link_is_skipped(published, reference_state, monkeypatch, tmp_path):
    entry = weights.get("seed")
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    (by_hand / entry.file).symlink_to(tmp_path / "gone.pt")
    monkeypatch.setenv("EVA9_WEIGHTS_DIR", str(by_hand))
    results_dir, _ = published
    (results_dir / "weights" / entry.file).write_bytes(b"damaged")  # so the search reaches the link, and goes on
    assert same_weights(models.resnet18(weights="seed", progress=False), reference_state)  # downloaded
    assert (by_hand / entry.file).is_symlink()


# ------------------------------------------------------------------------------- a malformed index (issue 26)


def nested(depth: int) -> bytes:
    """A syntactically valid index whose first record entry hides ``depth`` levels of lists and objects."""
    inner = b"0"
    for level in range(depth):
        inner = b"[" + inner + b"]" if level % 2 else b'{"k": ' + inner + b"}"
    return b'{"records": [' + inner + b"]}"


@pytest.mark.parametrize("depth", [40, 5_000, 200_000])
def test_a_deeply_nested_index_is_one_line_and_the_cached_copy_is_used(published, monkeypatch, tmp_path, depth):
    no_checkout(monkeypatch, tmp_path)
    remote = published[1]
    assert [run["name"] for run in results.load_recorded_runs()] == ["seed", "other"]
    cached = records._records_cache() / "index.json"
    good = cached.read_bytes()
    payload = nested(depth)
    if len(payload) > records.MAX_INDEX_BYTES:
        payload = payload[: records.MAX_INDEX_BYTES]  # capped: an index this large is refused for its size anyway
    (remote / "index.json").write_bytes(payload)
    records._INDEX_FETCHED.clear()
    assert [run["name"] for run in results.load_recorded_runs()] == ["seed", "other"]  # the cached copy
    assert cached.read_bytes() == good
    cached.unlink()  # and with no cached copy: one line, no RecursionError
    records._INDEX_FETCHED.clear()
    with pytest.raises(weights.WeightsError) as error:
        results.load_recorded_runs()
    assert "\n" not in str(error.value) and "nested deeper than 32 levels" in str(error.value), error.value
