"""Published CIFAR-10 ResNet weights, found, verified and loaded the way torchvision users expect.

    model = minires.models.resnet20(pretrained=True)                  # cache, else download
    model = minires.models.resnet56(pretrained="/work/shared/models")   # a folder of the .npz
    state = hub.pretrained_state_dict("resnet32")                     # minires names -> arrays

The weights are Yerlan Idelbayev's (github akamaster/pytorch_resnet_cifar10, BSD-2-Clause;
the notice is LICENSE-akamaster beside this file): option-A ResNet-20/32/44/56 with the
original units, trained 200 epochs on the official CIFAR-10 pixels.  They expect pixels/255
normalised with PRETRAINED_MEAN and PRETRAINED_STD (ImageNet's, not minires's CIFAR10_MEAN).

Where they are looked for, in order:

    a folder: pretrained=PATH, or $MINIRES_WEIGHTS   NAME-TAG.npz (converted, minires's names;
                                                     its sha256 must be the one in PRETRAINED)
                                                     or the original NAME-TAG.th
    the cache: default_root()/models/NAME-TAG.th     (MINIRES_DATA or ~/.cache/minires)
    the published URL, downloaded into the cache     (the license notice is printed then)

TAG is the start of the original file's sha256 (torch.hub's convention); a .th file whose
hash does not start with it is refused.  The .th files are read by minires.torchfile:
no PyTorch, and no code in their pickles is ever run.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.download import download_url
from .data.paths import default_root
from .torchfile import TorchFileError, load_torch_file

ENV_VAR = "MINIRES_WEIGHTS"
LICENSE = Path(__file__).with_name("LICENSE-akamaster")
PRETRAINED_MEAN = (0.485, 0.456, 0.406)
PRETRAINED_STD = (0.229, 0.224, 0.225)
_BASE_URL = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"


@dataclass(frozen=True)
class Weights:
    stem: str                  # 'resnet20-12fca82f': model name, then the .th file's sha256 prefix
    npz_sha256: str            # of the converted NAME-TAG.npz
    test_accuracy: float       # published, on the full official test set (%)

    @property
    def tag(self):
        return self.stem.rsplit("-", 1)[1]

    @property
    def url(self):
        return _BASE_URL + self.stem + ".th"


PRETRAINED = {w.stem.split("-")[0]: w for w in (
    Weights("resnet20-12fca82f", "ccff22c2345dd54bf4a6ba1c3f67ee1763956488a9e803de9bfe1612145ebdc7", 91.78),
    Weights("resnet32-d509ac18", "65d4d17d7c1cab52d4b7ea26fd4ae4d8776fa14fa162cb8b68a7c5cd7da603d3", 92.78),
    Weights("resnet44-014dd654", "1259990f3bc56d74706005a8765d1e8fbedc7192f968c677875675c1804f2442", 93.14),
    Weights("resnet56-4bfd9763", "0465ef1ea099d0098ee6a819702586b5a2d099a4166c8cfd92a285953cde6723", 93.62),
)}


class WeightsError(ValueError):
    """A weights file is missing its expected hash or names."""


def cache_dir() -> Path:
    return default_root() / "models"


def sha256sum(path, chunk=1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _weights(name) -> Weights:
    if name not in PRETRAINED:
        raise ValueError(f"pretrained weights: none published for {name!r}; there are weights for "
                         f"{', '.join(PRETRAINED)} (CIFAR-10, option A)")
    return PRETRAINED[name]


def pretrained_state_dict(name, folder=None, download=True, progress=True):
    """{minires state_dict name: array} of the published weights of ``name`` ('resnet20', ...).

    folder: where the converted .npz (or the original .th) lies; None reads $MINIRES_WEIGHTS,
    and when that is unset too, the cache, downloading into it if ``download``.
    """
    w = _weights(name)
    given_as = "pretrained=" if folder is not None else f"${ENV_VAR}"
    folder = folder if folder is not None else os.environ.get(ENV_VAR) or None
    if folder is not None:
        folder = Path(folder).expanduser()
        npz, th = folder / f"{w.stem}.npz", folder / f"{w.stem}.th"
        if npz.is_file():
            return _read_npz(npz, w)
        if th.is_file():
            return _read_th(th, w)
        raise FileNotFoundError(f"pretrained {name}: neither {npz.name} nor {th.name} in {folder} "
                                f"(given as {given_as}); put one there, or leave it out to use the cache "
                                f"{cache_dir()} and the published {w.url}")
    th = cache_dir() / f"{w.stem}.th"
    if not th.is_file():
        if not download:
            raise FileNotFoundError(f"pretrained {name}: {th} is missing and downloading is off; "
                                    f"fetch {w.url} into {th.parent}, or set ${ENV_VAR} to a folder "
                                    f"holding {w.stem}.npz")
        _download(w, th, progress)
    return _read_th(th, w)


def _download(w: Weights, dest: Path, progress):
    unverified = dest.with_name(dest.name + ".unverified")
    advice = (f"Download it yourself into {dest.parent}, or set ${ENV_VAR} (or pretrained=) to a "
              f"folder holding {w.stem}.npz or {w.stem}.th.")
    download_url(w.url, unverified, progress=progress, advice=advice)
    try:
        _check_tag(unverified, w)
    except WeightsError:
        unverified.unlink(missing_ok=True)
        raise
    os.replace(unverified, dest)
    print(f"{w.stem}.th: weights by Yerlan Idelbayev (github.com/akamaster/pytorch_resnet_cifar10), "
          f"BSD-2-Clause; the notice: {LICENSE}", file=sys.stderr)


def _check_tag(path, w: Weights):
    digest = sha256sum(path)
    if not digest.startswith(w.tag):
        raise WeightsError(f"{path}: sha256 {digest[:16]}... does not start with {w.tag} as its "
                           f"published name says: damaged or not the published file. Delete it "
                           f"and fetch {w.url} again")


def _read_npz(path, w: Weights):
    digest = sha256sum(path)
    if digest != w.npz_sha256:
        raise WeightsError(f"{path}: sha256 {digest[:16]}... is not {w.npz_sha256[:16]}..., the "
                           f"converted {w.stem}.npz's: damaged or a different file. Replace it, "
                           "or remove it to use the original .th")
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def _read_th(path, w: Weights):
    """The original file: verified, unpickled safely, its names mapped onto minires's."""
    _check_tag(path, w)
    obj = load_torch_file(path)
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise TorchFileError(f"{path}: expected a dict with a 'state_dict', as "
                             "akamaster/pytorch_resnet_cifar10 saves it")
    return from_akamaster(state)


