"""The notebooks a reader opens (Colab, Jupyter, ``pytest --nbval book/``, the student edition), made from the book.

The chapters are written once, as MyST notebooks ``book/*.md``, which the HTML book builds from. A notebook
reader does not render MyST, so this module turns every construct the book uses into plain notebook content, as
d2l-en makes its Colab notebooks from its Markdown source:

- an included source (``{literalinclude}``) becomes its code in a fenced block, read by Sphinx's own
  ``LiteralIncludeReader`` from the same markers, so it cannot drift from the book;
- an exercise becomes a heading, numbered as the book numbers it (on through the chapters of ``_toc.yml``), and
  its text; its solution a collapsed ``<details>`` block (nothing in the student edition);
- a citation (``{cite:p}``, ``{cite:t}``) becomes the book's author–year text, formatted by sphinxcontrib-bibtex's
  own reference style from ``references.bib``, linked to its entry on the published References page;
- a cross-reference (``{ref}``, ``{doc}``, a link to another chapter's ``.md``) and a ``{download}`` become links
  into the published book (``html.baseurl`` in ``_config.yml``); a figure's image, a link to the raw file;
- an admonition becomes a quote, and MyST targets and comments go.

Code cells are kept exactly (source, tags, metadata), so a notebook executes as the book does; outputs are empty.
Anything else MyST would be an error here, so a new construct cannot slip into the notebooks unconverted.

``python tools/reader_notebooks.py book`` writes ``book/<name>.ipynb`` next to each ``book/<name>.md`` (``make
reader-notebooks`` then checks with ``git diff`` that the committed ones are current);
``python tools/reader_notebooks.py student [OUT]`` (``make student``) writes the student edition, every chapter of
``_toc.yml`` without solutions, into ``OUT`` (default ``_build/student``) and ``OUT/eva9-student.zip``, which the
intro links. Nothing else is written.
"""

from __future__ import annotations

import argparse
import hashlib
import posixpath
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
ZIP_NAME = "eva9-student.zip"

ADMONITIONS = {
    "note": "Note",
    "tip": "Tip",
    "hint": "Hint",
    "important": "Important",
    "warning": "Warning",
    "caution": "Caution",
    "attention": "Attention",
    "danger": "Danger",
    "error": "Error",
    "seealso": "See also",
}
"""The admonitions a notebook shows as a quote headed by this word (``{admonition}`` takes its own title)."""

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")
_DIRECTIVE = re.compile(r"^\{(?P<name>[\w:.-]+)\}\s*(?P<argument>.*)$")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):(?:\s+(?P<value>.*))?$")
_TARGET = re.compile(r"^\s{0,3}\((?P<label>[^)\s]+)\)=\s*$")
_COMMENT = re.compile(r"^\s{0,3}%")
_HEADING = re.compile(r"^\s{0,3}(?P<hashes>#{1,6})\s+(?P<title>.*?)\s*#*\s*$")
_ROLE = re.compile(r"\{(?P<name>[\w:.-]+)\}(?P<ticks>`+)(?P<content>.+?)(?<!`)(?P=ticks)(?!`)")
_LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"]*\")?\)")
_TITLED = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)


class ConversionError(ValueError):
    """A construct in a chapter that the notebooks cannot show: the message names the chapter and the line."""


@dataclass(frozen=True)
class Site:
    """Where the published book and the repository's files are, from ``_config.yml``."""

    book: str
    """The published HTML book, without a trailing slash (``html.baseurl``)."""
    repository: str
    """``https://github.com/owner/name`` (``repository.url``)."""
    branch: str

    @classmethod
    def from_config(cls, root: Path) -> Site:
        config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
        try:
            book, repository = config["html"]["baseurl"], config["repository"]["url"]
        except KeyError as missing:
            message = f"{root / '_config.yml'} lacks {missing}: set html.baseurl and repository.url"
            raise ConversionError(message) from None
        return cls(book.rstrip("/"), repository.rstrip("/"), config["repository"].get("branch", "main"))

    def page(self, docname: str, anchor: str = "") -> str:
        """The published page of ``docname`` (``book/training``), at ``anchor`` if given."""
        return f"{self.book}/{docname}.html" + (f"#{anchor}" if anchor else "")

    def blob(self, path: str) -> str:
        """The repository file ``path`` on GitHub."""
        return f"{self.repository}/blob/{self.branch}/{path}"

    def raw(self, path: str) -> str:
        """The repository file ``path``'s bytes (an image a notebook shows)."""
        owner_name = self.repository.removeprefix("https://github.com/")
        return f"https://raw.githubusercontent.com/{owner_name}/{self.branch}/{path}"


