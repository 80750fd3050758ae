"""minires.data under faults: damaged and hostile archives, crafted pickles, links inside
tarballs, processes killed mid-extraction or mid-download, a full or read-only disk.

Each test is a drill that once failed: it damages or attacks one thing and checks that the
result is either one clear error line naming the file or data provably equal to the original,
and that nothing half-written is left behind."""
import codecs
import errno
import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from minires.data import (CIFAR10, CIFAR10_SOURCES, DatasetError, DownloadError, UnsafeArchiveError, UnsafePickleError,
                          download_url, safe_extract, safe_loads)
from minires.data.archive import Tarball
from minires.data.cifar import EXTRACT_PREFIX, remove_orphans
from minires.data.scratch import STALE_AFTER
from test_data import (SUBSETS, _Handler, _Payload, expected_split, make_tarball, tiny_cifar,
                       write_python_layout)

HOST = socket.gethostname()


def one_line(error, path):
    message = str(error)
    assert "\n" not in message and str(path) in message, message
    return message


def dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def tiny_tarball(tmp_path, seed=0):
    """A tiny python-layout CIFAR tarball under a subset name (no MD5 to check it against)."""
    batches = tiny_cifar(seed=seed)
    folder = write_python_layout(tmp_path / "build", batches)
    root = tmp_path / "root"
    root.mkdir()
    make_tarball(root / "cifar-10-subset-python.tar.gz", folder, "cifar-10-batches-py")
    return root, batches


# ------------------------------------------------------------------ flipped bits
@pytest.fixture(scope="module")
def subset_reference():
    """Per layout: the tarball's bytes and every member file's bytes, decompressed once."""
    if not all(p.is_file() for p in SUBSETS.values()):
        pytest.skip("CIFAR-10 subset archives not found")
    out = {}
    for layout, path in SUBSETS.items():
        tarball = Tarball(path)
        files = {n: bytes(tarball.read(n)) for n, m in tarball.members.items() if m.isfile()}
        out[layout] = (path.read_bytes(), files)
    return out


def gzip_header_size(data):
    """Bytes up to the end of the gzip header (10 fixed bytes + the NUL-terminated file name)."""
    assert data[3] == 0x08, "the subsets carry a file name and nothing else optional"
    return data.index(0, 10) + 1


def flip_outcome(data, files, offset, tmp_path):
    """Read ``data`` with bit (offset % 8) of byte ``offset`` flipped: 'refused' or 'identical'."""
    damaged = bytearray(data)
    damaged[offset] ^= 1 << (offset % 8)
    path = tmp_path / "flipped.tar.gz"
    path.write_bytes(damaged)
    try:
        tarball = Tarball(path)
    except DatasetError as e:
        one_line(e, path)
        return "refused"
    got = {n: bytes(tarball.read(n)) for n, m in tarball.members.items() if m.isfile()}
    assert got == files, f"a flip at byte {offset} delivered different data"
    return "identical"


