"""eva9.data: both local layouts, the download path, clear errors, subsets, statistics and loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fake_image

import eva9.data as data
import eva9.data.datasets as datasets
import eva9.data.loading as loading
import eva9.transforms as T
from eva9.data import CLASSES, MEAN, STD, CIFAR10Error, channel_stats, cifar10, dataset_root, loaders, per_class_subset


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """A [0, 1] CHW tensor back to the uint8 HWC image it came from."""
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture
def no_download(monkeypatch):
    """Make any torchvision download attempt fail the test."""
    import torchvision.datasets

    def forbidden(*args, **kwargs):
        raise AssertionError("torchvision.datasets.CIFAR10 was called although a local copy was named")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", forbidden)


def assert_explains(error: pytest.ExceptionInfo, *fragments: str) -> None:
    """The message names each fragment, both accepted layouts and EVA9_DATA_DIR."""
    message = str(error.value)
    for fragment in (*fragments, "cifar-10-batches-py", "train/<class>", "EVA9_DATA_DIR"):
        assert fragment in message, f"{fragment!r} not in message: {message}"


# ----------------------------------------------------------------------------------------------- image-folder layout


def test_image_folder_items_are_the_written_images_with_cifar_labels(tiny_folder, no_download):
    train, test = cifar10("train", root=tiny_folder), cifar10("test", root=tiny_folder)
    assert (len(train), len(test)) == (40, 20)
    assert train.classes == list(CLASSES)
    assert train.targets == [label for label in range(10) for _ in range(4)]
    x, label = train[4 * 3 + 2]  # the third image in train/cat
    assert label == CLASSES.index("cat") == 3
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(as_uint8(x), fake_image(3, 2))


def test_image_folder_feeds_albumentations_hwc_uint8(tiny_folder):
    seen = []

    def spy(image):
        seen.append((image.dtype, image.shape))
        return {"image": "out"}

    dataset = cifar10("test", root=tiny_folder, transform=spy)
    assert dataset[0] == ("out", 0)
    assert seen == [(np.uint8, (32, 32, 3))]
    dataset.transform = None  # reassignable
    assert isinstance(dataset[0][0], torch.Tensor)


def test_jpeg_folders_load(make_image_folder):
    root = make_image_folder(n_train=1, n_test=1, suffix=".jpg")
    x, label = cifar10("train", root=root)[9]
    assert label == 9 and x.shape == (3, 32, 32)


def test_env_var_names_the_copy_when_no_root_is_given(tiny_folder, monkeypatch, no_download):
    monkeypatch.setenv("EVA9_DATA_DIR", str(tiny_folder))
    assert dataset_root() == tiny_folder
    assert dataset_root("elsewhere") == Path("elsewhere")
    assert len(cifar10("test")) == 20
    monkeypatch.delenv("EVA9_DATA_DIR")
    assert dataset_root() is None


# ----------------------------------------------------------------------------------------------- torchvision layout


@pytest.mark.parametrize("name_parent", [False, True], ids=["batches-folder", "its-parent"])
def test_torchvision_batches_load_from_the_folder_or_its_parent(make_batches_folder, no_download, name_parent):
    folder = make_batches_folder(n_per_batch=6)
    root = folder.parent if name_parent else folder
    train, test = cifar10("train", root=root), cifar10("test", root=root)
    assert (len(train), len(test)) == (30, 6)
    assert isinstance(train.images, np.ndarray) and train.images.dtype == np.uint8
    assert train.images.shape == (30, 32, 32, 3)
    # item 7 is image 1 of data_batch_2 (b=1), whose label is (1 + 1) % 10
    x, label = train[7]
    assert label == 2
    np.testing.assert_array_equal(as_uint8(x), fake_image(2, 101))
    assert test.targets == [(5 + i) % 10 for i in range(6)]


# ----------------------------------------------------------------------------------------------- errors


def test_missing_folder_names_the_path_the_layouts_and_the_env_var(tmp_path, no_download):
    missing = tmp_path / "nowhere"
    with pytest.raises(CIFAR10Error) as error:
        cifar10("train", root=missing)
    assert_explains(error, str(missing), "does not exist")
    assert isinstance(error.value, FileNotFoundError) and isinstance(error.value, ValueError)


def test_folder_that_is_no_cifar_copy_is_explained(tmp_path, no_download):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(CIFAR10Error) as error:
        cifar10("train", root=tmp_path)
    assert_explains(error, str(tmp_path), "not a CIFAR-10 copy")


def test_missing_and_extra_class_folders_are_named(tiny_folder, no_download):
    (tiny_folder / "train" / "deer").rename(tiny_folder / "train" / "moose")
    with pytest.raises(CIFAR10Error) as error:
        cifar10("train", root=tiny_folder)
    assert_explains(error, str(tiny_folder / "train"), "missing class folder(s) deer", "unexpected folder(s) moose")
    assert len(cifar10("test", root=tiny_folder)) == 20  # the other split is fine


def test_unreadable_image_is_named_when_it_is_decoded(tiny_folder):
    bad = tiny_folder / "train" / "ship" / "0001.png"
    bad.write_bytes(b"this is not a png")
    dataset = cifar10("train", root=tiny_folder)  # listing does not decode
    dataset[0]
    with pytest.raises(CIFAR10Error) as error:
        dataset[8 * 4 + 1]
    assert_explains(error, str(bad), "cannot read image file")


class RunsCode:
    """Unpickling this calls ``os.mkdir(marker)``: what a crafted batch file could do with any function."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (str(self.marker),))


