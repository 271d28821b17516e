"""The notebooks a reader opens, as Jupyter shows them: each chapter's notebook and its student notebook, made from
the MyST source by tools/reader_notebooks.py, converted to HTML by nbconvert (the lab template, Jupyter's own
rendering of Markdown) and opened in headless Chromium at 1280 px with the network blocked.

The training notebook shows the training step's code (the lines of eva9/train/loop.py between its markers, read
here independently of the tool); every exercise is a heading numbered as in the book, every solution a collapsed
block that opens on a click (none in the student edition); no MyST is left in the text a reader sees.
Screenshots go to _build/screenshots/notebooks/ (the book edition) and _build/screenshots/notebooks/student/.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from headless import chromium

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "_build" / "screenshots" / "notebooks"
_spec = importlib.util.spec_from_file_location("reader_notebooks", ROOT / "tools" / "reader_notebooks.py")
reader_notebooks = sys.modules.setdefault("reader_notebooks", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(reader_notebooks)

CHAPTERS = sorted(path.stem for path in (ROOT / "book").glob("*.md"))
MYST = ("{literalinclude}", "{exercise}", "{solution", "{cite", "{ref}", "{download}", ":label:", ":class:", ":::")
"""What a reader would see of MyST in a notebook's text (outside code)."""


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """(edition, chapter) → the HTML page nbconvert makes of the chapter's reader notebook."""
    nbconvert = pytest.importorskip("nbconvert")
    out = tmp_path_factory.mktemp("notebook-html")
    book, exporter = reader_notebooks.Book.load(ROOT), nbconvert.HTMLExporter(template_name="lab")
    found = {}
    for name in CHAPTERS:
        for edition in ("book", "student"):
            notebook = reader_notebooks.reader_notebook(ROOT / "book" / f"{name}.md", book, edition == "student")
            body, _ = exporter.from_notebook_node(notebook)
            found[edition, name] = out / edition / f"{name}.html"
            found[edition, name].parent.mkdir(exist_ok=True)
            found[edition, name].write_text(body, encoding="utf-8")
    return found


@pytest.fixture(scope="module")
def browser():
    driver = chromium("--host-resolver-rules=MAP * ~NOTFOUND", window="1280,900")  # nothing to fetch: offline
    yield driver
    driver.quit()


def open_page(driver, path: Path) -> None:
    driver.get(path.as_uri())
    driver.execute_script("document.documentElement.style.scrollBehavior = 'auto'")


def screenshot(driver, element, path: Path, block: str = "start") -> None:
    """Scroll ``element`` to the top (or ``block="center"``) of the window and save what the reader sees."""
    script = "arguments[0].scrollIntoView({block: arguments[1]}); window.scrollBy(0, -16);"
    driver.execute_script(script, element, block)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(path)), f"no screenshot saved at {path}"


def exercise_titles(name: str) -> list[tuple[int, str]]:
    """The exercises of ``book/<name>.md`` as (number, title), read from the sources by this test: the book numbers
    them on through the chapters in ``_toc.yml``'s order."""
    order = re.findall(r"(?:file|root):\s*book/(\S+)", (ROOT / "_toc.yml").read_text(encoding="utf-8"))
    number = 0
    for chapter in order:
        md = (ROOT / "book" / f"{chapter}.md").read_text(encoding="utf-8")
        titles = re.findall(r"^`{3,}\{exercise\}\s*(.*)$", md, flags=re.M)
        if chapter == name:
            return [(number + i, title) for i, title in enumerate(titles, 1)]
        number += len(titles)
    raise AssertionError(f"{name} is not in _toc.yml")


def visible_text(driver) -> str:
    """The rendered Markdown's text without its code (inline or blocks), as a reader reads the prose."""
    return driver.execute_script(
        """return Array.from(document.querySelectorAll('.jp-RenderedMarkdown')).map(cell => {
            const copy = cell.cloneNode(true);
            copy.querySelectorAll('code, pre').forEach(code => code.remove());
            return copy.textContent;
        }).join('\\n');"""
    )


