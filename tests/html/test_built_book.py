"""The built HTML book in a real browser: headless Chromium (Debian's chromium + chromium-driver) via Selenium.

Run after `jupyter-book build .`: every chapter page loads, its images decode, figure-bearing chapters show
figures, each chapter's Colab link opens that chapter's .ipynb, and the navigation lists all seven chapters. No
page logs a JavaScript error (a message of level SEVERE) in the console.
At both laptop window sizes, 1280×800 and 1400×1000, no code block, cell output or table is wider than the page
column (none scrolls sideways or is cut off at the right edge), the text of neighbouring table cells is at
least 8 px apart, and no figure is shown narrower than the column
width that the figures' font sizes assume (``eva9.plots.BOOK_COLUMN_PX``, tested in tests/test_plots.py). Math
renders from the book's own MathJax with the network blocked, as it must in a book opened from disk.
Screenshots of the GradCAM page and of every chapter at 1280×800 (at its first figure) are saved to
_build/screenshots/ (CI artifacts).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from headless import chromium

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
COLAB = "https://colab.research.google.com/github/eva9-course/eva9/blob/main"

# page name (book/<name>.md) → title in the navigation, and whether the chapter must show at least one figure
CHAPTERS = {
    "intro": ("ResNet18 on CIFAR-10, explained", False),
    "data": ("The data", True),
    "augmentations": ("Augmentations", True),
    "resnet18": ("ResNet18", True),
    "training": ("Training", True),
    "gradcam": ("GradCAM", True),
    "errors": ("Error analysis", True),
}
PAGES = [*CHAPTERS, "results"]  # every page under book/, the appendix included


def start_chromium(*extra_flags: str, size: str = "1400,1000"):
    """Headless Chromium through Debian's chromedriver, a window of ``size`` pixels, with ``extra_flags`` added."""
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no built book at {HTML}: run `jupyter-book build .` (or `make book`) before this test")
    return chromium(*extra_flags, window=size, capabilities={"goog:loggingPrefs": {"browser": "ALL"}})


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium()
    yield driver
    driver.quit()


# The laptop windows the page must fit: a common 1280×800 laptop and a larger 1400×1000 one.
WINDOWS = ["1280x800", "1400x1000"]


@pytest.fixture(scope="module", params=WINDOWS)
def laptop_browser(request):
    """A browser at each of the laptop window sizes in turn (the ``window`` attribute says which)."""
    driver = start_chromium(size=request.param.replace("x", ","))
    driver.window = request.param
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def offline_browser():
    """A browser that can reach no host: names do not resolve and every http(s) request is blocked."""
    driver = start_chromium("--host-resolver-rules=MAP * ~NOTFOUND")
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["http://*", "https://*"]})
    yield driver
    driver.quit()


