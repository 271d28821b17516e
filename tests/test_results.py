"""Recorded full runs: loading and validating results/*.json, the reference run, and the book's tables."""

from __future__ import annotations

import json

import pytest

from eva9 import results


def synthetic_run(profile: str = "seed", test_accs=(0.60, 0.86, 0.88, 0.90), seconds: float = 10.0) -> dict:
    """A well-formed recorded run with the given per-epoch test accuracies."""
    epochs = [
        {
            "epoch": i + 1,
            "train_loss": 1.0 / (i + 1),
            "train_acc": min(acc + 0.05, 1.0),
            "test_loss": 1.2 / (i + 1),
            "test_acc": acc,
            "lr": 0.01,
            "seconds": seconds,
        }
        for i, acc in enumerate(test_accs)
    ]
    first, spent = results.epochs_to_target(epochs)
    cm = [[90 if i == j else (10 if j == (i + 1) % 10 else 0) for j in range(10)] for i in range(10)]
    return {
        "schema": results.SCHEMA_VERSION,
        "profile": profile,
        "device": "NVIDIA H100 80GB HBM3",
        "date": "2025-01-02T03:04:05+00:00",
        "versions": {"torch": "2.5"},
        "machine": {"cpu": "x", "cores": 16},
        "config": {"epochs": len(epochs)},
        "history": {"epochs": epochs},
        "wall_seconds": seconds * len(epochs) + 3,
        "final_test_acc": test_accs[-1],
        "final_train_acc": epochs[-1]["train_acc"],
        "target": 0.87,
        "epochs_to_target": first,
        "seconds_to_target": spent,
        "classes": list(results.REFERENCE_RUN["class_accuracy"]),
        "class_accuracy": [0.9] * 10,
        "confusion_matrix": cm,
    }


def write(tmp_path, name: str, run) -> None:
    (tmp_path / name).write_text(json.dumps(run))


def test_empty_or_missing_directory_gives_no_runs(tmp_path):
    assert results.load_recorded_runs(tmp_path) == []
    assert results.load_recorded_runs(tmp_path / "absent") == []
    assert len(results.summary_table([], reference=False)) == 0


def test_runs_load_validated_with_seed_before_fast(tmp_path):
    write(tmp_path, "a_fast.json", synthetic_run("fast"))
    write(tmp_path, "b_seed.json", synthetic_run("seed"))
    runs = results.load_recorded_runs(tmp_path)
    assert [run["profile"] for run in runs] == ["seed", "fast"]
    assert runs[0]["path"].endswith("b_seed.json")


def test_epochs_to_target_is_the_first_epoch_reaching_87_percent_and_the_seconds_spent_until_then():
    epochs = synthetic_run(test_accs=(0.5, 0.8699, 0.87, 0.95), seconds=2.5)["history"]["epochs"]
    assert results.epochs_to_target(epochs) == (3, 7.5)
    assert results.epochs_to_target(epochs, target=0.99) == (None, None)


@pytest.mark.parametrize(
    "corrupt, field",
    [
        (lambda run: run.pop("device"), "device"),
        (lambda run: run.update(final_test_acc=88.7), "final_test_acc"),
        (lambda run: run.update(final_test_acc="0.9"), "final_test_acc"),
        (lambda run: run["history"]["epochs"][1].pop("test_acc"), "history"),
        (lambda run: run.update(class_accuracy=[0.9] * 9), "class_accuracy"),
        (lambda run: run.update(confusion_matrix=[[0] * 10] * 9), "confusion_matrix"),
        (lambda run: run.update(schema=99), "schema"),
    ],
)
def test_a_malformed_run_file_is_rejected_naming_the_file_and_field(tmp_path, corrupt, field):
    run = synthetic_run()
    corrupt(run)
    write(tmp_path, "bad.json", run)
    with pytest.raises(ValueError, match=rf"bad\.json.*{field}"):
        results.load_recorded_runs(tmp_path)


def test_invalid_json_is_rejected_naming_the_file(tmp_path):
    (tmp_path / "broken.json").write_text('{"profile": ')
    with pytest.raises(ValueError, match=r"broken\.json.*not valid JSON"):
        results.load_recorded_runs(tmp_path)


