"""pytest plugin (-p cuda_emu_own_gemm): the GPU path with minires's own GEMM kernel.

Sets minires.kernels.cuda.GEMM = 'own' for the whole session, so that conv2d's
products run through gemm.cu instead of cupy.matmul (cuBLAS).
"""
import minires.kernels.cuda as _K

_K.GEMM = "own"