@pytest.mark.parametrize("layout", ["python", "binary"])
def test_one_flipped_bit_never_delivers_changed_data(subset_reference, tmp_path, layout):
    data, files = subset_reference[layout]
    n, name = len(data), gzip_header_size(data) - 4  # a byte inside the gzip header's file name
    # gzip header: flags, mtime, OS byte, file name; deflate data; trailer: CRC-32, length.
    # A few per layout (each costs a full decompression); the slow sweep does hundreds.
    expected = {3: "refused", 5: "identical", name: "identical", n // 2: "refused", n - 6: "refused"} \
        if layout == "python" else {9: "identical", 40: "refused", n // 3: "refused", n - 2: "refused"}
    assert {offset: flip_outcome(data, files, offset, tmp_path) for offset in expected} == expected


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["python", "binary"])
def test_flipped_bits_sweep(subset_reference, tmp_path, layout):
    """Every header byte, 150 spread over the deflate data, the last 16: refused or identical."""
    data, files = subset_reference[layout]
    n, header = len(data), gzip_header_size(data)
    offsets = [*range(header + 4), *range(header + 4, n - 16, n // 150), *range(n - 16, n)]
    outcomes = [flip_outcome(data, files, offset, tmp_path) for offset in offsets]
    assert outcomes.count("refused") > 0.9 * len(offsets) - header


def test_flipped_bit_in_a_subset_tarball_is_refused_and_not_cached(subset_reference, tmp_path):
    data, _ = subset_reference["python"]
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0x10
    path = tmp_path / SUBSETS["python"].name
    path.write_bytes(damaged)
    with pytest.raises(DatasetError, match="gzip data is damaged") as info:
        CIFAR10(tmp_path)
    one_line(info.value, path)
    assert os.listdir(tmp_path) == [path.name]  # nothing cached, no scratch folder


def test_harmless_header_flip_loads_the_original_pixels(subset_reference, tmp_path):
    data, files = subset_reference["binary"]
    damaged = bytearray(data)
    damaged[6] ^= 0x04  # the gzip mtime
    (tmp_path / SUBSETS["binary"].name).write_bytes(damaged)
    test = CIFAR10(tmp_path, train=False)
    records = np.frombuffer(files["cifar-10-batches-bin/test_batch.bin"], np.uint8).reshape(-1, 3073)
    assert np.array_equal(test.images.reshape(len(test), -1), records[:, 1:])
    for name in os.listdir(tmp_path / "cifar-10-batches-bin"):
        assert (tmp_path / "cifar-10-batches-bin" / name).read_bytes() == files[f"cifar-10-batches-bin/{name}"]


# ------------------------------------------------------- damaged tar, valid gzip
def tar_bytes(*members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("damage, message", [
    ("bad_second_header", "without its end-of-archive marker"),
    ("cut_member", "unexpected end of data"),
    ("no_end_marker", "without its end-of-archive marker"),
    ("truncated_gzip", "stops before its end marker"),
    ("garbage_after", "gzip data is damaged"),
    ("empty", "empty or all zeros"),
])
def test_damaged_tar_inside_a_valid_gzip_is_refused(tmp_path, damage, message):
    raw = tar_bytes(("a/one", b"1" * 600), ("a/two", b"2" * 600), ("a/three", b"3" * 10))
    if damage == "bad_second_header":  # tarfile would stop here as if the archive had ended
        raw = raw[:1536 + 148] + b"garbage!" + raw[1536 + 156:]
    elif damage == "cut_member":
        raw = raw[:1536 + 512 + 100]
    elif damage == "no_end_marker":
        raw = raw[:512 * 8]  # right after the last member
    packed = gzip.compress(raw) if damage != "empty" else b""
    if damage == "truncated_gzip":
        packed = packed[:-12]
    elif damage == "garbage_after":
        packed += b"trailing junk"
    path = tmp_path / "damaged.tar.gz"
    path.write_bytes(packed)
    with pytest.raises(DatasetError, match=message) as info:
        Tarball(path)
    one_line(info.value, path)


def test_safe_extract_verifies_the_whole_archive_before_writing(tmp_path):
    packed = bytearray(gzip.compress(tar_bytes(("a/one", os.urandom(3000)), ("a/two", b"2"))))
    packed[-7] ^= 0x01  # the CRC-32: only reading to the very end notices
    path = tmp_path / "damaged.tar.gz"
    path.write_bytes(packed)
    with pytest.raises(DatasetError, match="incorrect data check"):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.tar.gz"
    path.write_bytes(gzip.compress(b"\0" * (8 << 20)))  # 8 KB that decompresses to 8 MB
    with pytest.raises(DatasetError, match="more than 1048576 bytes") as info:
        Tarball(path, limit=1 << 20)
    one_line(info.value, path)


def test_zero_padding_and_several_gzip_members_are_accepted(tmp_path):
    raw = tar_bytes(("a/one", b"1" * 600), ("a/two", b"2" * 7))
    path = tmp_path / "padded.tar.gz"
    path.write_bytes(gzip.compress(raw[:1024]) + b"\0" * 100 + gzip.compress(raw[1024:]) + b"\0" * 512)
    tarball = Tarball(path)
    assert bytes(tarball.read("a/one")) == b"1" * 600 and bytes(tarball.read("a/two")) == b"2" * 7


# --------------------------------------------------------------- crafted pickles
class _State:
    """Pickles as ``func(*args)`` followed by BUILD with ``state``."""

    def __init__(self, func, args, state):
        self.reduced = func, args, state

    def __reduce__(self):
        return self.reduced


_reconstruct = np.empty(0).__reduce__()[0]


def refused_without_allocating(data, message):
    tracemalloc.start()
    try:
        with pytest.raises(UnsafePickleError, match=message) as info:
            safe_loads(data, "crafted")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated before refusing"
    return one_line(info.value, "crafted")


def test_stride_zero_pickle_is_refused():
    zero_strides = _Payload(np.ndarray, (100040, 3072), np.dtype("u1"), b"\0", 0, (0, 0))
    data = pickle.dumps({b"data": zero_strides, b"labels": [0] * 4}, protocol=2)
    assert len(data) < 300
    assert pickle.loads(data)[b"data"].shape == (100040, 3072)  # live: plain pickle builds it
    refused_without_allocating(data, "direct call of numpy.ndarray")


@pytest.mark.parametrize("payload, message", [
    (_Payload(_reconstruct, np.ndarray, (100040, 3072), b"B"), r"_reconstruct\(numpy.ndarray, \(0,\)"),
    (_State(_reconstruct, (np.ndarray, (0,), b"b"), (1, (100040, 3072), np.dtype("u1"), False, b"\0" * 148)),
     "built from 148 bytes; it needs exactly 307322880"),
    (_State(_reconstruct, (np.ndarray, (0,), b"b"), (1, (2, -3), np.dtype("u1"), False, b"")), "shape"),
    (_State(_reconstruct, (np.ndarray, (0,), b"b"), (1, (2,), np.dtype("O"), False, [1, 2])), "dtype object"),
    (_State(_reconstruct, (np.ndarray, (0,), b"b"), (1, (2,), np.dtype("u1"), False, [1, 2])), "not bytes"),
    (np.array([1, "a"], dtype=object), "dtype object"),
    (_Payload(np.dtype, "V8"), "dtype"),
    (_Payload(codecs.encode, "abc", "rot13"), "_codecs.encode"),
    (_Payload(bytes, 10 ** 9), r"bytes\(\) with arguments|global builtins\.bytes"),
    (_State(codecs.encode, ("a", "latin1"), {"x": 1}), "set the state of a bytes"),
])
def test_crafted_array_pickles_are_refused_before_allocating(payload, message):
    for protocol in (2, 4):
        refused_without_allocating(pickle.dumps(payload, protocol=protocol), message)


def memo_reuse_pickle(n, copies):
    """Protocol 2 by hand: one n-character str, memoised, turned into bytes ``copies`` times."""
    head = b"\x80\x02c_codecs\nencode\nq\x00X" + n.to_bytes(4, "little") + b"x" * n
    one = b"h\x00h\x01h\x02\x86R"  # encode(memo 1, memo 2): another n bytes for 8 in the file
    return head + b"q\x01X\x06\x00\x00\x00latin1q\x02](" + one * copies + b"e."


def test_memoised_data_reused_over_and_over_is_refused():
    assert len(safe_loads(memo_reuse_pickle(100_000, 1))) == 1
    refused_without_allocating(memo_reuse_pickle(100_000, 1000), "more data than twice the file's size")
    state = (1, (100_000,), np.dtype("u1"), False, b"\1" * 100_000)  # one state, memoised, BUILD 1000 times
    arrays = [_State(_reconstruct, (np.ndarray, (0,), b"b"), state) for _ in range(1000)]
    refused_without_allocating(pickle.dumps(arrays, protocol=4), "more data than twice")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_arrays_of_every_protocol_and_order_round_trip(protocol):
    arrays = [np.arange(24, dtype=">i4").reshape(2, 3, 4), np.asfortranarray(np.ones((3, 5), np.float32)),
              np.zeros((0, 3072), np.uint8), np.array([True, False])]
    for a in arrays:
        got = safe_loads(pickle.dumps({"a": a, "empty": b""}, protocol=protocol))["a"]
        assert got.shape == a.shape and got.dtype.kind == a.dtype.kind and np.array_equal(got, a)
    assert safe_loads(pickle.dumps(b"", protocol=2)) == b""


@pytest.fixture(scope="module")
def real_python_batches():
    if not SUBSETS["python"].is_file():
        pytest.skip("CIFAR-10 subset archives not found")
    tarball = Tarball(SUBSETS["python"])
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {n: bytes(tarball.read(f"cifar-10-batches-py/{n}")) for n in names}


@pytest.mark.parametrize("protocol, encoding", [(2, "bytes"), (2, "latin1"), (3, "bytes"), (4, "latin1"),
                                                (5, "bytes")])
def test_real_batches_re_pickled_by_python3_load(real_python_batches, tmp_path, protocol, encoding):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, data in real_python_batches.items():
        (folder / name).write_bytes(pickle.dumps(pickle.loads(data, encoding=encoding), protocol=protocol))
    test = CIFAR10(tmp_path, train=False)
    original = pickle.loads(real_python_batches["test_batch"], encoding="bytes")
    assert np.array_equal(test.images.reshape(len(test), -1), original[b"data"])
    assert np.array_equal(test.labels, original[b"labels"])
    assert len(CIFAR10(tmp_path, train=True)) == 5170


# ------------------------------------------------------------- links in archives
def tar_with_links(tmp_path, batches, links, files_under="cifar-10-batches-py"):
    """root/ holding a tarball of the pickled ``batches`` under ``files_under`` plus ``links``
    ((name, target, type) each); (root, tarball)."""
    build = write_python_layout(tmp_path / "build", batches)
    root = tmp_path / "root"
    root.mkdir()
    path = root / "cifar-10-subset-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in sorted(os.listdir(build)):
            tar.add(build / name, arcname=f"{files_under}/{name}")
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return root, path


def test_symlink_to_a_sibling_folder_is_resolved_and_the_cache_keeps_working(tmp_path):
    batches = tiny_cifar(seed=3)
    root, _ = tar_with_links(tmp_path, batches, [("cifar-10-batches-py", "real", tarfile.SYMTYPE)],
                             files_under="real")
    (root / "cifar-10-batches-py").symlink_to("real")  # what an older minires left: a dangling link
    for attempt in range(2):  # the first load caches, the second reads the cache
        for train in (True, False):
            ds = CIFAR10(root, train=train)
            x, y = expected_split(batches, train)
            assert np.array_equal(ds.images, x) and np.array_equal(ds.labels, y), (attempt, train)
    cache = root / "cifar-10-batches-py"
    assert ds.source == cache and not cache.is_symlink()
    assert all((cache / n).is_file() and not (cache / n).is_symlink() for n in os.listdir(cache))
    assert sorted(os.listdir(root)) == ["cifar-10-batches-py", "cifar-10-subset-python.tar.gz"]


def test_hard_and_symbolic_links_to_files_become_plain_copies(tmp_path):
    batches = tiny_cifar(seed=4)
    files = {n: b for n, b in batches.items() if n not in ("data_batch_2", "test_batch")}
    root, _ = tar_with_links(tmp_path, files, [
        ("cifar-10-batches-py/data_batch_2", "cifar-10-batches-py/data_batch_1", tarfile.LNKTYPE),
        ("cifar-10-batches-py/test_batch", "./data_batch_3", tarfile.SYMTYPE)])
    test = CIFAR10(root, train=False)
    assert np.array_equal(test.images, batches["data_batch_3"][0])
    cache = root / "cifar-10-batches-py"
    assert not (cache / "test_batch").is_symlink()
    assert (cache / "data_batch_2").read_bytes() == (cache / "data_batch_1").read_bytes()
    assert os.stat(cache / "data_batch_2").st_nlink == 1


@pytest.mark.parametrize("links, message", [
    ([("s", ".", tarfile.SYMTYPE), ("cifar-10-batches-py", "s/..", tarfile.SYMTYPE)], "leads outside"),
    ([("cifar-10-batches-py", "loop", tarfile.SYMTYPE), ("loop", "cifar-10-batches-py", tarfile.SYMTYPE)],
     "form a loop"),
], ids=["escape-through-links", "loop"])
def test_links_that_escape_or_loop_are_refused(tmp_path, links, message):
    root, path = tar_with_links(tmp_path, tiny_cifar(), links, files_under="x")
    with pytest.raises(UnsafeArchiveError, match=message) as info:
        CIFAR10(root)
    one_line(info.value, path)
    assert os.listdir(root) == [path.name]


# ------------------------------------------------------------------- orphans
def test_orphans_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    root, batches = tiny_tarball(tmp_path)
    dead, old = dead_pid(), time.time() - STALE_AFTER - 60
    orphans = [f"{EXTRACT_PREFIX}{dead}@{HOST}-abc123", f".cifar-10-python.tar.gz.{dead}@{HOST}-x1.part",
               f"{EXTRACT_PREFIX}oldstyle1", ".cifar-10-binary.tar.gz.oldstyle2.part"]
    fresh = [f"{EXTRACT_PREFIX}{dead}@other-host-ghi789", f"{EXTRACT_PREFIX}fresh"]  # judged by age
    live = [f"{EXTRACT_PREFIX}{os.getpid()}@{HOST}-def456", ".unrelated.part", ".minires-other-thing", *fresh]
    for name in orphans + live:
        if "extract" in name:
            (root / name).mkdir()
            (root / name / "half-written").write_bytes(b"x")
        else:
            (root / name).write_bytes(b"x")
        if name not in fresh:  # an old file whose writer is alive stays; a name without one goes
            os.utime(root / name, (old, old))
    x, _ = expected_split(batches, train=False)
    assert np.array_equal(CIFAR10(root, train=False).images, x)
    assert sorted(os.listdir(root)) == sorted(["cifar-10-batches-py", "cifar-10-subset-python.tar.gz", *live])
    assert remove_orphans(root) == []


CHILD = """
import os, sys, time
from minires.data import CIFAR10, download_url
fsync = os.fsync
def stall(fd):
    fsync(fd)
    print("written", flush=True)
    time.sleep(60)
os.fsync = stall
if sys.argv[1] == "extract":
    CIFAR10(sys.argv[2])
else:
    download_url(sys.argv[3], sys.argv[2], progress=False)
"""


def run_and_kill(*args):
    """Run CHILD with ``args``, kill -9 it once it has written (flushed) a first file."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "written\n", "the child failed before writing"
    finally:
        child.kill()
        child.wait()
    return child.pid


def test_kill_9_during_extraction_then_next_start_cleans_up(tmp_path):
    root, batches = tiny_tarball(tmp_path)
    pid = run_and_kill("extract", str(root))
    orphan, = [n for n in os.listdir(root) if n.startswith(EXTRACT_PREFIX)]
    assert orphan.startswith(f"{EXTRACT_PREFIX}{pid}@") and "cifar-10-batches-py" not in os.listdir(root)
    x, y = expected_split(batches, train=True)
    ds = CIFAR10(root, train=True)
    assert np.array_equal(ds.images, x) and np.array_equal(ds.labels, y)
    assert sorted(os.listdir(root)) == ["cifar-10-batches-py", "cifar-10-subset-python.tar.gz"]


# ------------------------------------------------------------------ downloads
class _StallingHandler(_Handler):
    """Also serves /stall/<name>: the full size announced, half the bytes sent, then silence."""
    release = threading.Event()

    def do_GET(self):
        if not self.path.startswith("/stall/"):
            return super().do_GET()
        data = (Path(self.directory) / self.path[7:]).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.release.wait(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    serve = tmp_path_factory.mktemp("serve")
    batches = tiny_cifar(seed=5)
    tiny = make_tarball(serve / "tiny.tar.gz", write_python_layout(tmp_path_factory.mktemp("build"), batches),
                        "cifar-10-batches-py")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(_StallingHandler, directory=str(serve)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    data = tiny.read_bytes()
    yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "batches": batches,
           "kwargs": {"md5": hashlib.md5(data).hexdigest(), "size": len(data)}}
    _StallingHandler.release.set()
    httpd.shutdown()
    httpd.server_close()


def test_kill_9_during_download_then_next_start_cleans_up(server, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    dest = cache / "cifar-10-python.tar.gz"
    child = subprocess.Popen([sys.executable, "-c", CHILD, "download", str(dest),
                              f"{server['url']}/stall/tiny.tar.gz"])
    try:  # the server stalls mid-file: wait for the child's .part
        for _ in range(400):
            parts = [p for p in cache.iterdir() if p.name.endswith(".part")]
            if parts or child.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(0.2)  # into the transfer
    finally:
        child.kill()
        child.wait()
    part, = parts
    assert part.name.startswith(f".cifar-10-python.tar.gz.{child.pid}@{HOST}-")
    ds = CIFAR10(cache, train=False, download=True, progress=False, url=f"{server['url']}/tiny.tar.gz",
                 **server["kwargs"])
    assert np.array_equal(ds.images, expected_split(server["batches"], train=False)[0])
    assert sorted(os.listdir(cache)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


# ------------------------------------------------------------- full disk, no permission
def failing_fsync(monkeypatch, code, after=0):
    """os.fsync raising OSError(code) from its ``after``-th call on (0: the first)."""
    calls, real = [], os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) > after:
            raise OSError(code, os.strerror(code))
        real(fd)
    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_cache_write_failure_names_the_file_leaves_nothing_and_next_run_works(tmp_path, monkeypatch, code):
    root, batches = tiny_tarball(tmp_path)
    failing_fsync(monkeypatch, code, after=2)  # the third batch file fails
    with pytest.raises(OSError, match=os.strerror(code)) as info:
        CIFAR10(root)
    message = one_line(info.value, root / "cifar-10-batches-py" / "data_batch_3")
    assert "run again" in message and info.value.errno == code
    assert os.listdir(root) == ["cifar-10-subset-python.tar.gz"]
    monkeypatch.undo()  # space is back
    assert np.array_equal(CIFAR10(root).images, expected_split(batches, train=True)[0])
    assert sorted(os.listdir(root)) == ["cifar-10-batches-py", "cifar-10-subset-python.tar.gz"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_download_write_failure_names_the_file_leaves_nothing_and_next_run_works(server, tmp_path,
                                                                                 monkeypatch, code):
    cache, url = tmp_path / "cache", f"{server['url']}/tiny.tar.gz"
    failing_fsync(monkeypatch, code)
    with pytest.raises(DownloadError, match=os.strerror(code)) as info:
        CIFAR10(cache, download=True, progress=False, url=url, **server["kwargs"])
    one_line(info.value, cache / "cifar-10-python.tar.gz")
    assert not cache.exists()          # the download made the folder, so it removed it again
    monkeypatch.undo()
    ds = CIFAR10(cache, train=False, download=True, progress=False, url=url, **server["kwargs"])
    assert np.array_equal(ds.images, expected_split(server["batches"], train=False)[0])


def test_download_into_an_unwritable_folder_names_it(server, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    monkeypatch.setattr("minires.data.download.tempfile.mkstemp", refuse)
    with pytest.raises(DownloadError, match="Permission denied.*writable") as info:
        download_url(f"{server['url']}/tiny.tar.gz", tmp_path / "x.tar.gz", progress=False)
    one_line(info.value, tmp_path / "x.tar.gz")


def test_cache_failure_after_a_download_keeps_the_verified_tarball(server, tmp_path, monkeypatch):
    cache, url, kwargs = tmp_path / "cache", f"{server['url']}/tiny.tar.gz", server["kwargs"]
    with monkeypatch.context() as patch:
        failing_fsync(patch, errno.ENOSPC, after=1)  # the download's fsync passes, the cache's fails
        with pytest.raises(OSError, match="writing the CIFAR-10 cache failed"):
            CIFAR10(cache, download=True, progress=False, url=url, **kwargs)
    assert os.listdir(cache) == ["cifar-10-python.tar.gz"]  # kept: no need to download it again
    # the next run checks it against the table of official archives: point that at the tiny one
    monkeypatch.setitem(CIFAR10_SOURCES, "python", CIFAR10_SOURCES["python"]._replace(**kwargs))
    assert len(CIFAR10(cache, train=False)) == 3


@pytest.mark.parametrize("mode", ["w:bz2", "w:xz", "w"])
def test_other_tarball_kinds_are_verified_whole_too(tmp_path, mode):
    from minires.data.archive import Tarball
    payload = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    good = tmp_path / "a.tar"
    with tarfile.open(good, mode) as tar:
        info = tarfile.TarInfo("batches/data")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    assert bytes(Tarball(good).read("batches/data")) == payload
    cut = tmp_path / "cut.tar"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    with pytest.raises(DatasetError, match="cut.tar"):
        Tarball(cut)
