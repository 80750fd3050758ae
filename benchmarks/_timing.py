"""Timing helpers shared by the benchmark scripts: warm up, then the median of repeats."""
import statistics
import time


def median_ms(fn, repeats=5, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def channels_last(a):
    """The same NCHW array on channels-last memory (an NCHW view of NHWC data): the layout
    minires's ResNets hand a conv (ops/conv.py)."""
    import numpy as np
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def torch_subprocess(script, *args):
    """The JSON a benchmark script prints when run as ``script --torch-only ARGS`` in a
    process of its own (PyTorch's OpenMP threads, spinning after each of its calls, would
    slow minires down in a shared one), or None when PyTorch is not installed."""
    import json
    import os
    import subprocess
    import sys
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), script)
    done = subprocess.run([sys.executable, path, "--torch-only", *args], capture_output=True, text=True)
    if done.returncode != 0:
        if "No module named 'torch'" in done.stderr:
            return None
        raise RuntimeError(f"{script}: the PyTorch subprocess failed:\n{done.stderr}")
    return json.loads(done.stdout)


def try_import_torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def machine():
    import os
    import platform
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}"


def cpu_description():
    """The CPU's model name and its SIMD flags (AVX2 / FMA / AVX-512), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return "CPU model unknown (no /proc/cpuinfo)"
    info = {k.strip(): v.strip() for k, v in info.items()}
    simd = sorted(f for f in info.get("flags", "").split() if f in ("avx2", "fma") or f.startswith("avx512"))
    return f"{info.get('model name', 'unknown CPU')}; flags: {' '.join(simd) or 'no AVX2/AVX-512'}"


def torch_resnet20_setup(device, batch):
    """PyTorch's side of the benchmarked work: (model, optimizer, x, y, sync) for one ResNet-20
    training step at ``batch`` on ``device``, seeded, the recipe's SGD (benchmarks/torch_resnet.py)."""
    import torch
    from torch_resnet import ResNetCifar
    torch.manual_seed(0)
    model = ResNetCifar(20).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    return model, opt, x, y, sync


def minires_resnet20_step(device, batch, graph_ready=False):
    """The benchmarked work, built the same way by every script: (step, sync).

    step() = one ResNet-20 training step (forward, cross-entropy, backward, SGD with
    momentum 0.9 and weight decay 1e-4) on a fixed random batch; sync() waits for the GPU.
    graph_ready=True: the same step in the form a CUDA graph can capture (what
    cuda_graph.TrainingGraph runs): gradients zeroed in place instead of set to None, the
    learning rate read by the SGD kernel from a device array instead of passed from the host.
    """
    import numpy as np

    import minires as mr
    from minires.nn import functional as F
    mr.manual_seed(0)
    model = mr.models.resnet20().to(device)
    opt = mr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    x = mr.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32), device=device)
    y = mr.tensor(rng.integers(0, 10, batch), device=device)

    lr = [mr.backend.get_array_module(x.data).full(1, 0.1, np.float64)] if graph_ready else None

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=not graph_ready)
        loss.backward()
        opt.step(lr=lr)
    sync = mr.backend.cupy_module().cuda.Device().synchronize if device == "cuda" else (lambda: None)
    return step, sync