def test_a_crafted_batch_file_is_refused_naming_it_and_runs_no_code(make_batches_folder, tmp_path):
    import pickle

    folder = make_batches_folder(n_per_batch=2)
    marker = tmp_path / "the-pickle-ran"
    (folder / "data_batch_2").write_bytes(pickle.dumps({"data": RunsCode(marker), "labels": [0, 1]}))
    with pytest.raises(CIFAR10Error, match="refused the CIFAR-10 batch file") as error:
        cifar10("train", root=folder)
    assert str(folder / "data_batch_2") in str(error.value) and "posix.mkdir" in str(error.value)
    assert not marker.exists()
    assert len(cifar10("test", root=folder)) == 2  # the official layout still reads


def test_unreadable_batch_file_is_named(make_batches_folder):
    folder = make_batches_folder(n_per_batch=2)
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(CIFAR10Error) as error:
        cifar10("train", root=folder)
    assert_explains(error, str(folder / "data_batch_3"))
    (folder / "test_batch").unlink()
    with pytest.raises(CIFAR10Error) as error:
        cifar10("test", root=folder)
    assert_explains(error, str(folder / "test_batch"), "missing")


def test_without_a_copy_download_false_refuses_clearly(tmp_path, monkeypatch, no_download):
    monkeypatch.delenv("EVA9_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CIFAR10Error) as error:
        cifar10("train", download=False)
    assert_explains(error, str(tmp_path / "data"), "download=False")


def test_failed_download_is_explained(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets

    calls = []

    def offline(root, train, download):
        calls.append((root, train, download))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    monkeypatch.delenv("EVA9_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CIFAR10Error) as error:
        cifar10("test")
    assert calls == [("data", False, True)]
    assert_explains(error, "could not download", "offline", str(tmp_path / "data"))


def test_bad_split_is_rejected(tiny_folder):
    with pytest.raises(ValueError, match="split"):
        cifar10("validation", root=tiny_folder)


# ----------------------------------------------------------------------------------------------- subsets


def test_per_class_subset_is_stratified_and_deterministic(tiny_folder):
    dataset = cifar10("train", root=tiny_folder)
    a = per_class_subset(dataset, 2, seed=1)
    assert np.bincount(a.targets, minlength=10).tolist() == [2] * 10
    assert per_class_subset(dataset, 2, seed=1).images.paths == a.images.paths
    draws = {tuple(per_class_subset(dataset, 2, seed=s).images.paths) for s in range(5)}
    assert len(draws) > 1, "different seeds should pick different items"
    # labels still match the images they came from
    for path, label in zip(a.images.paths, a.targets):
        assert path.parent.name == CLASSES[label]
    with pytest.raises(ValueError, match="n_per_class=5"):
        per_class_subset(dataset, 5, seed=0)


def test_per_class_subset_decodes_nothing_until_used(tiny_folder, monkeypatch):
    decoded = []
    real_read = datasets._read_image
    monkeypatch.setattr(datasets, "_read_image", lambda path: decoded.append(path) or real_read(path))
    subset = per_class_subset(cifar10("train", root=tiny_folder), 1, seed=0)
    assert decoded == []
    subset.transform = T.test_transforms()  # transform can be set on the subset
    x, _ = subset[3]
    assert x.shape == (3, 32, 32) and decoded == [subset.images.paths[3]]
    subset[3]
    assert len(decoded) == 1, "a decoded image is cached"


def test_decoding_into_one_array_holds_the_images_once(make_image_folder):
    import tracemalloc

    files = cifar10("train", root=make_image_folder(n_train=20, n_test=1)).images
    tracemalloc.start()
    try:
        array = files.to_array()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert array.shape == (200, 32, 32, 3)
    assert peak < 1.5 * array.nbytes, "images are decoded straight into the array, not first one by one"
    assert all(files[i].base is array for i in range(len(files))), "the cache holds views of the array"


def test_per_class_subset_of_an_array_dataset(make_batches_folder):
    dataset = cifar10("train", root=make_batches_folder(n_per_batch=10))  # 5 images per class
    subset = per_class_subset(dataset, 3, seed=0)
    assert np.bincount(subset.targets).tolist() == [3] * 10
    assert subset.images.shape == (30, 32, 32, 3)


# ----------------------------------------------------------------------------------------------- statistics


def test_channel_stats_match_numpy_on_the_images(tiny_folder):
    dataset = cifar10("train", root=tiny_folder)
    pixels = np.stack([fake_image(label, i) for label in range(10) for i in range(4)]).reshape(-1, 3) / 255.0
    mean, std = channel_stats(dataset)
    np.testing.assert_allclose(mean, pixels.mean(0), atol=1e-9)
    np.testing.assert_allclose(std, pixels.std(0), atol=1e-9)
    # a subset, and the slow item-by-item path on a generic Subset, agree with numpy too
    subset = per_class_subset(dataset, 2, seed=3)
    sub_pixels = subset.uint8_images().reshape(-1, 3) / 255.0
    np.testing.assert_allclose(channel_stats(subset)[0], sub_pixels.mean(0), atol=1e-9)
    generic = torch.utils.data.Subset(dataset, range(len(dataset)))
    np.testing.assert_allclose(channel_stats(generic)[1], pixels.std(0), atol=1e-6)


# ----------------------------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("workers", [0, 1])
def test_loaders_same_seed_same_first_batch_augmentation_included(tiny_folder, workers):
    def first_batch(seed):
        train, _ = loaders(tiny_folder, batch_size=8, workers=workers, seed=seed, device="cpu")
        return next(iter(train))

    x1, y1 = first_batch(0)
    x2, y2 = first_batch(0)
    assert x1.shape == (8, 3, 32, 32) and x1.dtype == torch.float32
    assert torch.equal(y1, y2) and torch.equal(x1, x2)
    x3, y3 = first_batch(1)
    assert not (torch.equal(y1, y3) and torch.equal(x1, x3))


def test_loader_settings(tiny_folder, monkeypatch):
    monkeypatch.setattr(loading, "default_workers", lambda: 0)
    train, test = loaders(tiny_folder, batch_size=16, train_per_class=3, test_per_class=1, device="cpu")
    assert len(train.dataset) == 30 and len(test.dataset) == 10
    assert train.drop_last and len(train) == 1  # 30 images, batches of 16: the partial batch is dropped
    assert not test.drop_last and len(test) == 1
    assert train.num_workers == 0 and not train.pin_memory
    _, labels = next(iter(test))
    assert labels.tolist() == list(range(10)), "the test loader keeps dataset order"
    # the selected images were decoded once into one array for the workers to share
    assert isinstance(train.dataset.images, np.ndarray) and train.dataset.images.shape == (30, 32, 32, 3)
    one, _ = loaders(tiny_folder, batch_size=4, workers=1, device="cpu")
    assert one.persistent_workers and one.num_workers == 1
    for loader in loaders(tiny_folder, batch_size=4, workers=0, device=torch.device("cuda")):  # not iterated
        assert loader.pin_memory, "batches bound for a GPU come from pinned memory"


def test_test_loader_rebuilds_the_test_half_of_loaders(tiny_folder):
    _, expected = loaders(
        tiny_folder, batch_size=4, train_per_class=2, test_per_class=1, seed=3, workers=0, device="cpu"
    )
    alone = data.test_loader(tiny_folder, batch_size=4, per_class=1, seed=3, workers=0, device="cpu")
    assert not alone.drop_last and len(alone.dataset) == 10
    for (x1, y1), (x2, y2) in zip(expected, alone, strict=True):
        assert torch.equal(y1, y2) and torch.equal(x1, x2)
    other_seed = data.test_loader(tiny_folder, batch_size=10, per_class=1, seed=4, workers=0, device="cpu")
    all_expected = torch.cat([x for x, _ in expected])
    assert not torch.equal(next(iter(other_seed))[0], all_expected), "the subset follows the seed"


@pytest.mark.parametrize("cores, workers", [(1, 1), (2, 1), (4, 3), (16, 15), (33, 32), (128, 32)])
def test_default_workers_leave_one_usable_core_to_the_training_loop(monkeypatch, cores, workers):
    monkeypatch.setattr(loading, "_usable_cores", lambda: cores)
    assert data.default_workers() == workers


def test_usable_cores_follow_the_affinity_mask(monkeypatch):
    import os

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity masks on this OS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert loading._usable_cores() == 3


def test_batch_larger_than_train_subset_is_refused(tiny_folder):
    with pytest.raises(ValueError, match=r"batch_size=32 .*train_per_class=2"):
        loaders(tiny_folder, batch_size=32, train_per_class=2, workers=0, device="cpu")


# ----------------------------------------------------------------------------------------------- the real copy


def test_real_copy_has_cifar_sizes_and_label_order(cifar_root):
    train, test = cifar10("train", root=cifar_root), cifar10("test", root=cifar_root)
    assert (len(train), len(test)) == (50_000, 10_000)
    assert np.bincount(train.targets).tolist() == [5000] * 10
    assert np.bincount(test.targets).tolist() == [1000] * 10
    if isinstance(train.images, data.ImageFiles):  # each label is the index of its folder's class
        assert all(p.parent.name == CLASSES[t] for p, t in zip(train.images.paths[::997], train.targets[::997]))


def test_real_copy_statistics_agree_with_mean_and_std(cifar_root):
    subset = per_class_subset(cifar10("train", root=cifar_root), 100, seed=0)  # decodes 1,000 images
    mean, std = channel_stats(subset)
    np.testing.assert_allclose(mean, MEAN, atol=0.02)
    np.testing.assert_allclose(std, STD, atol=0.02)


def test_the_real_training_loader_augments_and_each_epoch_anew(cifar_root):
    train, _ = loaders(cifar_root, batch_size=20, workers=0, train_per_class=2, test_per_class=1, device="cpu")
    plain = torch.stack([T.test_transforms()(image=image)["image"] for image in train.dataset.images])

    def epoch(number: int) -> torch.Tensor:
        """The epoch's augmented images, put back in dataset order."""
        train.sampler.set_epoch(number)
        order = [index for index, _ in train.sampler]
        train.sampler.set_epoch(number)
        images, labels = next(iter(train))
        assert labels.tolist() == [train.dataset.targets[i] for i in order]
        return images[torch.argsort(torch.tensor(order))]

    first, second = epoch(0), epoch(1)
    changed = [not torch.equal(first[i], plain[i]) for i in range(20)]
    assert sum(changed) >= 18, "nearly every training image is cropped, flipped or cut (1/9 · 1/2 · 1/2 are not)"
    assert sum(not torch.equal(first[i], second[i]) for i in range(20)) >= 18, "the next epoch augments anew"
    assert torch.equal(epoch(0), first), "an epoch's augmentation is a function of (seed, epoch, index)"


def test_epoch_sampler_order_and_seeds_depend_on_seed_and_epoch_only():
    sampler = data.EpochSampler(50, seed=3)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(50)) and len({s for _, s in first}) == 50
    second = list(sampler)
    assert second != first, "each pass is the next epoch"
    again = data.EpochSampler(50, seed=3)
    again.set_epoch(1)
    assert list(again) == second, "set_epoch(1) on a new sampler (a resumed run) gives epoch 1 again"
    assert list(data.EpochSampler(50, seed=4)) != first
    assert dict(first) != dict(second), "each epoch gives every image a new augmentation seed"


def test_a_copy_holding_both_layouts_is_read_from_its_batches(make_batches_folder, make_image_folder, tmp_path):
    root = tmp_path / "both"
    make_batches_folder(root)
    make_image_folder(root, suffix=".jpg")
    test = cifar10("test", root=root)
    assert len(test) == 10 and not isinstance(test.images, data.ImageFiles)
    assert data.copy_kind(root) == "official"
    assert data.copy_kind(make_image_folder(tmp_path / "folders-only")) == "image-folder"


def test_a_jpeg_copy_keeps_labels_and_moves_pixels_by_a_few_grey_levels(make_batches_folder):
    test = cifar10("test", root=make_batches_folder().parent)
    ramp = 4 * np.arange(32)[None, :, None] + 2 * np.arange(32)[:, None, None] + np.zeros(3, int)  # smooth, grey
    test.images = np.stack([np.roll(ramp, i, axis=1) for i in range(len(test))]).astype(np.uint8)
    for quality, most in ((95, 2.0), (75, 5.0)):
        encoded = data.jpeg_copy(test, quality)
        assert encoded.targets == test.targets and encoded.uint8_images().shape == test.uint8_images().shape
        assert 0 < data.pixel_difference(test, encoded) < most
    assert data.pixel_difference(test, test) == 0.0
    assert data.pixel_difference(data.jpeg_copy(test, 95), test) < data.pixel_difference(data.jpeg_copy(test, 10), test)
    with pytest.raises(ValueError, match="quality"):
        data.jpeg_copy(test, 0)


def test_pixel_difference_is_the_mean_absolute_difference_in_grey_levels(make_batches_folder):
    test = cifar10("test", root=make_batches_folder().parent)
    brighter = test.subset(range(len(test)))
    brighter.images = test.images.copy()
    brighter.images[:, :, :16] = np.minimum(brighter.images[:, :, :16].astype(int) + 1, 255).astype(np.uint8)
    assert data.pixel_difference(test, brighter) == pytest.approx(0.5)  # +1 on half the pixels (none is 255)


def test_the_real_copy_is_the_official_one_read_losslessly(cifar_root):
    """The shared copy holds both layouts; eva9 reads its cifar-10-batches-py, whose statistics are the archive's."""
    train = cifar10("train", root=cifar_root)
    assert data.copy_kind(cifar_root) == "official" and not isinstance(train.images, data.ImageFiles)
    mean, std = channel_stats(train)
    np.testing.assert_allclose(mean, MEAN, atol=5e-4)
    np.testing.assert_allclose(std, STD, atol=5e-4)
