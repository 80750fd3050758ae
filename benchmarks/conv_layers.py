"""conv2d forward + backward for every ResNet-20 layer shape at batch 128, minires vs PyTorch.

    python benchmarks/conv_layers.py [--batch 128] [--device cpu|cuda] [--repeats 5]

Prints, per layer: milliseconds for forward and forward+backward, GFLOP/s of the
forward+backward (3 convolutions' worth of multiply-adds, 2 FLOPs each), and the
ratio minires / torch on the same machine in the same run.
"""
import argparse

import numpy as np

import minires as mr
from minires.nn import functional as F
from _timing import machine, median_ms, try_import_torch

# (name, C_in, C_out, H=W of the input, stride) -- one row per distinct shape
LAYERS = [("stem 3->16 32x32", 3, 16, 32, 1), ("stage1 16->16 32x32", 16, 16, 32, 1),
          ("stage2 16->32 /2", 16, 32, 32, 2), ("stage2 32->32 16x16", 32, 32, 16, 1),
          ("stage3 32->64 /2", 32, 64, 16, 2), ("stage3 64->64 8x8", 64, 64, 8, 1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch = try_import_torch()
    tdev = "cuda" if args.device in ("cuda", "gpu") else "cpu"
    sync = (lambda: mr.backend.cupy_module().cuda.Device().synchronize()) if tdev == "cuda" else (lambda: None)
    tsync = (lambda: torch.cuda.synchronize()) if (torch and tdev == "cuda") else (lambda: None)
    print(f"# conv2d 3x3 (pad 1) fwd+bwd, batch {args.batch}, float32, {args.device}; {machine()}")
    print(f"{'layer':<22}{'fwd ms':>9}{'f+b ms':>9}{'GFLOP/s':>9}{'torch f+b':>11}{'ratio':>7}")
    rng = np.random.default_rng(0)
    for name, cin, cout, hw, stride in LAYERS:
        x_np = rng.standard_normal((args.batch, cin, hw, hw)).astype(np.float32)
        w_np = (rng.standard_normal((cout, cin, 3, 3)) * 0.1).astype(np.float32)
        x = mr.tensor(x_np, requires_grad=cin != 3, device=args.device)
        w = mr.tensor(w_np, requires_grad=True, device=args.device)
        g = mr.tensor(rng.standard_normal((args.batch, cout, hw // stride, hw // stride)).astype(np.float32),
                      device=args.device)

        def fwd():
            F.conv2d(x, w, stride=stride, padding=1)
            sync()

        def fwd_bwd():
            F.conv2d(x, w, stride=stride, padding=1).backward(g)
            sync()
        t_f = median_ms(fwd, args.repeats)
        t_fb = median_ms(fwd_bwd, args.repeats)
        macs = args.batch * cout * (hw // stride) ** 2 * cin * 9
        passes = 3 if cin != 3 else 2          # the stem needs no input gradient
        gflops = 2 * macs * passes / t_fb / 1e6
        line = f"{name:<22}{t_f:9.1f}{t_fb:9.1f}{gflops:9.1f}"
        if torch is not None:
            tx = torch.tensor(x_np, device=tdev, requires_grad=cin != 3)
            tw = torch.tensor(w_np, device=tdev, requires_grad=True)
            tg = torch.tensor(g.numpy(), device=tdev)

            def torch_fwd_bwd():
                torch.nn.functional.conv2d(tx, tw, stride=stride, padding=1).backward(tg)
                tsync()
            t_t = median_ms(torch_fwd_bwd, args.repeats)
            line += f"{t_t:11.1f}{t_fb / t_t:7.2f}"
        print(line)


if __name__ == "__main__":
    main()
