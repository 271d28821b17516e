"""The notebooks a reader opens, made from the MyST chapters by tools/reader_notebooks.py: each construct of the
book on a small made-up chapter, then the real book and its student edition (made into temporary folders here),
read by this test's own Markdown parser (markdown-it-py, CommonMark), which knows nothing of MyST."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
import textwrap
import zipfile
from pathlib import Path

import jupytext
import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("reader_notebooks", ROOT / "tools" / "reader_notebooks.py")
reader_notebooks = sys.modules.setdefault("reader_notebooks", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(reader_notebooks)

SITE = "https://someone.github.io/tiny"
CONFIG = f"""\
repository:
  url: https://github.com/someone/tiny
  branch: trunk
html:
  baseurl: {SITE}/
bibtex_bibfiles:
  - refs.bib
sphinx:
  config:
    bibtex_reference_style: author_year
    bibtex_cite_id: "cite-{{key}}"
"""
BIB = """\
@article{ada2020one,
  author = {Lovelace, Ada},
  title = {One Author},
  journal = {J},
  year = {2020}
}
@article{two2021,
  author = {Turing, Alan and Hopper, Grace},
  title = {Two Authors},
  journal = {J},
  year = {2021}
}
@article{many2019,
  author = {Noether, Emmy and Curie, Marie and Franklin, Rosalind},
  title = {Many Authors},
  journal = {J},
  year = {2019}
}
"""
SOURCE = '''\
def helper(x):
    """Add one."""
    return x + 1


def loop(items):
    for item in items:
        if item:
            # step begins
            y = helper(item)
            print(y)
            # step ends
'''
HEADER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


@pytest.fixture
def tiny(tmp_path):
    """A tiny book: its configuration, bibliography and a source file; ``tiny(md, name="a")`` converts a chapter
    (written as ``book/<name>.md``) and returns the notebook; ``student=True`` for the student edition."""
    (tmp_path / "_config.yml").write_text(CONFIG)
    (tmp_path / "refs.bib").write_text(BIB)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text(SOURCE)
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "other.md").write_text(HEADER + "# Other\n\n(other-target)=\n## A target section\n")

    def convert(md: str, name: str = "a", student: bool = False):
        path = tmp_path / "book" / f"{name}.md"
        path.write_text(HEADER + textwrap.dedent(md))
        book = reader_notebooks.Book.load(tmp_path)
        return reader_notebooks.reader_notebook(path, book, student=student)

    convert.root = tmp_path
    return convert


def markdown(notebook) -> str:
    return "\n\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")


def test_an_included_source_becomes_its_code_from_the_same_markers(tiny):
    notebook = tiny(
        """\
        # A

        The step:

        ```{literalinclude} ../pkg/code.py
        :language: python
        :start-after: step begins
        :end-before: step ends
        :dedent: 12
        ```

        And a whole function:

        ```{literalinclude} ../pkg/code.py
        :pyobject: helper
        ```
        """
    )
    text = markdown(notebook)
    step = "```python\ny = helper(item)\nprint(y)\n```"
    assert step in text
    assert '```python\ndef helper(x):\n    """Add one."""\n    return x + 1\n```' in text
    assert "*From [`pkg/code.py`](https://github.com/someone/tiny/blob/trunk/pkg/code.py):*" in text
    assert "literalinclude" not in text and ":dedent:" not in text


def test_an_include_of_a_missing_marker_or_file_is_an_error_not_an_empty_block(tiny):
    with pytest.raises(reader_notebooks.ConversionError, match="no-such-marker"):
        tiny("```{literalinclude} ../pkg/code.py\n:start-after: no-such-marker\n```\n")
    with pytest.raises(reader_notebooks.ConversionError, match="missing.py"):
        tiny("```{literalinclude} ../pkg/missing.py\n```\n")


EXERCISES = """\
# A

## Exercises

```{exercise} First *one*
:label: a-first

Do the first thing.
```

````{solution} a-first
:class: dropdown

```python
print("answer one")
```

Because one.
````

```{exercise} Second
:label: a-second

Do the second thing.
```

