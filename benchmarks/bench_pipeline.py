"""Input pipeline: images/s per worker of eva9's Albumentations train pipeline vs torchvision.transforms.v2,
DataLoader images/s at 0, 1 and 2 workers, and the same augmentation as whole batches of tensor operations
(``augment_on="device"``, :class:`eva9.data.device_batches.DeviceBatches`) with the CPU as the device.

A subset of the CIFAR-10 training images (``EVA9_DATA_DIR``, image-folder layout) is decoded once into memory,
so the numbers are augmentation + collation + worker transport, not JPEG decoding. Without ``EVA9_DATA_DIR`` the
benchmark falls back to random images (same shapes and dtype; the record says which was used). From the
per-worker rate it projects how many loader workers keep a GPU consuming 25,000 images/s fed — a projection from
this CPU, not a GPU measurement.

eva9's pipeline is timed as its loaders run it: reseeded for every image (``set_random_seed`` with the image's
seed from ``eva9.data.EpochSampler``) before augmenting it, and the DataLoader draws from an ``EpochSampler`` over
an ``eva9.data.CIFAR10Dataset``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from eva9.constants import IMAGE_FORMATS  # noqa: E402
from eva9.data import CLASSES, MEAN, STD, CIFAR10Dataset, EpochSampler  # noqa: E402
from eva9.data.device_batches import DeviceBatches  # noqa: E402
from eva9.transforms import train_transforms  # noqa: E402

NAME = "pipeline"
GPU_IMAGES_PER_SECOND = 25_000
DEVICE = 'augment_on="device" on the CPU'  # eva9.data.device_batches, timed in the same rounds
FULL = {"per_class": 200, "repeats": 5, "batch_size": 128, "workers": [0, 1, 2]}
QUICK = {"per_class": 50, "repeats": 3, "batch_size": 128, "workers": [0, 1, 2]}
TINY = {"per_class": 2, "repeats": 1, "batch_size": 4, "workers": [0, 1]}


def torchvision_train_transforms() -> v2.Compose:
    """The v2 twin of eva9's train pipeline: reflect-pad 4, crop 32, flip, normalize, erase a mean-filled 16×16."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Pad(4, padding_mode="reflect"),
            v2.RandomCrop(32),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
            # After normalisation the dataset mean is 0, so value=0 fills the hole with the mean colour; scale and
            # ratio pin the hole to exactly 16×16 (256 of 1024 pixels, square).
            v2.RandomErasing(p=0.5, scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.0),
        ]
    )


def decoded_images(per_class: int, root: str | None) -> tuple[list[np.ndarray], list[int], str]:
    """HWC uint8 RGB training images, ``per_class`` of each class, and a note on where they came from."""
    if root and Path(root, "train").is_dir():
        images, labels = [], []
        for label, name in enumerate(CLASSES):
            for path in sorted(Path(root, "train", name).iterdir())[:per_class]:
                with Image.open(path, formats=IMAGE_FORMATS) as image:
                    images.append(np.asarray(image.convert("RGB")))
                labels.append(label)
        return images, labels, f"CIFAR-10 train subset from {root}"
    generator = np.random.default_rng(0)
    count = per_class * len(CLASSES)
    images = list(generator.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8))
    return images, [i % len(CLASSES) for i in range(count)], "random images (EVA9_DATA_DIR not set)"


