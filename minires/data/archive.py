"""Extracting tarballs without letting a member escape the target folder."""
from __future__ import annotations

import posixpath
import tarfile
import zlib
from pathlib import Path

from .errors import DatasetError, UnsafeArchiveError


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
        elif not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{what}: member {m.name!r} is a device or fifo; "
                                     "a dataset archive holds only files and folders")
    return members


def open_tar(path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DatasetError(f"{path}: not a readable tarball ({e}); it is damaged or incomplete. "
                           "Delete it and download it again") from e


def safe_extract(path, dest) -> None:
    """Extract the tarball ``path`` into ``dest`` after checking every member.

    Nothing is written unless all members pass.  Where Python has tarfile's
    'data' filter (3.12, backported to 3.8.17+/3.11.4+) it is applied too.
    """
    dest = Path(dest)
    with open_tar(path) as tar:
        try:
            members = check_members(tar, str(path))
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **extra)
        except UnsafeArchiveError:
            raise
        except getattr(tarfile, "FilterError", ()) as e:  # the 'data' filter's own refusal
            raise UnsafeArchiveError(f"{path}: {e}; refusing to extract it") from e
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: reading the tarball failed ({e}); it is damaged or "
                               "incomplete. Delete it and download it again") from e


def read_members(path, names, what=None) -> dict[str, bytes]:
    """The bytes of the named members (missing ones absent), without extracting anything."""
    with open_tar(path) as tar:
        try:
            by_name = {posixpath.normpath(m.name): m for m in check_members(tar, what or str(path))}
            return {n: tar.extractfile(by_name[n]).read() for n in names
                    if n in by_name and by_name[n].isfile()}
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: reading the tarball failed ({e}); it is damaged or "
                               "incomplete. Delete it and download it again") from e

