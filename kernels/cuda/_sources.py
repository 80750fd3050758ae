"""The CUDA sources of minires and the kernel instantiations each one provides.

Plain Python, no CuPy: ``_launch`` (which loads the sources with
``cupy.RawModule``) and ``compile_check`` (which compiles them with nvcc and
NVRTC on a machine without a GPU) read the same table, so whatever the check
compiles is exactly what runs.

Every kernel is a C++ template over the element type (and sometimes a few
flags).  ``cupy.RawModule(..., name_expressions=[...])`` asks NVRTC to
instantiate each listed expression, e.g. ``"im2col_kernel<float>"``, and
``get_function`` must later be given the very same string, so the strings are
built in one place: ``expr``.
"""
from __future__ import annotations

from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent

# Options minires gives RawModule.  CuPy itself adds, for NVRTC, the target
# architecture (-arch=sm_XX of the current device), -ftz=true and
# --device-as-default-execution-space (see CUPY_ADDED_NVRTC_OPTIONS), and include
# paths that our sources do not need: they include no header at all, so that
# NVRTC (which has no system headers) compiles them as they are.
RAWMODULE_OPTIONS = ("-std=c++17",)
CUPY_ADDED_NVRTC_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")

# C type of each NumPy dtype a kernel is instantiated for.
CTYPES = {"float32": "float", "float64": "double"}
INDEX_CTYPES = {"int32": "int", "int64": "long long"}
FLOATS = tuple(CTYPES.values())
BOOLS = ("false", "true")


def expr(kernel: str, *template_args: str) -> str:
    """The name expression of one instantiation: ``expr('gemm_kernel', 'float', 'true')``."""
    return f"{kernel}<{', '.join(template_args)}>"


def _per_float(*kernels):
    return [expr(k, t) for k in kernels for t in FLOATS]


# file -> every name expression it must provide (float and double each).
KERNELS = {
    "columns.cu": _per_float("im2col_kernel", "col2im_kernel"),
    "batchnorm.cu": (_per_float("bn_forward_stats_kernel", "bn_update_running_kernel")
                     + [expr(k, t, r) for k in ("bn_forward_apply_kernel", "bn_backward_reduce_kernel",
                                                "bn_backward_apply_kernel")
                        for t in FLOATS for r in BOOLS]),
    "pooling.cu": _per_float("max_pool_forward_kernel", "max_pool_backward_kernel",
                             "avg_pool_forward_kernel", "avg_pool_backward_kernel"),
    "gemm.cu": [expr("gemm_kernel", t, ta, tb) for t in FLOATS for ta in BOOLS for tb in BOOLS],
    "sgd.cu": _per_float("sgd_multi_tensor_kernel"),
    "loss.cu": [expr(k, t, i) for k in ("cross_entropy_forward_kernel", "cross_entropy_backward_kernel")
                for t in FLOATS for i in INDEX_CTYPES.values()],
}


def source_path(name: str) -> Path:
    return SOURCE_DIR / name


def read_source(name: str) -> str:
    return source_path(name).read_text(encoding="utf-8")
