"""minires.data: CIFAR-10 / (Fashion-)MNIST readers, verified download, safe extraction and
unpickling, and the device-side DataLoader.  No network: downloads hit a local http.server."""
import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from minires import backend
from minires.data import (CIFAR10, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, FASHION_MNIST_MEAN,
                          MNIST, DataLoader, DatasetError, DatasetNotFoundError, DownloadError,
                          FashionMNIST, UnsafeArchiveError, UnsafePickleError, resize_bilinear,
                          safe_extract, safe_loads)
from shared_data import SHARED_DATA

SUBSETS = {"python": SHARED_DATA / "cifar-10-subset-python.tar.gz",
           "binary": SHARED_DATA / "cifar-10-subset-binary.tar.gz"}
FOLDERS = {"python": "cifar-10-batches-py", "binary": "cifar-10-batches-bin"}
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


# ----------------------------------------------------------------- fixture builders
def tiny_cifar(n=2, seed=0):
    """{batch name: (images uint8 (n, 3, 32, 32), labels int64)}; the test batch has n + 1."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in BATCHES:
        m = n + (name == "test_batch")
        out[name] = (rng.integers(0, 256, (m, 3, 32, 32), dtype=np.uint8),
                     rng.integers(0, 10, m).astype(np.int64))
    return out


def pickled_batch(x, y, changes=()):
    batch = {b"batch_label": b"tiny", b"data": x.reshape(len(x), -1), b"labels": [int(v) for v in y],
             b"filenames": [b"f.png"] * len(x)}
    batch.update(changes)
    return pickle.dumps(batch, protocol=4)


def write_python_layout(root, batches):
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, (x, y) in batches.items():
        (folder / name).write_bytes(pickled_batch(x, y))
    return folder


def write_binary_layout(root, batches):
    folder = Path(root) / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, (x, y) in batches.items():
        records = np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    return folder


def make_tarball(path, folder, arcname):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return path


def expected_split(batches, train):
    names = BATCHES[:5] if train else ["test_batch"]
    return (np.concatenate([batches[n][0] for n in names]),
            np.concatenate([batches[n][1] for n in names]))


# ------------------------------------------------------------- real CIFAR-10 subset
@pytest.fixture(scope="module")
def subset_copies(tmp_path_factory):
    """Each subset tarball copied into its own folder (loading extracts there)."""
    if not all(p.is_file() for p in SUBSETS.values()):
        pytest.skip(f"CIFAR-10 subset archives not found in {SHARED_DATA}")
    roots = {}
    for layout, src in SUBSETS.items():
        roots[layout] = tmp_path_factory.mktemp(layout)
        shutil.copy(src, roots[layout])
    return roots


def test_cifar_subset_both_layouts_tarball_and_folder_agree(subset_copies):
    loaded = {}
    for layout, root in subset_copies.items():
        for train in (True, False):
            from_tar = CIFAR10(root, train=train)     # first load extracts the tarball
            from_dir = CIFAR10(root, train=train)     # second reads the extracted folder
            assert from_dir.source.name == FOLDERS[layout]
            assert np.array_equal(from_tar.images, from_dir.images)
            assert np.array_equal(from_tar.labels, from_dir.labels)
            loaded[layout, train] = from_tar
    for train, n in ((True, 5170), (False, 1017)):
        py, bn = loaded["python", train], loaded["binary", train]
        assert len(py) == n and py.images.shape == (n, 3, 32, 32) and py.images.dtype == np.uint8
        assert py.labels.shape == (n,) and py.labels.dtype == np.int64
        assert np.array_equal(py.images, bn.images) and np.array_equal(py.labels, bn.labels)
        assert set(np.unique(py.labels)) == set(range(10))
    assert loaded["python", True].classes == CIFAR10_CLASSES
    # The constants come from the full training set; the subset's channel means are close.
    means = loaded["python", True].images.mean(axis=(0, 2, 3)) / 255
    assert np.allclose(means, CIFAR10_MEAN, atol=0.02)
    for root in subset_copies.values():  # no temporary extraction folders left behind
        assert not [p for p in os.listdir(root) if p.startswith(".")]


def test_cifar_read_only_root_reads_from_tarball_without_extracting(subset_copies, tmp_path, monkeypatch):
    shutil.copy(SUBSETS["binary"], tmp_path)
    monkeypatch.setattr("minires.data.cifar.os.access", lambda path, mode: False)
    ds = CIFAR10(tmp_path, train=False)
    assert os.listdir(tmp_path) == [SUBSETS["binary"].name]
    assert np.array_equal(ds.images, CIFAR10(subset_copies["binary"], train=False).images)


# ------------------------------------------------------------- CIFAR-10 on fixtures
def test_cifar_tiny_layouts_and_default_root(tmp_path, monkeypatch):
    batches = tiny_cifar()
    write_python_layout(tmp_path / "py", batches)
    write_binary_layout(tmp_path / "bin", batches)
    monkeypatch.setenv("MINIRES_DATA", str(tmp_path / "py"))
    for train in (True, False):
        x, y = expected_split(batches, train)
        for ds in (CIFAR10(tmp_path / "bin", train=train), CIFAR10(train=train)):  # root=None: env
            assert np.array_equal(ds.images, x) and np.array_equal(ds.labels, y)


def test_cifar_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="download=True"):
        CIFAR10(tmp_path)


@pytest.mark.parametrize("damage, message", [
    ("truncate_bin", "3073-byte records"),
    ("missing_batch", "data_batch_3 is missing"),
    ("bad_shape", r"shape \(N, 3072\)"),
    ("label_count", "one per image"),
    ("label_range", "0..9"),
    ("not_a_pickle", "not a readable pickle"),
])
def test_cifar_damaged_files_are_named(tmp_path, damage, message):
    batches = tiny_cifar()
    x, y = batches["data_batch_3"]
    if damage == "truncate_bin":
        path = write_binary_layout(tmp_path, batches) / "data_batch_3.bin"
        path.write_bytes(path.read_bytes()[:-10])
    else:
        path = write_python_layout(tmp_path, batches) / "data_batch_3"
        if damage == "missing_batch":
            path.unlink()
        elif damage == "bad_shape":
            path.write_bytes(pickled_batch(x, y, {b"data": x.reshape(len(x), 3, -1)}))
        elif damage == "label_count":
            path.write_bytes(pickled_batch(x, y, {b"labels": [1]}))
        elif damage == "label_range":
            path.write_bytes(pickled_batch(x, y, {b"labels": [3, 10]}))
        else:
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DatasetError, match=message) as info:
        CIFAR10(tmp_path)
    assert "data_batch_3" in str(info.value)


def test_cifar_official_name_with_wrong_size_is_rejected(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(DatasetError, match="expected 170498071.*download"):
        CIFAR10(tmp_path)


# ------------------------------------------------------------------ unsafe pickles
class _Payload:
    """Pickles as a call of ``func(*args)``: what a malicious batch file would hold."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("attack", ["os.system", "builtins.eval", "nested"])