class Citations:
    """The book's author–year citations, from ``references.bib``, as sphinxcontrib-bibtex formats them."""

    def __init__(self, root: Path, site: Site) -> None:
        from pybtex.database import parse_file
        from sphinxcontrib.bibtex.plugin import find_plugin

        config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
        self.entries = {}
        for bibfile in config.get("bibtex_bibfiles", []):
            self.entries.update(parse_file(str(root / bibfile)).entries)
        name = config.get("sphinx", {}).get("config", {}).get("bibtex_reference_style", "label")
        self.style = find_plugin("sphinxcontrib.bibtex.style.referencing", name)()
        self.cite_id = config.get("sphinx", {}).get("config", {}).get("bibtex_cite_id", "")
        self.references = site.page("references")

    def __call__(self, role: str, keys: str, where: str) -> str:
        """The Markdown for ``{cite:<role>}`keys```: the book's text, each entry linked to the References page."""
        from sphinxcontrib.bibtex.style.referencing import format_references
        from sphinxcontrib.bibtex.style.template import SphinxReferenceInfo

        references = []
        for key in (k.strip() for k in keys.split(",")):
            if key not in self.entries:
                raise ConversionError(f"{where}: no entry {key!r} in the bibliography")
            anchor = self.cite_id.format(key=key, bibliography_count=1) if self.cite_id else ""
            title = self.entries[key].fields.get("title", "").replace("{", "").replace("}", "")
            references.append((self.entries[key], None, SphinxReferenceInfo(None, "", "", anchor, title, "", "")))
        if role not in self.style.role_names():
            raise ConversionError(f"{where}: {{cite:{role}}} is not a citation role of the book's style")
        return self._markdown(format_references(self.style, role, references))

    def _markdown(self, text) -> str:
        from pybtex.richtext import BaseMultipartText
        from sphinxcontrib.bibtex.style.template import SphinxReferenceText

        if isinstance(text, SphinxReferenceText):
            info = text.info[0]
            url = self.references + (f"#{info.citation_id}" if info.citation_id else "")
            title = f' "{info.title}"' if info.title and '"' not in info.title else ""
            return f"[{''.join(self._markdown(part) for part in text.parts)}]({url}{title})"
        if isinstance(text, BaseMultipartText):
            return "".join(self._markdown(part) for part in text.parts)
        return re.sub(r"([\[\]*_`\\])", r"\\\1", str(text))


@dataclass
class Exercise:
    number: int | None
    title: str
    docname: str


