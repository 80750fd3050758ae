"""ResNet-20's 3x3 stride-1 convolutions: im2col vs Winograd F(2x2) / F(4x4) vs direct vs PyTorch, on the CPU.

    python benchmarks/conv_winograd.py [--batch 128] [--repeats 7] [--images cifar10|fashion-mnist]

Per layer shape: the median milliseconds of forward + backward (dx and dW) for each
minires algorithm (minires.ops.winograd.set_conv_algorithm) and for PyTorch, the
ratios to im2col and best minires / PyTorch, then the AUTO_WINOGRAD table
(minires/ops/winograd.py) these figures suggest: the layers where another algorithm
beat im2col by more than 5%.  Run it on a quiet machine: the choice is only as good
as the timing.  PyTorch runs in its own subprocess (two thread pools in one process
slow each other down, see resnet20_step.py).  minires gets the layouts its ResNet hands
a conv: channels-last inputs (the stem's images NCHW) and channels-last upstream gradients.
"""
import argparse
import json

import numpy as np

from _timing import channels_last, cpu_description, machine, median_ms, torch_subprocess

# (name, channels in, channels out, H = W): a CIFAR ResNet's 3x3 stride-1 layer shapes (the
# stem has C_in = 3), those of the same ResNet on Fashion-MNIST's 28x28 greyscale images, or
# those of d2l's ResNet-18
IMAGE_LAYERS = {
    "cifar10": [("stem 3->16 32x32", 3, 16, 32), ("stage1 16->16 32x32", 16, 16, 32),
                ("stage2 32->32 16x16", 32, 32, 16), ("stage3 64->64 8x8", 64, 64, 8)],
    "fashion-mnist": [("stem 1->16 28x28", 1, 16, 28), ("stage1 16->16 28x28", 16, 16, 28),
                      ("stage2 32->32 14x14", 32, 32, 14), ("stage3 64->64 7x7", 64, 64, 7)],
    # d2l's ResNet-18 on Fashion-MNIST resized to 96x96 (demos/d2l_resnet18.py): its stem is
    # 7x7 / 2, so its 3x3 stride-1 layers start at 24x24
    "d2l-resnet18": [("b2 64->64 24x24", 64, 64, 24), ("b3 128->128 12x12", 128, 128, 12),
                     ("b4 256->256 6x6", 256, 256, 6), ("b5 512->512 3x3", 512, 512, 3)]}
ALGORITHMS = ("im2col", "winograd2", "winograd4", "direct")
SHORT = {"winograd2": "w2", "winograd4": "w4", "direct": "direct"}       # column headers


def layer_data(batch, cin, cout, hw):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((batch, cin, hw, hw)).astype(np.float32),
            (rng.standard_normal((cout, cin, 3, 3)) * 0.1).astype(np.float32),
            rng.standard_normal((batch, cout, hw, hw)).astype(np.float32))


def time_minires(args):
    """{layer name: {algorithm: ms of forward + backward}}."""
    import minires as mr
    from minires.nn import functional as F
    from minires.ops import winograd
    times = {}
    for name, cin, cout, hw in IMAGE_LAYERS[args.images]:
        x_np, w_np, g_np = layer_data(args.batch, cin, cout, hw)
        g_np = channels_last(g_np)
        stem = name.startswith("stem")                       # reads the images; needs no input gradient
        x_np = x_np if stem else channels_last(x_np)
        x = mr.tensor(x_np, requires_grad=not stem)
        w = mr.tensor(w_np, requires_grad=True)
        times[name] = {}
        for algorithm in ALGORITHMS:
            winograd.set_conv_algorithm(algorithm)
            times[name][algorithm] = median_ms(lambda: F.conv2d(x, w, padding=1).backward(g_np), args.repeats)
        winograd.set_conv_algorithm(None)
    return times


def time_torch(args):
    """{layer name: ms of forward + backward} in PyTorch; run in a subprocess of its own."""
    import torch
    times = {}
    for name, cin, cout, hw in IMAGE_LAYERS[args.images]:
        x_np, w_np, g_np = layer_data(args.batch, cin, cout, hw)
        tx = torch.tensor(x_np, requires_grad=not name.startswith("stem"))
        tw, tg = torch.tensor(w_np, requires_grad=True), torch.tensor(g_np)
        times[name] = median_ms(lambda: torch.nn.functional.conv2d(tx, tw, padding=1).backward(tg), args.repeats)
    return times


def torch_times(args):
    """PyTorch's times from a subprocess, or None when PyTorch is not installed."""
    return torch_subprocess("conv_winograd.py", "--batch", str(args.batch), "--repeats", str(args.repeats),
                            "--images", args.images)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--images", choices=sorted(IMAGE_LAYERS), default="cifar10",
                    help="whose ResNet layer shapes (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_only:
        print(json.dumps(time_torch(args)))
        return
    print(f"# conv2d 3x3 stride 1 pad 1, forward + backward, batch {args.batch}, float32, "
          f"median of {args.repeats}; {args.images} layers; {machine()}")
    print(f"# {cpu_description()}")
    ours, theirs = time_minires(args), torch_times(args)
    others = ALGORITHMS[1:]
    print(f"{'layer':<22}" + "".join(f"{a:>11}" for a in ALGORITHMS)
          + "".join(f"{SHORT[a] + '/im2col':>14}" for a in others) + f"{'torch':>9}{'best/torch':>11}")
    suggested = {}
    for name, cin, cout, hw in IMAGE_LAYERS[args.images]:
        t = ours[name]
        line = f"{name:<22}" + "".join(f"{t[a]:11.1f}" for a in ALGORITHMS)
        line += "".join(f"{t[a] / t['im2col']:14.2f}" for a in others)
        if theirs is not None:
            line += f"{theirs[name]:9.1f}{min(t.values()) / theirs[name]:11.2f}"
        print(line)
        best = min(ALGORITHMS, key=t.get)
        if best != "im2col" and t[best] < 0.95 * t["im2col"]:
            suggested[(cin, cout, hw, hw)] = best
    if theirs is None:
        print("# PyTorch is not installed: no torch column")
    print(f"# suggested AUTO_WINOGRAD (minires/ops/winograd.py): {suggested}")


if __name__ == "__main__":
    main()
