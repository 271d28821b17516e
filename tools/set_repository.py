"""Point every mention of the GitHub repository at a new ``owner/name``: ``python tools/set_repository.py OWNER/NAME``.

The repository is stated once in code, ``eva9.weights.REPOSITORY`` (``eva9.book`` and the download URLs derive from
it), but files that are not Python name it too: the book's configuration (the repository and the published book,
``https://owner.github.io/name``), every chapter's Colab install cell (the MyST source and the notebook
tools/reader_notebooks.py made from it, whose links into the published book are rewritten too, so that the
notebook stays what the tool makes), the README, ``hubconf.py``'s docstring, ``CITATION.cff``, the browser check
and the weights manifest's URLs. ``PLACES`` lists them. The script refuses to
run if any other file in the tree names the current repository, so a new place cannot be missed silently; add it
to ``PLACES``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SOURCE = "eva9/weights.py"
"""The one place in code: ``REPOSITORY = "owner/name"``."""

PLACES = (
    SOURCE,
    "_config.yml",
    "README.md",
    "hubconf.py",
    "CITATION.cff",
    "book/*.md",
    "book/*.ipynb",
    "assignment/s9_assignment.md",
    "assignment/s9_assignment.ipynb",
    "tests/html/test_built_book.py",
    "eva9/published.json",
)
"""Every file (glob, relative to the root) that names the repository."""

NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$")
"""A GitHub ``owner/name``."""

MENTION = re.compile(
    r"(?:github\.com/|raw\.githubusercontent\.com/|colab\.research\.google\.com/github/"
    r"|torch\.hub\.load\(\"|REPOSITORY = \")([\w.-]+/[\w.-]+)"
)
"""A mention of a GitHub repository in a place: a URL, a ``torch.hub.load`` call or the constant; group 1 is it."""

PAGES = re.compile(r"https://([A-Za-z0-9-]+)\.github\.io/([\w.-]+)")
"""A mention of the repository's GitHub Pages site (the published book, ``html.baseurl`` in ``_config.yml``, which
the reader notebooks link to): ``https://owner.github.io/name``."""

SKIP_DIRS = {".git", ".venv", "_build", "_vendor", "data", "runs", "node_modules", "__pycache__", ".gpu-kit"}
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".yml", ".yaml", ".cff", ".toml", ".txt", ".cfg", ".json", ".sh", ".html"}


def place_files(root: Path = ROOT) -> list[Path]:
    """The files of ``PLACES`` under ``root``, sorted; a pattern that matches nothing is an error."""
    files = []
    for pattern in PLACES:
        matched = sorted(root.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"{pattern} matches no file under {root}: update PLACES in {__file__}")
        files += matched
    return files


def mentions(text: str) -> list[str]:
    """Every repository (``owner/name``) that ``text`` names as a GitHub URL, hub call or ``REPOSITORY`` constant."""
    return MENTION.findall(text) + [f"{owner}/{name}" for owner, name in PAGES.findall(text)]


def current_repository(root: Path = ROOT) -> str:
    """The ``owner/name`` that ``eva9/weights.py`` under ``root`` states (read as text: works on any copy)."""
    found = re.search(r'^REPOSITORY = "([^"]+)"$', (root / SOURCE).read_text(), flags=re.M)
    if not found:
        raise ValueError(f'no `REPOSITORY = "owner/name"` line in {root / SOURCE}')
    return found.group(1)


def stray_files(repository: str, root: Path = ROOT) -> list[Path]:
    """Text files under ``root`` that name ``repository`` but are not among ``PLACES``."""
    listed = set(place_files(root))
    pattern, pages = _exact(repository), _exact_pages(repository)
    stray = []
    for path in sorted(root.rglob("*")):
        if SKIP_DIRS.intersection(path.relative_to(root).parts[:-1]) or not path.is_file() or path in listed:
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in {"Makefile", "LICENSE"}:
            text = path.read_text(errors="replace")
            if pattern.search(text) or pages.search(text):
                stray.append(path)
    return stray


def set_repository(new: str, root: Path = ROOT) -> list[Path]:
    """Rewrite every place under ``root`` from the current repository to ``new``; returns the files changed."""
    if not NAME.match(new):
        raise ValueError(f"{new!r} is not a GitHub owner/name (letters, digits and dashes, a slash, then the name)")
    old = current_repository(root)
    stray = stray_files(old, root)
    if stray:
        names = ", ".join(str(p.relative_to(root)) for p in stray)
        raise RuntimeError(f"{names} name {old} but are not in PLACES: add them to PLACES in {__file__}")
    if new == old:
        return []
    pattern, pages, changed = _exact(old), _exact_pages(old), []
    new_pages = "{}.github.io/{}".format(*new.split("/"))
    for path in place_files(root):
        text = path.read_text()
        rewritten, count = pattern.subn(new, text)
        rewritten, pages_count = pages.subn(new_pages, rewritten)
        count += pages_count
        if count == 0:
            raise RuntimeError(f"{path.relative_to(root)} does not name {old}: fix it by hand or update PLACES")
        path.write_text(rewritten)
        changed.append(path)
    return changed


def _exact(repository: str) -> re.Pattern:
    """``repository`` as a whole word: not part of a longer owner or name."""
    return re.compile(rf"(?<![\w.-]){re.escape(repository)}(?![\w-]|\.(?!git\b)\w)")


def _exact_pages(repository: str) -> re.Pattern:
    """``repository``'s GitHub Pages site, ``owner.github.io/name``, as a whole word."""
    owner, name = repository.split("/")
    return re.compile(rf"(?<![\w.-]){re.escape(owner)}\.github\.io/{re.escape(name)}(?![\w-]|\.(?!git\b)\w)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", help="the new GitHub owner/name")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to rewrite (default: this one)")
    args = parser.parse_args(argv)
    try:
        old = current_repository(args.root)
        changed = set_repository(args.repository, args.root)
    except (ValueError, RuntimeError, FileNotFoundError) as error:
        print(f"set_repository: {error}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"{old} -> {args.repository}: {path.relative_to(args.root)}")
    if not changed:
        print(f"already {old}: nothing to change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
