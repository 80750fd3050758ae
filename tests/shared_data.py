"""Where the tests find the real CIFAR-10 data: ../shared/data beside the checkout, or the
folder named by $MINIRES_TEST_DATA (a GPU machine gets a copy inside the checkout).

SHARED_DATA_ALL is that folder as it is: the subset tarballs and the JPEG copy of all 60,000
images (cifar-10-jpeg.tar.gz, JPEG_ARCHIVE), which CIFAR10 prefers to the subset.
SHARED_DATA is a folder of links to the two subset tarballs only, made once per test
session, so the tests that pass it as data_dir train on the subset's real pixels, fast.
"""
import atexit
import os
import shutil
import tempfile
from pathlib import Path

SHARED_DATA_ALL = Path(os.environ.get("MINIRES_TEST_DATA")
                       or Path(__file__).resolve().parents[2] / "shared" / "data")
JPEG_ARCHIVE = SHARED_DATA_ALL / "cifar-10-jpeg.tar.gz"
SUBSET_TARBALLS = ("cifar-10-subset-python.tar.gz", "cifar-10-subset-binary.tar.gz")


def _subset_only_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="minires-subset-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for name in SUBSET_TARBALLS:
        if (SHARED_DATA_ALL / name).is_file():
            (folder / name).symlink_to((SHARED_DATA_ALL / name).resolve())
    return folder


SHARED_DATA = _subset_only_folder()