def open_page(driver, name: str) -> None:
    page = HTML / "book" / f"{name}.html"
    assert page.is_file(), f"chapter page {page} was not built"
    driver.get(page.as_uri())
    driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        const images = Array.from(document.images);
        Promise.all(images.map(img => img.complete ? null : new Promise(r => { img.onload = img.onerror = r; })))
            .then(() => done());"""
    )


def images(driver) -> list[dict]:
    return driver.execute_script(
        """return Array.from(document.images).map(img => ({
            src: img.getAttribute('src'), width: img.naturalWidth,
            figure: img.closest('.cell_output, figure') !== null}));"""
    )


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_chapter_loads_with_decoded_images(browser, name):
    open_page(browser, name)
    title, needs_figure = CHAPTERS[name]
    heading = browser.execute_script("return document.querySelector('main h1, article h1')?.textContent || ''")
    assert title in heading, f"{name}.html: heading {heading!r} is not {title!r}"
    found = images(browser)
    broken = [img["src"] for img in found if img["width"] == 0]
    assert not broken, f"{name}.html: images that do not decode: {broken}"
    if needs_figure:
        figures = [img for img in found if img["figure"]]
        assert figures, f"{name}.html shows no figure in its cell outputs"


# every page a reader can reach: the chapters and the appendix, the References, and Sphinx's index and search pages
EVERY_PAGE = [f"book/{name}.html" for name in PAGES] + ["index.html", "references.html", "genindex.html", "search.html"]


@pytest.mark.parametrize("page", EVERY_PAGE)
def test_no_page_logs_a_javascript_error(browser, page):
    browser.get_log("browser")  # empties the log of what earlier pages wrote
    path = HTML / page
    assert path.is_file(), f"{page} was not built"
    browser.get(path.as_uri())
    browser.execute_script("return new Promise(r => setTimeout(r, 500))")  # the async scripts run too
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"{page} logs JavaScript errors in the console:\n  " + "\n  ".join(errors)


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_colab_link_opens_the_chapter_notebook(browser, name):
    open_page(browser, name)
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href*=\"colab.research.google.com\"]')).map(a => a.href)"
    )
    assert links, f"{name}.html has no Colab link"
    assert set(links) == {f"{COLAB}/book/{name}.ipynb"}, f"{name}.html: Colab links {links}"
    assert (ROOT / "book" / f"{name}.ipynb").is_file(), f"the Colab link targets book/{name}.ipynb, which is missing"


def test_navigation_lists_every_chapter(browser):
    open_page(browser, "results")  # the appendix: on a chapter's own page its entry links to "#"
    entries = browser.execute_script(
        """return Array.from(document.querySelectorAll('.bd-sidebar-primary nav a.reference.internal'))
            .map(a => [a.textContent.trim(), a.getAttribute('href')]);"""
    )
    for name, (title, _) in CHAPTERS.items():
        assert any(text == title and href.split("#")[0].endswith(f"{name}.html") for text, href in entries), (
            f"the navigation lacks {title!r} ({name}.html); it lists {entries}"
        )


def test_gradcam_page_screenshot(browser):
    open_page(browser, "gradcam")
    grid = browser.execute_script(
        "return Array.from(document.querySelectorAll('.cell_output img')).map(img => img.naturalWidth)"
    )
    assert len(grid) >= 3 and min(grid) > 0, f"the GradCAM page should show three decoded grids, got {grid}"
    browser.execute_script(
        "document.querySelectorAll('.cell_output img')[0].scrollIntoView({block: 'start'}); window.scrollBy(0, -260);"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "gradcam.png"
    assert browser.save_screenshot(str(path)), "Chromium could not save the screenshot"
    assert path.stat().st_size > 10_000


@pytest.mark.parametrize("name", PAGES)
def test_no_code_block_output_or_table_scrolls_sideways_or_is_cut_off(laptop_browser, name):
    open_page(laptop_browser, name)  # with every solution opened, so that its code is laid out and measured too
    laptop_browser.execute_script(
        "document.querySelectorAll('div.solution button.toggle-button').forEach(b => b.click())"
    )
    laptop_browser.execute_script("return new Promise(r => setTimeout(r, 300))")
    wide = laptop_browser.execute_script(
        """const wide = [];
        const column = document.querySelector('article.bd-article').getBoundingClientRect().right;
        const blocks = 'article pre, article .cell_output .output.text_html, article table, article img';
        for (const el of document.querySelectorAll(blocks)) {
            const box = el.getBoundingClientRect();
            const scrolls = el.scrollWidth > el.clientWidth + 1 && el.tagName !== 'IMG';
            if (!scrolls && box.right <= column + 1) continue;
            const lines = (el.innerText || el.getAttribute('src') || '').split('\\n');
            const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
            const where = el.closest('.cell_input') ? 'code' : el.closest('.cell_output') ? 'output' : 'block';
            const what = scrolls ? `scrolls, ${el.scrollWidth}px > ${el.clientWidth}px`
                                 : `cut off, right edge ${Math.round(box.right)}px > column ${Math.round(column)}px`;
            wide.push(`${where} ${el.tagName.toLowerCase()} ${what}, ${longest.length} characters: `
                      + JSON.stringify(longest.slice(0, 60)));
        }
        return wide;"""
    )
    assert not wide, f"{name}.html at {laptop_browser.window}: blocks wider than the page:\n  " + "\n  ".join(wide)


@pytest.mark.parametrize("name", PAGES)
def test_the_text_of_neighbouring_table_cells_stays_apart(laptop_browser, name):
    open_page(laptop_browser, name)
    touching = laptop_browser.execute_script(
        """const touching = [];
        const text = cell => { const range = document.createRange(); range.selectNodeContents(cell);
                               return range.getBoundingClientRect(); };
        for (const row of document.querySelectorAll('article table tr')) {
            const cells = Array.from(row.children).filter(cell => cell.textContent.trim());
            for (let i = 0; i + 1 < cells.length; i++) {
                const gap = text(cells[i + 1]).left - text(cells[i]).right;
                if (gap < 8) touching.push(`${Math.round(gap)}px between ${JSON.stringify(cells[i].textContent.trim())}`
                                           + ` and ${JSON.stringify(cells[i + 1].textContent.trim())}`);
            }
        }
        return touching;"""
    )
    assert not touching, f"{name}.html at {laptop_browser.window}: table cells whose text (nearly) touches:\n  " + (
        "\n  ".join(touching[:10])
    )


@pytest.mark.parametrize("name", [name for name, (_, figure) in CHAPTERS.items() if figure])
def test_figures_are_shown_at_least_as_wide_as_their_font_sizes_assume(laptop_browser, name):
    from eva9.plots import BOOK_COLUMN_PX

    open_page(laptop_browser, name)
    shown = laptop_browser.execute_script(
        """return Array.from(document.querySelectorAll('.cell_output img')).map(img =>
            [img.naturalWidth, img.getBoundingClientRect().width]);"""
    )
    assert shown, f"{name}.html shows no figure"
    shrunk = [(natural, round(width)) for natural, width in shown if width + 1 < min(natural, BOOK_COLUMN_PX)]
    assert not shrunk, (
        f"{name}.html at {laptop_browser.window}: figures (natural px, shown px) shown narrower than the "
        f"{BOOK_COLUMN_PX} px column that tests/test_plots.py sizes their text for: {shrunk}"
    )


def test_chapter_screenshots_at_1280_by_800(laptop_browser):
    if laptop_browser.window != "1280x800":
        pytest.skip("screenshots are taken at 1280×800 only")
    folder = SCREENSHOTS / laptop_browser.window
    folder.mkdir(parents=True, exist_ok=True)
    for name in PAGES:  # each at its first figure, if it has one: what a figure looks like at this size
        open_page(laptop_browser, name)
        laptop_browser.execute_script(
            """const figure = document.querySelector('.cell_output img');
            if (figure) { figure.scrollIntoView({block: 'start'}); window.scrollBy(0, -120); }"""
        )
        path = folder / f"{name}.png"
        assert laptop_browser.save_screenshot(str(path)), f"Chromium could not save a screenshot of {name}.html"
        assert path.stat().st_size > 10_000


def test_math_renders_from_the_book_itself_with_the_network_blocked(offline_browser):
    blocked = offline_browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch('https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg-full.js')
            .then(() => done(false), () => done(true));"""
    )
    assert blocked, "the offline browser reached the internet, so this check would prove nothing"
    pages_with_math = 0
    for name in PAGES:
        page = HTML / "book" / f"{name}.html"
        if 'class="math' not in page.read_text(encoding="utf-8"):
            continue
        pages_with_math += 1
        offline_browser.get(page.as_uri())
        sources = offline_browser.execute_script(
            "return Array.from(document.scripts).map(s => s.src).filter(src => /mathjax/i.test(src))"
        )
        assert sources and all(src.startswith("file:") for src in sources), (
            f"{name}.html loads MathJax from {sources}, not from the book's _static folder"
        )
        state = offline_browser.execute_async_script(
            """const done = arguments[arguments.length - 1];
            const report = () => {
                const math = Array.from(document.querySelectorAll('.math'));
                done({math: math.length, rendered: math.filter(m => m.querySelector('mjx-container')).length,
                      errors: document.querySelectorAll('mjx-merror').length});
            };
            if (!window.MathJax || !window.MathJax.startup) { done({loaded: false}); return; }
            MathJax.startup.promise.then(report, report);"""
        )
        assert state.get("loaded", True), f"{name}.html: MathJax did not load offline"
        assert state["math"] > 0 and state["rendered"] == state["math"], (
            f"{name}.html: {state['rendered']} of {state['math']} formulas rendered offline"
        )
        assert state["errors"] == 0, f"{name}.html: {state['errors']} formulas have TeX errors"
    assert pages_with_math, "no chapter has math, so offline rendering went unchecked"


