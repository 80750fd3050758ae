"""gemm.cu against NumPy: every trans/accumulate combination, ragged shapes, split-K,
vector and element-wise loads, float64, and the TF32 tensor-core path.

Error bounds, element by element, from the operands' magnitudes S = |op(A)| @ |op(B)|
(+ |C0| when accumulating):

    float32   |C - C_exact| <= (K + 2) * 2^-24 * S     (a sum of K products: gamma_K)
    float64   |C - C_exact| <= (K + 2) * 2^-53 * S
    TF32      |C - C_exact| <= (2 * 2^-11 + 2 * (K + 2) * 2^-24) * S    (each input rounded
              to 11 significant bits; the fp32 sums as above, doubled for the tensor
              cores' own way of adding)

C_exact is computed in long double (float64 for float32 cases).  A wrong index or a
missed tile is an O(S) error, far outside these bounds.

The plan tests (tile width, split-K) are plain Python and run everywhere; the rest are
marked gpu (a GPU, or the CUDA emulator: tests/cuda_emulator/run.py).  Shapes are small:
the emulator runs each GPU thread as a fiber.
"""
import importlib
import itertools
import sys

import numpy as np
import pytest

# the module (the package's name ``gemm`` is the function)
KGM = importlib.import_module("minires.kernels.cuda.gemm")
TRANS = list(itertools.product([False, True], repeat=2))
DIMS = (1, 17, 63, 64, 65, 129)
KS = (1, 27, 68, 577)
# every (M, N) pair of DIMS, K cycling through KS so that each K meets every M and N
SHAPES = [(m, n, KS[(i + j) % len(KS)]) for i, m in enumerate(DIMS) for j, n in enumerate(DIMS)]
UNIT = {np.float32: 2.0 ** -24, np.float64: 2.0 ** -53}


# --------------------------------------------------------------- the plan (no GPU)
def test_tile_width_is_the_narrowest_that_covers_n():
    assert [KGM._tile_n(n) for n in (1, 16, 17, 32, 33, 64, 65, 576)] == [16, 16, 32, 32, 64, 64, 64, 64]


RESNET20_BATCH128 = [  # (M, N, K) of conv2d's products, cols (n*L, K), W (Cout, K)
    (131072, 16, 27), (131072, 16, 144), (32768, 32, 144), (32768, 32, 288), (8192, 64, 288),
    (8192, 64, 576)]


