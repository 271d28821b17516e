"""The explorer app (`python -m eva9 app`) in a real browser: headless Chromium drives it as a reader would.

The app is started as a subprocess on a free loopback port and stopped in the fixture's teardown whatever happens;
every wait is bounded. An audit hook in the server records every address it connects to or looks up, and
Chromium's performance log records every request the page makes: both must name the loopback address only.
A screenshot (1280×800) is saved to _build/screenshots/app.png (a CI artifact).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from headless import chromium

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "_build" / "screenshots"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
START_TIMEOUT = 180  # seconds for the server to answer: importing torch and Gradio on a busy CPU
ANSWER_TIMEOUT = 120  # seconds for one answer in the page

# The server: an audit hook writes each host the process connects to or resolves, then the command line runs.
SERVER = """
import sys
log = open(sys.argv[2], "a", buffering=1)
def record(event, args):
    if event == "socket.connect":
        address = args[1]
        log.write("connect " + (str(address[0]) if isinstance(address, tuple) else "unix:" + str(address)) + "\\n")
    elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
        log.write("resolve " + str(args[0]) + "\\n")
sys.addaudithook(record)
from eva9.cli import main
sys.exit(main(["app", "--port", sys.argv[1]]))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, url: str, connections: Path, output: Path) -> None:
        self.url, self.connections, self.output = url, connections, output

    def hosts(self) -> set[str]:
        lines = self.connections.read_text().split()
        return {host for kind, host in zip(lines[::2], lines[1::2]) if not host.startswith("unix:")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app")
    port = free_port()
    connections, output = folder / "connections.txt", folder / "server.log"
    connections.touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("GRADIO_ANALYTICS_ENABLED", None)  # the app must turn the analytics off itself
    with open(output, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), str(connections)], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"the app exited with {process.returncode}:\n{output.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not answer at {url} in {START_TIMEOUT} s:\n{output.read_text()[-3000:]}")
            time.sleep(0.5)
        yield Server(url, connections, output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server):
    driver = chromium(window="1280,800", capabilities={"goog:loggingPrefs": {"performance": "ALL"}})
    try:
        driver.get(server.url)
        wait(driver, 60).until(lambda d: d.find_elements("css selector", "#photo input[type=file]"))
        yield driver
    finally:
        driver.quit()


def wait(driver, seconds: float = ANSWER_TIMEOUT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.25)


def text_of(driver, selector: str) -> str:
    return driver.execute_script(f"return document.querySelector({selector!r})?.innerText || ''")


def overlay_width(driver) -> int:
    return driver.execute_script("return document.querySelector('#overlays img')?.naturalWidth || 0")


def upload(driver, path: Path) -> None:
    driver.find_element("css selector", "#photo input[type=file]").send_keys(str(path))


def clear_upload(driver) -> None:
    """Remove the uploaded file (the File component's clear button), so that the next upload is a new event."""
    driver.execute_script("document.querySelector('#photo button[aria-label=Clear]')?.click()")
    wait(driver, 30).until(lambda d: not d.find_elements("css selector", "#photo .file-preview, #photo table"))


@pytest.fixture(scope="module")
def cat_photo(tmp_path_factory) -> tuple[Path, str]:
    """A JPEG of scikit-image's cat, and the class the published network gives it (computed here, not in the app)."""
    import torch
    from PIL import Image
    from skimage import data as samples

    from eva9 import app, models, photos
    from eva9.constants import SHORT_NAMES

    path = tmp_path_factory.mktemp("photos") / "my-cat.jpg"
    Image.fromarray(samples.chelsea()).save(path, quality=92)
    with torch.no_grad():
        logits = models.resnet18(weights=app.Explorer().default, progress=False).eval()(photos.photo_batch([path]))
    return path, SHORT_NAMES[int(logits.argmax())]


def test_an_uploaded_photo_shows_its_top_class_and_the_overlays(page, cat_photo):
    path, expected = cat_photo
    upload(page, path)
    wait(page).until(lambda d: overlay_width(d) > 0 and "my-cat.jpg" in text_of(d, "#status"))
    assert text_of(page, "#top-classes [data-testid=label-output-value]") == expected
    assert f"{expected} (" in text_of(page, "#status")
    assert page.execute_script("return document.querySelector('#seen img')?.naturalWidth || 0") == 192
    page.execute_script("document.querySelector('#overlays').scrollIntoView({block: 'end'})")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert page.save_screenshot(str(SCREENSHOTS / "app.png")), "Chromium could not save the screenshot"


def test_a_text_file_gets_a_message_in_the_page_and_the_app_keeps_serving(page, cat_photo, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    clear_upload(page)
    upload(page, notes)
    wait(page).until(lambda d: "notes.txt is not an image" in text_of(d, "#status"))
    assert overlay_width(page) == 0, "the overlays of the photo before are still shown"
    clear_upload(page)
    upload(page, cat_photo[0])  # the next photo is answered as before
    wait(page).until(lambda d: overlay_width(d) > 0 and "my-cat.jpg" in text_of(d, "#status"))
    assert text_of(page, "#top-classes [data-testid=label-output-value]") == cat_photo[1]


def test_no_request_leaves_the_machine(page, server):
    """Last in this file: by now the page has loaded, uploaded and answered, and the server has served it all."""
    requests = []
    for entry in page.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
        elif message["method"] == "Network.webSocketCreated":
            requests.append(message["params"]["url"])
    assert any(url.startswith(server.url) for url in requests), "the performance log recorded none of the page's"
    outside = [url for url in requests if urlsplit(url).scheme not in ("data", "blob", "about")]
    outside = [url for url in outside if urlsplit(url).hostname not in LOOPBACK]
    assert not outside, f"the page requested {len(outside)} URLs outside this machine: {outside[:10]}"
    hosts = server.hosts()
    assert "127.0.0.1" in hosts, "the server's audit hook recorded no connection at all, so it proves nothing"
    assert hosts <= LOOPBACK, f"the server connected to or looked up {sorted(hosts - LOOPBACK)}"