def test_malicious_pickle_is_refused_without_running(tmp_path, attack):
    marker = tmp_path / "pwned"
    if attack == "os.system":
        payload = _Payload(os.system, f"touch {marker}")
    else:
        payload = _Payload(eval, f"open({str(marker)!r}, 'w').write('x')")
    data = pickle.dumps({b"data": payload, b"labels": [0]} if attack == "nested" else payload, protocol=2)
    with pytest.raises(UnsafePickleError, match="refused.*nothing in it was executed"):
        safe_loads(data, "evil")
    folder = write_python_layout(tmp_path / "root", tiny_cifar())
    (folder / "data_batch_1").write_bytes(data)
    with pytest.raises(UnsafePickleError, match="data_batch_1"):
        CIFAR10(tmp_path / "root")
    assert not marker.exists()
    pickle.loads(data)  # the same bytes do run under plain pickle: the test's payload is live
    assert marker.exists()


# ----------------------------------------------------------------- safe extraction
def _tar_with(path, member, data=b"x"):
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("cifar-10-batches-py/ok")
        ok.size = 1
        tar.addfile(ok, io.BytesIO(b"x"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _link(name, target, kind):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member", [
    tarfile.TarInfo("../escape.txt"),
    tarfile.TarInfo("cifar-10-batches-py/../../escape.txt"),
    tarfile.TarInfo("/tmp/minires-escape.txt"),
    _link("cifar-10-batches-py/link", "../../escape.txt", tarfile.SYMTYPE),
    _link("cifar-10-batches-py/link", "/etc/passwd", tarfile.SYMTYPE),
    _link("cifar-10-batches-py/hard", "../escape.txt", tarfile.LNKTYPE),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-abs", "hardlink-out"])
def test_extraction_rejects_escaping_members(tmp_path, member):
    tarball = _tar_with(tmp_path / "evil.tar.gz", member)
    dest = tmp_path / "a" / "b"
    dest.mkdir(parents=True)
    with pytest.raises(UnsafeArchiveError, match="outside the target folder"):
        safe_extract(tarball, dest)
    assert os.listdir(dest) == []  # nothing extracted, not even the harmless member
    assert not (tmp_path / "a" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()


def test_extraction_allows_links_that_stay_inside(tmp_path):
    tarball = _tar_with(tmp_path / "ok.tar.gz", _link("cifar-10-batches-py/link", "ok", tarfile.SYMTYPE))
    safe_extract(tarball, tmp_path / "out")
    assert (tmp_path / "out" / "cifar-10-batches-py" / "link").read_bytes() == b"x"


# ---------------------------------------------------------------------- downloads
class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path.startswith("/cut/"):  # announce the full size, send half, hang up
            data = (Path(self.directory) / self.path[5:]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        if self.path.startswith("/nolen/"):  # no Content-Length: only the final size check sees it
            self.send_response(200)
            self.end_headers()
            self.wfile.write((Path(self.directory) / self.path[7:]).read_bytes())
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local HTTP server over a folder holding a tiny CIFAR tarball and a malicious one."""
    serve = tmp_path_factory.mktemp("serve")
    build = tmp_path_factory.mktemp("build")
    batches = tiny_cifar(seed=1)
    tiny = make_tarball(serve / "tiny.tar.gz", write_python_layout(build, batches), "cifar-10-batches-py")
    evil = _tar_with(serve / "evil.tar.gz", tarfile.TarInfo("../escape.txt"))
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(serve)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    info = {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "batches": batches, "root": serve}
    for name, path in (("tiny", tiny), ("evil", evil)):
        data = path.read_bytes()
        info[name] = {"md5": hashlib.md5(data).hexdigest(), "size": len(data)}
    yield info
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_extracts(server, tmp_path, capsys):
    cache = tmp_path / "cache"
    ds = CIFAR10(cache, train=False, download=True, url=f"{server['url']}/tiny.tar.gz", **server["tiny"])
    x, y = expected_split(server["batches"], train=False)
    assert np.array_equal(ds.images, x) and np.array_equal(ds.labels, y)
    err = capsys.readouterr().err
    assert "cifar-10-python.tar.gz" in err and "100%" in err  # the tqdm bar ran to the end
    assert sorted(os.listdir(cache)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    again = CIFAR10(cache, train=True, download=True)  # found: no second download
    assert again.source == cache / "cifar-10-batches-py" and len(again) == 10


@pytest.mark.parametrize("case, message", [
    ("md5", "MD5 .* does not match"),
    ("size", "announces .* bytes, expected"),
    ("cut", "closed after .* bytes: the download is truncated"),
    ("nolen", "got .* bytes, expected .*: the download is truncated"),
    ("404", "HTTPError"),
])
def test_failed_download_leaves_nothing_and_says_what_to_do(server, tmp_path, case, message):
    cache, kwargs = tmp_path / "cache", dict(server["tiny"], url=f"{server['url']}/tiny.tar.gz")
    if case == "md5":
        kwargs["md5"] = "0" * 32
    elif case == "size":
        kwargs["size"] += 1
    elif case == "cut":
        kwargs["url"] = f"{server['url']}/cut/tiny.tar.gz"
    elif case == "nolen":
        kwargs["url"], kwargs["size"] = f"{server['url']}/nolen/tiny.tar.gz", kwargs["size"] + 1
    else:
        kwargs["url"] = f"{server['url']}/nothing-here.tar.gz"
    with pytest.raises(DownloadError, match=message) as info:
        CIFAR10(cache, download=True, progress=False, **kwargs)
    assert "Retry" in str(info.value) and "root=" in str(info.value)
    assert not cache.exists()                      # the folder made for the download goes too


def test_downloaded_archive_with_escaping_member_is_rejected_and_removed(server, tmp_path):
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(UnsafeArchiveError, match="escape.txt"):
        CIFAR10(cache, download=True, progress=False, url=f"{server['url']}/evil.tar.gz", **server["evil"])
    assert os.listdir(cache) == []
    assert not (cache.parent / "escape.txt").exists()


# --------------------------------------------------------------- MNIST-style IDX
def idx_bytes(array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + np.array(array.shape, ">i4").tobytes()
    return header + array.tobytes()


def write_idx_split(folder, prefix="train", n=5, gz=True, seed=0, **damage):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for kind, dims, arr in (("images", 3, x), ("labels", 1, y)):
        data = damage.get(kind, idx_bytes(arr))
        name = f"{prefix}-{kind}-idx{dims}-ubyte" + (".gz" if gz else "")
        (folder / name).write_bytes(gzip.compress(data) if gz else data)
    return x, y


@pytest.mark.parametrize("cls", [FashionMNIST, MNIST])
def test_idx_gz_and_raw(tmp_path, cls):
    x, y = write_idx_split(tmp_path / "gz", gz=True)
    x2, y2 = write_idx_split(tmp_path / "raw", prefix="t10k", n=3, gz=False, seed=1)
    ds, test = cls(tmp_path / "gz"), cls(tmp_path / "raw", train=False)
    assert ds.images.shape == (5, 1, 28, 28) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and np.array_equal(ds.labels, y)
    assert np.array_equal(ds.images[:, 0], x) and np.array_equal(test.images[:, 0], x2)
    assert len(test) == 3 and len(ds.classes) == 10


def test_idx_default_root_from_env(tmp_path, monkeypatch):
    x, _ = write_idx_split(tmp_path / "fashion-mnist")
    monkeypatch.setenv("MINIRES_DATA", str(tmp_path))
    assert np.array_equal(FashionMNIST().images[:, 0], x)


def test_idx_missing_says_where_to_get(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte.*zalandoresearch"):
        FashionMNIST(tmp_path)


def _labels(values):
    return idx_bytes(np.array(values, np.uint8))


@pytest.mark.parametrize("damage, message", [
    ({"images": b"\x00\x00\x08\x02" + b"\0" * 8}, "expected an IDX file of 3 dimensions"),
    ({"images": b"\x12\x34\x08\x03"}, "not an IDX file"),
    ({"labels": b"\x00\x00\x07\x01"}, "not an IDX file"),
    ({"images": idx_bytes(np.zeros((5, 28, 28), np.uint8))[:-7]}, "truncated"),
    ({"images": b"\x00\x00\x08\x03\x00"}, "header is cut short"),
    ({"labels": _labels([1, 2, 3])}, "do not belong together"),
    ({"labels": _labels([1, 2, 3, 4, 12])}, r"0\.\.9"),
    ({"images": idx_bytes(np.zeros((5, 27, 28), np.uint8))}, "28x28"),
])
def test_idx_damage_is_named(tmp_path, damage, message):
    write_idx_split(tmp_path, gz=False, **damage)
    with pytest.raises(DatasetError, match=message):
        FashionMNIST(tmp_path)


def test_idx_truncated_gzip(tmp_path):
    write_idx_split(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DatasetError, match="gzip stream is damaged"):
        FashionMNIST(tmp_path)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_debian_copy():
    test = FashionMNIST("/usr/share/datasets/fashion-mnist", train=False)
    assert test.images.shape == (10000, 1, 28, 28)
    assert np.array_equal(np.bincount(test.labels), [1000] * 10)
    assert abs(test.images.mean() / 255 - FASHION_MNIST_MEAN[0]) < 0.01


# ---------------------------------------------------------------------- DataLoader
def arrays(n, c=3, h=32, w=32, seed=0):
    """Random images, labels = sample ids (so a batch says which samples it holds)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, c, h, w), dtype=np.uint8), np.arange(n)


def ids(loader):
    return np.concatenate([backend.to_numpy(y.data) for _, y in loader])


def test_loader_covers_dataset_once_per_epoch(device):
    data = arrays(103, h=4, w=4)
    loader = DataLoader(data, 10, shuffle=True, device=device)
    assert len(loader) == 11
    for _ in range(2):
        seen = ids(loader)
        assert sorted(seen) == list(range(103)) and not np.array_equal(seen, np.arange(103))
    dropped = DataLoader(data, 10, shuffle=True, drop_last=True, device=device)
    sizes = [len(y.data) for _, y in dropped]
    assert len(dropped) == 10 and sizes == [10] * 10 and len(set(ids(dropped))) == 100
    assert np.array_equal(ids(DataLoader(data, 10, device=device)), np.arange(103))


def test_shuffle_is_a_function_of_seed_and_epoch(device):
    data = arrays(50, h=2, w=2)
    a, b = (DataLoader(data, 8, shuffle=True, seed=7, device=device) for _ in range(2))
    a.set_epoch(3)
    b.set_epoch(3)
    assert np.array_equal(ids(a), ids(b))
    epoch4 = ids(a)  # iterating advanced a to epoch 4
    b.set_epoch(4)
    assert np.array_equal(epoch4, ids(b)) and not np.array_equal(epoch4, ids(a))
    other = DataLoader(data, 8, shuffle=True, seed=8, device=device)
    other.set_epoch(3)
    b.set_epoch(3)
    assert not np.array_equal(ids(other), ids(b))


def test_normalisation(device):
    images, labels = arrays(9, c=3, h=5, w=6)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    loader = DataLoader((images, labels), 4, mean=mean, std=std, device=device)
    x, y = next(iter(loader))
    assert x.dtype == np.float32 and x.shape == (4, 3, 5, 6) and y.dtype == np.int64
    assert x.device == backend.normalize_device(device)
    m, s = np.array(mean)[:, None, None], np.array(std)[:, None, None]
    assert np.allclose(backend.to_numpy(x.data), (images[:4] / 255 - m) / s, atol=1e-6)


def test_augmentation_matches_slow_reference(device):
    images, labels = arrays(600, seed=3)
    loader = DataLoader((images, labels), 128, shuffle=True, seed=5, augment=True, device=device)
    loader.set_epoch(2)
    out = np.concatenate([backend.to_numpy(x.data) for x, _ in loader])
    order, dy, dx, flip = (backend.to_numpy(a) for a in loader.plan(2))
    assert out.shape == (600, 3, 32, 32)
    padded = np.pad(images, ((0, 0), (0, 0), (4, 4), (4, 4)))
    for k, i in enumerate(order):  # slow reference: pad, crop, flip one image at a time
        crop = padded[i, :, dy[k]:dy[k] + 32, dx[k]:dx[k] + 32]
        crop = crop[:, :, ::-1] if flip[k] else crop
        assert np.array_equal(out[k], crop / np.float32(255)), f"sample {i}"
    assert abs(flip.mean() - 0.5) < 0.07
    assert len(set(zip(dy, dx))) == 81  # every offset in 0..8 x 0..8 occurs
    again = DataLoader((images, labels), 128, shuffle=True, seed=5, augment=True, device=device)
    again.set_epoch(2)
    assert np.array_equal(out, np.concatenate([backend.to_numpy(x.data) for x, _ in again]))


def test_augmentation_pads_with_zero_before_normalising(device):
    white = np.full((64, 3, 32, 32), 255, np.uint8)
    loader = DataLoader((white, np.zeros(64, np.int64)), 64, augment=True, mean=0.5, std=0.5, device=device)
    x = backend.to_numpy(next(iter(loader))[0].data)
    assert set(np.unique(x)) == {-1.0, 1.0}  # padding: (0 - 0.5)/0.5; image: (1 - 0.5)/0.5


def test_resize(device):
    images, labels = arrays(6, c=1, h=28, w=28)
    loader = DataLoader((images, labels), 4, resize=96, device=device)
    assert [tuple(x.shape) for x, _ in loader] == [(4, 1, 96, 96), (2, 1, 96, 96)]
    const = np.full((2, 3, 7, 9), 77, np.uint8)
    x, _ = next(iter(DataLoader((const, np.arange(2)), 2, resize=(20, 13), device=device)))
    assert x.shape == (2, 3, 20, 13) and np.all(backend.to_numpy(x.data) == np.float32(77) / 255)
    aug = DataLoader(arrays(3)[:2], 3, augment=True, resize=(40, 40), device=device)
    assert next(iter(aug))[0].shape == (3, 3, 40, 40)


def test_resize_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random((2, 3, 7, 11), dtype=np.float32)
    for size in ((96, 96), (4, 5), (7, 30)):
        ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode="bilinear",
                                              align_corners=False).numpy()
        assert np.allclose(resize_bilinear(x, size), ref, atol=1e-6), size


def test_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8 images"):
        DataLoader((np.zeros((2, 3, 4, 4), np.float32), np.zeros(2, np.int64)), 1)
    with pytest.raises(ValueError, match="one integer label per image"):
        DataLoader((np.zeros((2, 3, 4, 4), np.uint8), np.zeros(3, np.int64)), 1)
    with pytest.raises(ValueError, match="one per channel"):
        DataLoader((np.zeros((2, 3, 4, 4), np.uint8), np.zeros(2, np.int64)), 1, mean=(0.1, 0.2))


def test_loader_over_cifar_subset(subset_copies):
    ds = CIFAR10(subset_copies["python"], train=False)
    loader = DataLoader(ds, 256, shuffle=True, augment=True, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    xs = [x.data for x, _ in loader]
    assert len(xs) == len(loader) == 4 and sum(map(len, xs)) == 1017
    unpadded = DataLoader(ds, 1017, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    x = next(iter(unpadded))[0].data
    assert np.all(np.abs(x.mean(axis=(0, 2, 3))) < 0.1) and np.all(np.abs(x.std(axis=(0, 2, 3)) - 1) < 0.1)
