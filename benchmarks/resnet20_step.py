"""One ResNet-20 training step (forward, backward, SGD) at batch 128: minires vs PyTorch.

    python benchmarks/resnet20_step.py [--device cpu|cuda] [--batch 128] [--repeats 10]

Each framework is timed in its own subprocess: two thread pools in one process
(PyTorch's OpenMP workers and minires's) slow each other down, whichever ran last.
Prints ms per step, images/s, GFLOP/s (3 x the forward multiply-adds x 2) and
the ratio minires / PyTorch; on the GPU also the peak device memory.
"""
import argparse
import json
import os
import subprocess
import sys


HERE = os.path.dirname(os.path.abspath(__file__))
FORWARD_MACS = 40_551_040          # ResNet-20 per 32x32 image (minires summary resnet20)


def run_minires(args):
    import minires as mr
    from _timing import median_ms, minires_resnet20_step
    device = args.device
    train_step, sync = minires_resnet20_step(device, args.batch)

    def step():
        train_step()
        sync()
    ms = median_ms(step, args.repeats, warmup=3)
    out = {"ms": ms}
    if device == "cuda":
        pool = mr.backend.cupy_module().get_default_memory_pool()
        out["reserved_mib"] = pool.total_bytes() / 2**20     # the pool never shrinks: its peak
    return out


def run_torch(args):
    import torch
    from _timing import median_ms, torch_resnet20_setup
    device = args.device
    model, opt, x, y, sync = torch_resnet20_setup(device, args.batch)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ms = median_ms(step, args.repeats, warmup=3)
    out = {"ms": ms, "threads": torch.get_num_threads()}
    if device == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    return out


def child(framework, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", framework, "--device", args.device,
           "--batch", str(args.batch), "--repeats", str(args.repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--child", choices=["minires", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.insert(0, HERE)
        print(json.dumps((run_minires if args.child == "minires" else run_torch)(args)))
        return
    sys.path.insert(0, HERE)
    from _timing import machine
    gflop = 3 * 2 * FORWARD_MACS * args.batch / 1e9
    print(f"# ResNet-20 training step, batch {args.batch}, float32, {args.device}; {machine()}")
    results = {name: child(name, args) for name in ("minires", "torch")}
    # GPU memory: the peak held by the framework's allocator (reserved) and, where the
    # framework tracks it, the peak actually in use by live arrays (allocated).
    print(f"{'':<10}{'ms/step':>10}{'img/s':>9}{'GFLOP/s':>9}{'alloc MiB':>11}{'reserved MiB':>14}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<10} not run: {r['error']}")
            continue
        mib = "".join(f"{r[k]:{w}.0f}" if k in r else f"{'-':>{w}}"
                      for k, w in (("peak_mib", 11), ("reserved_mib", 14)))
        print(f"{name:<10}{r['ms']:10.1f}{args.batch / r['ms'] * 1000:9.0f}{gflop / r['ms'] * 1000:9.1f}{mib}")
    if all("ms" in r for r in results.values()):
        print(f"ratio minires / torch: {results['minires']['ms'] / results['torch']['ms']:.2f}")


if __name__ == "__main__":
    main()
