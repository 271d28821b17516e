"""Downloads (eva9.files.download and fetch) against HTTP servers of the test's own on 127.0.0.1: one that trickles,
one that says nothing, one interrupted mid-stream, one killed; and six processes refreshing the index at once.

Every server runs in a thread of this process (or answers a subprocess) and every wait is bounded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eva9 import files

REPO = Path(files.__file__).resolve().parents[1]  # the checkout whose eva9 is under test
BODY = bytes(range(256)) * 64  # 16 KiB


class Route:
    """What the server answers on one path: a body, sent in ``pieces`` with ``pause`` seconds between them (and
    optionally held until ``barrier`` is passed, or cut short after ``cut`` bytes)."""

    def __init__(self, body: bytes, pieces: int = 1, pause: float = 0.0, barrier=None, cut: int | None = None):
        self.body, self.pieces, self.pause, self.barrier, self.cut = body, pieces, pause, barrier, cut


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, Route]]]:
    """An HTTP server on a free loopback port, in a thread; returns its base URL and its routes (path → Route)."""
    routes: dict[str, Route] = {}
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.barrier is not None:
                route.barrier.wait(timeout=120)
            self.send_response(200)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            body = route.body if route.cut is None else route.body[: route.cut]
            step = max(1, -(-len(body) // route.pieces))
            try:
                for start in range(0, len(body), step):
                    if stop.is_set():
                        return
                    self.wfile.write(body[start : start + step])
                    self.wfile.flush()
                    time.sleep(route.pause)
                if route.cut is not None:  # say nothing more until the client gives up (or the test ends)
                    stop.wait(timeout=60)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up
                pass

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def bounded(function: Callable[[], object], seconds: float) -> object:
    """``function()``'s result (or the exception it raised), run in a thread that must finish within ``seconds``."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(function())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return outcome[0]


def leftovers(folder: Path, *keep: str) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name not in keep) if folder.exists() else []


def test_a_trickling_server_is_given_up_in_one_line_and_leaves_nothing(server, tmp_path):
    base, routes = server
    routes["/slow.bin"] = Route(BODY, pieces=800, pause=0.02)  # 20 bytes every 20 ms: 1 KiB/s, for 16 s
    started = time.monotonic()
    outcome = bounded(
        lambda: files.download(f"{base}/slow.bin", tmp_path, "slow.bin", max_bytes=1 << 20, progress=(4096, 0.5)),
        seconds=15,
    )
    assert isinstance(outcome, files.DownloadError), outcome
    assert str(outcome) == (
        f"{base}/slow.bin sent less than 4,096 bytes in 0.5 s; given up (try again later, or download it by hand)"
    )
    assert time.monotonic() - started < 8  # about one window (0.5 s), not the whole trickle (16 s)
    assert leftovers(tmp_path) == []


def test_a_server_that_goes_silent_is_given_up_too(server, tmp_path):
    base, routes = server
    routes["/silent.bin"] = Route(BODY, cut=1000)  # 1,000 of 16,384 bytes, then nothing
    outcome = bounded(
        lambda: files.download(f"{base}/silent.bin", tmp_path, "x.bin", max_bytes=1 << 20, progress=(1, 0.5)),
        seconds=10,
    )
    assert isinstance(outcome, files.DownloadError) and "sent less than 1 bytes in 0.5 s" in str(outcome), outcome
    assert leftovers(tmp_path) == []


def test_the_defaults_are_curls_64_kib_in_30_s(server, tmp_path, monkeypatch):
    assert (files.MIN_PROGRESS_BYTES, files.MIN_PROGRESS_SECONDS) == (64 * 1024, 30.0)
    base, routes = server
    routes["/slow.bin"] = Route(BODY, pieces=200, pause=0.02)
    monkeypatch.setattr(files, "MIN_PROGRESS_BYTES", 8192)  # the defaults are read at each call
    monkeypatch.setattr(files, "MIN_PROGRESS_SECONDS", 0.4)
    outcome = bounded(lambda: files.fetch(f"{base}/slow.bin", max_bytes=1 << 20), seconds=10)
    assert isinstance(outcome, files.DownloadError) and "sent less than 8,192 bytes in 0.4 s" in str(outcome), outcome


