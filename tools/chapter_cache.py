"""Each chapter executed once per change: the book builds and nbval share one record of what already ran.

The book's builds execute the chapters through jupyter-cache (``execute_notebooks: cache`` in ``_config.yml``,
cache in ``_build/.jupyter_cache``), which keys an execution on the chapter's code cells alone. A chapter's outputs
also depend on the package, the recorded runs, the installed libraries and the environment, so:

As a Sphinx extension (``_config.yml``'s ``local_extensions``), at the start of every book build, and as
``python tools/chapter_cache.py prepare CACHE``, it fingerprints those inputs and empties the cache when they changed
since its executions (or it has no fingerprint yet), so every chapter then executes afresh (the build then reads
every page again, changed or not); it says which inputs changed.

``python tools/chapter_cache.py nbval CACHE NOTEBOOK...`` (``make notebooks``, ``make notebooks-unpublished``) runs
``pytest --nbval`` on each notebook that CACHE does not show executed, error-free, with the same code cells (cell
sources and tags) and the same inputs: a jupyter-cache execution from a book build, or an earlier nbval pass, which
it then records in CACHE. A chapter whose cell raises (a failing ``assert``) is never recorded (jupyter-cache keeps
only executions without an error), so it runs, and fails, every time. ``--all`` runs nbval on every notebook.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINT = "eva9-inputs.json"
PASSED = "eva9-nbval-passed.json"
INPUTS = ("eva9", "results", "pyproject.toml", "requirements.txt")
"""The files, under the repository root, whose contents the chapters' outputs depend on besides their own code."""
ENVIRONMENT = ("TORCH_HOME", "CUDA_VISIBLE_DEVICES")
"""Variables that change what the chapters do, besides every ``EVA9_*``."""


def _hash_files(path: Path) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if "__pycache__" in file.parts or file.suffix == ".pyc":
            continue
        digest.update(str(file.relative_to(path.parent)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def fingerprint(root: Path = ROOT) -> dict[str, str]:
    """Input name → a SHA-256 of what the chapters read besides their code: the package, the recorded runs, the
    project's requirements, the installed distributions, the ``EVA9_*`` and torch variables, and whether CUDA is
    there (it picks the training profile)."""
    found = {name: _hash_files(root / name) for name in INPUTS if (root / name).exists()}
    installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    found["installed distributions"] = hashlib.sha256("\n".join(installed).encode()).hexdigest()
    variables = {k: v for k, v in os.environ.items() if k.startswith("EVA9_") or k in ENVIRONMENT}
    variables["cuda"] = str(_cuda_available())
    found["environment (EVA9_*, TORCH_HOME, CUDA)"] = hashlib.sha256(
        json.dumps(variables, sort_keys=True).encode()
    ).hexdigest()
    return found


def _stored(cache: Path) -> dict[str, str] | None:
    try:
        return json.loads((cache / FINGERPRINT).read_text())
    except (OSError, ValueError):
        return None


def prepare(cache: Path, current: dict[str, str]) -> str:
    """Empty ``cache`` unless its executions were made with the ``current`` inputs; record them. Says what it did."""
    stored = _stored(cache)
    if stored == current:
        return f"{cache}: the chapters' inputs are unchanged; their recorded executions are reused"
    if stored is None:
        said = f"{cache}: no recorded executions yet; every chapter executes"
    else:
        changed = sorted(name for name in current.keys() | stored.keys() if current.get(name) != stored.get(name))
        said = f"{cache}: {', '.join(changed)} changed since the recorded executions; every chapter executes afresh"
    if cache.exists():
        if any(cache.iterdir()) and not ((cache / "global.db").exists() or (cache / FINGERPRINT).exists()):
            raise SystemExit(f"{cache} holds files but is not a chapter cache: refusing to empty it")
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    (cache / FINGERPRINT).write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    return said


def code_key(notebook: dict) -> str:
    """A SHA-256 of a notebook's code cells: each one's source and tags, in order (what execution depends on)."""
    cells = [
        [cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"]),
         sorted(cell.get("metadata", {}).get("tags", []))]
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
    ]  # fmt: skip
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def executed_keys(cache: Path) -> set[str]:
    """The code keys of every error-free execution recorded in ``cache``: jupyter-cache's and nbval's."""
    keys: set[str] = set()
    if (cache / "global.db").exists():
        from jupyter_cache import get_cache

        store = get_cache(str(cache))
        keys |= {code_key(store.get_cache_bundle(record.pk).nb) for record in store.list_cache_records()}
    try:
        keys |= set(json.loads((cache / PASSED).read_text()).values())
    except (OSError, ValueError):
        pass
    return keys


def _record_pass(cache: Path, notebook: Path, key: str) -> None:
    try:
        passed = json.loads((cache / PASSED).read_text())
    except (OSError, ValueError):
        passed = {}
    passed[str(notebook)] = key
    temporary = cache / f".{PASSED}.tmp"
    temporary.write_text(json.dumps(passed, indent=1, sort_keys=True) + "\n")
    temporary.replace(cache / PASSED)


def nbval(cache: Path, notebooks: list[Path], pytest: list[str], everything: bool = False) -> int:
    """Run ``pytest`` (``--nbval`` …) on each notebook ``cache`` does not show executed with these inputs and
    code; record each pass. Returns 1 if any failed, else 0."""
    current = fingerprint()
    if _stored(cache) != current:
        print(prepare(cache, current), flush=True)
    done = set() if everything else executed_keys(cache)
    failed = []
    for notebook in notebooks:
        key = code_key(json.loads(notebook.read_text()))
        if key in done:
            print(f"nbval: {notebook} executed without error with this code and these inputs (in {cache}): skipped")
            continue
        print(f"nbval: {notebook}", flush=True)
        if subprocess.run([*pytest, str(notebook)]).returncode == 0:
            _record_pass(cache, notebook, key)
        else:
            failed.append(str(notebook))
    if failed:
        print(f"nbval failed: {' '.join(failed)}")
    return 1 if failed else 0


def _prepare_for_build(app) -> None:
    from sphinx.util import logging

    config = app.env.mystnb_config
    app.eva9_chapters_afresh = False
    if config.execution_mode == "cache":
        cache, current = Path(config.execution_cache_path), fingerprint()
        app.eva9_chapters_afresh = _stored(cache) != current
        logging.getLogger(__name__).info(prepare(cache, current))


def _pages_to_read_again(app, env, added, changed, removed) -> list[str]:
    return sorted(env.found_docs) if app.eva9_chapters_afresh else []


def setup(app) -> dict:
    """The Sphinx extension: :func:`prepare` the jupyter-cache of the build before any page is read (after
    myst-nb has set its path), and read every page again if it was emptied."""
    app.connect("builder-inited", _prepare_for_build, priority=600)
    app.connect("env-get-outdated", _pages_to_read_again)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="empty CACHE if the chapters' inputs changed").add_argument("cache", type=Path)
    run = commands.add_parser("nbval", help="pytest --nbval on the notebooks CACHE does not show executed")
    run.add_argument("cache", type=Path)
    run.add_argument("notebooks", type=Path, nargs="+")
    run.add_argument("--pytest", default=f"{sys.executable} -m pytest --nbval", help="the nbval command")
    run.add_argument("--all", action="store_true", help="run every notebook, recorded or not")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        print(prepare(args.cache, fingerprint()), flush=True)
        return 0
    return nbval(args.cache, args.notebooks, shlex.split(args.pytest), args.all)


if __name__ == "__main__":
    sys.exit(main())