def test_reference_run_holds_the_course_numbers():
    ref = results.REFERENCE_RUN
    assert ref["final_test_acc"] == 0.887 and ref["final_train_acc"] == 0.982 and ref["epochs"] == 50
    assert ref["class_accuracy"] == {
        "plane": 0.94,
        "car": 0.95,
        "bird": 0.75,
        "cat": 0.83,
        "deer": 0.97,
        "dog": 0.86,
        "frog": 0.93,
        "horse": 0.90,
        "ship": 1.00,
        "truck": 0.97,
    }


def test_class_accuracy_table_has_a_row_per_class_plus_overall_and_a_column_per_run():
    runs = [synthetic_run("seed"), synthetic_run("fast", test_accs=(0.7, 0.94))]
    table = results.class_accuracy_table(runs)
    assert table.columns[:2] == ["test accuracy (%)", "reference"] and len(table.columns) == 4
    assert [row[0] for row in table.rows] == list(results.REFERENCE_RUN["class_accuracy"]) + ["overall"]
    assert table.rows[0][1:] == [94.0, 90.0, 90.0]  # plane: reference 94 %, both runs 90 %
    assert table.rows[-1][1:] == [88.7, 90.0, 94.0]
    markdown = table.to_markdown().splitlines()
    assert len(markdown) == 2 + 11 and markdown[2].startswith("| plane | 94.0 |")
    assert table.to_html().count("<tr>") == 12
    assert "ship" in str(table)


def test_class_accuracy_table_without_runs_shows_only_the_reference():
    table = results.class_accuracy_table([])
    assert table.columns == ["test accuracy (%)", "reference"] and len(table) == 11


def test_run_summary_reports_percentages_epochs_to_target_and_median_epoch_time():
    run = synthetic_run(test_accs=(0.5, 0.88, 0.9), seconds=4.0)
    run["history"]["epochs"][0]["seconds"] = 30.0  # a slow first epoch (compilation, cache warm-up)
    summary = results.run_summary(run)
    assert summary["final_test_acc"] == 90.0
    assert summary["epochs_to_target"] == 2
    assert summary["median_epoch_seconds"] == 4.0
    assert summary["median_train_images_per_s"] is None  # a record from before fit kept images/s
    assert summary["date"] == "2025-01-02"
    table = results.summary_table([run])
    assert [row[0] for row in table.rows] == ["reference", "seed"]
    assert all(len(row) == len(table.columns) for row in table.rows)
    for row, rate in zip(run["history"]["epochs"], (1000.0, 3000.0, 2000.0)):
        row["train_images_per_s"] = rate
    assert results.run_summary(run)["median_train_images_per_s"] == 2000


def test_weights_table_lists_the_published_file_and_its_reload_check():
    run, older = synthetic_run("fast", test_accs=(0.5, 0.9063)), synthetic_run("seed")
    run["weights"] = {
        "file": "resnet18-fast-7ddcfbb6.pt",
        "sha256": "7ddcfbb6" + "0" * 56,
        "dtype": "float16",
        "scored_on": "cuda",
        "test_acc_float32": 0.9061,
        "test_acc_float32_flip_tta": 0.9107,
        "matches_record": True,
        "tolerance": 0.001,
    }
    table = results.weights_table([older, run])  # a run without published weights has no row
    assert table.rows == [["fast", "resnet18-fast-7ddcfbb6.pt", "7ddcfbb600000000", "90.63", "90.61", "yes", "91.07"]]
    assert "| fast | resnet18-fast-7ddcfbb6.pt |" in table.to_markdown()


def test_provenance_names_the_machine_and_package_versions():
    info = results.provenance()
    assert info["machine"]["cores"] >= 1 and info["machine"]["cpu"]
    assert info["versions"]["torch"] and info["versions"]["python"]
    assert info["date"][:2] == "20"


def test_run_history_feeds_the_training_curves_figure():
    from eva9.plots import training_curves

    history = results.run_history(synthetic_run(test_accs=(0.5, 0.9)))
    assert history.column("test_acc") == [0.5, 0.9]
    loss_ax, acc_ax = training_curves(history).axes
    test_line = next(line for line in acc_ax.get_lines() if line.get_label() == "test")
    assert list(test_line.get_xdata()) == [1, 2] and list(test_line.get_ydata()) == [50.0, 90.0]


