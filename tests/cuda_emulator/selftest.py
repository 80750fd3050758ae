"""Does the emulator catch what it claims to?  Deliberately wrong kernels and calls.

    python tests/cuda_emulator/selftest.py          (run.py runs it before the tests)

Builds selftest_kernels.cu (beside this file) with gen.py into a temporary folder and
checks, with the fake cupy, that correct kernels give correct results and that each
kind of bug the README lists is reported (or, for a race, gives a wrong result).
Exit status 0 when every check passes.
"""
from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fake"))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import gen  # noqa: E402

CU = "selftest_kernels.cu"
KERNELS = {CU: ["block_sum_kernel<float>", "block_sum_kernel<double>", "missing_sync_kernel",
                "uninitialised_shared_kernel", "divergent_sync_kernel", "early_return_sync_kernel",
                "partial_warp_shuffle_kernel", "out_of_bounds_kernel", "scale_kernel", "denormal_kernel"]}


def build(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    (src / CU).write_text((HERE / CU).read_text())
    (src / "_sources.py").write_text(f"KERNELS = {KERNELS!r}\n")
    out = tmp / "build"
    gen.build(out, src=src, verbose=False)
    return out


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="cuda-emu-selftest-") as tmp:
        os.environ["CUDA_EMU_BUILD"] = str(build(Path(tmp)))
        import cupy as cp
        module = cp.RawModule(code=(HERE / CU).read_text(), options=("-std=c++17",),
                              name_expressions=KERNELS[CU])
        k = module.get_function
        checks = []

        def check(name):
            def deco(fn):
                checks.append((name, fn))
                return fn
            return deco

        def raises(exc, fn, match):
            try:
                fn()
            except exc as e:
                assert match in str(e), f"{type(e).__name__} without {match!r}: {e}"
                return
            raise AssertionError(f"no {exc.__name__} ({match!r})")

        @check("block sums with shared memory, __syncthreads and shuffles are right")
        def _():
            for dtype, name in ((np.float32, "block_sum_kernel<float>"), (np.float64, "block_sum_kernel<double>")):
                x = np.random.default_rng(0).standard_normal((5, 1000)).astype(dtype)
                out = cp.empty(5, dtype=dtype)
                k(name)((5,), (256,), (cp.asarray(x), out, np.int32(1000)))
                np.testing.assert_allclose(out.get(), x.sum(axis=1), rtol=1e-5)

        @check("a missing __syncthreads gives a wrong result")
        def _():
            x = np.arange(128, dtype=np.float32)
            out = cp.empty(128, dtype=np.float32)
            k("missing_sync_kernel")((2,), (64,), (cp.asarray(x), out))
            want = np.concatenate([np.roll(x[:64], -1), np.roll(x[64:], -1)])
            assert not np.array_equal(out.get(), want), "the race went unnoticed in both blocks"

        @check("shared memory that no thread wrote reads as garbage (NaN), also in later blocks")
        def _():
            out = cp.empty(64, dtype=np.float32)
            k("uninitialised_shared_kernel")((2,), (32,), (out,))
            assert np.isnan(out.get()[32:]).all(), out.get()

        @check("__syncthreads in a branch not all threads take is an error")
        def _():
            raises(RuntimeError, lambda: k("divergent_sync_kernel")((1,), (64,), (cp.empty(64, np.float32),)),
                   "__syncthreads")

        @check("__syncthreads after some threads returned is an error")
        def _():
            out = cp.empty(64, np.float32)
            raises(RuntimeError, lambda: k("early_return_sync_kernel")((1,), (64,), (out, np.int32(40))),
                   "returned")
            k("early_return_sync_kernel")((1,), (64,), (out, np.int32(64)))     # all threads: fine

        @check("a full-mask shuffle in a partial warp is an error")
        def _():
            raises(RuntimeError, lambda: k("partial_warp_shuffle_kernel")((1,), (48,), (cp.empty(48, np.float32),)),
                   "partial warp")
            k("partial_warp_shuffle_kernel")((1,), (64,), (cp.empty(64, np.float32),))

        @check("an out-of-bounds write is reported")
        def _():
            out = cp.zeros(10, dtype=np.float32)
            raises(cp.OutOfBoundsError, lambda: k("out_of_bounds_kernel")((1,), (32,), (out, np.int32(10))),
                   "out-of-bounds")

        @check("kernel arguments must have the parameters' exact types and layouts")
        def _():
            f, x = k("scale_kernel"), cp.ones(8, dtype=np.float32)
            f((1,), (32,), (x, x, np.float32(2), np.int32(8)))
            assert (x.get() == 2).all()
            raises(TypeError, lambda: f((1,), (32,), (x, x, np.float32(2), 8)), "int32")
            raises(TypeError, lambda: f((1,), (32,), (x, x, 2.0, np.int32(8))), "float32")
            raises(TypeError, lambda: f((1,), (32,), (x, cp.ones(8), np.float32(2), np.int32(8))), "float64")
            raises(TypeError, lambda: f((1,), (32,), (x, np.ones(8, np.float32), np.float32(2), np.int32(8))),
                   "host")
            y = cp.ones(16, dtype=np.float32)
            raises(ValueError, lambda: f((1,), (32,), (y[::2], y[::2], np.float32(2), np.int32(8))), "contiguous")
            ro = cp.broadcast_to(cp.ones(8, dtype=np.float32), (8,))     # contiguous but read-only
            raises(ValueError, lambda: f((1,), (32,), (ro, x, np.float32(2), np.int32(8))), "read-only")
            f((1,), (32,), (x, ro, np.float32(2), np.int32(8)))            # fine for a const pointer
            raises(TypeError, lambda: f((1,), (32,), (x, x, np.float32(2))), "arguments")
            raises(RuntimeError, lambda: f((0,), (32,), (x, x, np.float32(2), np.int32(8))), "Invalid")
            raises(RuntimeError, lambda: f((1,), (2048,), (x, x, np.float32(2), np.int32(8))), "1024")

        @check("float32 kernels flush denormals to zero (CuPy compiles with -ftz=true)")
        def _():
            out = cp.empty(2, dtype=np.float32)
            k("denormal_kernel")((1,), (2,), (out, np.float32(1e-30)))
            assert out.get()[0] == 0.0, out.get()

        @check("device arrays behave like CuPy's, not NumPy's")
        def _():
            a = cp.arange(6.0).reshape(2, 3)
            raises(TypeError, lambda: np.asarray(a), "Implicit conversion")
            raises(TypeError, lambda: a + np.ones(3), "Unsupported type")
            raises(TypeError, lambda: np.ones(3) * a, "Unsupported type")
            raises(TypeError, lambda: cp.ascontiguousarray(np.ones(3)), "incorrect type")
            assert type(a.sum()) is cp.ndarray and a.sum().ndim == 0
            assert type(a[0, 1]) is cp.ndarray and type(a.argmax()) is cp.ndarray
            assert type(np.sum(a)) is cp.ndarray
            assert a[:, 1:].base is a.base and a.base is not None and cp.empty(3).base is None
            assert not hasattr(a.flags, "writeable")
            assert np.isnan(cp.empty(4).get()).all()
            rng = cp.random.default_rng(1)
            assert not hasattr(rng, "permutation") and not hasattr(rng, "normal")
            assert type(rng.integers(5)) is cp.ndarray

        # ---- stream capture (CuPy 14's Stream.begin_capture / end_capture -> Graph)
        def capture(fn, pool=None, stream=None):
            stream = stream or cp.cuda.Stream(non_blocking=True)
            alloc = cp.cuda.using_allocator(pool.malloc) if pool is not None else cp.cuda.using_allocator()
            with stream, alloc:
                stream.begin_capture()
                try:
                    result = fn()
                except BaseException:
                    try:
                        stream.end_capture()
                    except Exception:
                        pass
                    raise
                return stream.end_capture(), result

        @check("captured work is recorded, not executed, and replays in order at each launch")
        def _():
            x, pool = cp.ones(8, dtype=np.float32), cp.cuda.MemoryPool()
            y = cp.zeros(8, dtype=np.float32)
            f = k("scale_kernel")

            def step():
                f((1,), (32,), (y, x, np.float32(3), np.int32(8)))       # y = 3x
                x[...] = y + 1                                            # x = 3x + 1
                return x.sum()
            graph, total = capture(step, pool)
            assert (x.get() == 1).all() and (y.get() == 0).all(), "capture executed work"
            assert np.isnan(total.get()), "a result allocated during capture must be garbage until launched"
            graph.launch()
            graph.launch()
            assert (x.get() == 13).all() and (y.get() == 12).all() and total.get() == 104, (x.get(), total.get())
            raises(NotImplementedError, lambda: cp.cuda.Graph(), "stream capture")

        @check("host reads and syncs in capture raise and invalidate it; cuBLAS and cuRAND are refused")
        def _():
            a = cp.ones(4, dtype=np.float32)
            for read, what in ((lambda: float(a.sum()), "float"), (lambda: a.get(), "get"),
                               (lambda: a.sum().item(), "item"), (lambda: cp.asnumpy(a), "asnumpy"),
                               (lambda: cp.cuda.Device().synchronize(), "synchronize"),
                               (lambda: print(a, file=open(os.devnull, "w")), "str")):
                raises(cp.cuda.runtime.CUDARuntimeError, lambda: capture(read),
                       "cudaErrorStreamCaptureUnsupported")
            s1 = cp.cuda.Stream(non_blocking=True)

            def read_then_more():
                try:
                    a.get()
                except cp.cuda.runtime.CUDARuntimeError:
                    pass
                return a * 2
            raises(cp.cuda.runtime.CUDARuntimeError, lambda: capture(read_then_more, stream=s1),
                   "StreamCaptureInvalidated")
            raises(RuntimeError, lambda: cp.cuda.Stream.null.begin_capture(), "legacy")
            m = cp.ones((4, 4), dtype=np.float32)
            raises(NotImplementedError, lambda: capture(lambda: m @ m),
                   "calling cuBLAS API during stream capture is currently unsupported")
            raises(NotImplementedError, lambda: capture(lambda: cp.random.default_rng(0).random(3)),
                   "calling cuRAND API during stream capture is currently unsupported")
            raises(RuntimeError, lambda: capture(lambda: cp.asarray(np.ones(3))), "host-to-device")
            graph, _ = capture(lambda: m.sum(axis=0))     # outside a capture all of it works again
            assert float(m.sum()) == 16 and (m @ m).shape == (4, 4)

        @check("memory freed to the default pool after capture is an error at launch; a private pool "
               "keeps it until free_all_blocks")
        def _():
            x = cp.ones(8, dtype=np.float32)

            def step():
                t = x * 2                       # a temporary, freed during capture
                return t + 1
            graph, out = capture(step)
            raises(cp.GraphMemoryError, graph.launch, "default memory pool")
            pool = cp.cuda.MemoryPool()
            graph, out = capture(step, pool)
            graph.launch()
            assert (out.get() == 3).all() and pool.total_bytes() >= 2 * 32
            pool.free_all_blocks()            # the temporary's block goes back to the driver
            raises(cp.GraphMemoryError, graph.launch, "default memory pool")

        failed = 0
        for name, fn in checks:
            try:
                fn()
                print(f"ok    {name}")
            except Exception:
                failed += 1
                print(f"FAIL  {name}\n{traceback.format_exc()}")
        print(f"selftest: {len(checks) - failed} of {len(checks)} checks passed")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
