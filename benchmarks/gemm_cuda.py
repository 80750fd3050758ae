"""ResNet-20's matrix products at batch 128 on the GPU: minires's own GEMM vs cuBLAS.

    python benchmarks/gemm_cuda.py [--batch 128] [--repeats 7] [--min-ms 20]

For every conv2d layer shape of ResNet-20 (and its linear layer) the three products
of a training step, laid out as conv2d lays them out (minires/ops/conv.py; gemm.py's
docstring): forward out^T = cols @ W^T, weight gradient dW = g^T^T @ cols and column
gradient dcols = g^T @ W.  Each is timed four ways, with CUDA events, the median of
--repeats timings of a loop of at least --min-ms milliseconds:

    own       gemm.cu, FP32 on the CUDA cores         (kernels.cuda.GEMM = 'own')
    own-tf32  gemm.cu, TF32 tensor cores              (+ kernels.cuda.GEMM_TF32 = True)
    cublas    cupy.matmul, TF32 off                   (CuPy's compute type for float32: default)
    cublas-tf32  cupy.matmul, TF32 on                 (as CUPY_TF32=1)

and printed as GFLOP/s (2 M N K / time) with the ratios own / cublas at equal
precision.  The last rows weight each shape by how often a ResNet-20 step runs it
and give the step's total GEMM time each way: the figure that decides whether a
CUDA-graph-captured step (which must use the own GEMM) pays for its GEMMs.  Every
own result is also compared with cuBLAS's FP32 result (max error relative to the
result's largest magnitude), so a fast wrong kernel cannot post a figure.

Needs a CUDA GPU and CuPy: without them it says so and exits 1.  Runs in ~30 s.
"""
import argparse
import importlib
import statistics
import sys

import numpy as np

# (name, C_in, C_out, H=W of the input, stride, times per ResNet-20 step) for 3x3 convs, pad 1
LAYERS = [("stem 3->16 32x32", 3, 16, 32, 1, 1), ("stage1 16->16 32x32", 16, 16, 32, 1, 6),
          ("stage2 16->32 /2", 16, 32, 32, 2, 1), ("stage2 32->32 16x16", 32, 32, 16, 1, 5),
          ("stage3 32->64 /2", 32, 64, 16, 2, 1), ("stage3 64->64 8x8", 64, 64, 8, 1, 5)]
MODES = ("own", "own-tf32", "cublas", "cublas-tf32")


def products(batch):
    """[(label, M, N, K, times per step, kind)] with kind in fwd / dW / dcols (conv2d's layout)."""
    rows = []
    for name, cin, cout, hw, stride, times in LAYERS:
        n_l = batch * (hw // stride) ** 2           # output pixels: the rows of cols
        k = 9 * cin
        rows.append((f"{name} fwd", n_l, cout, k, times, "fwd"))
        rows.append((f"{name} dW", cout, k, n_l, times, "dW"))
        if cin != 3:                                # the stem needs no input gradient
            rows.append((f"{name} dcols", n_l, k, cout, times, "dcols"))
    rows += [("linear 64->10 fwd", batch, 10, 64, 1, "fwd"), ("linear dW", 10, 64, batch, 1, "dW"),
             ("linear dx", batch, 64, 10, 1, "dcols")]
    return rows


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7, help="timings per product and mode (median)")
    ap.add_argument("--min-ms", type=float, default=20.0, help="length of one timed loop")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.repeats < 1 or args.min_ms <= 0:
        ap.error("--batch and --repeats must be >= 1, --min-ms > 0")
    return args


def _cublas_tf32_switch():
    """set(on) for CuPy's compute type of float32 GEMMs (what CUPY_TF32=1 picks at first
    use), or None when this CuPy does not expose it."""
    try:
        from cupy._core import _routines_linalg as L
        tf32, default = L.COMPUTE_TYPE_TF32, L.COMPUTE_TYPE_DEFAULT
        L.set_compute_type(np.float32, default)
    except (ImportError, AttributeError):
        return None
    return lambda on: L.set_compute_type(np.float32, tf32 if on else default)


def _time_ms(cp, fn, repeats, min_ms):
    """Median milliseconds of one fn(), from CUDA events around loops of >= min_ms."""
    fn()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    fn()
    end.record()
    end.synchronize()
    once = max(cp.cuda.get_elapsed_time(start, end), 1e-3)
    loops = max(1, int(min_ms / once))
    times = []
    for _ in range(repeats):
        start.record()
        for _ in range(loops):
            fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / loops)
    return statistics.median(times)


