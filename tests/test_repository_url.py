"""The GitHub repository is stated once, ``eva9.weights.REPOSITORY``; every other file that names it agrees, and
``tools/set_repository.py`` rewrites all of them (run here on a temporary copy, never on the checkout)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eva9 import book, weights

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "set_repository.py"
NEW = "someone-else/eva9-fork"

_spec = importlib.util.spec_from_file_location("set_repository", SCRIPT)
set_repository = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(set_repository)


def places(root: Path = ROOT) -> dict[str, list[str]]:
    """Each place's path (relative to ``root``) → the repositories it names."""
    return {str(p.relative_to(root)): set_repository.mentions(p.read_text()) for p in set_repository.place_files(root)}


def copy_places(tmp_path: Path) -> Path:
    """A temporary tree holding a copy of every place, at the same relative paths."""
    for path in set_repository.place_files(ROOT):
        target = tmp_path / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return tmp_path


CITED = {"kuangliu/pytorch-cifar"}
"""Other projects' repositories that the places link to (the ResNet18 chapter cites its source); never rewritten."""


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_the_script_reads_the_repository_that_eva9_weights_states():
    assert set_repository.current_repository() == weights.REPOSITORY
    assert book.REPOSITORY_URL == f"https://github.com/{weights.REPOSITORY}"


@pytest.mark.parametrize("place", sorted(places()))
def test_every_place_names_the_repository_that_eva9_weights_states(place):
    named = [name for name in places()[place] if name not in CITED]
    assert named, f"{place} is listed in tools/set_repository.py PLACES but names no repository"
    assert set(named) == {weights.REPOSITORY}, f"{place} names {named}, not {weights.REPOSITORY}"


def test_every_chapter_installs_from_the_repository_in_its_first_code_cell():
    chapters = sorted((ROOT / "book").glob("*.md"))
    assert chapters
    for md in chapters:
        cells = json.loads(md.with_suffix(".ipynb").read_text())["cells"]
        first_code = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
        assert f"%pip install --quiet git+https://github.com/{weights.REPOSITORY}" in first_code, md


def test_no_file_outside_the_places_names_the_repository():
    assert set_repository.stray_files(weights.REPOSITORY) == []


def test_the_script_rewrites_every_place_of_a_copy_and_leaves_no_old_mention(tmp_path):
    root = copy_places(tmp_path)
    before = {path: text for path, text in ((p, p.read_text()) for p in root.rglob("*") if p.is_file())}
    result = run_script(NEW, "--root", str(root))
    assert result.returncode == 0, result.stderr
    after = places(root)
    assert all(after.values()) and {name for named in after.values() for name in named} - CITED == {NEW}
    assert all(path.read_text() != text for path, text in before.items()), "a place was left unchanged"
    assert all(weights.REPOSITORY not in path.read_text() for path in before)
    assert set_repository.current_repository(root) == NEW
    assert f'REPOSITORY = "{NEW}"' in (root / "eva9" / "weights.py").read_text()
    assert len(result.stdout.splitlines()) == len(before)  # one line per file changed


def test_the_rewritten_notebooks_are_what_the_reader_notebook_tool_makes_of_the_rewritten_chapters(tmp_path):
    root = copy_places(tmp_path)
    for extra in ("references.bib", "references.md", "_toc.yml"):  # what the chapters cite and link to
        shutil.copy2(ROOT / extra, root / extra)
    shutil.copytree(ROOT / "eva9", root / "eva9", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    assert run_script(NEW, "--root", str(root)).returncode == 0
    notebooks = {p: p.read_text() for p in (root / "book").glob("*.ipynb")}
    spec = importlib.util.spec_from_file_location("reader_notebooks", ROOT / "tools" / "reader_notebooks.py")
    reader_notebooks = sys.modules.setdefault("reader_notebooks", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(reader_notebooks)
    reader_notebooks.write_book(root)
    assert "someone-else.github.io/eva9-fork/book/" in notebooks[root / "book" / "training.ipynb"]
    assert {p: p.read_text() for p in notebooks} == notebooks, "the tool made other notebooks of the rewritten chapters"


def test_the_script_refuses_when_another_file_names_the_repository_and_changes_nothing(tmp_path):
    root = copy_places(tmp_path)
    (root / "docs.md").write_text(f"See https://github.com/{weights.REPOSITORY}.\n")
    before = {p: p.read_text() for p in root.rglob("*") if p.is_file()}
    result = run_script(NEW, "--root", str(root))
    assert result.returncode == 1 and "docs.md" in result.stderr and "PLACES" in result.stderr
    assert {p: p.read_text() for p in before} == before


def test_the_script_refuses_a_place_that_no_longer_names_the_repository(tmp_path):
    root = copy_places(tmp_path)
    (root / "hubconf.py").write_text('"""torch.hub entry points."""\n')
    result = run_script(NEW, "--root", str(root))
    assert result.returncode == 1 and "hubconf.py does not name" in result.stderr


@pytest.mark.parametrize(
    "bad", ["eva9", "owner/", "/name", "owner/name/extra", "own er/name", "https://github.com/a/b"]
)
def test_the_script_refuses_what_is_not_an_owner_and_name(tmp_path, bad):
    root = copy_places(tmp_path)
    result = run_script(bad, "--root", str(root))
    assert result.returncode == 1 and "is not a GitHub owner/name" in result.stderr
    assert set_repository.current_repository(root) == weights.REPOSITORY


def test_a_longer_name_that_contains_the_repository_is_not_rewritten():
    pattern = set_repository._exact("owner/eva9")
    text = "github.com/owner/eva9 owner/eva9-extra github.com/owner/eva9.git my-owner/eva9 owner/eva9."
    assert pattern.sub("x/y", text) == "github.com/x/y owner/eva9-extra github.com/x/y.git my-owner/eva9 x/y."
