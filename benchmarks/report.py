"""Print the latest benchmark numbers (``benchmarks/results/*.json``) as Markdown, for benchmarks/README.md.

python benchmarks/report.py [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def _load(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def markdown(results: Path = common.RESULTS) -> str:
    """The README's "Latest numbers" section body, built from the JSON records in ``results``."""
    out: list[str] = []
    records = [r for r in (_load(results, n) for n in ("engine", "gradcam", "pipeline", "memory")) if r]
    epoch = _load(results, "epoch")
    if not records and not epoch:
        return "No benchmark has been recorded yet."
    if not records:
        return epoch_breakdown(epoch)
    first = records[0]
    versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items() if v)
    out.append(
        f"Machine: {first['machine']['cpu']}, {first['machine']['cores']} cores ({first['machine']['platform']}); "
        f"{versions}."
    )

    engine = _load(results, "engine")
    if engine:
        s = engine["settings"]
        rate = engine["images_per_second"]
        threads = f"{s['threads']} torch thread" if s.get("threads") else "default torch threads"
        out += [
            "",
            f"**1. Engine overhead** ({engine['date'][:10]}; ResNet18, {s['batches']} fixed batch(es) of "
            f"{s['batch_size']} per round, {s['repeats']} interleaved rounds, {threads})",
            "",
            "| loop | images/s (median) |",
            "| --- | --- |",
            f"| bare PyTorch | {rate['bare']:.1f} |",
            f"| eva9 `train_one_epoch` | {rate['eva9']:.1f} |",
            "",
            f"eva9 / bare throughput: **{engine['ratio_eva9_to_bare']:.3f}×** by wall time, "
            f"{engine['cpu_ratio_eva9_to_bare']:.3f}× by CPU time (goal ≥ 0.95×).",
        ]
        layouts = engine.get("channels_last")
        if layouts:
            rate = layouts["images_per_second"]
            out += [
                "",
                f"Memory layout (one eva9 training step of {layouts['batch_size']}, {layouts['threads']} torch "
                f"thread(s), {len(layouts['seconds']['contiguous'])} interleaved rounds): contiguous "
                f"{rate['contiguous']:.1f} images/s, channels-last {rate['channels-last']:.1f} images/s: "
                f"**{layouts['ratio_channels_last_to_contiguous']:.3f}×**.",
            ]
    gradcam = _load(results, "gradcam")
    if gradcam:
        s = gradcam["settings"]
        out += [
            "",
            f"**2. GradCAM and its family** ({gradcam['date'][:10]}; ResNet18, random init, {s['images']} images, "
            f"{s['repeats']} interleaved repeats)",
            "",
            "| method, maps for | grad-cam, one object per layer (s) | eva9, one pass (s) | eva9 / grad-cam time "
            "| goal |",
            "| --- | --- | --- | --- | --- |",
        ]
        for case, times in gradcam["seconds"].items():
            goal = gradcam["goal"][case].replace("<=", "≤") + "×"
            out.append(
                f"| {case} | {common.median(times['reference']):.2f} | {common.median(times['eva9']):.2f} | "
                f"**{gradcam['time_ratio_eva9_to_reference'][case]:.2f}×** | {goal} |"
            )
    pipeline = _load(results, "pipeline")
    if pipeline:
        s = pipeline["settings"]
        per_worker = pipeline["images_per_second_per_worker"]
        workers = pipeline["workers_to_feed_gpu_projection"]
        out += [
            "",
            f"**3. Input pipeline** ({pipeline['date'][:10]}; {s['images']} images: {s['source']}; "
            f"{s['repeats']} interleaved repeats, one torch thread as in a DataLoader worker)",
            "",
            "| train pipeline | images/s per worker | workers to feed 25,000 images/s (projection) |",
            "| --- | --- | --- |",
        ]
        out += [f"| {name} | {rate:,.0f} | {workers[name]} |" for name, rate in per_worker.items()]
        out += ["", f"| DataLoader workers (eva9 pipeline, batch {s['batch_size']}) | images/s |", "| --- | --- |"]
        out += [f"| {w} | {rate:,.0f} |" for w, rate in pipeline["dataloader_images_per_second"].items()]
        if "device_batches_images_per_second_cpu" in pipeline:
            rate, threads = pipeline["device_batches_images_per_second_cpu"], pipeline["device_batches_threads"]
            out += [f'| `augment_on="device"` on the CPU ({threads} torch thread(s), no workers) | {rate:,.0f} |']
        out += [
            "",
            f"Projection from this CPU, not a GPU measurement: at "
            f"{per_worker['albumentations (eva9)']:,.0f} images/s per worker, a GPU consuming 25,000 images/s "
            f"needs about **{workers['albumentations (eva9)']} workers** (and as many free cores).",
        ]
    memory = _load(results, "memory")
    if memory:
        out += [
            "",
            f"**4. Peak memory** ({memory['date'][:10]}; peak RSS of the child process, VmHWM)",
            "",
            "| child | peak RSS (MiB) |",
            "| --- | --- |",
            f"| import torch + eva9, build ResNet18 | {memory['baseline_peak_rss_mib']:,.0f} |",
            f"| `fit` on the smoke profile | {memory['smoke_peak_rss_mib']:,.0f} |",
            "",
            f"Training adds {memory['training_adds_mib']:,.0f} MiB; the smoke run took "
            f"{memory['smoke_wall_seconds']:.0f} s here ({memory['child_output']}).",
        ]
    if epoch:
        out += ["", epoch_breakdown(epoch)]
    return "\n".join(out)


def epoch_breakdown(epoch: dict) -> str:
    """The table of ``bench_epoch.py``: images/s of each part of one epoch, per profile."""
    machine = epoch["machine"]
    where = machine["gpu"] or machine["cpu"]
    out = [
        f"**5. Where an epoch's time goes** ({epoch['date'][:10]}; {where}, {machine['cores']} CPU cores; "
        f"torch {epoch['versions']['torch']}; one full epoch of each part after a warm-up)",
        "",
        "| profile | batch | workers | input pipeline (img/s) | model (img/s) | real loop (img/s) | "
        "evaluation (img/s) | epoch (s) | limited by |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    from bench_epoch import limiting_part  # the label is derived from the rates, as the benchmark derives it now

    for p in epoch["profiles"]:
        rate = p["images_per_second"]
        out.append(
            f"| {p['profile']} | {p['batch_size']} | {p['workers']} | {rate['input pipeline']:,.0f} | "
            f"{rate['model']:,.0f} | {rate['real loop']:,.0f} | {rate['evaluation']:,.0f} | "
            f"{p['epoch_seconds']:.2f} | {limiting_part(rate)} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Print the Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results", type=Path, default=common.RESULTS, help="folder of the JSON (default: %(default)s)"
    )
    print(markdown(parser.parse_args(argv).results))


if __name__ == "__main__":
    main()
