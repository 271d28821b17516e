"""The built HTML book in a real browser: headless Chromium (Debian's chromium + chromium-driver) via Selenium.

Run after `jupyter-book build .`: every chapter page loads, its images decode, figure-bearing chapters show
figures, each chapter's Colab link opens that chapter's .ipynb, and the navigation lists all seven chapters.
No code block or cell output is wider than the page column (none scrolls sideways), and math renders from the
book's own MathJax with the network blocked, as it must in a book opened from disk.
A screenshot of the GradCAM page is saved to _build/screenshots/gradcam.png (a CI artifact).
"""

from __future__ import annotations

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
    "resnet18": ("ResNet18", False),
    "training": ("Training", True),
    "gradcam": ("GradCAM", True),
    "errors": ("Error analysis", True),
}
PAGES = [*CHAPTERS, "results"]  # every page under book/, the appendix included


def start_chromium(*extra_flags: str):
    """Headless Chromium through Debian's chromedriver, 1400×1000, with ``extra_flags`` added."""
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no built book at {HTML}: run `jupyter-book build .` (or `make book`) before this test")
    return chromium(*extra_flags)


@pytest.fixture(scope="module")
def browser():
    driver = start_chromium()
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


# Chapters whose code or output is wider than the page column today (a line over ~88 characters scrolls at a
# 1400 px window). The fix is in the chapter (shorter lines, or printing less per line); remove a chapter here
# once its blocks fit: the test then holds it to that (strict xfail turns an unexpected pass into a failure).
WIDE_CODE_TODAY: set[str] = set()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=pytest.mark.xfail(
                strict=True,
                reason="chapter content: a code line or output is wider than the page (see WIDE_CODE_TODAY)",
            ),
        )
        if name in WIDE_CODE_TODAY
        else name
        for name in PAGES
    ],
)
def test_no_code_block_or_output_scrolls_sideways(browser, name):
    open_page(browser, name)
    wide = browser.execute_script(
        """const wide = [];
        for (const el of document.querySelectorAll('article pre, article .cell_output .output.text_html')) {
            if (el.scrollWidth <= el.clientWidth + 1) continue;
            const lines = el.innerText.split('\\n');
            const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
            const where = el.closest('.cell_input') ? 'code' : el.closest('.cell_output') ? 'output' : 'block';
            wide.push(`${where} ${el.scrollWidth}px > ${el.clientWidth}px, ${longest.length} characters: `
                      + JSON.stringify(longest.slice(0, 60)));
        }
        return wide;"""
    )
    assert not wide, f"{name}.html has blocks that scroll sideways:\n  " + "\n  ".join(wide)


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
