"""Each benchmark runs end to end on a tiny setting and writes its JSON record (numbers are not checked: no
benchmark is a pass/fail test; see benchmarks/README.md for the measured ones)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
DATA_DIR = os.environ.get("EVA9_DATA_DIR")
needs_data = pytest.mark.skipif(
    not DATA_DIR or not Path(DATA_DIR).is_dir(), reason="EVA9_DATA_DIR is not set to the CIFAR-10 copy"
)


def bench(name: str):
    return importlib.import_module(name)


def check_record(path: Path, name: str) -> dict:
    record = json.loads(path.read_text())
    assert record["benchmark"] == name
    assert record["machine"]["cores"] >= 1 and record["versions"]["torch"] and record["date"]
    return record


def test_common_interleaves_contestants_and_reports_paired_ratios():
    import common

    calls = []
    seconds = common.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then AB, BA, AB
    assert {name: len(times) for name, times in seconds.items()} == {"a": 3, "b": 3}
    assert common.paired_ratio([2.0, 4.0, 9.0], [1.0, 1.0, 3.0]) == 3.0


def test_engine_benchmark_runs(tmp_path):
    module = bench("bench_engine")
    module.run(module.TINY, tmp_path)
    record = check_record(tmp_path / "engine.json", "engine")
    assert set(record["images_per_second"]) == {"bare", "eva9"}
    assert record["ratio_eva9_to_bare"] > 0
    layouts = record["channels_last"]  # both layouts, side by side
    assert set(layouts["images_per_second"]) == {"contiguous", "channels-last"}
    assert layouts["ratio_channels_last_to_contiguous"] > 0
    report = bench("report")
    assert f"{record['ratio_eva9_to_bare']:.3f}×" in report.markdown(tmp_path)
    assert f"**{layouts['ratio_channels_last_to_contiguous']:.3f}×**" in report.markdown(tmp_path)
    assert report.markdown(tmp_path / "empty") == "No benchmark has been recorded yet."


def test_gradcam_benchmark_runs(tmp_path):
    module = bench("bench_gradcam")
    module.run(module.TINY, tmp_path)
    record = check_record(tmp_path / "gradcam.json", "gradcam")
    methods = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"]
    cases = {f"{method}, 4 layers" for method in methods} | {"gradcam, 1 layer"}
    assert set(record["time_ratio_eva9_to_reference"]) == set(record["goal"]) == cases
    assert record["goal"]["layercam, 4 layers"] == "<= 0.35" and record["goal"]["gradcam, 1 layer"] == "<= 1.0"
    assert "| layercam, 4 layers |" in bench("report").markdown(tmp_path)


@pytest.mark.skipif(not list((BENCHMARKS.parent / "results" / "weights").glob("*.pt")), reason="no published weights")
def test_app_benchmark_times_a_prediction_the_four_layer_maps_and_a_whole_answer(tmp_path):
    pytest.importorskip("skimage")
    module = bench("bench_app")
    module.run(module.TINY, tmp_path)
    record = check_record(tmp_path / "app.json", "app")
    assert set(record["ms_per_photo"]) == {"prediction", "maps, 4 layers", "whole answer"}
    assert all(ms > 0 for ms in record["ms_per_photo"].values()) and record["startup_seconds"] == []


def test_pipeline_benchmark_runs_and_projects_workers_for_a_gpu(tmp_path):
    module = bench("bench_pipeline")
    module.run(module.TINY, tmp_path, root=DATA_DIR or "")
    record = check_record(tmp_path / "pipeline.json", "pipeline")
    rate = record["images_per_second_per_worker"]["albumentations (eva9)"]
    assert record["workers_to_feed_gpu_projection"]["albumentations (eva9)"] == -(-25_000 // rate)
    assert set(record["dataloader_images_per_second"]) == {"0", "1"}
    assert record["device_batches_images_per_second_cpu"] > 0  # augment_on="device", beside the workers
    assert "| torchvision.transforms.v2 |" in bench("report").markdown(tmp_path)
    assert '| `augment_on="device"` on the CPU' in bench("report").markdown(tmp_path)


@needs_data
def test_augment_on_benchmark_trains_both_paths_on_the_same_subset(tmp_path):
    module = bench("bench_augment_on")
    module.run(module.TINY, tmp_path, root=DATA_DIR)
    record = check_record(tmp_path / "augment_on.json", "augment_on")
    assert set(record["test_accuracy"]) == {"workers", "device"}
    assert all(len(runs) == len(module.TINY["seeds"]) for runs in record["runs"].values())


def test_torchvision_twin_pipeline_cuts_a_mean_filled_16x16_hole_when_it_erases():
    import torch

    torch.manual_seed(0)
    module = bench("bench_pipeline")
    pipeline = module.torchvision_train_transforms()
    grey = torch.full((3, 32, 32), 255, dtype=torch.uint8)  # flat image: crops and flips leave it unchanged
    outputs = [pipeline(grey) for _ in range(40)]
    holes = [(out == 0).all(dim=0) for out in outputs]  # normalised mean colour is 0 on every channel
    sizes = {int(hole.sum()) for hole in holes}
    assert sizes == {0, 256}  # erased with p = 0.5: either no hole or exactly 16×16 pixels
    hole = next(hole for hole in holes if hole.any())
    rows, cols = hole.nonzero(as_tuple=True)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (16, 16)
    assert outputs[0].dtype == torch.float32 and outputs[0].shape == (3, 32, 32)


@needs_data
def test_memory_benchmark_runs(tmp_path):
    module = bench("bench_memory")
    module.run(module.TINY, tmp_path, root=DATA_DIR)
    record = check_record(tmp_path / "memory.json", "memory")
    assert record["smoke_peak_rss_mib"] > record["baseline_peak_rss_mib"] > 0


@needs_data
def test_epoch_breakdown_benchmark_times_the_four_parts_of_an_epoch(tmp_path):
    module = bench("bench_epoch")
    module.run(module.TINY, tmp_path, root=DATA_DIR)
    record = check_record(tmp_path / "epoch.json", "epoch")
    [smoke] = record["profiles"]
    assert (smoke["train_images"], smoke["test_images"], smoke["steps"]) == (40, 20, 4)
    rates = smoke["images_per_second"]
    assert set(rates) == {"input pipeline", "model", "real loop", "evaluation"} and min(rates.values()) > 0
    assert smoke["limited_by"] == module.limiting_part(rates)
    assert module.limiting_part({"input pipeline": 100.0, "model": 50.0}) == "model"
    assert module.limiting_part({"input pipeline": 48_399.0, "model": 48_716.0}) == "both (within 10%)"
    report = bench("report").markdown(tmp_path)
    assert "Where an epoch's time goes" in report and f"| smoke | 10 | 0 | {rates['input pipeline']:,.0f} |" in report


def test_full_run_record_finds_the_first_epoch_at_87_percent_and_keeps_per_class_results_in_class_order():
    from eva9.analysis import SHORT_NAMES
    from eva9.train import History

    full_runs = bench("full_runs")
    accs = [0.5, 0.871, 0.86, 0.9]
    history = History(
        [
            {
                "epoch": i + 1,
                "train_loss": 1.0,
                "train_acc": 0.9,
                "test_loss": 1.0,
                "test_acc": acc,
                "lr": 0.1,
                "seconds": 3.0,
            }
            for i, acc in enumerate(accs)
        ]
    )
    cm = [[100 if i == j else 0 for j in range(10)] for i in range(10)]
    metrics = {
        "device": "NVIDIA H100",
        "versions": {"torch": "x"},
        "wall_seconds": 12.0,
        "test_acc": 0.9,
        "train_acc": 0.9,
        "test_loss": 1.0,
        "test_images": 1000,
        "confusion_matrix": cm,
        "class_accuracy": {name: i / 10 for i, name in enumerate(reversed(SHORT_NAMES))},
    }
    record = full_runs.build_record({"profile": "fast", "epochs": 4}, history, metrics, 20.0, resumed=False)
    assert (record["epochs_to_target"], record["seconds_to_target"]) == (2, 6.0)
    assert record["classes"][0] == "plane" and record["class_accuracy"][0] == 0.9  # plane is last in the mapping
    assert record["profile"] == "fast" and record["device"] == "NVIDIA H100" and len(record["history"]["epochs"]) == 4
    assert record["wall_seconds"] == 12.0 and record["invocation_seconds"] == 20.0  # 4 epochs of 3 s


@needs_data
def test_a_resumed_full_run_records_the_wall_time_of_its_whole_life(tmp_path):
    full_runs = bench("full_runs")
    options = dict(
        epochs=1, data_dir=DATA_DIR, quiet=True, train_per_class=1, test_per_class=1, batch_size=5, workers=0
    )
    first = full_runs.record_profile("smoke", tmp_path / "results", tmp_path / "runs", **options)
    again = full_runs.record_profile("smoke", tmp_path / "results", tmp_path / "runs", resume=True, **options)
    trained = sum(epoch["seconds"] for epoch in first["history"]["epochs"])
    assert again["resumed"] and again["wall_seconds"] == first["wall_seconds"] == trained > 0
    assert again["invocation_seconds"] < first["invocation_seconds"]  # this call only found the finished run


@needs_data
def test_full_run_of_a_tiny_smoke_profile_writes_a_loadable_record(tmp_path):
    from eva9.results import load_recorded_runs
    from eva9.weights import MANIFEST, manifest

    shipped = MANIFEST.read_bytes()
    full_runs = bench("full_runs")
    full_runs.record_profile(
        "smoke",
        tmp_path / "results",
        tmp_path / "runs",
        epochs=1,
        data_dir=DATA_DIR,
        quiet=True,
        train_per_class=1,
        test_per_class=1,
        batch_size=5,
        workers=0,
    )
    [run] = load_recorded_runs(tmp_path / "results")
    assert run["profile"] == "smoke" and run["device"].startswith("cpu")
    assert len(run["history"]["epochs"]) == 1 and run["test_images"] == 10
    cm = run["confusion_matrix"]
    assert sum(map(sum, cm)) == 10
    assert run["final_test_acc"] == sum(cm[i][i] for i in range(10)) / 10
    assert run["class_accuracy"] == [cm[i][i] / sum(cm[i]) for i in range(10)]
    assert (tmp_path / "runs" / "full-smoke" / "model.pt").is_file()
    # the final weights are published as float16, named by their hash, and score as recorded in float32
    weights = run["weights"]
    [published] = (tmp_path / "results" / "weights").iterdir()
    assert published.name == weights["file"] == f"resnet18-smoke-{weights['sha256'][:8]}.pt"
    assert hashlib.sha256(published.read_bytes()).hexdigest() == weights["sha256"]
    state = torch.load(published, weights_only=True)
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float16}
    # a trial publishes its own manifest beside its record; the package's stays as it was
    [entry] = manifest(tmp_path / "results" / "published.json")
    assert entry.name == "smoke" and entry.sha256 == weights["sha256"] and entry.meta["epochs"] == 1
    assert 0 <= weights["calibration"]["ece"] <= 1 and MANIFEST.read_bytes() == shipped
    assert weights["test_acc_float32"] == pytest.approx(run["final_test_acc"], abs=0.1)  # 10 images: ±1 may flip
    assert 0 <= weights["test_acc_float32_flip_tta"] <= 1 and weights["scored_on"] == "cpu"
    assert weights["matches_record"] == (abs(weights["test_acc_float32"] - run["final_test_acc"]) <= 0.001)


def test_a_named_commit_wins_over_the_git_folder_of_a_copied_tree(monkeypatch):
    full_runs = bench("full_runs")
    monkeypatch.setenv("EVA9_COMMIT", "28f3a75")
    assert full_runs.commit() == "28f3a75"
    monkeypatch.delenv("EVA9_COMMIT")
    found = full_runs.commit()  # this checkout's HEAD, marked when tracked files differ from it
    assert found is None or len(found.removesuffix("-dirty")) == 40


def test_published_weights_are_float16_named_by_their_hash_and_never_overwritten(tmp_path):
    from eva9.results import save_weights

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    path = save_weights(model.state_dict(), "demo", tmp_path, model="tiny")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.name == f"tiny-demo-{digest[:8]}.pt"
    loaded = torch.load(path, weights_only=True)
    assert loaded["0.weight"].dtype == torch.float16 and loaded["1.num_batches_tracked"].dtype == torch.int64
    fresh = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    fresh.load_state_dict(loaded)  # a float32 model takes the float16 tensors
    assert fresh[0].weight.dtype == torch.float32
    torch.testing.assert_close(fresh[0].weight, model[0].weight, atol=1e-3, rtol=1e-3)
    assert save_weights(model.state_dict(), "demo", tmp_path, model="tiny") == path  # same weights, same file
    path.write_bytes(b"something else")
    with pytest.raises(ValueError, match="not overwritten"):
        save_weights(model.state_dict(), "demo", tmp_path, model="tiny")
    assert path.read_bytes() == b"something else"


def test_readme_latest_numbers_are_the_recorded_json():
    # benchmarks/README.md's tables are pasted from `python benchmarks/report.py`; a re-run benchmark whose JSON
    # was committed without re-pasting them (or a hand-edited number) fails here.
    readme = (BENCHMARKS / "README.md").read_text(encoding="utf-8")
    for line in bench("report").markdown().splitlines():
        assert line in readme, f"benchmarks/README.md lacks {line!r}; paste `python benchmarks/report.py` again"


def test_rescoring_on_the_official_images_adds_scores_beside_the_record_and_names_its_data(
    tmp_path, make_batches_folder, capsys
):
    from eva9.results import load_recorded_runs

    full_runs, rescore = bench("full_runs"), bench("rescore_official")
    official = make_batches_folder(tmp_path / "official").parent
    options = dict(epochs=1, data_dir=str(official), quiet=True, train_per_class=1, batch_size=5, workers=0)
    record = full_runs.record_profile("smoke", tmp_path / "results", tmp_path / "runs", test_per_class=1, **options)
    assert record["data"] == {"train": "official", "test": "official"}  # full_runs names the copy it used
    path = tmp_path / "results" / "smoke.json"
    before = json.loads(path.read_text())
    assert rescore.main(["--data-dir", str(official), "--results", str(tmp_path / "results"), "--workers", "0"]) == 0
    [run] = load_recorded_runs(tmp_path / "results")
    score = run["rescored"]["official"]
    assert score["test_images"] == 10 and score["scored_on"] == "cpu"  # every test image of the copy
    assert score["test_acc_float32"] == record["weights"]["test_acc_float32"]  # the same 10 images, the same weights
    assert {key: value for key, value in run.items() if key not in ("rescored", "path", "name")} == before
    index = json.loads((tmp_path / "results" / "index.json").read_text())
    assert index["records"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # kept in step
    assert "on the 10 official test images" in capsys.readouterr().out
    scored = path.read_bytes()
    assert rescore.main(["--data-dir", str(official), "--results", str(tmp_path / "results"), "--workers", "0"]) == 0
    assert "already scored" in capsys.readouterr().out and path.read_bytes() == scored  # weights scored once


def test_rescoring_refuses_an_image_folder_copy(make_image_folder, tmp_path, capsys):
    folders = make_image_folder()
    assert bench("rescore_official").main(["--data-dir", str(folders), "--results", str(tmp_path)]) == 1
    assert "not a cifar-10-batches-py copy" in capsys.readouterr().err


def test_the_cpu_profile_benchmark_records_each_epoch_and_its_aims(make_batches_folder, tmp_path):
    module = bench("bench_cpu_profile")
    root = make_batches_folder().parent
    changes = {"train_per_class": 1, "test_per_class": 1, "batch_size": 5, "epochs": 3, "workers": 0}
    module.run(changes, str(root), tmp_path)
    record = check_record(tmp_path / "cpu_profile.json", "cpu_profile")
    assert [row["epoch"] for row in record["epochs"]] == [1, 2, 3]
    assert record["settings"]["config"]["profile"] == "cpu" and record["settings"]["changes"] == changes
    assert record["train_seconds"] == pytest.approx(sum(row["seconds"] for row in record["epochs"]))
    assert record["cpu_seconds"] > 0 and record["meets_aims"] is (record["final_test_acc"] >= 0.30)


def test_the_cpu_profile_benchmark_repeats_itself_exactly_for_the_same_seed(make_batches_folder, tmp_path):
    # It once trained a network built before fit seeded anything, so each run started from other weights.
    module = bench("bench_cpu_profile")
    root = str(make_batches_folder().parent)
    changes = {"train_per_class": 1, "test_per_class": 1, "batch_size": 5, "epochs": 1, "workers": 0}
    first = module.run(changes, root, tmp_path / "first")
    torch.manual_seed(12345)  # whatever ran before must not matter
    second = module.run(changes, root, tmp_path / "second")
    assert [row["train_loss"] for row in first["epochs"]] == [row["train_loss"] for row in second["epochs"]]


def test_build_benchmark_times_make_targets_in_clean_clones(tmp_path):
    """bench_build.py on tiny targets: each command in its own clone, target by target, with the load average."""
    module = bench("bench_build")
    assert module.test_targets()[:2] == ["lint", "imports"]  # read from the Makefile's `test:` rule
    module.run(module.TINY, tmp_path, venv=Path(sys.prefix))
    record = check_record(tmp_path / "build.json", "build")
    assert record["settings"]["commit"] and record["settings"]["cpus"] >= 1
    for name, targets in module.TINY.items():
        timed = record["commands"][name]
        assert timed["targets"] == targets and list(timed["seconds"]) == targets and timed["failed"] is None
        assert timed["finished"]
        assert timed["total_seconds"] == pytest.approx(sum(timed["seconds"].values()), abs=0.2)
        assert 0 <= timed["load_average_1min"]["min"] <= timed["load_average_1min"]["max"]


def test_chapters_benchmark_times_each_chapter_and_its_cells(tmp_path):
    module = bench("bench_chapters")
    assert module.chapters_in_order()[:2] == ["intro", "data"]  # the table of contents' order
    module.run(module.TINY, tmp_path)
    record = check_record(tmp_path / "chapters.json", "chapters")
    intro = record["chapters"]["intro"]
    assert intro["error"] is None and intro["seconds"] > 0
    assert intro["cells"] and all(cell["seconds"] >= 0 for cell in intro["cells"])
    assert record["total_seconds"] == intro["seconds"]