def test_solutions_start_hidden_and_open_on_click(browser):
    pages = [
        name for name in PAGES if 'class="solution' in (HTML / "book" / f"{name}.html").read_text(encoding="utf-8")
    ]
    if not pages:
        pytest.skip("no chapter has a {solution} yet")
    for name in pages:
        open_page(browser, name)
        heights = "return Array.from(document.querySelectorAll('div.solution > section')).map(s => s.offsetHeight)"
        assert all(h == 0 for h in browser.execute_script(heights)), f"{name}.html shows a solution before a click"
        browser.execute_script("document.querySelectorAll('div.solution button.toggle-button').forEach(b => b.click())")
        browser.execute_script("return new Promise(r => setTimeout(r, 300))")
        assert all(h > 0 for h in browser.execute_script(heights)), f"{name}.html: a solution does not open on click"


def test_the_intro_links_the_student_edition_a_zip_of_every_chapter_without_solutions(browser):
    import json
    import zipfile

    open_page(browser, "intro")
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('article a[href$=\".zip\"]')).map(a => a.getAttribute('href'))"
    )
    assert len(links) == 1, f"the intro should link one zip (the student edition), it links {links}"
    archive = (HTML / "book" / links[0]).resolve()
    assert archive.is_file() and archive.is_relative_to(HTML), f"the student edition's link {links[0]} is broken"
    with zipfile.ZipFile(archive) as student:
        names = sorted(Path(name).stem for name in student.namelist())
        assert names == sorted(PAGES), f"the student edition holds {names}"
        for name in student.namelist():
            text = "".join("".join(cell["source"]) for cell in json.loads(student.read(name))["cells"])
            assert re.search(r"^#+ Exercise \d+: ", text, flags=re.M), f"{name}: no exercise"
            assert "<details>" not in text and "{solution" not in text, f"{name}: a solution survives"


def test_the_references_page_lists_the_cited_papers_and_every_citation_links_to_it(browser):
    page = HTML / "references.html"
    assert page.is_file(), "references.md was not built"
    browser.get(page.as_uri())
    entries = browser.execute_script("return Array.from(document.querySelectorAll('.citation')).map(c => c.id)")
    text = browser.execute_script("return document.querySelector('article').innerText")
    for title in ("Deep residual learning", "Grad-CAM", "Cutout", "Sanity checks for saliency maps"):
        assert title.lower() in text.lower(), f"the References page lacks {title!r}"
    cited = 0
    for name in PAGES:
        open_page(browser, name)
        targets = browser.execute_script(
            "return Array.from(document.querySelectorAll('a[href*=\"references.html#\"]')).map(a => a.href)"
        )
        cited += len(targets)
        assert all(href.split("#")[1] in entries for href in targets), f"{name}.html cites an entry that is missing"
    assert cited >= 9, f"only {cited} citations link to the References page"