def main(argv=None):
    args = parse_args(argv)
    try:
        import cupy as cp
        cp.cuda.runtime.getDeviceCount()
    except Exception as e:                          # no CuPy, no driver, no device
        print(f"gemm_cuda: needs a CUDA GPU and CuPy ({type(e).__name__}: {e})", file=sys.stderr)
        return 1
    from minires.kernels.cuda import _launch, _sources
    KG = importlib.import_module("minires.kernels.cuda.gemm")   # the module (the package's gemm is the function)
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    tf32_ok = int(cp.cuda.Device().compute_capability) >= 80
    set_tf32 = _cublas_tf32_switch()
    if set_tf32 is None:
        print("# this CuPy has no _routines_linalg.set_compute_type: cublas-tf32 not measured")
    for expression in _sources.KERNELS["gemm.cu"]:   # compile (or load) gemm.cu before timing
        _launch._kernel("gemm.cu", expression)
    print(f"# ResNet-20 GEMMs, batch {args.batch}, float32; {name} (sm_{cp.cuda.Device().compute_capability}); "
          f"median of {args.repeats} x >= {args.min_ms:g} ms loops; GFLOP/s")
    print(f"{'product':<28}{'M':>7}{'N':>5}{'K':>7}" + "".join(f"{m:>12}" for m in MODES)
          + f"{'own/cub':>9}{'tf32/tf32':>10}{'err':>9}{'err tf32':>9}")
    rng = np.random.default_rng(0)
    step_ms = dict.fromkeys(MODES, 0.0)
    for label, M, N, Kd, times, kind in products(args.batch):
        # operands as conv2d holds them: cols (M, K) / W (Cout, K) / g^T (rows, Cout)
        if kind == "fwd":        # out (M, N) = cols (M, K) @ W^T, W (N, K)
            a, b = cp.asarray(rng.standard_normal((M, Kd), dtype=np.float32)), \
                cp.asarray(rng.standard_normal((N, Kd), dtype=np.float32))
            own = dict(trans_a=False, trans_b=True)
            cub = (a, b.T)
        elif kind == "dW":       # dW (M, N) = g^T^T @ cols, g^T (K, M), cols (K, N)
            a, b = cp.asarray(rng.standard_normal((Kd, M), dtype=np.float32)), \
                cp.asarray(rng.standard_normal((Kd, N), dtype=np.float32))
            own = dict(trans_a=True, trans_b=False)
            cub = (a.T, b)
        else:                    # dcols (M, N) = g^T (M, K) @ W (K, N)
            a, b = cp.asarray(rng.standard_normal((M, Kd), dtype=np.float32)), \
                cp.asarray(rng.standard_normal((Kd, N), dtype=np.float32))
            own = dict(trans_a=False, trans_b=False)
            cub = (a, b)
        out = cp.empty((M, N), dtype=cp.float32)
        ref = cp.empty((M, N), dtype=cp.float32)
        runs = {"own": lambda: KG.gemm(a, b, out, tf32=False, **own),
                "own-tf32": lambda: KG.gemm(a, b, out, tf32=True, **own),
                "cublas": lambda: cp.matmul(*cub, out=ref),
                "cublas-tf32": lambda: cp.matmul(*cub, out=ref)}
        ms, errs = {}, []
        for mode in MODES:
            if mode.endswith("tf32") and not tf32_ok or mode == "cublas-tf32" and set_tf32 is None:
                ms[mode] = step_ms[mode] = float("nan")
                continue
            if set_tf32 is not None:
                set_tf32(mode == "cublas-tf32")
            ms[mode] = _time_ms(cp, runs[mode], args.repeats, args.min_ms)
            step_ms[mode] += times * ms[mode]
        if set_tf32 is not None:
            set_tf32(False)
        cp.matmul(*cub, out=ref)
        scale = float(cp.abs(ref).max()) or 1.0
        for tf32 in (False, True):
            if tf32 and not tf32_ok:
                errs.append(float("nan"))
                continue
            KG.gemm(a, b, out, tf32=tf32, **own)
            errs.append(float(cp.abs(out - ref).max()) / scale)
        flop = 2.0 * M * N * Kd
        print(f"{label:<28}{M:>7}{N:>5}{Kd:>7}" + "".join(f"{flop / ms[m] / 1e6:12.0f}" for m in MODES)
              + f"{ms['cublas'] / ms['own']:9.2f}{ms['cublas-tf32'] / ms['own-tf32']:10.2f}"
              + f"{errs[0]:9.1e}{errs[1]:9.1e}")
    print("# one ResNet-20 step's GEMMs (each shape times its count), ms: "
          + ", ".join(f"{m} {step_ms[m]:.3f}" for m in MODES))
    print(f"# own / cublas time: fp32 {step_ms['own'] / step_ms['cublas']:.2f}x, "
          f"tf32 {step_ms['own-tf32'] / step_ms['cublas-tf32']:.2f}x  (1.00 = as fast as cuBLAS)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