@pytest.mark.parametrize("rows,cout,k", RESNET20_BATCH128)
def test_plan_for_resnet20_products(rows, cout, k):
    # forward (rows x Cout): one pass, unless the grid is under-full and K long enough
    # (stage 3's 3x3 convolutions: 64 blocks, K = 576 -> 2 splits)
    blocks = -(-rows // KGM.GEMM_BM) * -(-cout // KGM._tile_n(cout))
    splits, k_per_split, transposed = KGM.gemm_plan(rows, cout, k, 1)
    assert not transposed and (splits > 1) == (blocks < KGM.GEMM_FILL_BLOCKS and k >= 2 * KGM.GEMM_MIN_SPLIT_K)
    # dcols (rows x K) sums over Cout only: one pass
    assert KGM.gemm_plan(rows, k, cout, 1) == (1, cout, False)
    # dW (Cout x K) summed over all rows: split-K, the transposed product when Cout < K
    splits, k_per_split, transposed = KGM.gemm_plan(cout, k, rows, 1)
    assert splits > 1 and transposed == (cout < k)
    assert k_per_split % KGM.GEMM_BK == 0 and (splits - 1) * k_per_split < rows <= splits * k_per_split
    assert splits <= KGM.GEMM_MAX_SPLITS and k_per_split >= KGM.GEMM_MIN_SPLIT_K


def test_plan_without_split():
    assert KGM.gemm_plan(10, 10, 2 * KGM.GEMM_MIN_SPLIT_K - 1, 1) == (1, 2 * KGM.GEMM_MIN_SPLIT_K - 1, False)
    assert KGM.gemm_plan(128 * KGM.GEMM_FILL_BLOCKS, 16, 100000, 1)[0] == 1     # the grid is full already
    assert KGM.gemm_plan(128 * (KGM.GEMM_FILL_BLOCKS - 1), 16, 100000, 1)[0] == 2


def test_the_shape_sweep_covers_split_k_and_its_transposed_form():
    plans = [KGM.gemm_plan(m, n, k, 1) for m, n, k in SHAPES]
    assert any(s > 1 and t for s, _, t in plans) and any(s > 1 and not t for s, _, t in plans)
    assert any(s == 1 for s, _, _ in plans)


# ------------------------------------------------------------------ on the device
@pytest.fixture
def cp():
    return pytest.importorskip("cupy")


def _exact(a_op, b_op, c0=None):
    """(product in extended precision, its magnitude bound S) for host operands."""
    wide = np.longdouble if a_op.dtype == np.float64 else np.float64
    a, b = a_op.astype(wide), b_op.astype(wide)
    exact, scale = a @ b, np.abs(a) @ np.abs(b)
    if c0 is not None:
        exact, scale = exact + c0.astype(wide), scale + np.abs(c0.astype(wide))
    return exact, scale


def _check(cp, out, a_op, b_op, rel, what, c0=None):
    exact, scale = _exact(a_op, b_op, c0)
    got = cp.asnumpy(out).astype(exact.dtype)
    assert got.shape == exact.shape, f"{what}: shape {got.shape} != {exact.shape}"
    err = np.abs(got - exact)
    bound = rel * scale + np.finfo(np.float64).tiny
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else ()
    assert (err <= bound).all(), (f"{what}: error {float(err[worst]):.3g} > bound {float(bound[worst]):.3g} "
                                  f"at {worst}")


def _operands(rng, m, k, n, dtype, trans_a, trans_b, batch=()):
    """op(A), op(B) on the host and the stored (maybe transposed) arrays."""
    a_op = rng.standard_normal(batch + (m, k)).astype(dtype)
    b_op = rng.standard_normal(batch + (k, n)).astype(dtype)
    a = np.ascontiguousarray(np.swapaxes(a_op, -1, -2)) if trans_a else a_op
    b = np.ascontiguousarray(np.swapaxes(b_op, -1, -2)) if trans_b else b_op
    return a_op, b_op, a, b


def _fp_bound(dtype, k):
    return (k + 2) * UNIT[dtype]


def _tf32_bound(k):
    return 2 * 2.0 ** -11 + 2 * (k + 2) * 2.0 ** -24


@pytest.mark.gpu
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_ragged_shapes_against_numpy(cp, dtype, trans_a, trans_b, accumulate):
    rng = np.random.default_rng(10 + 2 * trans_a + trans_b)
    for m, n, k in SHAPES:
        a_op, b_op, a, b = _operands(rng, m, k, n, dtype, trans_a, trans_b)
        c0 = rng.standard_normal((m, n)).astype(dtype) if accumulate else None
        out = cp.asarray(c0) if accumulate else cp.full((m, n), np.nan, dtype=dtype)   # garbage must not leak in
        assert KGM.gemm(cp.asarray(a), cp.asarray(b), out, trans_a=trans_a, trans_b=trans_b,
                        accumulate=accumulate, tf32=False) is out
        _check(cp, out, a_op, b_op, _fp_bound(dtype, k), f"{(m, n, k)} {dtype.__name__}", c0)


@pytest.mark.gpu
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
def test_gemm_unaligned_operands_and_batches(cp, trans_a, trans_b):
    """Operands off the 16-byte grid (element-wise loads) and batches whose matrices are
    alternately aligned and not; split-K over a batch, with accumulate."""
    rng = np.random.default_rng(20)
    dtype = np.float32
    for m, n, k in [(64, 64, 64), (65, 17, 68), (17, 33, 600)]:
        a_op, b_op, a, b = _operands(rng, m, k, n, dtype, trans_a, trans_b)
        # a view one element into a buffer: C-contiguous, 4 bytes past an aligned address
        abuf, bbuf = cp.zeros(a.size + 1, dtype=dtype), cp.zeros(b.size + 1, dtype=dtype)
        abuf[1:] = cp.asarray(a.ravel())
        bbuf[1:] = cp.asarray(b.ravel())
        av, bv = abuf[1:].reshape(a.shape), bbuf[1:].reshape(b.shape)
        _check(cp, KGM.gemm(av, bv, trans_a=trans_a, trans_b=trans_b, tf32=False), a_op, b_op,
               _fp_bound(dtype, k), f"unaligned {(m, n, k)}")
    for m, n, k in [(17, 33, 65), (17, 33, 600), (63, 65, 27)]:     # odd matrix sizes: matrix 1 is unaligned
        a_op, b_op, a, b = _operands(rng, m, k, n, dtype, trans_a, trans_b, batch=(3,))
        c0 = rng.standard_normal((3, m, n)).astype(dtype)
        out = cp.asarray(c0)
        KGM.gemm(cp.asarray(a), cp.asarray(b), out, trans_a=trans_a, trans_b=trans_b, accumulate=True, tf32=False)
        _check(cp, out, a_op, b_op, _fp_bound(dtype, k), f"batched {(m, n, k)}", c0)
        out = KGM.gemm(cp.asarray(a[1]), cp.asarray(b), trans_a=trans_a, trans_b=trans_b, tf32=False)
        _check(cp, out, np.broadcast_to(a_op[1], a_op.shape), b_op, _fp_bound(dtype, k), f"broadcast {(m, n, k)}")


def _tf32(x):
    """NumPy's model of cvt.rna.tf32.f32 for finite float32: to nearest, ties away from zero."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def test_tf32_model_rounds_ties_away_from_zero():
    ulp = 2.0 ** -10                                  # TF32 spacing in [1, 2)
    x = np.array([1 + ulp / 2, -(1 + ulp / 2), 1 + ulp / 4, 1 + 3 * ulp / 4, 3.0], dtype=np.float32)
    np.testing.assert_array_equal(_tf32(x), np.array([1 + ulp, -(1 + ulp), 1, 1 + ulp, 3], dtype=np.float32))


@pytest.mark.gpu
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
def test_gemm_tf32_against_numpy(cp, trans_a, trans_b):
    rng = np.random.default_rng(30 + 2 * trans_a + trans_b)
    for m, n, k in [(1, 1, 1), (17, 63, 27), (65, 17, 68), (129, 33, 577), (63, 129, 8), (16, 64, 600)]:
        a_op, b_op, a, b = _operands(rng, m, k, n, np.float32, trans_a, trans_b)
        c0 = rng.standard_normal((m, n)).astype(np.float32)
        out = KGM.gemm(cp.asarray(a), cp.asarray(b), trans_a=trans_a, trans_b=trans_b, tf32=True)
        _check(cp, out, a_op, b_op, _tf32_bound(k), f"tf32 {(m, n, k)}")
        out = cp.asarray(c0)
        KGM.gemm(cp.asarray(a), cp.asarray(b), out, trans_a=trans_a, trans_b=trans_b, accumulate=True, tf32=True)
        _check(cp, out, a_op, b_op, _tf32_bound(k), f"tf32 accumulate {(m, n, k)}", c0)
        # tight: the product of the TF32-rounded inputs, up to fp32 summation -- this fails for
        # truncated inputs or round-half-even, not only for wrong indices
        if k <= 68:
            out = KGM.gemm(cp.asarray(a), cp.asarray(b), trans_a=trans_a, trans_b=trans_b, tf32=True)
            _check(cp, out, _tf32(a_op), _tf32(b_op), 2 * _fp_bound(np.float32, k), f"tf32 rounding {(m, n, k)}")


@pytest.mark.gpu
def test_gemm_tf32_is_not_fp32(cp):
    """1 + 2^-11 is a TF32 tie: cvt.rna makes it 1 + 2^-10, so 1 x (1 + 2^-11) = 1 + 2^-10."""
    a = cp.full((1, 8), 1 + 2.0 ** -11, dtype=cp.float32)
    b = cp.zeros((8, 1), dtype=cp.float32)
    b[0, 0] = 1
    assert float(KGM.gemm(a, b, tf32=True)[0, 0]) == 1 + 2.0 ** -10
    assert float(KGM.gemm(a, b, tf32=False)[0, 0]) == 1 + 2.0 ** -11


@pytest.mark.gpu
def test_tf32_switch_and_float64(cp, monkeypatch):
    KG = sys.modules["minires.kernels.cuda"]
    rng = np.random.default_rng(40)
    monkeypatch.setattr(KG, "GEMM", "own")
    monkeypatch.setattr(KG, "GEMM_TF32", True)
    for dtype, rel in ((np.float32, _tf32_bound(30)), (np.float64, _fp_bound(np.float64, 30))):
        a_op, b_op, _, _ = _operands(rng, 40, 30, 20, dtype, False, False)
        _check(cp, KG.matmul(cp.asarray(a_op), cp.asarray(b_op)), a_op, b_op, rel, f"matmul {dtype.__name__}")
    a = cp.full((1, 8), 1 + 2.0 ** -11, dtype=cp.float32)
    assert float(KG.matmul(a, cp.ones((8, 1), dtype=cp.float32))[0, 0]) == 8 * (1 + 2.0 ** -10)
    monkeypatch.setattr(KGM, "_tf32_capable", False)            # a pre-Ampere device
    with pytest.raises(ValueError, match="compute capability 8.0"):
        KGM.gemm(a, cp.ones((8, 1), dtype=cp.float32), tf32=True)
    KGM.gemm(a.astype(cp.float64), cp.ones((8, 1)), tf32=True)   # float64 ignores tf32
