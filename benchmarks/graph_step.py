"""minires's GPU training step: eager (cuBLAS), eager (own GEMM) and CUDA-graph mode.

    python benchmarks/graph_step.py [--batch 128] [--steps 20] [--repeats 5] [--smoke]

The step is ``minires train``'s: the batch gathered and augmented on the device from
a random uint8 data set, ResNet-20 forward, cross-entropy, backward, SGD (momentum
0.9, weight decay 1e-4).  Graph mode is cuda_graph.TrainingGraph (one launch per
step, the batch gathered inside the graph); the eager modes run the same
TrainingGraph step function without capturing it.  For each mode: device ms per step
(median over --repeats of --steps steps, synchronised), host ms per step (the same
loop without waiting for the device: the time Python spends issuing a step) and
the ratio to eager cuBLAS.  Needs a CUDA GPU (--smoke: a tiny run for the CUDA
emulator, to check that the script works; its figures mean nothing).
"""
import argparse
import statistics
import sys
import time

import numpy as np


def build(batch, images, size, depth):
    import minires as mr
    from minires import cuda_graph, data, optim
    from minires.models.cifar import resnet_cifar
    mr.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (images, 3, size, size), dtype=np.uint8)
    y = rng.integers(0, 10, images)
    loader = data.DataLoader((x, y), batch, shuffle=True, seed=0, augment=True, device="cuda")
    model = resnet_cifar(depth).to("cuda")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    tg = cuda_graph.TrainingGraph(model, opt, loader)
    tg.start_epoch(0, 0, 0)
    tg.set_lrs()                               # the eager modes call the step function directly
    return tg


def time_mode(mode, args):
    import minires as mr
    from minires import cuda_graph
    cp = mr.backend.cupy_module()
    tg = build(args.batch, args.images, args.size, args.depth)
    sync = cp.cuda.Device().synchronize
    if mode == "graph":
        def step():
            tg.position.fill(0)                # always the epoch's first batch: static shapes
            tg.step(args.batch)
    else:
        gemm = cuda_graph.own_gemm() if mode == "eager, own GEMM" else None

        def step():
            tg.position.fill(0)
            if gemm is None:
                tg._step(args.batch)
            else:
                with cuda_graph.own_gemm():
                    tg._step(args.batch)
    step()
    step()                                     # graph: warm-up, then capture + launch
    sync()
    device, host = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        t1 = time.perf_counter()
        sync()
        t2 = time.perf_counter()
        host.append((t1 - t0) * 1000 / args.steps)
        device.append((t2 - t0) * 1000 / args.steps)
    tg.read()
    return statistics.median(device), statistics.median(host)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for the CUDA emulator")
    args = p.parse_args(argv)
    args.images, args.size, args.depth = 4 * args.batch, 32, 20
    if args.smoke:
        args.batch, args.steps, args.repeats, args.images, args.size, args.depth = 4, 2, 1, 8, 4, 8
    import minires as mr
    if not mr.backend.cuda_is_available():
        print("graph_step.py needs a CUDA GPU (CuPy sees none)", file=sys.stderr)
        return 1
    cp = mr.backend.cupy_module()
    name = cp.cuda.runtime.getDeviceProperties(0)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    print(f"{time.strftime('%Y-%m-%d')} {name}, CuPy {cp.__version__}: ResNet-{args.depth} training "
          f"step, batch {args.batch} of {args.size}x{args.size}, fp32, {args.repeats} x {args.steps} steps"
          + (" (SMOKE: sizes for the emulator, figures meaningless)" if args.smoke else ""))
    results = {}
    for mode in ("eager, cuBLAS", "eager, own GEMM", "graph"):
        results[mode] = time_mode(mode, args)
    base = results["eager, cuBLAS"][0]
    for mode, (dev, host) in results.items():
        print(f"  {mode:16s} {dev:8.2f} ms/step on the device, {host:8.2f} ms/step of host time, "
              f"{dev / base:5.2f}x eager cuBLAS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