@dataclass
class Book:
    """What every chapter's conversion needs: the site, the bibliography and the labels of the whole book."""

    root: Path
    site: Site
    citations: Citations
    exercises: dict[str, Exercise] = field(default_factory=dict)
    targets: dict[str, tuple[str, str]] = field(default_factory=dict)
    """``(label)=`` targets → (docname, the title of the heading that follows)."""
    first_exercise: dict[str, int] = field(default_factory=dict)
    """docname → the number of its first exercise: the book numbers them on through its chapters in reading order."""

    @classmethod
    def load(cls, root: Path = ROOT) -> Book:
        """The book under ``root``: every ``book/*.md``, those in ``_toc.yml`` first and in its order."""
        site = Site.from_config(root)
        book, number = cls(root, site, Citations(root, site)), 1
        listed = [path for path in chapters(root) if path.is_file()]
        for path in listed + sorted(set((root / "book").glob("*.md")) - set(listed)):
            book.first_exercise[book.docname(path)] = number
            number = book.collect_labels(path, number)
        return book

    def docname(self, path: Path) -> str:
        return path.relative_to(self.root).with_suffix("").as_posix()

    def collect_labels(self, path: Path, number: int) -> int:
        """Register the exercises of ``path``, numbered from ``number`` on, and its targets; return the next
        exercise's number."""
        docname, pending, number = self.docname(path), None, number - 1
        for cell in jupytext.read(path, fmt="md:myst").cells:
            if cell.cell_type != "markdown":
                continue
            for kind, block in blocks(cell.source.split("\n"), f"{path.name}"):
                if kind == "directive" and block.name == "exercise":
                    if "nonumber" not in block.options:
                        number += 1
                    label = block.options.get("label")
                    if label in self.exercises or label in self.targets:
                        raise ConversionError(f"{block.where}: the label {label!r} is already used")
                    if label:
                        numbered = number if "nonumber" not in block.options else None
                        self.exercises[label] = Exercise(numbered, block.argument, docname)
                elif kind == "target":
                    if block in self.exercises or block in self.targets:
                        raise ConversionError(f"{path.name}: the label {block!r} is already used")
                    pending = block
                elif kind == "text" and pending:
                    heading = next((m for m in map(_HEADING.match, block) if m), None)
                    if heading:
                        self.targets[pending] = (docname, heading["title"])
                        pending = None
        return number + 1


@dataclass
class Directive:
    name: str
    argument: str
    options: dict[str, str]
    body: list[str]
    where: str


def blocks(lines: list[str], where: str):
    """Split Markdown ``lines`` into ("text", lines), ("code", lines), ("target", label) and ("directive",
    Directive) blocks; a fenced block ends at a line of its own fence character, at least as long."""
    i, text = 0, []
    while i < len(lines):
        line, fence = lines[i], _FENCE.match(lines[i])
        target = _TARGET.match(line)
        if fence and not (fence["fence"][0] == "`" and "`" in fence["info"]):
            if text:
                yield "text", text
                text = []
            char, length = fence["fence"][0], len(fence["fence"])
            closing = re.compile(rf"^ {{0,3}}{re.escape(char)}{{{length},}}\s*$")
            end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), None)
            if end is None:
                raise ConversionError(f"{where}: the block opened on line {i + 1} ({line.strip()!r}) is never closed")
            directive = _DIRECTIVE.match(fence["info"].strip())
            if directive:
                yield "directive", _directive(directive, lines[i + 1 : end], f"{where}, line {i + 1}")
            elif char == ":":
                raise ConversionError(f"{where}, line {i + 1}: a colon fence without a directive: {line.strip()!r}")
            else:
                yield "code", lines[i : end + 1]
            i = end + 1
        elif target:
            if text:
                yield "text", text
                text = []
            yield "target", target["label"]
            i += 1
        elif _COMMENT.match(line):
            i += 1
        else:
            text.append(line)
            i += 1
    if text:
        yield "text", text


def _directive(match: re.Match, body: list[str], where: str) -> Directive:
    """The directive whose fence info ``match`` matched, with its options (``:key: value`` lines or a YAML
    block between ``---`` lines at the start of ``body``) taken off its body."""
    options: dict[str, str] = {}
    if body and body[0].strip() == "---":
        end = next((j for j in range(1, len(body)) if body[j].strip() == "---"), None)
        if end is None:
            raise ConversionError(f"{where}: the directive's options (---) are never closed")
        values = yaml.safe_load("\n".join(body[1:end])) or {}
        options = {str(key): "" if value is None else str(value) for key, value in values.items()}
        body = body[end + 1 :]
    else:
        while body and (option := _OPTION.match(body[0].strip())):
            options[option["key"]] = (option["value"] or "").strip()
            body = body[1:]
    while body and not body[0].strip():
        body = body[1:]
    while body and not body[-1].strip():
        body = body[:-1]
    return Directive(match["name"], match["argument"].strip(), options, body, where)


