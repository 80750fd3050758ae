"""ResNet-20 training step, batch 128: minires eager / own GEMM / CUDA graph vs PyTorch eager / CUDA graph / compile.

    python benchmarks/graph_step.py [--repeats 50] [--batch 128] [--precision fp32 tf32]
                                    [--only minires-graph torch-eager ...] [--smoke] [--json FILE]

Every (variant, precision) runs in its own subprocess (two frameworks' pools and
thread pools in one process slow each other down; a crash or a hang costs one row):

    minires-cublas   eager, products through cupy.matmul (cuBLAS)       -- minires's default
    minires-own      eager, kernels.cuda.GEMM = 'own' (minires's GEMM kernel)
    minires-graph    minires.cuda_graph.graphed(step): one Graph.launch() per step (own GEMM)
    minires-train-graph  what `minires train --graph` replays: cuda_graph.TrainingGraph, the
                     batch gathered, pad-cropped and flipped inside the graph from a random
                     uint8 data set on the device (4 batches of images), loss/error sums and
                     the non-finite flag on the device (the data path the others leave out)
    torch-eager      PyTorch eager, cuDNN
    torch-graph      the whole step (forward, backward, SGD) captured with torch.cuda.graph
    torch-compile    torch.compile(model) (default mode), eager optimizer; skipped with the
                     reason if it fails or its child runs past --compile-timeout

Precision: fp32 = no TF32 anywhere (torch.backends.cuda.matmul.allow_tf32 and
torch.backends.cudnn.allow_tf32 both False; CUPY_TF32=0; kernels.cuda.GEMM_TF32 = False
where it exists); tf32 = TF32 on both sides where each has it (the two torch flags True;
CUPY_TF32=1 for cupy.matmul; GEMM_TF32 = True for the own GEMM, else that row says n/a).

Each child prints one JSON line: ms/step synchronised after every step (median, min,
max of --repeats), the host's ms per step without a sync (the Python of one step while
the device queue absorbs it; median), ms/step pipelined (N unsynchronised steps, then
one sync, / N), peak device memory (minires: its CuPy pool's total plus the graph's
private pool, which never shrink; torch: torch.cuda.max_memory_reserved), and kernel
launches per step (eager: CUPTI's kernel records through torch.profiler over a few
steps, where it works, else minires's RawKernel launches alone, which misses CuPy's
ufuncs and cuBLAS -- said so; graph: the kernel nodes of the captured graph).

--smoke: batch 2, 2 repeats, fp32 only; runs under the CUDA emulator (the fake cupy on
the path, tests/test_gpu_bench_scripts.py) or on the CPU (minires rows then say why not,
PyTorch rows run on the CPU): a check that every code path runs, not a figure.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FORWARD_MACS = 40_551_040          # ResNet-20 per 32x32 image (minires summary resnet20)
VARIANTS = ("minires-cublas", "minires-own", "minires-graph", "minires-train-graph", "torch-eager",
            "torch-graph", "torch-compile")
BASELINE = "torch-eager"
# the order rows run in: the baseline first, then by what the issue needs most
RUN_ORDER = ("torch-eager", "minires-graph", "minires-cublas", "torch-graph", "minires-own",
             "minires-train-graph", "torch-compile")


# ------------------------------------------------------------------ timing, shared
def _times(fn, repeats, sync):
    """(synchronised ms per step list, host ms per step list, pipelined ms per step)."""
    synced = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        synced.append((time.perf_counter() - t0) * 1000)
    host = []
    sync()
    t_all = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        host.append((time.perf_counter() - t0) * 1000)
    sync()
    pipelined = (time.perf_counter() - t_all) * 1000 / repeats
    return synced, host, pipelined


def _summary(synced, host, pipelined):
    return {"ms": statistics.median(synced), "ms_min": min(synced), "ms_max": max(synced),
            "host_ms": statistics.median(host), "pipelined_ms": pipelined}


# ------------------------------------------------------------------ launch counting
def _cupti_kernels(fn, steps, tag):
    """Kernels per step recorded by CUPTI (torch.profiler, process-wide: CuPy's launches
    too), or (None, why)."""
    try:
        import tempfile

        import torch
        from torch.profiler import ProfilerActivity, profile
        if not torch.cuda.is_available():
            return None, "torch sees no CUDA device"
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                fn()
            torch.cuda.synchronize()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{tag}.json")
            prof.export_chrome_trace(path)
            with open(path) as f:
                events = json.load(f).get("traceEvents", [])
        kernels = sum(1 for e in events if e.get("cat") == "kernel")
        if kernels == 0:
            return None, "CUPTI recorded no kernels"
        return kernels / steps, "CUPTI (torch.profiler)"
    except Exception as e:                                  # a measurement aid: never fatal
        return None, f"CUPTI failed: {type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"


def _rawkernel_launches(fn, steps):
    """minires RawKernel launches per step: each cached kernel wrapped in a counter."""
    from minires.kernels.cuda import _launch
    count = [0]

    class Counting:
        def __init__(self, f):
            self.f = f

        def __call__(self, *a, **k):
            count[0] += 1
            return self.f(*a, **k)
    _launch.load_all()
    saved = dict(_launch._functions)
    _launch._functions.update({key: Counting(f) for key, f in saved.items()})
    try:
        for _ in range(steps):
            fn()
    finally:
        _launch._functions.clear()
        _launch._functions.update(saved)
    return count[0] / steps


def _graph_kernel_nodes(graph):
    """(kernel nodes, how counted) of a captured cupy Graph (real: cudaGraphGetNodes through
    cuda.bindings; emulator: its recorded operations), or (None, why)."""
    if hasattr(graph, "_ops"):                                   # the CUDA emulator's Graph
        return len(graph), "emulator: recorded operations (kernels, ufuncs, copies)"
    handle = getattr(graph, "graph", 0)
    if not handle:
        return None, "this CuPy keeps no cudaGraph_t after instantiation"
    try:
        from cuda.bindings import runtime as rt
        g = rt.cudaGraph_t(init_value=handle)
        err, _, n = rt.cudaGraphGetNodes(g, numNodes=0)
        if err != rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"cudaGraphGetNodes: {err}")
        err, nodes, n = rt.cudaGraphGetNodes(g, numNodes=n)
        kinds = {}
        for node in nodes[:n]:
            err, kind = rt.cudaGraphNodeGetType(node)
            kinds[kind.name] = kinds.get(kind.name, 0) + 1
        kernel = kinds.get("cudaGraphNodeTypeKernel", 0)
        return kernel, "cudaGraphGetNodes: " + ", ".join(f"{k.replace('cudaGraphNodeType', '')} {v}"
                                                         for k, v in sorted(kinds.items()))
    except Exception as e:
        why = f"cuda.bindings failed: {type(e).__name__}: {e}"[:100]
    try:                                   # CuPy's own DOT dump of the graph (node records)
        dot = graph.debug_dot_str()
        return (sum(1 for line in dot.splitlines() if "KERNEL" in line),
                f"debug_dot_str lines naming KERNEL ({why})")
    except Exception as e:
        return None, f"{why}; debug_dot_str failed: {type(e).__name__}"


# ------------------------------------------------------------------ minires children
def run_minires(args, variant, tf32):
    import minires as mr
    from _timing import minires_resnet20_step
    if not mr.backend.cuda_is_available():
        raise SystemExit("no CUDA device for CuPy (minires runs only on the GPU here)")
    cp = mr.backend.cupy_module()
    K = mr.backend.kernels_for(cp)
    out = {}
    if variant == "minires-cublas":
        out["tf32"] = "CUPY_TF32=1 (cuBLAS)" if tf32 else "off"
    elif hasattr(K, "GEMM_TF32"):
        K.GEMM_TF32 = bool(tf32)
        out["tf32"] = f"GEMM_TF32={K.GEMM_TF32}"
    elif tf32:
        raise SystemExit("n/a: minires's own GEMM has no TF32 switch (kernels.cuda.GEMM_TF32)")
    else:
        out["tf32"] = "off"
    K.GEMM = "cublas" if variant == "minires-cublas" else "own"
    K.load_all()
    if variant == "minires-train-graph":
        step, graphed, sync = _train_graph_step(args.batch)
    else:
        train_step, sync = minires_resnet20_step("cuda", args.batch, graph_ready=True)
        step = graphed = train_step
        if variant == "minires-graph":
            from minires import cuda_graph
            step = graphed = cuda_graph.graphed(train_step, warmup=args.warmup)
    for _ in range(args.warmup + 1):                       # graph: the capture is the last
        step()
    sync()
    out.update(_summary(*_times(step, args.repeats, sync)))
    pool = cp.get_default_memory_pool()
    reserved = pool.total_bytes()
    if variant in ("minires-graph", "minires-train-graph"):
        reserved += graphed._pool.total_bytes()
        out["launches"], out["launches_how"] = _graph_kernel_nodes(graphed.graph)
        out["host_launches"] = ("1 graph launch" if variant == "minires-graph"
                                else "1 graph launch + 1 fill (the batch position)")
    else:
        n, how = _cupti_kernels(step, 3, variant)
        if n is None:
            n, how = _rawkernel_launches(step, 2), f"minires RawKernels only ({how})"
        out["launches"], out["launches_how"] = n, how
    out["reserved_mib"] = reserved / 2**20
    out["gemm"] = K.GEMM
    return out


def _train_graph_step(batch):
    """(step, its GraphedStep, sync): cuda_graph.TrainingGraph's step on a random uint8 data
    set of 4 batches on the device, always at the epoch's first batch (static shapes)."""
    import numpy as np

    import minires as mr
    from minires import cuda_graph, data
    mr.manual_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4 * batch, 3, 32, 32), dtype=np.uint8)
    loader = data.DataLoader((images, rng.integers(0, 10, len(images))), batch, shuffle=True, seed=0,
                             augment=True, device="cuda")
    model = mr.models.resnet20().to("cuda")
    opt = mr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    tg = cuda_graph.TrainingGraph(model, opt, loader)
    tg.start_epoch(0, 0, 0)

    def step():
        tg.position.fill(0)                     # a device fill: no host-to-device copy
        tg.step(batch)
    return step, tg.graph, mr.backend.cupy_module().cuda.Device().synchronize