def from_akamaster(state):
    """akamaster's names -> minires's: drop DataParallel's 'module.' and add the
    num_batches_tracked counters their files lack (0: PyTorch's BN uses it only without momentum)."""
    out = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        out[name] = np.asarray(value)
        if name.endswith(".running_var"):
            out.setdefault(name[:-len("running_var")] + "num_batches_tracked", np.zeros((), np.int64))
    return out


def load_pretrained(model, name, folder=None, download=True, progress=True):
    """Copy the published weights of ``name`` into ``model`` (a CifarResNet of that depth)."""
    expected = f"an option-A, original-unit, 10-class RGB {name}"
    got = (getattr(model, "shortcut_option", None), getattr(model, "variant", None),
           model.linear.out_features if hasattr(model, "linear") else None,
           model.conv1.in_channels if hasattr(model, "conv1") else None)
    if got != ("A", "original", 10, 3):
        raise ValueError(f"{name}(pretrained=True): the published weights are for {expected}; this "
                         f"model has shortcut={got[0]!r}, variant={got[1]!r}, num_classes={got[2]}, "
                         f"in_channels={got[3]}. Leave those at their defaults")
    state = pretrained_state_dict(name, folder, download, progress)
    ours = model.state_dict()
    missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
    if missing or unexpected:
        raise WeightsError(f"pretrained {name}: its names do not match minires's {name} (missing "
                           f"{missing[:3]}{' ...' if len(missing) > 3 else ''}, unexpected "
                           f"{unexpected[:3]}{' ...' if len(unexpected) > 3 else ''})")
    model.load_state_dict(state)
    return model
