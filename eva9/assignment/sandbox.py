"""Run a submission's code in a sandbox: no network, a read-only file system but for its scratch folder, the
hidden tests and every other submission out of sight, its own process tree, a time limit and capped files.

The sandbox is Linux's namespaces through util-linux's ``unshare`` (no root needed where unprivileged user
namespaces are enabled, as on Debian and Ubuntu): a new network namespace (only loopback, which the Jupyter
kernel talks over), a new PID namespace (the submission sees and signals only its own processes, and cannot reach
the grader's memory or files through ``/proc``), and a mount namespace in which the folders named ``hidden`` are
covered by empty, unwritable tmpfs, every mount is read-only except the scratch folder, and a second user
namespace locks those mounts so the submission cannot undo them. What it does not bound: memory (the kernel's
OOM killer does) and CPU beyond the wall-clock limit. Without ``unshare`` (:func:`available` is False) nothing
here runs: the grader refuses to grade unless told ``isolate=False``, which keeps only the time and size limits.
"""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

__all__ = ["Outcome", "available", "run"]

MAX_FILE_BYTES = 256 * 1024 * 1024
"""The largest file a sandboxed process may write (RLIMIT_FSIZE): a runaway print or dump stops there."""


class Outcome(NamedTuple):
    """How a sandboxed command ended: its exit status (None when killed at the time limit) and its output's tail."""

    returncode: int | None
    timed_out: bool
    output: str


def available() -> bool:
    """Whether ``unshare`` can make the namespaces here (it needs unprivileged user namespaces)."""
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    try:
        probe = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "true"],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _mount_points() -> list[str]:
    """Every mount point, read from /proc/self/mountinfo (field 5), shortest first."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as lines:
        for line in lines:
            fields = line.split()
            if len(fields) > 4:
                points.append(fields[4].replace("\\040", " "))
    return sorted(set(points), key=len)


def _setup_script(scratch: Path, hidden: Sequence[Path], argv: Sequence[str]) -> str:
    """The shell script that runs as root of the outer namespaces: loopback up, mounts, then the locked inner one."""
    q = shlex.quote
    lines = ["set -e", "ip link set lo up 2>/dev/null || true", f"mount --bind {q(str(scratch))} {q(str(scratch))}"]
    for folder in hidden:
        if folder.exists():
            lines.append(f"mount -t tmpfs -o size=4k,mode=000 eva9-hidden {q(str(folder))}")
    for point in _mount_points():
        if point.startswith(("/proc", "/sys", "/dev")) or point == str(scratch):
            continue
        lines.append(f"mount -o remount,bind,ro {q(point)} 2>/dev/null || true")
    lines.append("mount -t tmpfs -o size=64m eva9-shm /dev/shm 2>/dev/null || true")
    inner = ["unshare", "--user", "--map-root-user", "--mount", "--", *argv]
    lines.append(f"cd {q(str(scratch))}")  # the working directory must be the bind mount, not the folder under it
    lines.append("exec " + " ".join(q(a) for a in inner))
    return "\n".join(lines)


def _limits() -> None:
    """In the child before exec: its own session (so the whole tree can be killed) and a cap on file sizes."""
    os.setsid()
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run(
    argv: Sequence[str],
    scratch: str | os.PathLike,
    *,
    hidden: Sequence[str | os.PathLike] = (),
    timeout: float,
    env: dict[str, str] | None = None,
    isolate: bool = True,
    tail_bytes: int = 4000,
) -> Outcome:
    """Run ``argv`` with ``scratch`` as working directory (the only writable folder), within ``timeout`` seconds.

    Its stdout and stderr go to ``scratch/.sandbox.log`` (capped at :data:`MAX_FILE_BYTES`); the last
    ``tail_bytes`` of it come back. The process tree is killed at the time limit. ``isolate=False`` drops the
    namespaces (see the module docstring).
    """
    scratch = Path(scratch).resolve()
    folders = [Path(h).resolve() for h in hidden]
    if isolate:
        command = ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child"]
        command += ["--mount-proc", "sh", "-c", _setup_script(scratch, folders, argv)]
    else:
        command = list(argv)
    log_path = scratch / ".sandbox.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_limits,
        )
        try:
            returncode: int | None = process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            returncode, timed_out = None, True
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    with open(log_path, "rb") as log:
        log.seek(max(0, log_path.stat().st_size - tail_bytes))
        tail = log.read().decode("utf-8", errors="replace")
    return Outcome(returncode, timed_out, tail)
