"""minires.data.ImageFolder on tiny trees written here with Pillow (folder and tarball, cache,
bad input), CIFAR-10's JPEG copy found and ranked by CIFAR10, `minires train --dataset
imagefolder`, and (slow) the whole real JPEG copy of CIFAR-10."""
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from minires import cli
from minires.data import (CIFAR10, CIFAR10_CLASSES, DatasetError, DatasetNotFoundError, ImageFolder,
                          ImageFolderSplit, UnsafeArchiveError, channel_stats, describe_copy)
from minires.data import cifar, imagefolder
from shared_data import JPEG_ARCHIVE, SHARED_DATA

Image = pytest.importorskip("PIL.Image", reason='Pillow is missing: pip install "minires[images]"')


# ----------------------------------------------------------------- tree builders
def write_image(path, array, fmt=None):
    """Save uint8 (H, W, 3) or (H, W) with Pillow; the file's name gives the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, fmt)
    return path


def pillow_pixels(path, mode="RGB"):
    """What Pillow itself decodes, as (C, H, W)."""
    with Image.open(path) as img:
        a = np.asarray(img.convert(mode))
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def make_tree(root, classes=("zebra", "ant", "cat"), per_class=3, size=(5, 6), seed=0, gray=False):
    """root/<class>/<i>.png (and one .jpg per class): random images; their paths, sorted."""
    rng = np.random.default_rng(seed)
    shape = size if gray else size + (3,)
    paths = []
    for c in classes:
        for i in range(per_class):
            paths.append(write_image(root / c / f"{i}.png", rng.integers(0, 256, shape, dtype=np.uint8)))
        paths.append(write_image(root / c / "x.jpg", rng.integers(0, 256, shape, dtype=np.uint8)))
    return sorted(paths, key=lambda p: p.relative_to(root).as_posix())


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """default_root() points into tmp_path, so no test writes a cache into ~/.cache."""
    home = tmp_path / "default-root"
    monkeypatch.setenv("MINIRES_DATA", str(home))
    return home


def count_decodes(monkeypatch):
    calls = []
    real = imagefolder._decode

    def counting(*args):
        calls.append(args[2])
        return real(*args)
    monkeypatch.setattr(imagefolder, "_decode", counting)
    return calls


# ----------------------------------------------------------------- ImageFolder
def test_classes_sorted_labels_and_pixels_exact_against_pillow(tmp_path, cache_home):
    root = tmp_path / "tree"
    paths = make_tree(root)
    write_image(root / "cat" / "more" / "deep.png", np.full((5, 6, 3), 7, np.uint8))  # nested: included
    (root / "cat" / "notes.txt").write_text("not an image")                          # ignored
    write_image(root / ".hidden" / "0.png", np.zeros((5, 6, 3), np.uint8))            # hidden class: ignored
    paths = sorted(paths + [root / "cat" / "more" / "deep.png"], key=lambda p: p.relative_to(root).as_posix())
    ds = ImageFolder(root, progress=False)
    assert ds.classes == ("ant", "cat", "zebra")
    assert ds.images.dtype == np.uint8 and ds.images.shape == (len(paths), 3, 5, 6)
    assert ds.labels.dtype == np.int64 and len(ds) == len(paths)
    assert list(ds.files) == [p.relative_to(root).as_posix() for p in paths]
    for i, p in enumerate(paths):
        assert ds.labels[i] == ds.classes.index(p.relative_to(root).parts[0])
        assert np.array_equal(ds.images[i], pillow_pixels(p)), p
    assert np.bincount(ds.labels).tolist() == [4, 5, 4]


def test_grayscale_tree_keeps_one_channel_and_a_colour_image_makes_it_rgb(tmp_path, cache_home):
    root = tmp_path / "tree"
    paths = make_tree(root, classes=("a", "b"), gray=True)
    gray = ImageFolder(root, progress=False)
    assert gray.images.shape == (len(paths), 1, 5, 6)
    assert all(np.array_equal(gray.images[i], pillow_pixels(p, "L")) for i, p in enumerate(paths))
    forced = ImageFolder(root, mode="RGB", progress=False)
    assert forced.images.shape[1] == 3 and np.array_equal(forced.images[0], pillow_pixels(paths[0]))
    write_image(root / "b" / "colour.png", np.arange(90, dtype=np.uint8).reshape(5, 6, 3))
    mixed = ImageFolder(root, progress=False)
    assert mixed.images.shape[1] == 3
    assert np.array_equal(mixed.images[0], pillow_pixels(paths[0], "RGB"))  # L replicated, as convert()


def test_decoded_once_then_read_from_the_cache_until_a_file_changes(tmp_path, cache_home, monkeypatch):
    root = tmp_path / "tree"
    paths = make_tree(root)
    calls = count_decodes(monkeypatch)
    first = ImageFolder(root, progress=False)
    assert len(calls) == len(paths)
    assert first.cache_path.parent == root and first.cache_path.name.startswith(".minires-cache-")
    assert not [p for p in os.listdir(root) if p.endswith(".part")]
    second = ImageFolder(root, progress=False)
    assert len(calls) == len(paths)                       # the decoder was not called again
    assert second.cache_path == first.cache_path and (first.cache_path.stat().st_mode & 0o777) == 0o644
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)
    assert (second.classes, second.files) == (first.classes, first.files)
    write_image(root / "ant" / "new.png", np.zeros((5, 6, 3), np.uint8))
    third = ImageFolder(root, progress=False)             # the fingerprint changed: decode again
    assert len(calls) == 2 * len(paths) + 1 and len(third) == len(first) + 1
    resized = ImageFolder(root, resize=4, progress=False)  # other settings: their own cache
    assert resized.cache_path != third.cache_path and resized.images.shape[2:] == (4, 4)


def test_a_damaged_cache_is_decoded_again_and_replaced(tmp_path, cache_home, monkeypatch):
    root = tmp_path / "tree"
    paths = make_tree(root, classes=("a", "b"))
    first = ImageFolder(root, progress=False)
    first.cache_path.write_bytes(b"PK\x03\x04 cut short")
    calls = count_decodes(monkeypatch)
    again = ImageFolder(root, progress=False)
    assert len(calls) == len(paths) and np.array_equal(again.images, first.images)
    ImageFolder(root, progress=False)
    assert len(calls) == len(paths)                       # the rewritten cache is good


def test_given_class_order_sets_labels_and_image_order(tmp_path, cache_home):
    root = tmp_path / "tree"
    make_tree(root, classes=("a", "b", "c"), per_class=1)
    ds = ImageFolder(root, classes=("c", "a", "b"), progress=False)
    assert ds.classes == ("c", "a", "b") and ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert [f.split("/")[0] for f in ds.files] == ["c", "c", "a", "a", "b", "b"]


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, cache_home, capsys):
    make_tree(tmp_path / "tree", classes=("a",))
    ImageFolder(tmp_path / "tree", progress=True)
    assert "decoding" not in capsys.readouterr().err


def test_read_only_root_caches_under_default_root(tmp_path, cache_home, monkeypatch):
    root = tmp_path / "tree"
    make_tree(root)
    before = sorted(os.listdir(root))
    root.chmod(0o555)            # r-x for everyone: respected even when the tests run as root
    try:
        calls = count_decodes(monkeypatch)
        first = ImageFolder(root, progress=False)
        n = len(calls)
        second = ImageFolder(root, progress=False)
    finally:
        root.chmod(0o755)
    assert sorted(os.listdir(root)) == before
    assert first.cache_path.parent == cache_home / "imagefolder-cache" and first.cache_path.is_file()
    assert second.cache_path == first.cache_path and len(calls) == n
    assert np.array_equal(first.images, second.images)


def test_bad_image_file_is_named_in_one_line(tmp_path, cache_home):
    root = tmp_path / "tree"
    make_tree(root)
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    with pytest.raises(DatasetError, match=r"tree/cat/broken\.jpg: not a readable image") as e:
        ImageFolder(root, progress=False)
    assert "\n" not in str(e.value)
    assert not [p for p in os.listdir(root) if p.startswith(".minires-cache")]  # nothing cached


def test_images_of_different_sizes_need_resize(tmp_path, cache_home):
    root = tmp_path / "tree"
    make_tree(root, classes=("a", "b"))
    big = write_image(root / "b" / "big.png", np.random.default_rng(1).integers(0, 256, (9, 12, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"images differ in size .*b/big\.png is 12x9.*resize="):
        ImageFolder(root, progress=False)
    ds = ImageFolder(root, resize=(5, 6), progress=False)
    with Image.open(big) as img:
        expected = np.asarray(img.convert("RGB").resize((6, 5), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(ds.images[list(ds.files).index("b/big.png")], expected)


def test_bad_arguments_and_trees_say_what_is_wrong(tmp_path, cache_home):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="has no class sub-folders"):
        ImageFolder(tmp_path / "empty")
    root = tmp_path / "tree"
    make_tree(root, classes=("a", "b"))
    (root / "c").mkdir()
    with pytest.raises(DatasetError, match="no image files .* in the class folder\\(s\\) c"):
        ImageFolder(root, progress=False)
    with pytest.raises(DatasetError, match="missing: d, unexpected: c"):
        ImageFolder(root, classes=("a", "b", "d"), progress=False)
    with pytest.raises(ValueError, match="resize must be"):
        ImageFolder(root, resize=0)
    with pytest.raises(ValueError, match="mode must be"):
        ImageFolder(root, mode="CMYK")
    (tmp_path / "file.zip").write_bytes(b"PK")
    with pytest.raises(DatasetError, match="is a file but not a tarball"):
        ImageFolder(tmp_path / "file.zip")


def test_missing_pillow_gives_the_install_hint(tmp_path, cache_home, monkeypatch):
    root = tmp_path / "tree"
    make_tree(root, classes=("a",))
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r'pip install "minires\[images\]"'):
        ImageFolder(root, progress=False)


def test_tarball_read_in_place_like_the_folder(tmp_path, cache_home):
    root = tmp_path / "tree"
    make_tree(root / "train")
    tarball = tmp_path / "data" / "tree.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(root, arcname="tree")
    from_dir = ImageFolder(root / "train", progress=False)
    from_tar = ImageFolder(tarball, subfolder="tree/train", progress=False)
    assert np.array_equal(from_dir.images, from_tar.images)
    assert np.array_equal(from_dir.labels, from_tar.labels)
    assert (from_dir.classes, from_dir.files) == (from_tar.classes, from_tar.files)
    # read in place: beside the tarball only its cache
    assert sorted(os.listdir(tarball.parent)) == sorted([tarball.name, from_tar.cache_path.name])
    with pytest.raises(DatasetNotFoundError, match="nothing under tree/nope/"):
        ImageFolder(tarball, subfolder="tree/nope", cache=False)


def test_tarball_with_an_escaping_member_is_refused(tmp_path, cache_home):
    tarball = tmp_path / "evil.tar"
    png = write_image(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint8))
    with tarfile.open(tarball, "w") as tar:
        tar.add(png, arcname="train/a/0.png")
        tar.add(png, arcname="../outside.png")
    with pytest.raises(UnsafeArchiveError, match="outside the target"):
        ImageFolder(tarball, subfolder="train")


def test_channel_stats_match_numpy():
    x = np.random.default_rng(0).integers(0, 256, (7, 3, 4, 5), dtype=np.uint8)
    mean, std = channel_stats(x, chunk=3)
    f = x.astype(np.float64) / 255
    assert np.allclose(mean, f.mean(axis=(0, 2, 3))) and np.allclose(std, f.std(axis=(0, 2, 3)))


# ----------------------------------------------------------------- CIFAR-10's JPEG copy
def make_fake_jpeg_copy(root, train=2, test=1):
    """root/cifar-10-jpeg/{train,test}/<class>/NNNN.jpg, 32x32, in CIFAR-10's layout."""
    rng = np.random.default_rng(5)
    for split, n in (("train", train), ("test", test)):
        for c in CIFAR10_CLASSES:
            for i in range(n):
                write_image(root / "cifar-10-jpeg" / split / c / f"{i:04d}.jpg",
                            rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return root / "cifar-10-jpeg"


def test_cifar10_reads_the_jpeg_copy_in_label_order_from_folder_and_tarball(tmp_path, cache_home):
    folder = make_fake_jpeg_copy(tmp_path / "a")
    train, test = CIFAR10(tmp_path / "a", train=True, progress=False), CIFAR10(tmp_path / "a", train=False)
    assert train.found.layout == "jpeg" and train.images.shape == (20, 3, 32, 32) and len(test) == 10
    assert train.labels.tolist() == list(range(10)) * 2          # classes interleaved, in label order
    assert np.array_equal(train.images[10 + CIFAR10_CLASSES.index("cat")],
                          pillow_pixels(folder / "train" / "cat" / "0001.jpg"))
    line = describe_copy(train.found, len(train), len(test))
    assert line.startswith("CIFAR-10: the JPEG copy") and "20 train / 10 test images" in line
    (tmp_path / "b").mkdir()
    with tarfile.open(tmp_path / "b" / "cifar-10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-jpeg")
    from_tar = CIFAR10(tmp_path / "b" / "cifar-10-jpeg.tar.gz", train=True, progress=False)  # named archive
    assert from_tar.found.kind == "tarball"
    assert np.array_equal(from_tar.images, train.images) and np.array_equal(from_tar.labels, train.labels)


def test_jpeg_copy_with_a_class_folder_missing_is_refused(tmp_path, cache_home):
    folder = make_fake_jpeg_copy(tmp_path, train=1, test=1)
    (folder / "test" / "truck" / "0000.jpg").unlink()
    (folder / "test" / "truck").rmdir()
    with pytest.raises(DatasetError, match="missing: truck"):
        CIFAR10(tmp_path, train=False, progress=False)


def test_copies_rank_official_then_jpeg_then_subset(tmp_path):
    (tmp_path / "cifar-10-jpeg" / "train").mkdir(parents=True)
    for name in ("cifar-10-subset-python.tar.gz", "cifar-10-jpeg.tar.gz"):
        (tmp_path / name).write_bytes(b"")
    subset_folder = tmp_path / "cifar-10-batches-bin"
    subset_folder.mkdir()
    (subset_folder / "data_batch_1.bin").write_bytes(bytes(1102 * cifar.RECORD))  # an extracted subset
    assert cifar.locate(tmp_path) == cifar.Found("folder", "jpeg", tmp_path / "cifar-10-jpeg")
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"")                         # official: first
    assert cifar.locate(tmp_path) == cifar.Found("tarball", "binary", tmp_path / "cifar-10-binary.tar.gz")
    (tmp_path / "cifar-10-binary.tar.gz").unlink()
    (tmp_path / "cifar-10-jpeg" / "train").rmdir()
    (tmp_path / "cifar-10-jpeg").rmdir()
    assert cifar.locate(tmp_path) == cifar.Found("tarball", "jpeg", tmp_path / "cifar-10-jpeg.tar.gz")
    (tmp_path / "cifar-10-jpeg.tar.gz").unlink()
    assert cifar.locate(tmp_path) == cifar.Found("folder", "binary", subset_folder, subset=True)
    with open(subset_folder / "data_batch_1.bin", "r+b") as f:                     # the full 10,000
        f.truncate(10000 * cifar.RECORD)
    (tmp_path / "cifar-10-jpeg.tar.gz").write_bytes(b"")
    assert cifar.locate(tmp_path) == cifar.Found("folder", "binary", subset_folder)
    named = tmp_path / "cifar-10-subset-python.tar.gz"
    assert cifar.locate(named) == cifar.Found("tarball", "python", named, subset=True)
    (tmp_path / "other.tar.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match="other.tar.gz is not a CIFAR-10 copy"):
        cifar.locate(tmp_path / "other.tar.gz")


def test_shared_data_holds_only_the_subset():
    found = cifar.locate(SHARED_DATA)
    if found is None:
        pytest.skip("the CIFAR-10 subset in ../shared/data is missing")
    assert found.subset and found.layout in ("python", "binary")


# ----------------------------------------------------------------- minires train --dataset imagefolder
def test_train_cli_on_an_image_folder(tmp_path, cache_home, capsys):
    root = tmp_path / "pets"
    make_tree(root / "train", classes=("cat", "dog", "emu"), per_class=3, size=(8, 8))
    make_tree(root / "test", classes=("cat", "dog", "emu"), per_class=1, size=(8, 8), seed=1)
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "imagefolder", "--data-dir", str(root), "--iterations", "2",
                     "--batch-size", "4", "--device", "cpu", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    mean, _ = channel_stats(ImageFolderSplit(root, train=True, progress=False).images)
    assert f"3 classes (cat, dog, emu), 12 train / 6 test images of 3x8x8" in printed
    assert f"normalised with the per-channel mean ({mean[0]:.4f}, " in printed
    assert (out / "checkpoint.npz").is_file()
    (root / "test" / "cat" / "0.png").rename(root / "test" / "0.png")
    for p in (root / "test" / "cat").iterdir():
        p.unlink()
    (root / "test" / "cat").rmdir()
    code = cli.main(["train", "--dataset", "imagefolder", "--data-dir", str(root), "--iterations", "1",
                     "--device", "cpu", "--out", str(tmp_path / "run2"), "--no-progress"])
    assert code == 1 and "missing: cat" in capsys.readouterr().err


def test_imagefolder_dataset_needs_train_and_test(tmp_path, cache_home):
    make_tree(tmp_path / "train", classes=("a",))
    with pytest.raises(DatasetNotFoundError, match="has no test/ folder"):
        ImageFolderSplit(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="--data-dir ROOT"):
        ImageFolderSplit(None)


# ----------------------------------------------------------------- the real JPEG copy (slow)
@pytest.mark.slow
@pytest.mark.skipif(not JPEG_ARCHIVE.is_file(), reason="cifar-10-jpeg.tar.gz is not in ../shared/data")
def test_the_whole_jpeg_copy_of_cifar10(tmp_path, cache_home, monkeypatch):
    started = time.perf_counter()
    train = CIFAR10(JPEG_ARCHIVE, train=True, progress=False)
    test = CIFAR10(JPEG_ARCHIVE, train=False, progress=False)
    decoded = time.perf_counter() - started
    for ds, n in ((train, 5000), (test, 1000)):
        assert ds.images.shape == (10 * n, 3, 32, 32) and ds.images.dtype == np.uint8
        assert np.bincount(ds.labels).tolist() == [n] * 10
        assert np.array_equal(ds.labels, np.tile(np.arange(10), n))     # interleaved, in label order
    # pixel-exact against Pillow, straight from the archive
    picks = [("train", "airplane", 0), ("train", "cat", 1234), ("train", "truck", 4999),
             ("test", "airplane", 0), ("test", "horse", 517), ("test", "truck", 999)]
    with tarfile.open(JPEG_ARCHIVE) as tar:
        for split, c, i in picks:
            member = tar.extractfile(f"cifar-10-jpeg/{split}/{c}/{i:04d}.jpg")
            ds = train if split == "train" else test
            position = 10 * i + CIFAR10_CLASSES.index(c)          # image i of class c
            assert np.array_equal(ds.images[position], pillow_pixels(member)), (split, c, i)
    # the same pictures as the official test images of the subset, class by class in order
    if (SHARED_DATA / "cifar-10-subset-python.tar.gz").is_file():
        real = CIFAR10(SHARED_DATA, train=False)
        for label in range(10):
            official = real.images[real.labels == label].astype(np.int16)
            jpeg = test.images[test.labels == label][:len(official)].astype(np.int16)
            assert np.abs(official - jpeg).mean(axis=(1, 2, 3)).max() < 14
    # a second load comes from the cache under default_root(), without decoding
    monkeypatch.setattr(imagefolder, "_decode", None)
    started = time.perf_counter()
    again = CIFAR10(JPEG_ARCHIVE, train=True, progress=False)
    print(f"decoded 60,000 JPEGs in {decoded:.1f} s; cached train split read in "
          f"{time.perf_counter() - started:.1f} s")
    assert np.array_equal(again.images, train.images)
    assert len(list((cache_home / "imagefolder-cache").glob("*.npz"))) == 2