def test_a_fast_enough_download_is_kept_whole_with_the_users_umask(server, tmp_path):
    base, routes = server
    routes["/ok.bin"] = Route(BODY, pieces=4, pause=0.05)
    digest = hashlib.sha256(BODY).hexdigest()
    path = files.download(f"{base}/ok.bin", tmp_path, "ok.bin", max_bytes=1 << 20, sha256=digest, progress=(1024, 1))
    assert path.read_bytes() == BODY and leftovers(tmp_path) == ["ok.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_an_interrupt_mid_stream_leaves_no_temp_file(server, tmp_path):
    base, routes = server
    routes["/long.bin"] = Route(BODY, pieces=100, pause=0.05)  # 5 s at a good pace
    folder = tmp_path / "cache"

    def interrupt_once_the_temp_file_exists() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(folder.glob(f"{files.TEMP_PREFIX}*")):
            time.sleep(0.01)
        time.sleep(0.2)  # some bytes written into it
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: a KeyboardInterrupt in the main thread

    threading.Thread(target=interrupt_once_the_temp_file_exists, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        files.download(f"{base}/long.bin", folder, "long.bin", max_bytes=1 << 20, progress=(1, 5))
    assert leftovers(folder) == []


KILLED = """
import sys
from eva9 import files
files.download(sys.argv[1], sys.argv[2], "weights.pt", max_bytes=1 << 20, progress=(1, 60))
"""


def test_a_killed_downloads_temp_file_is_removed_by_the_next_attempt_and_a_live_ones_is_not(server, tmp_path):
    base, routes = server
    routes["/long.bin"] = Route(BODY, pieces=400, pause=0.1)  # 40 s: it is still running when it is killed
    routes["/good.bin"] = Route(BODY)
    folder = tmp_path / "hub" / "checkpoints"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    stranger = folder / ".weights.pt.abc123.tmp"  # not eva9's prefix: someone else's file, kept

    def start() -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", KILLED, f"{base}/long.bin", str(folder)], env=env)
        deadline = time.monotonic() + 120
        while not [p for p in folder.glob(f"{files.TEMP_PREFIX}*") if p.stat().st_size > 0]:
            assert time.monotonic() < deadline and process.poll() is None, "the download never started"
            time.sleep(0.05)
        return process

    killed = start()
    stranger.write_bytes(b"not ours")
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    stale = list(folder.glob(f"{files.TEMP_PREFIX}*"))
    assert len(stale) == 1  # SIGKILL runs no clean-up
    live = start()  # a second download in progress, in another process
    try:
        running = set(folder.glob(f"{files.TEMP_PREFIX}*")) - set(stale)
        files.download(f"{base}/good.bin", folder, "good.pt", max_bytes=1 << 20)
        assert not stale[0].exists()  # the killed process's temp file: gone
        assert all(path.exists() for path in running)  # the live one's: untouched
        assert (folder / "good.pt").read_bytes() == BODY and stranger.read_bytes() == b"not ours"
    finally:
        live.kill()
        live.wait(timeout=30)


INDEX_READER = """
from eva9 import results
print(" ".join(run["name"] for run in results.load_recorded_runs()))
"""


def test_six_processes_refreshing_the_index_at_once_all_succeed(server, tmp_path):
    from test_results import synthetic_run

    base, routes = server
    listing = []
    for name in ("seed", "other"):
        record = json.dumps(synthetic_run("seed" if name == "seed" else "fast")).encode()
        routes[f"/results/{name}.json"] = Route(record)
        listing.append({"file": f"{name}.json", "sha256": hashlib.sha256(record).hexdigest()})
    notes = [f"note {i}" for i in range(70_000)]  # 0.9 MB that takes a while to parse: the moments overlap
    index = json.dumps({"records": listing, "notes": notes}).encode()
    assert len(index) < 1 << 20  # within the index's size cap
    # the index is slow and held until all six have asked for it, so that they all refresh it at the same moment
    routes["/results/index.json"] = Route(index, pieces=8, pause=0.1, barrier=threading.Barrier(6))
    copy = tmp_path / "installed"  # as after pip install: the package without a results/ folder beside it
    shutil.copytree(REPO / "eva9", copy / "eva9", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(copy), "EVA9_RESULTS_URL": f"{base}/results", "EVA9_RESULTS_DIR": ""}
    env["TORCH_HOME"] = str(tmp_path / "torch-home")
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", INDEX_READER], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(6)
    ]
    outcomes = [reader.communicate(timeout=240) for reader in readers]
    for reader, (out, err) in zip(readers, outcomes):
        assert reader.returncode == 0 and out.decode().split() == ["seed", "other"], err.decode()[-2000:]
    cache = tmp_path / "torch-home" / "hub" / "eva9-results"
    assert (cache / "index.json").read_bytes() == index
    assert leftovers(cache, "index.json") == sorted(entry["sha256"][:8] for entry in listing)  # no temp file left
