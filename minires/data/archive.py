"""Tarballs (gzip above all) read whole and verified, without letting a member escape the archive.

Damage must never come through as data.  Python's gzip checks a stream's CRC
and length only when it is read to its end, and tarfile stops at a damaged
header as if the archive had ended there, so reading members the usual way can
hand out corrupted bytes from an archive that has no MD5 to compare against
(the subset tarballs, a user's mirror).  ``Tarball`` therefore decompresses the
whole file first (zlib checks every gzip member's CRC-32 and length), parses
the tar structure up to its end-of-archive marker, and only then serves members,
from those verified bytes in memory.  Links are followed inside the archive
(like the file system would), so whoever copies a member out copies its bytes,
never a link.
"""
from __future__ import annotations

import bz2
import io
import lzma
import posixpath
import tarfile
import zlib
from pathlib import Path

from .errors import DatasetError, UnsafeArchiveError

CHUNK = 1 << 16  # compressed bytes per step: at most ~66 MB of output each (deflate's 1032:1)
MAX_BYTES = 1 << 30  # decompressed; the full CIFAR-10 python tarball holds 185 MB
MAX_LINK_HOPS = 40  # as Linux's limit on symlinks followed while resolving one path
FIX = "Delete it and download it again"


def _escapes(name: str) -> bool:
    """True when a member name is absolute ('/x', 'C:x') or contains a '..' part."""
    name = name.replace("\\", "/")
    return name.startswith("/") or name[1:2] == ":" or ".." in name.split("/")


def _link_escapes(member: tarfile.TarInfo) -> bool:
    """True when a link's target resolves outside the archive's root."""
    if member.linkname.replace("\\", "/").startswith("/") or member.linkname[1:2] == ":":
        return True
    # a symlink's target is relative to the folder holding the link, a hard link's to the root
    base = posixpath.dirname(member.name) if member.issym() else ""
    return posixpath.normpath(posixpath.join(base, member.linkname)).split("/")[0] == ".."


def check_members(tar: tarfile.TarFile, what="archive") -> list[tarfile.TarInfo]:
    """Every member, after checking that none would be written (or point) outside the target."""
    members = tar.getmembers()
    for m in members:
        if _escapes(m.name):
            raise UnsafeArchiveError(f"{what}: member {m.name!r} would be written outside the target "
                                     "folder (absolute path or '..'); refusing to extract anything")
        if m.issym() or m.islnk():
            if _link_escapes(m):
                raise UnsafeArchiveError(f"{what}: link {m.name!r} -> {m.linkname!r} points "
                                         "outside the target folder; refusing to extract anything")
        elif m.issparse() or not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{what}: member {m.name!r} is a device, fifo or sparse file; "
                                     "a dataset archive holds only files and folders")
    return members


def gunzip(path, limit=MAX_BYTES) -> bytes:
    """The decompressed bytes of every gzip member in ``path``, each one's CRC and length checked.

    Zero padding between or after members is allowed (as gzip allows it); anything
    else that is not a complete gzip member is an error, and so is decompressing
    to more than ``limit`` bytes (a small file can expand a thousandfold).
    """
    out, member, started, total = [], None, False, 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                while chunk:
                    if member is None:  # between members
                        chunk = chunk.lstrip(b"\0")
                        if not chunk:
                            break
                        member, started = zlib.decompressobj(16 + zlib.MAX_WBITS), True
                    out.append(member.decompress(chunk))
                    total += len(out[-1])
                    if total > limit:
                        raise DatasetError(f"{path}: decompresses to more than {limit} bytes: not a "
                                           "dataset archive (or a decompression bomb); refusing it")
                    chunk = member.unused_data if member.eof else b""
                    if member.eof:  # zlib verified this member's CRC-32 and length
                        member = None
    except zlib.error as e:
        raise DatasetError(f"{path}: the gzip data is damaged ({e}); nothing from it was used. "
                           f"{FIX}") from e
    if not started:
        raise DatasetError(f"{path}: empty or all zeros, not a gzipped tarball. {FIX}")
    if member is not None:
        raise DatasetError(f"{path}: the gzip stream stops before its end marker: the file is "
                           f"truncated or damaged; nothing from it was used. {FIX}")
    return b"".join(out)


