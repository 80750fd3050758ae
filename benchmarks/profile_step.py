"""Where a ResNet-20 training step spends its time: GEMM, im2col/col2im, batch norm, the rest.

    python benchmarks/profile_step.py [--device cpu|cuda] [--batch 128] [--steps 10]

MINIRES_FUSION=0 profiles the unfused step (batch_norm, relu and add as separate ops,
minires/ops/fused.py); the unfused ReLUs and adds are NumPy code and land in "other".

Every function of the device's kernel module is wrapped with a timer:
  * GPU: CUDA events around each call (no synchronisation inside the step), so a
    category's time is the device time of its kernels; "Python/launch overhead"
    is the wall time of the step minus the device time of all kernels.
  * CPU: wall-clock time summed over the threads that ran the kernel, divided by
    the number of threads (conv2d runs chunks on all cores at once); the rest of
    the step (NumPy elementwise ops, autograd bookkeeping) is "other".
"""
import argparse
import collections
import time

from _timing import minires_resnet20_step
from minires import backend

CATEGORIES = {
    "matmul": "GEMM", "gemm": "GEMM",
    "im2col": "im2col/col2im", "col2im": "im2col/col2im",
    "batch_norm_forward": "batch norm", "batch_norm_backward": "batch norm",
    "batch_norm_update_running": "batch norm",
    "batch_norm_relu_forward": "batch norm", "batch_norm_relu_backward": "batch norm",
    "cross_entropy_forward": "loss", "cross_entropy_backward": "loss",
    "sgd_step": "SGD", "max_pool2d_forward": "pooling", "max_pool2d_backward": "pooling",
    "avg_pool2d_forward": "pooling", "avg_pool2d_backward": "pooling",
    "winograd_input": "Winograd transforms", "winograd_filter": "Winograd transforms",
    "winograd_output": "Winograd transforms", "winograd_output_grad": "Winograd transforms",
    "winograd_filter_grad": "Winograd transforms", "winograd_input_grad": "Winograd transforms",
    "add_relu_forward": "add + ReLU (fused)", "relu_backward": "add + ReLU (fused)",
}


def instrument(K, device):
    """Wrap K's kernels with timers; returns (reset, read): read() gives seconds per category."""
    import threading
    lock = threading.Lock()
    events = []                                   # GPU: (category, start event, end event)
    seconds = collections.defaultdict(float)      # CPU: summed thread time
    cp = backend.cupy_module() if device == "cuda" else None

    def wrap(name, fn):
        category = CATEGORIES[name]

        def timed(*args, **kwargs):
            if cp is not None:
                start, end = cp.cuda.Event(), cp.cuda.Event()
                start.record()
                out = fn(*args, **kwargs)
                end.record()
                events.append((category, start, end))
                return out
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            with lock:
                seconds[category] += time.perf_counter() - t0
            return out
        return timed
    for name in CATEGORIES:
        if hasattr(K, name):
            setattr(K, name, wrap(name, getattr(K, name)))

    def reset():
        events.clear()
        seconds.clear()

    def read():
        if cp is not None:
            cp.cuda.Device().synchronize()
            out = collections.defaultdict(float)
            for category, start, end in events:
                out[category] += cp.cuda.get_elapsed_time(start, end) / 1000
            return out
        threads = backend.num_threads()
        return {k: v / (threads if k in ("GEMM", "im2col/col2im", "Winograd transforms") else 1) for k, v in seconds.items()}
    return reset, read


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    device = args.device
    xp = backend.xp_for_device(device)
    K = backend.kernels_for(xp)
    step, sync = minires_resnet20_step(device, args.batch)

    for _ in range(3):
        step()
    sync()
    reset, read = instrument(K, device)
    for _ in range(2):
        step()
    sync()
    reset()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    wall = (time.perf_counter() - t0) / args.steps
    parts = {k: v / args.steps for k, v in read().items()}
    rest_name = "Python/launch overhead + other" if device == "cuda" else "other (elementwise, autograd)"
    parts[rest_name] = max(0.0, wall - sum(parts.values()))
    print(f"# ResNet-20 step, batch {args.batch}, {device}: {1000 * wall:.1f} ms (instrumented)")
    for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"{k:<34}{1000 * v:9.1f} ms  {100 * v / wall:5.1f} %")


if __name__ == "__main__":
    main()
