"""Each chapter executed once per change (tools/chapter_cache.py): the cache is emptied when the chapters' inputs
change, nbval skips only a notebook recorded as executed without error with the same code and inputs, and a
chapter whose assert fails is never recorded, so it fails again every time."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("chapter_cache", ROOT / "tools" / "chapter_cache.py")
assert spec is not None and spec.loader is not None
chapter_cache = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chapter_cache)

INPUTS = {"eva9": "a" * 64, "results": "b" * 64}


def notebook(path: Path, *cells: str, tags: tuple[str, ...] = ()) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter")]
    nb.cells += [nbformat.v4.new_code_cell(cell, metadata={"tags": list(tags)} if tags else {}) for cell in cells]
    nbformat.write(nb, path)
    return path


def test_a_new_cache_is_made_with_the_fingerprint_of_its_inputs(tmp_path):
    cache = tmp_path / "cache"
    said = chapter_cache.prepare(cache, INPUTS)
    assert "no recorded executions yet" in said
    assert json.loads((cache / chapter_cache.FINGERPRINT).read_text()) == INPUTS


def test_unchanged_inputs_keep_the_recorded_executions(tmp_path):
    cache = tmp_path / "cache"
    chapter_cache.prepare(cache, INPUTS)
    (cache / "global.db").write_text("executions")
    assert "unchanged" in chapter_cache.prepare(cache, dict(INPUTS))
    assert (cache / "global.db").read_text() == "executions"


def test_a_changed_input_empties_the_cache_and_is_named(tmp_path):
    cache = tmp_path / "cache"
    chapter_cache.prepare(cache, INPUTS)
    (cache / "global.db").write_text("executions")
    said = chapter_cache.prepare(cache, {**INPUTS, "eva9": "c" * 64})
    assert said.endswith("eva9 changed since the recorded executions; every chapter executes afresh")
    assert sorted(p.name for p in cache.iterdir()) == [chapter_cache.FINGERPRINT]


def test_a_folder_that_is_not_a_cache_is_never_emptied(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="not a chapter cache: refusing to empty it"):
        chapter_cache.prepare(folder, INPUTS)
    assert (folder / "notes.txt").read_text() == "keep me"


def test_the_fingerprint_follows_the_package_results_and_eva9_variables(tmp_path, monkeypatch):
    for name in ["eva9", "results"]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.py").write_text("x = 1\n")
    first = chapter_cache.fingerprint(tmp_path)
    (tmp_path / "eva9" / "__pycache__").mkdir()
    (tmp_path / "eva9" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert chapter_cache.fingerprint(tmp_path) == first  # byte code is not an input
    (tmp_path / "eva9" / "a.py").write_text("x = 2\n")
    second = chapter_cache.fingerprint(tmp_path)
    assert [name for name in first if first[name] != second[name]] == ["eva9"]
    monkeypatch.setenv("EVA9_PROFILE", "smoke")
    third = chapter_cache.fingerprint(tmp_path)
    assert [name for name in second if second[name] != third[name]] == ["environment (EVA9_*, TORCH_HOME, CUDA)"]


def test_the_code_key_follows_code_and_tags_not_prose(tmp_path):
    key = chapter_cache.code_key(json.loads(notebook(tmp_path / "a.ipynb", "x = 1").read_text()))
    reworded = json.loads(notebook(tmp_path / "b.ipynb", "x = 1").read_text())
    reworded["cells"][0]["source"] = "# Another title"
    assert chapter_cache.code_key(reworded) == key
    assert chapter_cache.code_key(json.loads(notebook(tmp_path / "c.ipynb", "x = 2").read_text())) != key
    tagged = notebook(tmp_path / "d.ipynb", "x = 1", tags=("raises-exception",))
    assert chapter_cache.code_key(json.loads(tagged.read_text())) != key


@pytest.mark.parametrize("chapter", sorted(p.stem for p in (ROOT / "book").glob("*.md")))
def test_a_chapter_executed_by_the_book_build_is_recognised_in_its_notebook(chapter):
    """The book executes book/X.md as myst-nb reads it; nbval runs book/X.ipynb: their code keys must agree, or
    `make notebooks` would execute every chapter a second time."""
    from myst_nb.core.read import read_myst_markdown_notebook

    as_built = read_myst_markdown_notebook((ROOT / "book" / f"{chapter}.md").read_text())
    as_run = json.loads((ROOT / "book" / f"{chapter}.ipynb").read_text())
    assert chapter_cache.code_key(as_built) == chapter_cache.code_key(as_run)


def test_nbval_skips_a_notebook_the_book_build_executed(tmp_path, monkeypatch):
    """A jupyter-cache execution (what the book build records) of the same code counts as done."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    monkeypatch.setattr(chapter_cache, "fingerprint", lambda: INPUTS)
    cache = tmp_path / "cache"
    chapter_cache.prepare(cache, INPUTS)
    chapter = notebook(tmp_path / "chapter.ipynb", "x = 1")
    get_cache(str(cache)).cache_notebook_bundle(
        CacheBundleIn(nbformat.read(chapter, as_version=4), str(chapter)), check_validity=False
    )
    called = tmp_path / "nbval-ran"
    fake = tmp_path / "fake-nbval"
    fake.write_text(f"#!/bin/sh\ntouch {called}\nexit 1\n")
    fake.chmod(0o755)
    assert chapter_cache.nbval(cache, [chapter], [str(fake)]) == 0
    assert not called.exists()
    notebook(chapter, "x = 2")  # its code changed: it runs
    assert chapter_cache.nbval(cache, [chapter], [str(fake)]) == 1
    assert called.exists()


