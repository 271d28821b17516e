"""How long a first build takes: `make book` and `make test`, each in a clean clone, with the virtual environment
already in place.

python benchmarks/bench_build.py [--venv V] [--data-dir D] [--only book|test] [--keep] [--out DIR]

Each command runs in its own fresh clone of the checkout's last commit (uncommitted changes are not measured; the
record says whether there were any), as CI runs it: no `_build/`, no trained run in `book/runs/`, no `_vendor/`
(MathJax is fetched from npm, as on any first build). The environment given by `--venv` (default `.venv`) is used
as it is (`make VENV=... -o VENV/.installed`), with the clone first on PYTHONPATH so that its own package is the one
imported. `make test` is timed target by target, in the order of its prerequisites in the Makefile, which is what
`make test` runs; it stops at the first target that fails, and the record says which. The 1-minute load average
is sampled every 5 s throughout: on a machine shared with other jobs the times are longer than on an idle one.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FULL = {"book": ["book"], "test": None}  # None: the prerequisites of `test` in the Makefile
QUICK = FULL
TINY = {"book": ["citation"], "test": ["workflows", "citation"]}


def test_targets(makefile: Path = ROOT / "Makefile") -> list[str]:
    """The prerequisites of `make test`, in the order make runs them."""
    match = re.search(r"^test:([^\n]*)$", makefile.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"{makefile} has no `test:` rule")
    return match.group(1).split()


class LoadSampler:
    """The 1-minute load average every ``period`` seconds, in a background thread, until stopped."""

    def __init__(self, period: float = 5.0) -> None:
        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)
        self._thread.start()

    def _run(self, period: float) -> None:
        while not self._stop.wait(period):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])
        return {
            "min": round(min(self.samples), 2),
            "mean": round(sum(self.samples) / len(self.samples), 2),
            "max": round(max(self.samples), 2),
        }


def clean_clone(commit: str, parent: Path) -> Path:
    """A fresh clone of this repository at ``commit`` in ``parent``/eva9."""
    clone = parent / "eva9"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", commit], check=True)
    return clone


def time_targets(
    clone: Path, targets: list[str], venv: Path, env: dict[str, str], log: Path, progress=lambda partial: None
) -> dict:
    """Run ``make TARGET`` for each target in turn in ``clone``; wall seconds of each, up to the first failure.
    ``progress`` is called with the measurements so far after each target."""
    seconds: dict[str, float] = {}
    failed = None
    sampler = LoadSampler()
    with log.open("w") as out:
        for target in targets:
            command = ["make", f"VENV={venv}", "-o", f"{venv}/.installed", target]
            print(f"  {clone}: {' '.join(command)}", flush=True)
            start = time.perf_counter()
            done = subprocess.run(command, cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT)
            seconds[target] = round(time.perf_counter() - start, 1)
            print(f"    {seconds[target]:.0f} s, exit {done.returncode}", flush=True)
            progress({"seconds": seconds, "finished": False, "load_average_1min_so_far": sampler.samples})
            if done.returncode != 0:
                failed = target
                break
    return {
        "seconds": seconds,
        "finished": True,
        "total_seconds": round(sum(seconds.values()), 1),
        "failed": failed,
        "load_average_1min": sampler.stop(),
    }


def run(
    settings: dict = FULL,
    out: Path | None = common.RESULTS,
    venv: Path = ROOT / ".venv",
    root: str | None = None,
    only: str | None = None,
    keep: bool = False,
) -> dict:
    """Time `make book` and `make test` (or ``settings``' targets), each in its own clean clone; write the record."""
    venv = Path(venv).resolve()
    if not (venv / "bin" / "python").exists():
        raise SystemExit(f"{venv} is not a virtual environment: make setup first, or pass --venv")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True)
    # `make test` first: it builds the book too (book-strict), so if time runs out it has said the most.
    commands = {"test": settings["test"] or test_targets(), "book": settings["book"]}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if root or os.environ.get("EVA9_DATA_DIR"):
        env["EVA9_DATA_DIR"] = str(Path(root or os.environ["EVA9_DATA_DIR"]).resolve())
    settings_out = {
        "commit": commit.stdout.strip(),
        "uncommitted_changes": bool(status.stdout.strip()),
        "venv": str(venv),
        "data_dir": env.get("EVA9_DATA_DIR"),
        "cpus": os.cpu_count(),
    }
    name_out = "build" if only is None else f"build-{only}"
    measured: dict[str, dict] = {}
    parent = Path(tempfile.mkdtemp(prefix="eva9-bench-build-"))
    try:
        for name, targets in commands.items():
            if only not in (None, name):
                continue
            clone = clean_clone(commit.stdout.strip(), parent / name)
            print(f"make {name}: {' '.join(targets)}", flush=True)
            clone_env = {**env, "PYTHONPATH": str(clone)}

            def progress(partial: dict, name: str = name) -> None:
                common.record(name_out, settings_out, {"commands": {**measured, name: partial}}, out)

            measured[name] = time_targets(clone, targets, venv, clone_env, parent / f"{name}.log", progress)
            measured[name]["targets"] = targets
            if measured[name]["failed"]:
                log = (parent / f"{name}.log").read_text()[-3000:]
                print(f"make {measured[name]['failed']} failed; the end of its log:\n{log}", flush=True)
            common.record(name_out, settings_out, {"commands": measured}, out)  # what is measured so far
    finally:
        if keep:
            print(f"clones and logs kept in {parent}")
        else:
            shutil.rmtree(parent, ignore_errors=True)
    for name, result in measured.items():
        minutes, seconds = divmod(result["total_seconds"], 60)
        load = result["load_average_1min"]
        print(f"make {name}: {minutes:.0f} min {seconds:.0f} s (load average {load['min']}–{load['max']})")
    return common.record(name_out, settings_out, {"commands": measured}, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv", help="the environment in place (%(default)s)")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 copy (default: $EVA9_DATA_DIR)")
    parser.add_argument("--only", choices=["book", "test"], help="time one of the two commands")
    parser.add_argument("--keep", action="store_true", help="keep the clones and the make logs")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="folder for the JSON (%(default)s)")
    args = parser.parse_args(argv)
    run(FULL, args.out, args.venv, args.data_dir, args.only, args.keep)


if __name__ == "__main__":
    main()
