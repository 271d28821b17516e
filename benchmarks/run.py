"""Run every benchmark (or one) and write their JSON under ``benchmarks/results/``.

python benchmarks/run.py [--quick] [--only {engine,gradcam,pipeline,memory,augment_on}] [--data-dir D] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

BENCHMARKS = {
    "engine": "bench_engine",
    "gradcam": "bench_gradcam",
    "pipeline": "bench_pipeline",
    "memory": "bench_memory",
    "augment_on": "bench_augment_on",
}


def main(argv: list[str] | None = None) -> None:
    """Run the chosen benchmarks one after the other."""
    parser = argparse.ArgumentParser(description="eva9 benchmarks (CPU): " + ", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="smaller settings, for a first look")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only this one (repeatable)")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 image folder (default: $EVA9_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="folder for the JSON (default: %(default)s)")
    args = parser.parse_args(argv)
    for name in args.only or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        settings = module.QUICK if args.quick else module.FULL
        kwargs = {"root": args.data_dir} if "root" in inspect.signature(module.run).parameters else {}
        start = time.perf_counter()
        module.run(settings, args.out, **kwargs)
        print(f"[{name}: {time.perf_counter() - start:.0f} s]")


if __name__ == "__main__":
    main()
