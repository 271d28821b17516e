"""Files that are written whole or not at all, plain file names, and downloads that cannot leave their folder.

:func:`write_atomic` is the one way eva9 writes a file it owns (a run folder's files, published weights, the
manifest, a downloaded copy): a temp file made with :func:`tempfile.mkstemp` in the target's folder (no predictable
name to plant a link at), given the mode the user's umask gives new files, fsync, then :func:`os.replace`; a failed
write removes the temp file and raises :class:`WriteError` naming the file. :func:`plain_name` accepts only file
names that stay in their folder, and :func:`download` streams a URL into a folder under a size cap, through the
same temp file and rename.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable, Union

__all__ = [
    "WriteError",
    "UnsafeNameError",
    "DownloadError",
    "write_atomic",
    "plain_name",
    "check_sha256",
    "inside",
    "download",
]

Content = Union[bytes, str, Callable[[BinaryIO], object]]
"""What :func:`write_atomic` writes: bytes, text (UTF-8), or a function that writes into an open binary file."""

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


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


def write_atomic(path: str | os.PathLike, content: Content) -> Path:
    """Write ``content`` to ``path`` whole or not at all (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise WriteError(error.errno, f"could not write {path}: {_reason(error)}") from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a written file has the user's usual mode
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


def download(
    url: str, folder: str | os.PathLike, name: str, *, max_bytes: int, sha256: str | None = None, timeout: float = 30
) -> Path:
    """Stream ``url`` into ``folder/name`` (a plain name) through a temp file there; return the path.

    The download stops at ``max_bytes`` and is kept only if its SHA-256 is ``sha256`` (when given); otherwise
    nothing is left behind and DownloadError (WriteError for the disk) says why. Nothing outside ``folder``
    is written or deleted.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = inside(folder, name)

    def fetch(out: BinaryIO) -> None:
        digest, size = hashlib.sha256(), 0
        try:
            response = urllib.request.urlopen(url, timeout=timeout)
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise DownloadError(f"could not download {url}: {_reason(getattr(error, 'reason', error))}") from None
        with response:
            while True:
                try:
                    block = response.read(_CHUNK)
                except OSError as error:
                    raise DownloadError(f"could not download {url}: {_reason(error)}") from None
                if not block:
                    break
                size += len(block)
                if size > max_bytes:
                    raise DownloadError(f"{url} is larger than {max_bytes:,} bytes, the most {name} may be")
                digest.update(block)
                out.write(block)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DownloadError(f"{url} does not have the SHA-256 {sha256}; the download was not kept")

    return write_atomic(target, fetch)
