"""The built HTML book in a real browser: headless Chromium (Debian's chromium + chromium-driver) via Selenium.

Run after `jupyter-book build .`: every chapter page loads, its images decode, figure-bearing chapters show
figures, each chapter's Colab link opens that chapter's .ipynb, and the navigation lists all seven chapters.
A screenshot of the GradCAM page is saved to _build/screenshots/gradcam.png (a CI artifact).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no built book at {HTML}: run `jupyter-book build .` (or `make book`) before this test")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium to run the browser check")
    from selenium.webdriver.chrome.service import Service

    for program in (CHROMIUM, CHROMEDRIVER):
        if not Path(program).is_file() and shutil.which(Path(program).name) is None:
            pytest.fail(f"{program} is missing: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--window-size=1400,1000", "--hide-scrollbars",
    ):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
    service = Service(CHROMEDRIVER if Path(CHROMEDRIVER).is_file() else shutil.which("chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
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
