"""Verified downloads: a file appears under its name only after its size and MD5 match."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..messages import Message
from . import scratch
from .errors import DownloadError

CHUNK = 1 << 20
PART_SUFFIX = ".part"  # '.<name>.<pid>@<host>-<random>.part' beside the destination while downloading


def md5sum(path, chunk=CHUNK) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download_url(url, dest, *, md5=None, size=None, progress=True, advice="", timeout=60):
    """Fetch ``url`` into ``dest`` with a progress bar; verify ``size`` and ``md5``.

    The bytes go to a temporary file beside ``dest`` (same filesystem, so the
    final rename is atomic) that is deleted on any failure, Ctrl-C included:
    ``dest`` either appears whole and verified or not at all, and folders made
    for it are removed again.  One that a killed process left behind is removed
    here, before the next download starts.  ``advice`` (a str or a Message) is
    appended to every error: what the user can do about it.
    """
    dest = Path(dest)
    made = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]
    tmp = None
    try:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            scratch.remove_orphans(dest.parent, f".{dest.name}.", PART_SUFFIX)
            fd, tmp = tempfile.mkstemp(prefix=scratch.owner_prefix(f".{dest.name}."),
                                       suffix=PART_SUFFIX, dir=dest.parent)
        except OSError as e:
            raise _cannot_write(dest, e) from e
        with os.fdopen(fd, "wb") as out:
            got, digest = _fetch(url, out, size, progress, dest, timeout)
            try:  # on disk before it gets its name: a crash cannot leave a short file called dest
                out.flush()
                os.fsync(out.fileno())
            except OSError as e:
                raise _cannot_write(dest, e) from e
        if size is not None and got != size:
            raise DownloadError(f"got {got} bytes, expected {size}: the download is truncated "
                                "or the server sent a different file")
        if md5 is not None and digest != md5.lower():
            raise DownloadError(f"MD5 {digest} does not match the expected {md5}: the file is "
                                "corrupt or not the expected one")
        os.replace(tmp, dest)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        for folder in made:                # deepest first; a folder someone filled meanwhile stays
            try:
                folder.rmdir()
            except OSError:
                break
        if not isinstance(e, Exception):  # KeyboardInterrupt etc.: cleaned up, pass on as is
            raise
        reason = str(e) if isinstance(e, DownloadError) else f"{type(e).__name__}: {e}"
        raise DownloadError(Message("downloading {url} failed: {reason}. Nothing was saved."
                                    + (" {advice}" if advice else ""),
                                    url=url, reason=reason, advice=advice)) from e
    return dest


def _cannot_write(dest, e: OSError) -> DownloadError:
    return DownloadError(f"cannot write {dest} ({e.strerror or e}): free some space or make "
                         f"{dest.parent} writable")


def _fetch(url, out, size, progress, dest, timeout):
    """Stream ``url`` into ``out`` (the scratch file for ``dest``); (bytes received, md5 hex digest)."""
    digest, got = hashlib.md5(), 0
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        announced = resp.headers.get("Content-Length")
        announced = int(announced) if announced is not None else None
        if size is not None and announced is not None and announced != size:
            raise DownloadError(f"the server announces {announced} bytes, expected {size}")
        with tqdm(total=size or announced, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=dest.name, disable=not progress) as bar:
            while block := resp.read(CHUNK):
                try:  # a write error is the disk's, not the network's (both are OSErrors)
                    out.write(block)
                except OSError as e:
                    raise _cannot_write(dest, e) from e
                digest.update(block)
                got += len(block)
                bar.update(len(block))
    # http.client returns b'' rather than raising when the connection drops early.
    if announced is not None and got != announced:
        raise DownloadError(f"the connection closed after {got} of {announced} bytes: "
                            "the download is truncated")
    return got, digest.hexdigest()