# ------------------------------------------------------------------ torch children
def run_torch(args, variant, tf32):
    import torch
    from _timing import torch_resnet20_setup
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        raise SystemExit("torch sees no CUDA device")
    if device == "cpu" and variant != "torch-eager":
        raise SystemExit(f"{variant} needs CUDA (smoke on the CPU: torch-eager only)")
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)     # set explicitly both ways
    torch.backends.cudnn.allow_tf32 = bool(tf32)
    torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
    model, opt, x, y, sync = torch_resnet20_setup(device, args.batch)
    forward = model
    if variant == "torch-compile":
        t0 = time.perf_counter()
        forward = torch.compile(model)

    def eager_step(zero=True):
        loss = torch.nn.functional.cross_entropy(forward(x), y)
        if zero:
            opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    out = {"device": device}
    step = eager_step
    if variant == "torch-graph":
        # PyTorch's whole-network capture recipe (CUDA semantics notes): warm up on a side
        # stream, set the gradients to None, capture forward, backward and step: backward
        # then writes (not adds) the gradients in every replay.  x, y are static here.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                eager_step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            eager_step(zero=False)
        step = graph.replay
        out["host_launches"] = "1 graph replay"
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup + 2):
        step()
    sync()
    if variant == "torch-compile":
        out["compile_s"] = time.perf_counter() - t0
    out.update(_summary(*_times(step, args.repeats, sync)))
    out["tf32"] = (f"matmul {torch.backends.cuda.matmul.allow_tf32}, "
                   f"cudnn {torch.backends.cudnn.allow_tf32}")
    out["threads"] = torch.get_num_threads()
    if device == "cuda":
        out["reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        out["alloc_mib"] = torch.cuda.max_memory_allocated() / 2**20
        if variant == "torch-graph":
            out["launches"], out["launches_how"] = None, "one graph replay (nodes not read)"
        else:
            out["launches"], out["launches_how"] = _cupti_kernels(step, 3, variant)
    out["torch"] = torch.__version__
    return out


# ------------------------------------------------------------------ parent
def child(variant, precision, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", variant, "--child-precision", precision,
           "--batch", str(args.batch), "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    cmd += ["--smoke"] if args.smoke else []
    cmd += ["--cudnn-benchmark"] if args.cudnn_benchmark else []
    env = dict(os.environ, CUPY_TF32="1" if precision == "tf32" and variant == "minires-cublas" else "0")
    limit = args.compile_timeout if variant == "torch-compile" else args.child_timeout
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE, env=env, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"error": f"skipped: ran past {limit} s"}
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()] or ["failed"]
        return {"error": lines[-1][:160]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(v, precision, r, base, batch, gflop):
    if "ms" not in r:
        return f"{v:<20}{precision:>5}  not run: {r['error']}"
    ratio = r["ms"] / base if base else None
    return (f"{v:<20}{precision:>5}{r['ms']:9.2f}{r['ms_min']:8.2f}{r['ms_max']:8.2f}{_fmt(ratio, '.2f', 9)}"
            f"{r['host_ms']:8.2f}{r['pipelined_ms']:8.2f}{batch / r['ms'] * 1000:8.0f}"
            f"{gflop / r['ms'] * 1000:8.0f}{_fmt(r.get('reserved_mib'), '.0f', 7)}"
            f"{_fmt(r.get('launches'), '.0f', 7)}  {r.get('tf32', '')}"
            + (f"; compile+warm-up {r['compile_s']:.0f} s" if "compile_s" in r else ""))


def _fmt(v, spec, width):
    return f"{v:{width}{spec}}" if isinstance(v, (int, float)) else f"{'-' if v is None else v:>{width}}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=50, help="timed steps per row (default: 50)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", nargs="+", choices=["fp32", "tf32"], default=["fp32", "tf32"])
    ap.add_argument("--only", nargs="+", choices=VARIANTS, help="run only these variants")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny check that every path runs (batch 2, 2 repeats, fp32): no figures")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="torch.backends.cudnn.benchmark = True (default: False, PyTorch's default)")
    ap.add_argument("--child-timeout", type=float, default=240, help="seconds per row (default: 240)")
    ap.add_argument("--compile-timeout", type=float, default=150,
                    help="seconds for each torch.compile row, compiling included (default: 150)")
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds: start no row after this much time (default: no limit)")
    ap.add_argument("--json", help="also write every row's raw result to this file (after each row)")
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--child-precision", choices=["fp32", "tf32"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.batch < 1 or args.repeats < 1 or args.warmup < 1:
        ap.error("--batch, --repeats and --warmup must be >= 1")
    if args.smoke:
        args.batch, args.repeats, args.warmup, args.precision = 2, 2, 1, ["fp32"]
    sys.path.insert(0, HERE)
    if args.child:
        run = run_minires if args.child.startswith("minires") else run_torch
        print(json.dumps(run(args, args.child, args.child_precision == "tf32")))
        return
    from _timing import machine
    variants = args.only or list(VARIANTS)
    gflop = 3 * 2 * FORWARD_MACS * args.batch / 1e9
    print(f"# ResNet-20 training step, batch {args.batch}, {args.repeats} repeats; {machine()}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}" + ("; SMOKE (no figures)" if args.smoke else ""),
          flush=True)
    results = {}
    started = time.perf_counter()
    header = (f"{'variant':<20}{'prec':>5}{'median':>9}{'min':>8}{'max':>8}{'vs torch':>9}{'host':>8}"
              f"{'piped':>8}{'img/s':>8}{'GFLOP/s':>8}{'MiB':>7}{'launch':>7}  tf32 / notes")
    print("ms/step synchronised after every step (median, min, max); host = the step's Python without a "
          "sync (median); piped = N steps, then one sync, / N\n" + header, flush=True)
    # Rows run by importance (the baseline first, torch.compile last: it may take minutes),
    # each printed as it lands and saved to --json, so a time-out keeps what ran.
    order = [(v, p) for v in sorted(variants, key=RUN_ORDER.index) for p in args.precision]
    for v, precision in order:
        if args.budget and time.perf_counter() - started > args.budget:
            r = {"error": f"skipped: --budget {args.budget:.0f} s spent"}
        else:
            r = child(v, precision, args)
        results[(v, precision)] = r
        print(_row(v, precision, r, results.get((BASELINE, precision), {}).get("ms"), args.batch, gflop),
              flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump([{"variant": v, "precision": p, **r} for (v, p), r in results.items()], f, indent=1)
    print("\n" + header)
    for precision in args.precision:
        for v in variants:
            print(_row(v, precision, results[(v, precision)], results.get((BASELINE, precision), {}).get("ms"),
                       args.batch, gflop))
    print("\nlaunches: kernels per step, counted by")
    for (v, precision), r in results.items():
        if "launches_how" in r:
            print(f"  {v} {precision}: {r['launches_how']}"
                  + (f"; host calls per step: {r['host_launches']}" if "host_launches" in r else ""))
    print("MiB: minires = CuPy pool total (+ the graph's private pool); torch = max_memory_reserved")


if __name__ == "__main__":
    main()