def test_nbval_runs_what_changed_records_passes_and_always_runs_a_failing_assert(tmp_path, monkeypatch, capfd):
    pytest_cmd = [sys.executable, "-m", "pytest", "--nbval", "-q", "-p", "no:cacheprovider"]
    inputs = dict(INPUTS)
    monkeypatch.setattr(chapter_cache, "fingerprint", lambda: inputs)
    cache = tmp_path / "cache"
    good = notebook(tmp_path / "good.ipynb", "x = 1", "assert x == 1")
    bad = notebook(tmp_path / "bad.ipynb", "x = 1", "assert x == 2, 'the chapter claims 2'")

    assert chapter_cache.nbval(cache, [good, bad], pytest_cmd) == 1
    out = capfd.readouterr().out
    assert f"nbval failed: {bad}" in out
    assert list(json.loads((cache / chapter_cache.PASSED).read_text())) == [str(good)]

    assert chapter_cache.nbval(cache, [good, bad], pytest_cmd) == 1  # the failing chapter runs (and fails) again
    out = capfd.readouterr().out
    assert f"nbval: {good} executed without error with this code and these inputs" in out
    assert f"nbval: {bad}\n" in out

    inputs["eva9"] = "d" * 64  # the package changed: the passing chapter runs again
    assert chapter_cache.nbval(cache, [good], pytest_cmd) == 0
    assert f"nbval: {good}\n" in capfd.readouterr().out

    assert chapter_cache.nbval(cache, [good], pytest_cmd, everything=True) == 0  # --all: recorded or not
    assert f"nbval: {good}\n" in capfd.readouterr().out


PAGE = """---
jupytext:
  text_representation:
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter

```{code-cell} ipython3
with open(COUNTER, "a") as counter:
    counter.write("executed\\n")
assert CLAIM
```
"""


def test_a_book_build_executes_each_chapter_once_per_change(tmp_path):
    """A tiny Jupyter Book with the project's execute settings and extension: built twice, its chapter executes
    once; after an input changes (here an EVA9_* variable), the next build executes it again without being told to;
    a chapter whose assert fails fails the build and is not recorded."""
    import subprocess

    book, counter = tmp_path / "book", tmp_path / "executions.txt"
    book.mkdir()
    (book / "_config.yml").write_text(
        "title: tiny\nexecute:\n  execute_notebooks: cache\n  raise_on_error: true\n"
        f"sphinx:\n  local_extensions:\n    chapter_cache: {ROOT / 'tools'}\n"
    )
    (book / "_toc.yml").write_text("format: jb-book\nroot: page\n")

    def write_page(claim: str) -> None:
        (book / "page.md").write_text(PAGE.replace("COUNTER", repr(str(counter))).replace("CLAIM", claim))

    def build(*extra: str, **env: str):
        jupyter_book = Path(sys.executable).parent / "jupyter-book"
        environment = {k: v for k, v in os.environ.items() if k != "EVA9_TEST_INPUT"} | env
        done = subprocess.run(
            [str(jupyter_book), "build", str(book), *extra], capture_output=True, text=True, env=environment
        )
        return done.returncode, done.stdout + done.stderr, counter.read_text().count("executed")

    write_page("True")
    status, log, executions = build()
    assert (status, executions) == (0, 1), log
    assert "no recorded executions yet" in log
    status, log, executions = build("--all")  # every page read again: its outputs come from the cache
    assert (status, executions) == (0, 1), log
    assert "inputs are unchanged" in log
    from myst_nb.core.read import read_myst_markdown_notebook  # the page's notebook, as nbval would be given it

    as_read = read_myst_markdown_notebook((book / "page.md").read_text())
    nbformat.write(nbformat.from_dict(as_read), tmp_path / "page.ipynb")
    skipped = subprocess.run(  # run as `make notebooks` runs it: another process, the same inputs
        [sys.executable, str(ROOT / "tools" / "chapter_cache.py"), "nbval", str(book / "_build" / ".jupyter_cache"),
         "--pytest", "false", str(tmp_path / "page.ipynb")],
        capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "EVA9_TEST_INPUT"},
    )  # fmt: skip
    assert skipped.returncode == 0 and "executed without error with this code and these inputs" in skipped.stdout
    status, log, executions = build(EVA9_TEST_INPUT="changed")
    assert (status, executions) == (0, 2), log
    assert "environment (EVA9_*, TORCH_HOME, CUDA) changed since the recorded executions" in log
    write_page("1 == 2")
    for attempt in (3, 4):  # never recorded: the failing chapter executes, and fails, every time
        status, log, executions = build(EVA9_TEST_INPUT="changed")
        assert status != 0 and executions == attempt, log
