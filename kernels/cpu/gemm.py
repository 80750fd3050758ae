"""Matrix products on the CPU: the backend's BLAS (OpenBLAS/MKL through NumPy).

conv2d calls it from several threads at once with BLAS held to one thread each
(minires.backend.parallel_for); the GPU module offers cuBLAS or minires's own
tiled GEMM behind the same function.
"""
import numpy as np


def matmul(a, b, out=None):
    """a @ b, written into ``out`` when given."""
    return np.matmul(a, b, out=out)
