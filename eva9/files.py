"""Files that are written whole or not at all, plain file names, and downloads that cannot leave their folder.

:func:`write_atomic` is the one way eva9 writes a file it owns (a run folder's files, published weights, the
manifest, a downloaded copy): a temp file made with :func:`tempfile.mkstemp` in the target's folder (no predictable
name to plant a link at), given the mode the user's umask gives new files, fsync, then :func:`os.replace`; a failed
write removes the temp file and raises :class:`WriteError` naming the file. :func:`plain_name` accepts only file
names that stay in their folder; :func:`download` streams a URL into a folder under a size cap and a least rate of
progress, through a temp file of its own (removed whatever stops it, and by the next download where a killed process
left one) and a rename; :func:`fetch` reads a small file (an index) into memory instead, and :func:`load_json` parses
JSON from outside within bounds of size and depth.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import re
import socket
import stat
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO, Callable, Union

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: temp files are not held, and stale ones are not cleaned
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "WriteError",
    "UnsafeNameError",
    "DownloadError",
    "write_atomic",
    "plain_name",
    "check_sha256",
    "inside",
    "load_json",
    "fetch",
    "download",
    "remove_stale_temps",
    "TEMP_PREFIX",
    "MIN_PROGRESS_BYTES",
    "MIN_PROGRESS_SECONDS",
]

Content = Union[bytes, str, Callable[[BinaryIO], object]]
"""What :func:`write_atomic` writes: bytes, text (UTF-8), or a function that writes into an open binary file."""

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20

TEMP_PREFIX = ".eva9-download-"
"""How the temp file of a download in progress is named (in the download's folder, e.g. torch's hub cache)."""

MIN_PROGRESS_BYTES = 64 * 1024
MIN_PROGRESS_SECONDS = 30.0
"""A download that receives less than MIN_PROGRESS_BYTES in MIN_PROGRESS_SECONDS is given up (as curl's
``--speed-limit 65536 --speed-time 30``): a server that trickles is not waited on for ever."""

MAX_JSON_DEPTH = 32
"""The deepest nesting :func:`load_json` accepts (eva9's own JSON files nest 5 levels)."""

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))

Progress = tuple[int, float]
"""The least progress a download must make: (bytes, in seconds)."""


class WriteError(OSError):
    """A file could not be written; the message names it and the reason, in one line."""


class UnsafeNameError(ValueError):
    """A file name or hash from outside (a download, a manifest) that could lead out of its folder."""


class DownloadError(ValueError):
    """A download failed, was too large or had the wrong SHA-256; nothing of it was kept."""


def _reason(error: object) -> str:
    """What went wrong, in a few lower-case words ("no space left on device", "name or service not known")."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return " ".join(str(error).split()) or type(error).__name__


def _umask() -> int:
    """The process's umask (from /proc on Linux; elsewhere set and restored, the only way POSIX offers)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _umask_mode() -> int:
    """The mode a new file gets under this process's umask (0o666 less the umask), as ``open`` would give it."""
    return 0o666 & ~_umask()


def write_atomic(path: str | os.PathLike, content: Content) -> Path:
    """Write ``content`` to ``path`` whole or not at all (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise WriteError(error.errno, f"could not write {path}: {_reason(error)}") from None
    try:
        os.chmod(tmp, _umask_mode())  # mkstemp makes it 0600; a written file has the user's usual mode
        with os.fdopen(handle, "wb") as f:
            if isinstance(content, str):
                f.write(content.encode("utf-8"))
            elif isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, (OSError, RuntimeError)):  # torch.save reports a full disk as a RuntimeError
            number = error.errno if isinstance(error, OSError) else None
            if number is None and "No space left" in str(error):
                number = errno.ENOSPC
            reason = os.strerror(number).lower() if number else _reason(error)
            raise WriteError(number, f"could not write {path}: {reason}") from None
        raise
    return path


def plain_name(name: object, what: str = "file name") -> str:
    """``name`` if it is a plain file name (letters, digits, ``.``, ``_``, ``-``; no separator, not only dots,
    at most 128 characters); else UnsafeNameError."""
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name) or set(name) == {"."}:
        shown = repr(name)[:80]
        raise UnsafeNameError(
            f"refused the {what} {shown}: only plain names (letters, digits, '.', '_', '-'; no folders) are accepted"
        )
    return name


def check_sha256(value: object, what: str = "SHA-256") -> str:
    """``value`` if it is 64 lowercase hex digits; else UnsafeNameError."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise UnsafeNameError(f"refused the {what} {repr(value)[:80]}: a SHA-256 is 64 hex digits")
    return value


def inside(folder: str | os.PathLike, name: str, what: str = "file name") -> Path:
    """``folder/name`` for a plain ``name``, checked to resolve inside ``folder``."""
    folder = Path(folder)
    target = folder / plain_name(name, what)
    if target.resolve().parent != folder.resolve():
        raise UnsafeNameError(f"refused the {what} {name!r}: {target} resolves outside {folder}")
    return target