:::{solution} a-second
:class: dropdown
Answer two.
:::
"""


def test_an_exercise_is_a_numbered_heading_below_its_section_and_its_solution_a_collapsed_details_block(tiny):
    text = markdown(tiny(EXERCISES))
    assert "### Exercise 1: First *one*\n\nDo the first thing." in text
    assert "### Exercise 2: Second\n\nDo the second thing." in text
    first = text.index('<details>\n<summary>Solution to Exercise 1</summary>\n\n```python\nprint("answer one")')
    assert text.index("Because one.\n\n</details>") > first
    assert "<details>\n<summary>Solution to Exercise 2</summary>\n\nAnswer two.\n\n</details>" in text
    assert ":label:" not in text and ":class:" not in text and "{" not in text.replace('print("answer one")', "")


def test_the_student_edition_keeps_the_exercises_and_drops_every_solution(tiny):
    text = markdown(tiny(EXERCISES, student=True))
    assert "### Exercise 1: First *one*" in text and "### Exercise 2: Second" in text
    assert "answer one" not in text and "Because one" not in text and "Answer two" not in text
    assert "<details>" not in text


def test_exercises_are_numbered_across_cells_and_a_solution_alone_in_a_cell_goes_with_it(tiny):
    md = EXERCISES.replace("Do the second thing.\n```\n", "Do the second thing.\n```\n\n+++\n")
    full, student = tiny(md), tiny(md, student=True)
    assert "### Exercise 2: Second" in markdown(full)
    assert len(student.cells) == len(full.cells) - 1 and "Answer two" not in markdown(student)


def test_an_exercise_without_a_label_is_numbered_and_one_marked_nonumber_is_not(tiny):
    md = "## Exercises\n\n```{exercise} A\nText a.\n```\n\n```{exercise} B\n:nonumber:\nText b.\n```\n\n"
    text = markdown(tiny(md + "```{exercise} C\n:label: c\nText c.\n```\n\nSee {ref}`c`.\n"))
    assert "### Exercise 1: A" in text and "### Exercise: B" in text and "### Exercise 2: C" in text
    assert f"See [Exercise 2]({SITE}/book/a.html#c)." in text


def test_a_label_used_twice_is_an_error(tiny):
    tiny(EXERCISES, name="first")
    with pytest.raises(reader_notebooks.ConversionError, match="a-first"):
        tiny(EXERCISES, name="second")


def test_a_solution_to_no_exercise_is_an_error(tiny):
    with pytest.raises(reader_notebooks.ConversionError, match="no-such-exercise"):
        tiny(":::{solution} no-such-exercise\nA.\n:::\n")


def test_a_citation_is_the_books_author_year_text_linked_to_its_entry_on_the_references_page(tiny):
    text = markdown(tiny("As {cite:t}`ada2020one` showed {cite:p}`two2021,many2019`.\n"))
    references = f"{SITE}/references.html"
    assert f'Lovelace \\[[2020]({references}#cite-ada2020one "One Author")\\] showed' in text
    assert f'\\[[Turing and Hopper, 2021]({references}#cite-two2021 "Two Authors")' in text
    assert f'[Noether et al., 2019]({references}#cite-many2019 "Many Authors")\\]' in text


def test_a_citation_of_no_entry_is_an_error(tiny):
    with pytest.raises(reader_notebooks.ConversionError, match="nobody1999"):
        tiny("See {cite:p}`nobody1999`.\n")


def test_cross_references_and_chapter_links_go_into_the_published_book(tiny):
    tiny(EXERCISES, name="ex")
    text = markdown(
        tiny(
            """\
            See {ref}`this exercise <a-second>`, {ref}`a-first`, {ref}`other-target` and
            the [other chapter](other.md), its [section](other.md#a-target-section) and [a site](https://example.org).
            """
        )
    )
    assert f"[this exercise]({SITE}/book/ex.html#a-second)" in text
    assert f"[Exercise 1]({SITE}/book/ex.html#a-first)" in text
    assert f"[A target section]({SITE}/book/other.html#other-target)" in text
    assert f"[other chapter]({SITE}/book/other.html)" in text and f"[section]({SITE}/book/other.html#a-target-section)"
    assert "[a site](https://example.org)" in text


def test_a_link_whose_text_is_code_or_holds_a_role_goes_into_the_published_book_too(tiny):
    text = markdown(tiny("The [`other`](other.md) chapter, and [as {cite:t}`ada2020one` says](other.md).\n"))
    assert f"The [`other`]({SITE}/book/other.html) chapter" in text
    assert f"[as Lovelace \\[[2020]({SITE}/references.html#cite-ada2020one" in text and "](other.md)" not in text


def test_a_link_to_no_file_and_a_reference_to_no_label_are_errors(tiny):
    with pytest.raises(reader_notebooks.ConversionError, match="missing.md"):
        tiny("See [it](missing.md).\n")
    with pytest.raises(reader_notebooks.ConversionError, match="no-label"):
        tiny("See {ref}`no-label`.\n")


def test_a_download_links_to_where_sphinx_publishes_it(tiny):
    text = markdown(tiny("The {download}`zip <../_build/student/x.zip>`.\n", name="intro"))
    digest = hashlib.md5(b"_build/student/x.zip").hexdigest()  # Sphinx's _downloads/<md5 of the path>/<name>
    assert f"The [zip]({SITE}/_downloads/{digest}/x.zip)." in text


def test_an_admonition_becomes_a_quote_and_a_figure_an_image_with_its_caption(tiny):
    (tiny.root / "book" / "pic.png").write_bytes(b"\x89PNG")
    text = markdown(
        tiny(
            """\
            ```{note}
            Mind the {cite:p}`ada2020one`.

            Second paragraph.
            ```

            ```{admonition} Careful now
            Body.
            ```

            ```{figure} pic.png
            :alt: a picture
            :width: 50%

            The caption.
            ```
            """
        )
    )
    assert "> **Note**\n>\n> Mind the \\[[Lovelace, 2020](" in text and ">\n> Second paragraph." in text
    assert "> **Careful now**\n>\n> Body." in text
    assert "![a picture](https://raw.githubusercontent.com/someone/tiny/trunk/book/pic.png)\n\nThe caption." in text


def test_a_code_block_math_a_dropdown_and_a_doc_link_become_their_markdown(tiny):
    text = markdown(
        tiny(
            """\
            ```{code-block} python
            ---
            caption: a caption
            ---
            x = 1
            ```

            ```{math}
            a^2 + b^2 = c^2
            ```

            :::{dropdown} More
            Hidden text with {math}`x^2`.
            :::

            See {doc}`the other chapter <other>`.
            """
        )
    )
    assert "```python\nx = 1\n```" in text and "caption" not in text
    assert "$$\na^2 + b^2 = c^2\n$$" in text
    assert "<details>\n<summary>More</summary>\n\nHidden text with $x^2$.\n\n</details>" in text
    assert f"See [the other chapter]({SITE}/book/other.html)." in text


def test_code_stays_as_written_in_fences_inline_code_and_code_cells(tiny):
    notebook = tiny(
        """\
        Write `` {cite:p}`key` `` to cite, and `{ref}` to refer.

        ````markdown
        ```{exercise} Not converted
        {cite:p}`inside`
        ```
        ````

        ```{code-cell} ipython3
        :tags: [remove-cell]

        x = "{cite:p}`not-a-citation`"
        ```

        ```{code-cell} ipython3
        %pip install nothing
        ```
        """
    )
    text = markdown(notebook)
    assert "Write `` {cite:p}`key` `` to cite, and `{ref}` to refer." in text
    assert "````markdown\n```{exercise} Not converted\n{cite:p}`inside`\n```\n````" in text
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.source for cell in code] == ['x = "{cite:p}`not-a-citation`"', "%pip install nothing"]
    assert code[0].metadata == {"tags": ["remove-cell"]} and all(cell.outputs == [] for cell in code)
    assert "jupytext" not in notebook.metadata and notebook.metadata["kernelspec"]["name"] == "python3"


def test_targets_and_comments_go(tiny):
    text = markdown(tiny("(a-label)=\n## Section\n\n% a MyST comment\nText.\n"))
    assert text == "## Section\n\nText."


def test_an_unknown_directive_or_role_is_an_error_naming_it(tiny):
    with pytest.raises(reader_notebooks.ConversionError, match=r"\{tableofcontents\}"):
        tiny("```{tableofcontents}\n```\n")
    with pytest.raises(reader_notebooks.ConversionError, match=r"\{numref\}"):
        tiny("See {numref}`fig-x`.\n")
    with pytest.raises(reader_notebooks.ConversionError, match="never closed"):
        tiny("```{exercise} Open\n:label: open\n\nNo end.\n")


def test_cell_ids_stay_put_from_one_generation_to_the_next(tiny):
    md = EXERCISES + "\n```{code-cell} ipython3\nx = 1\n```\n\nAfter.\n"
    first, second = tiny(md), tiny(md)
    assert [c.id for c in first.cells] == [c.id for c in second.cells] and len({c.id for c in first.cells}) > 1


# The real book, made into temporary folders: the book's notebooks and the student edition.


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Each chapter's notebook (book edition) and its student notebook, as dicts read back from the files."""
    out = tmp_path_factory.mktemp("reader")
    book = reader_notebooks.Book.load(ROOT)
    editions = {"book": {}, "student": {}}
    for source in sorted((ROOT / "book").glob("*.md")):
        for edition, student in (("book", False), ("student", True)):
            target = out / edition / f"{source.stem}.ipynb"
            target.parent.mkdir(exist_ok=True)
            reader_notebooks.write_notebook(reader_notebooks.reader_notebook(source, book, student), target)
            editions[edition][source.stem] = json.loads(target.read_text(encoding="utf-8"))
    return editions


_ROLE_BEFORE_CODE = re.compile(r"\{[\w:.-]+\}$")
_MYST_LINE = re.compile(r"^(?::{3,}\{|`{3,}\{|:[\w-]+:(\s|$)|\([\w.-]+\)=$|\+\+\+|%)")


def myst_left(source: str) -> list[str]:
    """What a CommonMark reader would show of MyST in ``source``: a fenced directive, a role before its code span,
    an option, target or colon-fence line, a link to a chapter's source; empty when there is none."""
    found, tokens = [], MarkdownIt("commonmark").parse(source)
    for token in tokens:
        if token.type == "fence" and token.info.startswith("{"):
            found.append(f"directive {token.info}")
        if token.type != "inline":
            continue
        for line in token.content.split("\n"):
            if _MYST_LINE.match(line.strip()) and not line.strip().startswith("`"):
                found.append(f"line {line.strip()!r}")
        children = token.children or []
        for before, after in zip(children, children[1:]):
            if before.type == "text" and after.type == "code_inline" and _ROLE_BEFORE_CODE.search(before.content):
                found.append(f"role {before.content[-20:]}`{after.content}`")
        for child in children:
            href = child.attrs.get("href") if child.type in ("link_open", "image") else None
            src = child.attrs.get("src") if child.type == "image" else None
            for target in filter(None, (href, src)):
                if not re.match(r"^(https?://|#)", str(target)):
                    found.append(f"relative link {target}")
    return found


def test_the_checker_finds_myst_in_a_chapters_source():
    source = (ROOT / "book" / "training.md").read_text(encoding="utf-8")
    found = myst_left(source)
    assert any("{literalinclude}" in f for f in found) and any("{exercise}" in f for f in found)
    assert any(f.startswith("role") and "cite" in f for f in found) and any(":class: dropdown" in f for f in found)
    assert any(f == "relative link intro.md" for f in found)
    assert myst_left("Plain `{cite:p}` in code and [a link](https://x.org).") == []


@pytest.mark.parametrize("edition", ["book", "student"])
def test_no_generated_notebook_holds_a_myst_directive_role_or_relative_link(generated, edition):
    assert set(generated[edition]) >= {"intro", "training", "gradcam", "results"}
    for name, notebook in generated[edition].items():
        for cell in notebook["cells"]:
            if cell["cell_type"] == "markdown":
                left = myst_left("".join(cell["source"]))
                assert not left, f"{edition}/{name}.ipynb shows MyST: {left[:5]}"


def test_the_notebooks_code_cells_are_the_chapters_exactly(generated):
    for name in generated["book"]:
        source = jupytext.read(ROOT / "book" / f"{name}.md", fmt="md:myst")
        expected = [(c.source, c.metadata) for c in source.cells if c.cell_type == "code"]
        for edition in ("book", "student"):
            cells = [c for c in generated[edition][name]["cells"] if c["cell_type"] == "code"]
            assert [("".join(c["source"]), c["metadata"]) for c in cells] == expected, f"{edition}/{name}"
            assert all(c["outputs"] == [] and c["execution_count"] is None for c in cells)


def numbered_exercises() -> dict[str, list[tuple[str, str]]]:
    """Each chapter's exercises as (number, title), numbered on through the chapters in ``_toc.yml``'s order as the
    HTML book numbers them (sphinx-exercise), read from the sources by this test."""
    order = re.findall(r"file:\s*book/(\S+)|root:\s*book/(\S+)", (ROOT / "_toc.yml").read_text(encoding="utf-8"))
    found, number = {}, 0
    for name in ("".join(pair) for pair in order):
        md = (ROOT / "book" / f"{name}.md").read_text(encoding="utf-8")
        titles = re.findall(r"^`{3,}\{exercise\}\s*(.*)$", md, flags=re.M)
        found[name] = [(str(number + i), title) for i, title in enumerate(titles, 1)]
        number += len(titles)
    return found


def test_every_exercise_is_a_heading_and_every_solution_a_details_block_only_in_the_book_edition(generated):
    expected = numbered_exercises()
    assert expected["intro"][0][0] == "1" and expected["gradcam"][0][0] != "1"
    for name in generated["book"]:
        md = (ROOT / "book" / f"{name}.md").read_text(encoding="utf-8")
        solutions = re.findall(r"^(?:`{3,}|:{3,})\{solution\}", md, flags=re.M)
        assert expected[name] and len(solutions) == len(expected[name]), name
        for edition in ("book", "student"):
            text = "\n".join("".join(c["source"]) for c in generated[edition][name]["cells"])
            headings = re.findall(r"^#{2,6} Exercise (\d+): (.*)$", text, flags=re.M)
            assert headings == expected[name], f"{edition}/{name}"
            details = text.count("<details>")
            assert details == (len(solutions) if edition == "book" else 0), f"{edition}/{name}: {details} details"


def test_the_solutions_text_is_in_the_book_edition_and_not_in_the_student_one(generated):
    md = (ROOT / "book" / "gradcam.md").read_text(encoding="utf-8")
    answer = "untrained = models.resnet18().eval()  # random weights, as before training"
    assert answer in md
    book, student = ("\n".join("".join(c["source"]) for c in generated[e]["gradcam"]["cells"]) for e in generated)
    assert answer in book and answer not in student


def test_the_training_notebook_shows_the_training_step_s_code(generated):
    loop = (ROOT / "eva9" / "train" / "loop.py").read_text(encoding="utf-8").split("\n")
    start = next(i for i, line in enumerate(loop) if "The training step begins here" in line)
    end = next(i for i, line in enumerate(loop) if "The training step ends here" in line)
    step = "\n".join(line[12:] for line in loop[start + 1 : end])  # the chapter's :dedent: 12
    assert "loss.backward()" in step or ".backward()" in step
    text = "\n".join("".join(c["source"]) for c in generated["book"]["training"]["cells"])
    assert f"```python\n{step}\n```" in text


def test_the_student_edition_is_every_chapter_of_the_toc_and_its_zip(tmp_path):
    written = reader_notebooks.write_student_edition(tmp_path)
    names = {path.stem for path in reader_notebooks.chapters()}
    assert {"intro", "gradcam", "results"} <= names and {p.stem for p in written} == names
    with zipfile.ZipFile(tmp_path / reader_notebooks.ZIP_NAME) as archive:
        assert sorted(archive.namelist()) == sorted(f"eva9-student/{name}.ipynb" for name in names)
        assert archive.read("eva9-student/intro.ipynb") == (tmp_path / "intro.ipynb").read_bytes()
    assert not list(tmp_path.glob("*.partial"))
