"""minires.data: datasets from their official files, and a device-side DataLoader.

    cifar.py        CIFAR-10 (python/binary layout or the JPEG copy, folder or tarball, verified download)
    imagefolder.py  image trees, one sub-folder per class (Pillow), decoded once and cached
    mnist.py        MNIST and Fashion-MNIST from IDX files
    loader.py       DataLoader: batches gathered, augmented and normalised on the device
    transforms.py   vectorised crop+flip gather and bilinear resize (NumPy or CuPy)
    download.py     verified downloads (size + MD5, atomic rename)
    archive.py      gzipped tarballs read whole and verified; members that escape are refused
    scratch.py      scratch files named after their writer, so a later start removes orphans
    safe_pickle.py  an Unpickler that can build only what the CIFAR-10 batches contain
    errors.py       the exceptions above raise
"""
from .archive import safe_extract
from .cifar import (CIFAR10, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_SOURCES, CIFAR10_STD,
                    describe_copy, download_cifar10)
from .download import download_url, md5sum
from .errors import (DatasetError, DatasetNotFoundError, DownloadError, UnsafeArchiveError,
                     UnsafePickleError)
from .imagefolder import ImageFolder, ImageFolderSplit, channel_stats
from .loader import DataLoader
from .mnist import (FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, MNIST,
                    MNIST_CLASSES, MNIST_MEAN, MNIST_STD, FashionMNIST, read_idx)
from .paths import default_root
from .safe_pickle import safe_loads
from .transforms import AUGMENT_PADDING, gather_crops, resize_bilinear

__all__ = [
    "CIFAR10", "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10_SOURCES", "download_cifar10",
    "describe_copy", "ImageFolder", "ImageFolderSplit", "channel_stats",
    "MNIST", "FashionMNIST", "MNIST_CLASSES", "MNIST_MEAN", "MNIST_STD", "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "read_idx", "DataLoader", "gather_crops",
    "resize_bilinear", "AUGMENT_PADDING", "download_url", "md5sum", "safe_extract", "safe_loads",
    "default_root", "DatasetError", "DatasetNotFoundError", "DownloadError", "UnsafeArchiveError",
    "UnsafePickleError",
]