@dataclass
class Chapter:
    """One chapter being converted: its book, its path, which edition, and where its headings stand."""

    book: Book
    path: Path
    student: bool = False
    level: int = 1
    """The level of the last heading seen: an exercise's heading goes one below it."""
    exercises: int = -1
    """The last numbered exercise's number (sphinx-exercise numbers them on through the book)."""

    @property
    def docname(self) -> str:
        return self.book.docname(self.path)

    def markdown(self, source: str) -> str:
        """A markdown cell's MyST source as plain Markdown."""
        return "\n".join(self.convert(source.split("\n"), self.path.name)).strip("\n")

    def convert(self, lines: list[str], where: str) -> list[str]:
        out: list[str] = []
        for kind, block in blocks(lines, where):
            if kind == "text":
                for line in block:
                    heading = _HEADING.match(line)
                    if heading:
                        self.level = len(heading["hashes"])
                text = self.inline("\n".join(block), where).split("\n")
                while out and out[-1] == "" and text and text[0] == "":
                    text = text[1:]  # one blank line between blocks, not the directive's and the text's
                out += text
            elif kind == "code":
                out += block
            elif kind == "directive":
                while out and out[-1] == "":
                    out.pop()
                out += ["", *self.directive(block), ""] if out else [*self.directive(block), ""]
        return out

    def directive(self, d: Directive) -> list[str]:
        handlers = {
            "exercise": self._exercise,
            "solution": self._solution,
            "dropdown": self._dropdown,
            "literalinclude": self._literalinclude,
            "code-block": self._code_block,
            "code": self._code_block,
            "sourcecode": self._code_block,
            "math": self._math,
            "figure": self._figure,
            "image": self._figure,
            "admonition": self._admonition,
            **dict.fromkeys(ADMONITIONS, self._admonition),
        }
        if d.name not in handlers:
            raise ConversionError(f"{d.where}: the notebooks cannot show a {{{d.name}}} directive yet")
        return handlers[d.name](d)

    def _exercise(self, d: Directive) -> list[str]:
        if self.exercises < 0:
            self.exercises = self.book.first_exercise.get(self.docname, 1) - 1
        if "nonumber" not in d.options:
            self.exercises += 1
        name = "Exercise" if "nonumber" in d.options else f"Exercise {self.exercises}"
        title = self.inline(d.argument, d.where) if d.argument else ""
        heading = "#" * min(self.level + 1, 6) + " " + (f"{name}: {title}" if title else name)
        return [heading, "", *self.convert(d.body, d.where)]

    def _solution(self, d: Directive) -> list[str]:
        if self.student:
            return []
        exercise = self.book.exercises.get(d.argument)
        if exercise is None:
            raise ConversionError(f"{d.where}: the solution names no exercise label of the book: {d.argument!r}")
        name = "Exercise" if exercise.number is None else f"Exercise {exercise.number}"
        body = self.convert(d.body, d.where)
        if "dropdown" not in d.options.get("class", "").split():
            return [f"**Solution to {name}**", "", *body]
        return ["<details>", f"<summary>Solution to {name}</summary>", "", *body, "", "</details>"]

    def _dropdown(self, d: Directive) -> list[str]:
        summary = self.inline(d.argument, d.where) if d.argument else "Details"
        return ["<details>", f"<summary>{summary}</summary>", "", *self.convert(d.body, d.where), "", "</details>"]

    def _admonition(self, d: Directive) -> list[str]:
        title = self.inline(d.argument, d.where) if d.name == "admonition" else ADMONITIONS[d.name]
        body = self.convert(d.body, d.where)
        return [f"> **{title}**", ">", *(f"> {line}" if line.strip() else ">" for line in body)]

    def _literalinclude(self, d: Directive) -> list[str]:
        from sphinx.config import Config
        from sphinx.directives.code import LiteralInclude, LiteralIncludeReader

        source = (self.path.parent / d.argument).resolve()
        if not source.is_relative_to(self.book.root) or not source.is_file():
            raise ConversionError(f"{d.where}: the included file {d.argument} is not a file of the repository")
        try:
            options = {key: LiteralInclude.option_spec[key](value or None) for key, value in d.options.items()}
            text, _ = LiteralIncludeReader(str(source), options, Config()).read()
        except (KeyError, ValueError) as error:
            raise ConversionError(f"{d.where}: {{literalinclude}} {d.argument}: {error}") from None
        language = d.options.get("language", "python" if source.suffix == ".py" else "")
        relative = source.relative_to(self.book.root).as_posix()
        caption = f"*From [`{relative}`]({self.book.site.blob(relative)}):*"
        return [caption, "", *fenced(text.rstrip("\n").split("\n"), language)]

    def _code_block(self, d: Directive) -> list[str]:
        return fenced(d.body, d.argument)

    def _math(self, d: Directive) -> list[str]:
        return ["$$", *d.body, "$$"]

    def _figure(self, d: Directive) -> list[str]:
        alt = d.options.get("alt", "")
        image = f"![{alt}]({self.link(d.argument, d.where, image=True)})"
        caption = self.convert(d.body, d.where)
        return [image, *(["", *caption] if caption else [])]

    def link(self, target: str, where: str, image: bool = False) -> str:
        """A link target of the book (relative to the chapter) as an absolute URL a notebook can follow."""
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target):
            return target
        path, _, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(self.docname), path))
        if resolved.startswith("../") or not (self.book.root / resolved).exists():
            raise ConversionError(f"{where}: the link target {target} is not a file of the book")
        if image:
            return self.book.site.raw(resolved)
        if resolved.endswith((".md", ".ipynb")):
            return self.book.site.page(resolved.rsplit(".", 1)[0], anchor)
        return self.book.site.blob(resolved)

    def inline(self, text: str, where: str) -> str:
        """``text`` with each MyST role converted and each link made absolute; code spans stay as they are."""
        out, plain, i = [], [], 0
        while i < len(text):
            role, link = _ROLE.match(text, i), _LINK.match(text, i) if text[i] in "![" else None
            if role:
                out += ["".join(plain), self.role(role["name"], role["content"], where)]
                plain, i = [], role.end()
            elif link:
                target = self.link(link["target"], where, image=bool(link["bang"]))
                label = self.inline(link["text"], where)
                out += ["".join(plain), f"{link['bang']}[{label}]({target}{link['title'] or ''})"]
                plain, i = [], link.end()
            elif text[i] == "\\":
                plain.append(text[i : i + 2])
                i += 2
            elif text[i] == "`":
                ticks = re.match(r"`+", text[i:]).group()
                close = re.compile(rf"(?<!`){ticks}(?!`)").search(text, i + len(ticks))
                end = close.end() if close else i + len(ticks)
                out += ["".join(plain), text[i:end]]
                plain, i = [], end
            else:
                plain.append(text[i])
                i += 1
        return "".join([*out, *plain])

    def role(self, name: str, content: str, where: str) -> str:
        """The Markdown for ``{name}`content```."""
        titled = _TITLED.match(content)
        text, target = (titled["text"], titled["target"]) if titled else ("", content)
        if name == "cite" or name.startswith("cite:"):
            return self.book.citations(name.partition(":")[2] or "p", content, where)
        if name == "ref":
            if target in self.book.exercises:
                exercise = self.book.exercises[target]
                default = "Exercise" if exercise.number is None else f"Exercise {exercise.number}"
                return f"[{text or default}]({self.book.site.page(exercise.docname, target)})"
            if target in self.book.targets:
                docname, title = self.book.targets[target]
                return f"[{text or title}]({self.book.site.page(docname, target)})"
            raise ConversionError(f"{where}: {{ref}} to {target!r}, which is no label of the book")
        if name == "doc":
            return f"[{text or target}]({self.link(target if '.' in target else target + '.md', where)})"
        if name == "download":
            return f"[{text or posixpath.basename(target)}]({self.download(target, where)})"
        if name == "math":
            return f"${content}$"
        raise ConversionError(f"{where}: the notebooks cannot show a {{{name}}} role yet")

    def download(self, target: str, where: str) -> str:
        """Where the published book serves ``{download}`target``` (Sphinx's own naming: ``_downloads/<md5>/``)."""
        from sphinx.util import DownloadFiles

        relative = posixpath.normpath(posixpath.join(posixpath.dirname(self.docname), target))
        if relative.startswith("../"):
            raise ConversionError(f"{where}: the download {target} is outside the book")
        return f"{self.book.site.book}/_downloads/{DownloadFiles().add_file(self.docname, relative)}"