def load_json(data: bytes | str, what: str, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from outside (a server, a file a user was handed), parsed only within bounds: at most ``max_bytes`` and
    ``max_depth`` nested arrays and objects (counted before parsing, so no input reaches Python's recursion
    limit); else ValueError, one line naming ``what``."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > max_bytes:
        raise ValueError(f"{what} is larger than {max_bytes:,} bytes")
    outside_strings = _JSON_STRING.sub(b'""', data)  # an unclosed string counts its brackets: it is invalid anyway
    brackets = np.frombuffer(outside_strings.translate(None, _NOT_BRACKETS), dtype=np.uint8)
    if brackets.size:
        steps = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1)
        if int(np.cumsum(steps).max()) > max_depth:
            raise ValueError(f"{what} is nested deeper than {max_depth} levels: not what eva9 writes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"{what} is not valid JSON ({' '.join(str(error).split())[:200]})") from None


def _stream(
    url: str, max_bytes: int, sink: Callable[[bytes], object], timeout: float, progress: Progress | None
) -> str:
    """Stream ``url`` into ``sink`` block by block; return the SHA-256. DownloadError (one line) when the server
    fails, sends more than ``max_bytes`` or makes less than ``progress`` (bytes, seconds) of progress."""
    least, seconds = progress if progress is not None else (MIN_PROGRESS_BYTES, MIN_PROGRESS_SECONDS)
    slow = f"{url} sent less than {least:,} bytes in {seconds:g} s; given up (try again later, or download it by hand)"
    digest, size = hashlib.sha256(), 0
    try:
        response = urllib.request.urlopen(url, timeout=min(timeout, seconds))
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
        if isinstance(getattr(error, "reason", error), socket.timeout):  # TimeoutError, before Python 3.10 apart
            raise DownloadError(slow) from None
        raise DownloadError(f"could not download {url}: {_reason(getattr(error, 'reason', error))}") from None
    with response:
        read = getattr(response, "read1", response.read)  # what has arrived, not a whole chunk: a trickle shows
        window, arrived = time.monotonic(), 0  # curl's --speed-limit and --speed-time: progress per window
        while True:
            try:
                block = read(_CHUNK)
            except socket.timeout:  # nothing at all for a whole window
                raise DownloadError(slow) from None
            except (OSError, ValueError, http.client.HTTPException) as error:  # a cut connection, a bad chunk
                raise DownloadError(f"could not download {url}: {_reason(error)}") from None
            if not block:
                break
            size += len(block)
            if size > max_bytes:
                raise DownloadError(f"{url} is larger than {max_bytes:,} bytes, the most it may be")
            digest.update(block)
            sink(block)
            arrived += len(block)
            now = time.monotonic()
            if now - window >= seconds:
                if arrived < least:
                    raise DownloadError(slow)
                window, arrived = now, 0
    return digest.hexdigest()


def fetch(url: str, *, max_bytes: int, timeout: float = 30, progress: Progress | None = None) -> bytes:
    """The bytes at ``url`` (at most ``max_bytes``), read into memory: nothing is written anywhere. See
    :func:`download` for ``progress``."""
    parts: list[bytes] = []
    _stream(url, max_bytes, parts.append, timeout, progress)
    return b"".join(parts)


def _own_temp(folder: Path) -> tuple[int, Path]:
    """A new temp file in ``folder`` named ``TEMP_PREFIX...``, open and held with ``flock`` (so that
    :func:`remove_stale_temps` in another process knows it is in use); its descriptor and path."""
    while True:
        handle, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=folder)
        if fcntl is None:
            return handle, Path(name)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(name).st_ino == os.fstat(handle).st_ino:
                return handle, Path(name)
        except (BlockingIOError, FileNotFoundError):  # a cleaner took it for a dead process's file first
            pass
        os.close(handle)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temp files a killed download left in ``folder`` (``TEMP_PREFIX*``, held by no process); return
    them. A temp file that another process is writing is held with ``flock`` and left alone; so is anything else."""
    removed: list[Path] = []
    if fcntl is None:
        return removed
    for path in Path(folder).glob(f"{TEMP_PREFIX}*.tmp"):
        try:
            handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:  # gone already, a link, or not ours to read
            continue
        try:
            if not stat.S_ISREG(os.fstat(handle).st_mode):
                continue
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink()
            removed.append(path)
        except OSError:  # held: a download in progress; or already removed
            continue
        finally:
            os.close(handle)
    return removed


def download(
    url: str,
    folder: str | os.PathLike,
    name: str,
    *,
    max_bytes: int,
    sha256: str | None = None,
    timeout: float = 30,
    progress: Progress | None = None,
) -> Path:
    """Stream ``url`` into ``folder/name`` (a plain name) through a temp file there; return the path.

    The download stops at ``max_bytes``, is given up when it makes less than ``progress`` (bytes, seconds; default
    ``(MIN_PROGRESS_BYTES, MIN_PROGRESS_SECONDS)``) of progress, and is
    kept only if its SHA-256 is ``sha256`` (when given); otherwise nothing is left behind and DownloadError
    (WriteError for the disk) says why in one line. Each attempt writes its own temp file (``TEMP_PREFIX...``),
    removed whatever stops it; one left by a killed process is removed by the next attempt. Nothing outside
    ``folder`` is written or deleted.
    """
    folder = Path(folder)
    target = inside(folder, name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(folder)
        handle, tmp = _own_temp(folder)
    except OSError as error:
        raise WriteError(error.errno, f"could not write {target}: {_reason(error)}") from None
    try:
        with os.fdopen(handle, "wb") as out:
            if hasattr(os, "fchmod"):  # mkstemp makes 0600; a download gets the user's umask, as curl's would
                os.fchmod(out.fileno(), _umask_mode())
            digest = _stream(url, max_bytes, out.write, timeout, progress)
            if sha256 is not None and digest != sha256:
                raise DownloadError(f"{url} does not have the SHA-256 {sha256}; the download was not kept")
            out.flush()
            os.fsync(out.fileno())
            os.replace(tmp, target)  # while still held, so no cleaner takes it for a dead process's file
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):  # the disk: DownloadError is no OSError
            raise WriteError(error.errno, f"could not write {target}: {_reason(error)}") from None
        raise
    return target