def test_the_training_notebook_shows_the_training_step_s_code(pages, browser):
    loop = (ROOT / "eva9" / "train" / "loop.py").read_text(encoding="utf-8").split("\n")
    start = next(i for i, line in enumerate(loop) if "The training step begins here" in line)
    end = next(i for i, line in enumerate(loop) if "The training step ends here" in line)
    step = [line[12:] for line in loop[start + 1 : end]]  # the chapter's :dedent: 12
    assert len(step) >= 8 and any(".backward()" in line for line in step)
    open_page(browser, pages["book", "training"])
    blocks = browser.find_elements("css selector", ".jp-RenderedMarkdown pre")
    shown = [block for block in blocks if ".backward()" in block.text]
    assert len(shown) == 1, f"the training notebook shows {len(shown)} blocks of the training step"
    block = shown[0]
    assert block.text.split("\n") == step
    box = browser.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]", block)
    assert box[0] > 400 and box[1] > 16 * len(step), f"the training step's code is not shown whole: {box}"
    screenshot(browser, block, SCREENSHOTS / "training.png", block="center")


@pytest.mark.parametrize("name", CHAPTERS)
def test_exercises_are_numbered_headings_and_solutions_collapsed_blocks_that_open(pages, browser, name):
    titles = exercise_titles(name)
    open_page(browser, pages["book", name])
    headings = browser.execute_script(
        """return Array.from(document.querySelectorAll('.jp-RenderedMarkdown :is(h2, h3, h4, h5)'))
            .map(h => h.textContent.replace('¶', '').trim()).filter(t => t.startsWith('Exercise '));"""
    )
    assert headings == [f"Exercise {i}: {title}" for i, title in titles], name
    assert not [text for text in MYST if text in visible_text(browser)], f"{name}: MyST in the text a reader sees"
    details = browser.find_elements("css selector", ".jp-RenderedMarkdown details")
    assert len(details) == len(titles), f"{name}: {len(details)} solutions for {len(titles)} exercises"
    first = f"//*[starts-with(normalize-space(.), 'Exercise {titles[0][0]}:')][self::h2 or self::h3]"
    if details:  # as the reader first sees them: every solution collapsed
        screenshot(browser, browser.find_element("xpath", first), SCREENSHOTS / f"{name}-exercises.png")
    height = "return arguments[0].getBoundingClientRect().height"
    for (number, _), block in zip(titles, details):
        summary = block.find_element("css selector", "summary")
        assert summary.text.strip() == f"Solution to Exercise {number}" and summary.is_displayed()
        assert not block.get_attribute("open")
        closed = browser.execute_script(height, block)
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
        summary.click()
        assert block.get_attribute("open") is not None
        assert browser.execute_script(height, block) > closed + 20, f"{name}: solution {number} shows nothing"
        if number == titles[0][0]:
            screenshot(browser, browser.find_element("xpath", first), SCREENSHOTS / f"{name}-solution.png")


@pytest.mark.parametrize("name", CHAPTERS)
def test_the_student_notebooks_keep_the_exercises_without_solutions(pages, browser, name):
    titles = exercise_titles(name)
    open_page(browser, pages["student", name])
    text = browser.execute_script("return document.body.innerText")
    assert all(f"Exercise {i}: {title}" in text for i, title in titles), name
    assert not browser.find_elements("css selector", "details") and "Solution to" not in text
    assert not [text for text in MYST if text in visible_text(browser)], f"{name}: MyST in the text a reader sees"
    first = f"//*[starts-with(normalize-space(.), 'Exercise {titles[0][0]}:')][self::h2 or self::h3]"
    screenshot(browser, browser.find_element("xpath", first), SCREENSHOTS / "student" / f"{name}-exercises.png")


def test_the_gradcam_notebook_shows_the_included_cam_formulas_and_its_citations_as_links(pages, browser):
    open_page(browser, pages["book", "gradcam"])
    blocks = [b.text for b in browser.find_elements("css selector", ".jp-RenderedMarkdown pre")]
    for function in ("gradcam_map", "gradcampp_map", "layercam_map"):  # the chapter's {literalinclude} :pyobject:
        assert any(text.startswith(f"def {function}(") for text in blocks), f"{function} is not shown"
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('.jp-RenderedMarkdown a')).map(a => [a.textContent, a.href])"
    )
    cited = [text for text, href in links if "/references.html#cite-" in href]
    assert "Selvaraju et al., 2017" in cited and len(cited) >= 8, cited
    first = browser.find_element("xpath", "//pre[starts-with(normalize-space(.), 'def gradcam_map(')]")
    screenshot(browser, first, SCREENSHOTS / "gradcam.png", block="center")
