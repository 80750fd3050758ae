"""Where sharing a convolution's images across the CPU threads starts to pay.

ResNet steps at small batches under several values of backend.CONV_SPLIT_MACS, alternating
in one process:

    python benchmarks/conv_split.py [--depth 20] [--batches 2,3,4,6,8] [--mode train]
                                    [--thresholds 0,3,inf] [--rounds 12] [--steps 4]

A threshold is in millions of the forward's multiply-adds per thread: 0 splits every
convolution (what minires did before 2026-12-04), inf none.  Each round runs every threshold
once (the order reversed every other round), a warm-up step and ``--steps`` timed steps each;
the figures are the min and median ms per step over the rounds.  minires only: the question is
where minires's own fork-join pays, not how it compares with PyTorch (cpu_sweep.py does that).
"""
import argparse
import statistics
import time

import numpy as np

import minires as mr
from minires import backend
from minires.nn import functional as F


def float_list(text):
    return [float(v) for v in text.split(",")]


def main():
    ap = argparse.ArgumentParser(description="Where sharing a convolution's images across the CPU threads starts to "
                                             "pay: minires's ResNet steps under several thresholds",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--depth", type=int, default=20, help="CIFAR ResNet depth")
    ap.add_argument("--batches", default="2,3,4,6,8", help="comma-separated batch sizes")
    ap.add_argument("--mode", choices=["train", "eval"], default="train")
    ap.add_argument("--thresholds", type=float_list, default="0,3,inf",
                    help="CONV_SPLIT_MACS values in millions per thread (inf: never split)")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()

    mr.manual_seed(0)
    model = mr.models.resnet_cifar(args.depth)
    opt = mr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    if args.mode == "eval":
        model.eval()
    print(f"# ResNet-{args.depth} {args.mode} step, {backend.num_threads()} threads; min / median ms "
          f"over {args.rounds} rounds x {args.steps} steps; CONV_SPLIT_MACS in M per thread")
    for n in (int(b) for b in args.batches.split(",")):
        rng = np.random.default_rng(0)
        x = mr.tensor(rng.standard_normal((n, 3, 32, 32)).astype(np.float32))
        y = mr.tensor(rng.integers(0, 10, n))

        def step():
            if args.mode == "train":
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            else:
                with mr.no_grad():
                    model(x)
        times = {t: [] for t in args.thresholds}
        for r in range(args.rounds):
            for t in (args.thresholds if r % 2 == 0 else args.thresholds[::-1]):
                backend.CONV_SPLIT_MACS = t * 1e6
                step()
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    step()
                    times[t].append((time.perf_counter() - t0) * 1e3)
        print(f"batch {n:3d}  " + "   ".join(f"{t:g} M: {min(v):7.2f} / {statistics.median(v):7.2f}"
                                            for t, v in times.items()), flush=True)


if __name__ == "__main__":
    main()