def fenced(lines: list[str], language: str) -> list[str]:
    """``lines`` as a fenced code block whose fence is longer than any run of backticks they hold."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + language, *lines, fence]


def reader_notebook(path: Path, book: Book, student: bool = False) -> nbformat.NotebookNode:
    """The notebook a reader opens for the chapter ``path`` (``book/<name>.md``): its code cells exactly, its
    Markdown without MyST, no outputs; in the student edition, no solutions."""
    notebook = jupytext.read(path, fmt="md:myst")
    chapter, cells = Chapter(book, path, student), []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = chapter.markdown(cell.source)
            if not cell.source.strip():
                continue  # a cell that held only a solution, in the student edition
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    for index, cell in enumerate(cells):  # ids that stay put from one generation to the next
        cell.id = hashlib.sha1(f"{path.stem}/{index}".encode()).hexdigest()[:8]
    notebook.cells = cells
    notebook.metadata.pop("jupytext", None)  # not paired: the .md is the source, this notebook is made from it
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    nbformat.validate(notebook)
    return notebook


def chapters(root: Path = ROOT) -> list[Path]:
    """The chapters' sources in the order of ``_toc.yml`` (those under book/; none without a ``_toc.yml``)."""
    toc = root / "_toc.yml"
    names = re.findall(r"(?:root|file):\s*book/(\S+)", toc.read_text(encoding="utf-8")) if toc.is_file() else []
    return [root / "book" / f"{name}.md" for name in names]