@pytest.mark.parametrize("name", ["seed", "fast"])
def test_the_appendix_renders_the_real_record_files(name):
    """What book/results.md shows, from the records in results/: tables and curves carry the recorded numbers."""
    from eva9.plots import training_curves

    path = results.RESULTS_DIR / f"{name}.json"
    run = results.load_run_file(path)
    assert {k: v for k, v in run.items() if k != "path"} == json.loads(path.read_text())
    [row] = results.summary_table([run], reference=False).rows
    summary = dict(zip(results.SUMMARY_HEADERS, row))
    assert summary["profile"] == name and summary["epochs"] == len(run["history"]["epochs"])
    assert summary["final_test_acc"] == round(100 * run["final_test_acc"], 1)
    assert summary["best_test_acc"] == round(100 * max(e["test_acc"] for e in run["history"]["epochs"]), 1)
    markdown = results.summary_table([run]).to_markdown()
    assert f"| {name} |" in markdown and f"{100 * run['final_test_acc']:.1f}" in markdown
    overall = results.class_accuracy_table([run]).rows[-1]
    assert overall == [
        "overall",
        round(100 * results.REFERENCE_RUN["final_test_acc"], 1),
        round(100 * run["final_test_acc"], 1),
    ]
    [weights] = results.weights_table([run]).rows
    assert weights[1] == run["weights"]["file"] and weights[3] == f"{100 * run['final_test_acc']:.2f}"
    loss_ax, acc_ax = training_curves(results.run_history(run), label_smoothing=run["config"]["label_smoothing"]).axes
    test_line = next(line for line in acc_ax.get_lines() if line.get_label() == "test")
    assert list(test_line.get_ydata()) == [100 * e["test_acc"] for e in run["history"]["epochs"]]
    smoothing = run["config"]["label_smoothing"]
    assert ("label-smoothed" in loss_ax.get_lines()[0].get_label()) == (smoothing > 0)


def test_a_transposed_table_has_one_row_per_field_and_one_column_per_run():
    table = results.summary_table([synthetic_run("seed"), synthetic_run("fast")])
    turned = table.transpose()
    assert turned.columns == ["run", "reference", "seed", "fast"]
    assert [row[0] for row in turned.rows] == table.columns[1:]
    epochs = table.columns.index("epochs")  # a header, as the transposed table's first column shows it
    assert [row for row in turned.rows if row[0] == "epochs"][0][1:] == [row[epochs] for row in table.rows]


def test_the_appendix_tables_have_human_headers_with_units():
    run = synthetic_run("fast", test_accs=(0.5, 0.9063))
    run["weights"] = {
        "file": "w.pt",
        "sha256": "0" * 64,
        "test_acc_float32": 0.9,
        "test_acc_float32_flip_tta": 0.91,
        "matches_record": True,
    }
    tables = [results.summary_table([run]), results.weights_table([run]), results.class_accuracy_table([run])]
    headers = [header for table in tables for header in table.columns]
    assert not [h for h in headers if "_" in h], "a raw key as a header"
    summary = dict(zip(results.SUMMARY_HEADERS, results.summary_table([run]).columns))
    assert summary["final_test_acc"] == "final test accuracy (%)"
    assert summary["median_train_images_per_s"] == "median training speed (images/s)"
    assert summary["seconds_to_target"] == "time to 87 % test accuracy (s)"
    assert results.weights_table([run]).columns[3] == "test accuracy recorded in training (%)"
    assert results.class_accuracy_table([run]).columns[0] == "test accuracy (%)"
    assert list(results.SUMMARY_HEADERS) == list(results.run_summary(run))  # one header per field, in order


def test_a_model_card_says_what_the_weights_are_for_their_data_accuracy_calibration_and_limits():
    run = synthetic_run("seed", test_accs=(0.5, 0.88))
    run["name"] = "seed"
    run["config"] = {"model": "resnet18", "batch_size": 128, "lr": 0.01, "schedule": "constant", "test_per_class": 50}
    run["weights"] = {"file": "resnet18-seed-0123abcd.pt", "sha256": "0123abcd" * 8, "dtype": "float16"}
    card = results.model_card(run)
    assert "**seed**" in card and "`resnet18-seed-0123abcd.pt`" in card and "11,173,962 parameters" in card
    assert "*Data*: train: CIFAR-10 train, all 50,000 images; test: CIFAR-10 test, 50 per class" in card
    assert "88.00%" in card and "cat 90.0%" in card
    assert "*Calibration*: not measured for this record" in card
    assert "32×32" in card and "*Limitations*" in card
    assert "*Data reader*" in card and "runs nothing from a file" in card and "0–9" in card
    run["weights"]["calibration"] = {"ece": 0.0321, "bins": 15}
    run["data"] = {"train": "official", "test": "jpeg75"}
    card = results.model_card(run)
    assert "3.21% expected calibration error" in card
    assert "train: CIFAR-10 train, all 50,000 images, from the official CIFAR-10 images, lossless" in card
    data = results.manifest_entry(run)["meta"]["data"]  # a record's own "data" flows into the manifest
    assert data["test"] == f"CIFAR-10 test, 50 per class, from {results.DATA_SOURCES['jpeg75']}"


