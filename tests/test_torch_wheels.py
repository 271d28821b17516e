"""``make setup``'s choice of PyTorch wheels (tools/torch_wheels.py): the CPU-only index without a CUDA GPU when it
answers, else the default wheels; simulated with a fake ``nvidia-smi`` on PATH, a local index on 127.0.0.1 or a
closed port, and a fake pip that records its arguments. No network."""

from __future__ import annotations

import http.server
import importlib.util
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("torch_wheels", ROOT / "tools" / "torch_wheels.py")
assert spec is not None and spec.loader is not None
torch_wheels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(torch_wheels)


@pytest.fixture
def no_torch(monkeypatch):
    """An environment without torch yet, as a fresh .venv is."""
    monkeypatch.setattr(torch_wheels, "torch_installed", lambda: False)


def put_on_path(monkeypatch, tmp_path: Path, name: str, script: str) -> None:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{script}\n")
    (folder / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}")


def fake_pip(tmp_path: Path, status: int = 0) -> tuple[list[str], Path]:
    """A pip that writes its arguments to a file and exits with ``status``."""
    record, pip = tmp_path / "pip-args.txt", tmp_path / "fake-pip"
    pip.write_text(f'#!/bin/sh\necho "$@" > {record}\nexit {status}\n')
    pip.chmod(0o755)
    return [str(pip)], record


@pytest.fixture
def local_index():
    """A package index on 127.0.0.1 that answers for /torch/."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/whl/cpu/torch/" else 404)
            self.end_headers()
            self.wfile.write(b"<html>torch-2.0.0+cpu</html>")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    server.shutdown()


@pytest.fixture
def closed_index():
    """An index URL on a port nobody listens on: unreachable, at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/whl/cpu"


def test_no_gpu_and_the_cpu_index_answers_installs_the_cpu_build_from_it(no_torch, monkeypatch, tmp_path, local_index):
    put_on_path(monkeypatch, tmp_path, "true", "exit 0")  # PATH holds no nvidia-smi
    pip, record = fake_pip(tmp_path)
    said = torch_wheels.install(local_index, 5, pip)
    assert record.read_text().strip() == f"install torch torchvision --index-url {local_index}"
    assert said == f"No CUDA GPU: installed PyTorch's CPU-only build from {local_index}"


def test_no_gpu_and_the_index_unreachable_falls_back_to_the_default(no_torch, monkeypatch, tmp_path, closed_index):
    put_on_path(monkeypatch, tmp_path, "true", "exit 0")
    pip, record = fake_pip(tmp_path)
    said = torch_wheels.install(closed_index, 5, pip)
    assert not record.exists()  # requirements.txt brings the default torch from PyPI
    assert "unreachable: falling back to the default wheels from PyPI" in said


def test_a_failed_install_from_the_cpu_index_falls_back_to_the_default(no_torch, monkeypatch, tmp_path, local_index):
    put_on_path(monkeypatch, tmp_path, "true", "exit 0")
    pip, record = fake_pip(tmp_path, status=1)
    said = torch_wheels.install(local_index, 5, pip)
    assert record.exists()
    assert said.startswith(f"Installing from {local_index} failed: falling back to the default wheels")


def test_a_cuda_gpu_gets_the_default_wheels_without_asking_the_cpu_index(no_torch, monkeypatch, tmp_path, local_index):
    put_on_path(monkeypatch, tmp_path, "nvidia-smi", 'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"')
    pip, record = fake_pip(tmp_path)
    said = torch_wheels.install(local_index, 5, pip)
    assert not record.exists()
    assert said.startswith("CUDA GPU found")


def test_an_nvidia_smi_that_finds_no_device_counts_as_no_gpu(no_torch, monkeypatch, tmp_path, local_index):
    put_on_path(monkeypatch, tmp_path, "nvidia-smi", 'echo "No devices were found"; exit 6')
    assert not torch_wheels.cuda_gpu_present()
    pip, record = fake_pip(tmp_path)
    assert torch_wheels.install(local_index, 5, pip).startswith("No CUDA GPU: installed")


def test_a_torch_already_installed_is_kept(monkeypatch, tmp_path, local_index):
    monkeypatch.setattr(torch_wheels, "torch_installed", lambda: True)
    pip, record = fake_pip(tmp_path)
    assert "already installed" in torch_wheels.install(local_index, 5, pip)
    assert not record.exists()


def test_the_script_says_in_one_line_which_wheels_it_chose(tmp_path, closed_index):
    """Run as make setup runs it: the python of this environment already has torch, so it keeps it, and says so."""
    pip, record = fake_pip(tmp_path)
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "torch_wheels.py"), "--index", closed_index, "--pip", pip[0]],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == ["torch_wheels: PyTorch is already installed in this environment: kept as it is"]


def test_make_setup_chooses_the_wheels_before_installing_the_requirements(tmp_path):
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "-n", "-B", "setup", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    lines = done.stdout.splitlines()
    chooser = next(i for i, line in enumerate(lines) if "tools/torch_wheels.py" in line)
    requirements = next(i for i, line in enumerate(lines) if "pip install -r requirements.txt" in line)
    assert f"{venv}/bin/python tools/torch_wheels.py" in lines[chooser]
    assert chooser < requirements
