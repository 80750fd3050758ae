"""Batch transforms written once against ``xp``: they run where the batch lives (CPU or GPU)."""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module

# ResNet paper, CIFAR: "4 pixels are padded on each side, and a 32x32 crop is randomly sampled
# from the padded image or its horizontal flip".
AUGMENT_PADDING = 4


def gather_crops(images, idx, dy, dx, flip, pad=AUGMENT_PADDING):
    """``images[idx]``, each zero-padded by ``pad``, cropped back to (H, W) at (dy[b], dx[b])
    in the padded frame, then mirrored left-right where ``flip[b]``.

    ``images`` is the whole uint8 (N, C, H, W) array; ``idx``, ``dy``, ``dx`` (in 0..2*pad)
    and ``flip`` (bool) hold one entry per batch item.  The padded image is never built:
    every output pixel's source index is computed, so the batch is one gather plus a
    mask that zeroes the pixels that fall in the padding -- zero in uint8, i.e. black
    before normalisation, as torchvision's RandomCrop(32, padding=4) does on the raw image.
    """
    xp = get_array_module(images)
    _, C, H, W = images.shape
    i, j = xp.arange(H), xp.arange(W)
    rows = dy[:, None] - pad + i[None, :]                                   # (B, H)
    cols = dx[:, None] - pad + xp.where(flip[:, None], W - 1 - j, j)         # (B, W): flip the crop
    inside = (((rows >= 0) & (rows < H))[:, None, :, None]
              & ((cols >= 0) & (cols < W))[:, None, None, :])               # (B, 1, H, W)
    rows, cols = xp.clip(rows, 0, H - 1), xp.clip(cols, 0, W - 1)
    flat = ((idx.astype(np.int64)[:, None, None, None] * C + xp.arange(C)[None, :, None, None]) * (H * W)
            + rows[:, None, :, None] * W + cols[:, None, None, :])           # (B, C, H, W)
    return images.reshape(-1).take(flat) * inside                            # uint8 * bool -> uint8


def _source_coords(xp, n_in, n_out):
    """Bilinear source indices and weights along one axis (half-pixel centres,
    align_corners=False: PIL's and torch's bilinear upscaling)."""
    src = (xp.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = xp.clip(src, 0, n_in - 1)
    lo = xp.floor(src).astype(np.int64)
    hi = xp.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def resize_bilinear(x, size):
    """Resize float (B, C, H, W) to ``size`` = (H', W') bilinearly: two gathers, no loops.

    Written as lo + w * (hi - lo) so a constant image stays exactly constant.
    """
    xp = get_array_module(x)
    (h, w), (h2, w2) = x.shape[2:], size
    if (h, w) == (h2, w2):
        return x
    lo, hi, wy = _source_coords(xp, h, h2)
    top = x[:, :, lo, :]
    x = top + wy[:, None] * (x[:, :, hi, :] - top)
    lo, hi, wx = _source_coords(xp, w, w2)
    left = x[..., lo]
    return left + wx * (x[..., hi] - left)
