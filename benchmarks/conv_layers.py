"""conv2d forward + backward for every ResNet-20 layer shape at batch 128, minires vs PyTorch.

    python benchmarks/conv_layers.py [--batch 128] [--device cpu|cuda] [--repeats 5]

Prints, per layer: milliseconds for forward and forward+backward, GFLOP/s of the
forward+backward (3 convolutions' worth of multiply-adds, 2 FLOPs each; the stem needs
no input gradient), and the ratio minires / torch on the same machine in the same run.

Each framework gets its arrays as its own ResNet hands them over: on the CPU minires's
layers read channels-last memory (what conv2d and batch norm return, ops/conv.py) --
except the stem, which reads the images, NCHW -- and receive their upstream gradient
channels-last too (batch norm's backward); PyTorch's arrays are contiguous NCHW.
PyTorch runs in a subprocess of its own: in one process its idle OpenMP threads spin on
the two cores while minires computes, and that had made every minires layer look up to
2x slower than it runs in a training step.
"""
import argparse
import json

import numpy as np

from _timing import channels_last, machine, median_ms, torch_subprocess

# (name, C_in, C_out, H=W of the input, stride) -- one row per distinct shape
LAYERS = [("stem 3->16 32x32", 3, 16, 32, 1), ("stage1 16->16 32x32", 16, 16, 32, 1),
          ("stage2 16->32 /2", 16, 32, 32, 2), ("stage2 32->32 16x16", 32, 32, 16, 1),
          ("stage3 32->64 /2", 32, 64, 16, 2), ("stage3 64->64 8x8", 64, 64, 8, 1)]


def layer_data(batch, cin, cout, hw, stride):
    """x (N, C_in, H, W), w (C_out, C_in, 3, 3), upstream gradient (N, C_out, H/s, W/s): NCHW."""
    rng = np.random.default_rng(cin * 1000 + hw * 10 + stride)
    return (rng.standard_normal((batch, cin, hw, hw)).astype(np.float32),
            (rng.standard_normal((cout, cin, 3, 3)) * 0.1).astype(np.float32),
            rng.standard_normal((batch, cout, hw // stride, hw // stride)).astype(np.float32))


def time_minires(args):
    """{layer name: [forward ms, forward + backward ms]}."""
    import minires as mr
    from minires.nn import functional as F
    sync = ((lambda: mr.backend.cupy_module().cuda.Device().synchronize()) if args.device != "cpu"
            else (lambda: None))
    times = {}
    for name, cin, cout, hw, stride in LAYERS:
        x_np, w_np, g_np = layer_data(args.batch, cin, cout, hw, stride)
        if args.device == "cpu":                      # the gradient comes from batch norm's backward
            g_np = channels_last(g_np)
            x_np = x_np if cin == 3 else channels_last(x_np)
        x = mr.tensor(x_np, requires_grad=cin != 3, device=args.device)
        w = mr.tensor(w_np, requires_grad=True, device=args.device)
        g = mr.tensor(g_np, device=args.device)

        def fwd():
            F.conv2d(x, w, stride=stride, padding=1)
            sync()

        def fwd_bwd():
            F.conv2d(x, w, stride=stride, padding=1).backward(g)
            sync()
        times[name] = [median_ms(fwd, args.repeats), median_ms(fwd_bwd, args.repeats)]
    return times


def time_torch(args):
    """{layer name: forward + backward ms} in PyTorch; run in a subprocess of its own."""
    import torch
    device = "cuda" if args.device != "cpu" else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = {}
    for name, cin, cout, hw, stride in LAYERS:
        x_np, w_np, g_np = layer_data(args.batch, cin, cout, hw, stride)
        tx = torch.tensor(x_np, device=device, requires_grad=cin != 3)
        tw = torch.tensor(w_np, device=device, requires_grad=True)
        tg = torch.tensor(g_np, device=device)

        def fwd_bwd():
            torch.nn.functional.conv2d(tx, tw, stride=stride, padding=1).backward(tg)
            sync()
        times[name] = median_ms(fwd_bwd, args.repeats)
    return times


def torch_times(args):
    """PyTorch's times from a subprocess, or None when PyTorch is not installed."""
    return torch_subprocess("conv_layers.py", "--batch", str(args.batch), "--device", args.device,
                            "--repeats", str(args.repeats))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "gpu"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.batch < 1 or args.repeats < 1:
        ap.error("--batch and --repeats must be >= 1")
    if args.torch_only:
        print(json.dumps(time_torch(args)))
        return
    print(f"# conv2d 3x3 (pad 1) fwd+bwd, batch {args.batch}, float32, {args.device}, median of "
          f"{args.repeats}; PyTorch in its own process; {machine()}")
    ours, theirs = time_minires(args), torch_times(args)
    print(f"{'layer':<22}{'fwd ms':>9}{'f+b ms':>9}{'GFLOP/s':>9}{'torch f+b':>11}{'ratio':>7}")
    for name, cin, cout, hw, stride in LAYERS:
        t_f, t_fb = ours[name]
        macs = args.batch * cout * (hw // stride) ** 2 * cin * 9
        passes = 3 if cin != 3 else 2          # the stem needs no input gradient
        line = f"{name:<22}{t_f:9.1f}{t_fb:9.1f}{2 * macs * passes / t_fb / 1e6:9.1f}"
        if theirs is not None:
            line += f"{theirs[name]:11.1f}{t_fb / theirs[name]:7.2f}"
        print(line)
    if theirs is None:
        print("# PyTorch is not installed: no torch column")


if __name__ == "__main__":
    main()
