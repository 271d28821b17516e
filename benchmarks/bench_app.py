"""The explorer app (``python -m eva9 app``) on the CPU: how long it takes to start, and what one photo costs.

- start-up: seconds from launching ``python -m eva9 app`` (a new process: imports, the default weights, Gradio) to
  the first page served on the loopback port;
- per photo, with the published default weights, one photo already shrunk to 32×32: the prediction (forward pass
  and softmax), the four-layer GradCAM maps (one forward and one backward pass), and the whole answer of the photo
  tab (the uploaded file read, shrunk, predicted, mapped, and the figure drawn as a PNG), interleaved; wall and
  CPU time (this process's, all threads), since on a shared machine the wall time mostly measures the others.

    python benchmarks/bench_app.py            # writes benchmarks/results/app.json
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from eva9 import app, photos  # noqa: E402

NAME = "app"
FULL = {"repeats": 20, "warmup": 2, "startups": 3, "threads": 1}
TINY = {"repeats": 1, "warmup": 0, "startups": 0, "threads": 1}
"""``threads``: torch's CPU threads (1: one core, the least disturbed by other processes; None: torch's default);
``startups``: how many fresh processes to time."""


def startup_seconds(timeout: float = 300.0) -> tuple[float, float]:
    """Wall seconds from starting ``python -m eva9 app`` on a free loopback port to its first page, and the CPU
    seconds the app's process used by the time it was stopped, right after."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "eva9", "app", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while time.perf_counter() - start < timeout:
            if process.poll() is not None:
                raise RuntimeError(f"the app exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    if response.status == 200:
                        wall = time.perf_counter() - start
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise TimeoutError(f"the app did not answer in {timeout} s")
    finally:
        process.terminate()
        _, status, usage = os.wait4(process.pid, 0)  # the child's own CPU time (Popen.wait would not report it)
        process.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime


def run(settings: dict = FULL, out: Path | None = common.RESULTS) -> dict:
    """Time the start-up and the three per-photo costs; print a table; return (and write) the record."""
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    explorer = app.Explorer()
    model = explorer.network(explorer.default)
    photo = app.sample_photo("Chelsea the cat")
    images = photos.photo_batch([photo])
    with tempfile.TemporaryDirectory() as folder:
        upload = Path(folder) / "cat.png"
        Image.fromarray(photo).save(upload)

        def predict():
            with torch.no_grad():
                return model(images).softmax(dim=1)

        contestants = {
            "prediction": predict,
            "maps, 4 layers": lambda: app.class_maps(model, images, app.LAYERS, "gradcam"),
            "whole answer": lambda: explorer.explain(upload, None, explorer.default, ["gradcam"], app.LAYERS),
        }
        cpu: dict[str, list[float]] = {}
        seconds = common.interleaved(contestants, settings["repeats"], settings["warmup"], cpu_seconds=cpu)
    startups = [startup_seconds() for _ in range(settings["startups"])]  # (wall, CPU) seconds
    ms = {name: 1000 * common.median(values) for name, values in seconds.items()}
    cpu_ms = {name: 1000 * common.median(values) for name, values in cpu.items()}
    rows = [[name, ms[name], cpu_ms[name]] for name in ms]
    title = f"The explorer app, one photo ({explorer.default} weights, {torch.get_num_threads()} threads), median"
    common.print_table(title, ["", "wall ms", "CPU ms"], rows)
    if startups:
        print("start-up to the first page: " + ", ".join(f"{wall:.1f} s ({cpu:.1f} s CPU)" for wall, cpu in startups))
    measurements = {
        "ms_per_photo": ms,
        "cpu_ms_per_photo": cpu_ms,
        "startup_seconds": [wall for wall, _ in startups],
        "startup_cpu_seconds": [cpu for _, cpu in startups],
    }
    return common.record(NAME, settings, measurements, out)


if __name__ == "__main__":
    run()