def loader_seconds(loader: DataLoader) -> float:
    """Seconds for one pass over the loader."""
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def run(settings: dict = FULL, out: Path | None = common.RESULTS, root: str | None = None) -> dict:
    """Measure both pipelines per worker and the DataLoader at several worker counts; print; record."""
    root = root if root is not None else os.environ.get("EVA9_DATA_DIR")
    images, labels, source = decoded_images(settings["per_class"], root)
    tensors = [torch.tensor(image).permute(2, 0, 1).contiguous() for image in images]  # v2 takes CHW uint8
    albumentations_pipeline, torchvision_pipeline = train_transforms(), torchvision_train_transforms()
    n = len(images)
    seeds = [(index, seed) for index, seed in EpochSampler(n, seed=0)]  # what the training loader hands each image

    def eva9_pipeline() -> list:
        out = []
        for index, seed in seeds:
            albumentations_pipeline.set_random_seed(seed)
            out.append(albumentations_pipeline(image=images[index])["image"])
        return out

    # A DataLoader worker runs torch with one thread; measure "per worker" the same way. (With two threads on a
    # busy 2-core machine, torch's thread pool turns a 0.1 ms padding of one image into several ms.)
    # augment_on="device" with the CPU as the device, in the same interleaved rounds and on one thread as well: whole
    # batches of tensor operations against one image at a time (its last partial batch is dropped, as in training).
    device_batches = DeviceBatches(np.stack(images), labels, batch_size=settings["batch_size"], device="cpu")
    device_images = len(device_batches) * device_batches.batch_size
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seconds = common.interleaved(
            {
                "albumentations (eva9)": eva9_pipeline,
                "torchvision.transforms.v2": lambda: [torchvision_pipeline(tensor) for tensor in tensors],
                DEVICE: lambda: list(device_batches),
            },
            repeats=settings["repeats"],
        )
    finally:
        torch.set_num_threads(threads)
    device_seconds = seconds.pop(DEVICE)
    device_rate = device_images / common.median(device_seconds)
    per_worker = {name: n / common.median(times) for name, times in seconds.items()}
    workers_for_gpu = {name: math.ceil(GPU_IMAGES_PER_SECOND / rate) for name, rate in per_worker.items()}
    common.print_table(
        f"Train augmentation, one process, {n} images ({source}), {settings['repeats']} interleaved repeats",
        ["pipeline", "images/s per worker", f"workers for {GPU_IMAGES_PER_SECOND:,} img/s"],
        [[name, per_worker[name], workers_for_gpu[name]] for name in per_worker],
    )
    print(
        "ratio albumentations / v2 throughput: "
        f"{per_worker['albumentations (eva9)'] / per_worker['torchvision.transforms.v2']:.2f}×"
    )

    dataset = CIFAR10Dataset(np.stack(images), labels, albumentations_pipeline)
    loader_rate = {}
    for workers in settings["workers"]:
        loader = DataLoader(
            dataset,
            batch_size=settings["batch_size"],
            sampler=EpochSampler(n, seed=0),
            drop_last=False,
            num_workers=workers,
            persistent_workers=workers > 0,
        )
        loader_seconds(loader)  # warm-up: starts the workers
        times = [loader_seconds(loader) for _ in range(settings["repeats"])]
        loader_rate[str(workers)] = n / common.median(times)
        del loader
    common.print_table(
        f"DataLoader with eva9's train pipeline, batch {settings['batch_size']}, {os.cpu_count()} CPU cores",
        ["workers", "images/s"],
        [[workers, rate] for workers, rate in loader_rate.items()] + [[f"{DEVICE}, 1 thread, no workers", device_rate]],
    )
    print(
        f"Projection from this CPU: a GPU consuming {GPU_IMAGES_PER_SECOND:,} images/s needs about "
        f"{workers_for_gpu['albumentations (eva9)']} workers at this CPU's per-worker rate "
        "(and as many free cores)."
    )
    return common.record(
        NAME,
        {**settings, "images": n, "source": source},
        {
            "seconds": seconds,
            "images_per_second_per_worker": per_worker,
            "ratio_albumentations_to_torchvision": per_worker["albumentations (eva9)"]
            / per_worker["torchvision.transforms.v2"],
            "dataloader_images_per_second": loader_rate,
            "device_batches_seconds": device_seconds,
            "device_batches_images": device_images,
            "device_batches_images_per_second_cpu": device_rate,
            "device_batches_threads": 1,
            "ratio_device_batches_to_albumentations": device_rate / per_worker["albumentations (eva9)"],
            "gpu_images_per_second": GPU_IMAGES_PER_SECOND,
            "workers_to_feed_gpu_projection": workers_for_gpu,
        },
        out,
    )


if __name__ == "__main__":  # same options as run.py, for this benchmark alone
    import run

    run.main(["--only", NAME, *sys.argv[1:]])