def decompress(path, limit=MAX_BYTES) -> bytes:
    """The tar bytes of ``path``: gzip through gunzip; bzip2 and xz read to their end (their
    readers check the streams' CRCs then); a plain tar as it is (Tarball checks its end marker)."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x1f\x8b") or not magic.strip(b"\0"):   # gunzip says "empty" well
        return gunzip(path, limit)
    opener = bz2.open if magic.startswith(b"BZh") else lzma.open if magic.startswith(b"\xfd7zXZ\x00") \
        else open
    try:
        with opener(path, "rb") as f:
            data = f.read(limit + 1)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DatasetError(f"{path}: the compressed data is damaged or truncated ({e}); nothing "
                           f"from it was used. {FIX}") from e
    if len(data) > limit:
        raise DatasetError(f"{path}: holds more than {limit} bytes: not a dataset archive (or a "
                           "decompression bomb); refusing it")
    return data


class Tarball:
    """The verified contents of the gzipped tarball ``path``, held in memory.

    ``read(name)`` gives a file's bytes (a memoryview) or None, following
    symlinks and hard links inside the archive; ``is_folder`` and ``files_in``
    see folders through links the same way.
    """

    def __init__(self, path, what=None, limit=MAX_BYTES):
        self.path, self.what = Path(path), what or str(path)
        self.raw = decompress(path, limit)
        try:
            with tarfile.open(fileobj=io.BytesIO(self.raw), mode="r:") as tar:
                members = check_members(tar, self.what)
                end = tar.offset
        except tarfile.TarError as e:
            raise DatasetError(f"{self.what}: not a readable tarball ({e}); it is damaged or not "
                               f"a tar archive. {FIX}") from e
        # tarfile stops quietly at the first bad header; a whole archive ends in zero blocks only.
        tail = self.raw[end:]
        if len(tail) < tarfile.BLOCKSIZE or tail.strip(b"\0"):
            raise DatasetError(f"{self.what}: the tar structure ends at byte {end} of {len(self.raw)} "
                               "without its end-of-archive marker: a header is damaged or the tarball "
                               f"is truncated. {FIX}")
        self.members = {posixpath.normpath(m.name): m for m in members}  # a later copy wins, as in tar
        self.folders = {posixpath.dirname(n) for n in self.members} | {
            n for n, m in self.members.items() if m.isdir()}
        for n in list(self.folders):  # every ancestor is a folder too
            while n := posixpath.dirname(n):
                self.folders.add(n)

    def resolve(self, name: str) -> str:
        """``name`` with every symlink in it followed, one component at a time as the OS does."""
        todo, done, hops = name.split("/")[::-1], [], 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not done:
                    raise UnsafeArchiveError(f"{self.what}: the path {name!r} leads outside the "
                                             "archive through its links; refusing it")
                done.pop()
                continue
            done.append(part)
            member = self.members.get("/".join(done))
            if member is not None and member.issym():
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise UnsafeArchiveError(f"{self.what}: the links along {name!r} form a loop")
                done.pop()
                todo.extend(member.linkname.split("/")[::-1])
        return "/".join(done)

    def read(self, name: str):
        """The bytes of the file ``name`` (links followed), or None when there is no such file."""
        member, hops = self.members.get(self.resolve(name)), 0
        while member is not None and member.islnk():  # a hard link names another member
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise UnsafeArchiveError(f"{self.what}: the hard links from {name!r} form a loop")
            member = self.members.get(self.resolve(member.linkname))
        if member is None or not member.isfile():
            return None
        return memoryview(self.raw)[member.offset_data:member.offset_data + member.size]

    def is_folder(self, name: str) -> bool:
        return self.resolve(name) in self.folders

    def files_in(self, folder: str) -> list[str]:
        """The names of the files directly inside ``folder`` (through links), sorted."""
        inside = self.resolve(folder) + "/"
        names = {n[len(inside):] for n in self.members if n.startswith(inside) and "/" not in n[len(inside):]}
        return sorted(n for n in names if self.read(f"{folder}/{n}") is not None)


def safe_extract(path, dest) -> None:
    """Extract the tarball ``path`` into ``dest`` after verifying it whole and checking every member.

    Nothing is written unless all members pass.  Links that stay inside are
    extracted as links.  Where Python has tarfile's 'data' filter (3.12,
    backported to 3.8.17+/3.11.4+) it is applied too.
    """
    verified = Tarball(path)
    with tarfile.open(fileobj=io.BytesIO(verified.raw), mode="r:") as tar:
        members = check_members(tar, str(path))
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            tar.extractall(dest, members=members, **extra)
        except getattr(tarfile, "FilterError", ()) as e:  # the 'data' filter's own refusal
            raise UnsafeArchiveError(f"{path}: {e}; refusing to extract it") from e