def write_notebook(notebook: nbformat.NotebookNode, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    partial.write_text(nbformat.writes(notebook) + "\n", encoding="utf-8")
    partial.replace(target)  # a notebook appears whole or not at all


def write_book(root: Path = ROOT) -> list[Path]:
    """Write ``book/<name>.ipynb`` for every ``book/<name>.md``; return the notebooks written."""
    sources = sorted((root / "book").glob("*.md"))
    book = Book.load(root)
    written = []
    for source in sources:
        write_notebook(reader_notebook(source, book), source.with_suffix(".ipynb"))
        written.append(source.with_suffix(".ipynb"))
    return written


def write_student_edition(out: Path, root: Path = ROOT) -> list[Path]:
    """Write each chapter's student notebook and their zip into ``out``; return the notebooks written."""
    sources = chapters(root)
    book = Book.load(root)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        if not source.is_file():
            raise FileNotFoundError(f"{source} is listed in _toc.yml but missing")
        target = out / f"{source.stem}.ipynb"
        write_notebook(reader_notebook(source, book, student=True), target)
        written.append(target)
    partial = out / (ZIP_NAME + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for target in written:
            archive.write(target, f"eva9-student/{target.name}")
    partial.replace(out / ZIP_NAME)  # the zip appears whole or not at all
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("book", help="write book/<name>.ipynb from each book/<name>.md")
    student = commands.add_parser("student", help="write the student edition and its zip")
    student.add_argument("out", nargs="?", type=Path, default=ROOT / "_build" / "student")
    args = parser.parse_args(argv)
    try:
        if args.command == "book":
            written = write_book()
            print(f"reader notebooks: {len(written)} written from book/*.md")
        else:
            written = write_student_edition(args.out)
            print(f"student edition: {len(written)} chapters without solutions → {args.out / ZIP_NAME}")
    except (ConversionError, FileNotFoundError) as error:
        print(f"reader_notebooks: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