def official_score(accuracy: float = 0.8854, tta: float = 0.8912) -> dict:
    return {
        "test_images": 10_000,
        "test_acc_float32": accuracy,
        "test_acc_float32_flip_tta": tta,
        "scored_on": "cpu",
        "date": "2026-12-01T09:00:00+00:00",
    }


@pytest.mark.parametrize(
    "change, field",
    [
        ({"data": {"train": "jpeg75"}}, "data"),
        ({"data": {"train": "jpeg75", "test": "jpeg-90"}}, "data"),
        ({"rescored": {"ciFAIR": official_score()}}, "rescored"),
        ({"rescored": {"official": {"test_acc_float32": 0.9}}}, "rescored"),
        ({"rescored": {"official": official_score(accuracy=88.5)}}, "rescored"),
    ],
)
def test_a_record_naming_an_unknown_copy_or_a_malformed_rescore_is_rejected(tmp_path, change, field):
    write(tmp_path, "bad.json", {**synthetic_run(), **change})
    with pytest.raises(ValueError, match=rf"bad\.json.*{field}"):
        results.load_recorded_runs(tmp_path)


def test_update_record_adds_a_rescore_beside_the_recorded_numbers_and_leaves_them_alone(tmp_path):
    run = synthetic_run()
    write(tmp_path, "seed.json", run)
    path = tmp_path / "seed.json"
    results.update_record(
        path, {"data": {"train": "jpeg75", "test": "jpeg75"}, "rescored": {"jpeg75": official_score()}}
    )
    updated = results.update_record(path, {"rescored": {"official": official_score()}})
    on_disk = json.loads(path.read_text())
    assert on_disk == {
        **run,
        "data": {"train": "jpeg75", "test": "jpeg75"},
        "rescored": {"jpeg75": official_score(), "official": official_score()},
    }
    assert updated["final_test_acc"] == run["final_test_acc"] and "path" not in on_disk
    assert [p.name for p in tmp_path.iterdir()] == ["seed.json"]  # no temporary file left behind
    with pytest.raises(ValueError, match="rescored"):
        results.update_record(path, {"rescored": {"official": {"test_acc_float32": 2.0}}})
    assert json.loads(path.read_text()) == on_disk  # a refused change writes nothing


def test_data_table_names_each_runs_copies_and_its_score_on_the_official_images():
    run = {**synthetic_run(), "data": {"train": "jpeg75", "test": "jpeg75"}, "rescored": {"official": official_score()}}
    table = results.data_table([run, synthetic_run("fast")])
    assert table.rows == [
        ["seed", "jpeg75", "jpeg75", "90.00", "10,000", "88.54", "89.12"],
        ["fast", "not recorded", "not recorded", "90.00", None, None, None],
    ]
    assert results.data_description(run).startswith("trained and tested on a JPEG copy at quality 75")


def test_every_recorded_run_says_which_copy_it_was_trained_and_tested_on_and_seeds_official_score():
    runs = {run["name"]: run for run in results.load_recorded_runs(results.RESULTS_DIR)}
    assert "seed" in runs
    for run in runs.values():
        assert run["data"]["train"] in results.DATA_SOURCES and run["data"]["test"] in results.DATA_SOURCES
        for score in run.get("rescored", {}).values():
            assert score["weights_sha256"] == run["weights"]["sha256"]  # the published weights, not others
    official = runs["seed"]["rescored"]["official"]
    assert official["test_images"] == 10_000 and official["scored_on"] == "cpu"
    assert official["weights_sha256"] == runs["seed"]["weights"]["sha256"]
