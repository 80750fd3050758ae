"""The CUDA kernels, checked without a GPU (runs in normal CI).

* every source compiles with nvcc (PTX and cubin, float and double, warnings are
  errors) -- skipped where nvcc is absent -- and with NVRTC as CuPy's RawModule
  would compile it -- skipped where CuPy's NVRTC binding or libnvrtc is absent;
* kernels/cuda/__init__.py provides (defines or imports from its modules) every
  function of the CPU kernel interface with the same signature (read with ast: no
  CuPy needed), and every module there is a wrapper module the index imports;
* the launch constants on the Python side match the sources;
* importing the CUDA kernel module and the compile check does not import CuPy.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import minires.kernels
from minires.kernels.cuda import _sources, compile_check

KERNELS_DIR = Path(minires.kernels.__path__[0])
CPU_INIT = KERNELS_DIR / "cpu" / "__init__.py"
CUDA_INIT = KERNELS_DIR / "cuda" / "__init__.py"
SOURCES = sorted(_sources.KERNELS)

_NVCC = compile_check.find_nvcc()
_nvrtc_cache = []


def _nvrtc():
    """CuPy's NVRTC binding, or skip.  Loaded on first use: its library loader imports cupy."""
    if not _nvrtc_cache:
        _nvrtc_cache.append(compile_check.load_nvrtc())
    nvrtc, why = _nvrtc_cache[0]
    if nvrtc is None:
        pytest.skip(f"NVRTC not usable: {why}")
    return nvrtc


# --------------------------------------------------------------- compiling
@pytest.mark.skipif(_NVCC is None, reason="nvcc not found")
@pytest.mark.parametrize("kind", ["ptx", "cubin"])
@pytest.mark.parametrize("source", SOURCES)
def test_source_compiles_with_nvcc(source, kind):
    result = compile_check.check_nvcc(source, _NVCC, kind=kind)
    assert result.ok, result.output


@pytest.mark.parametrize("source", SOURCES)
def test_source_compiles_with_nvrtc(source):
    result = compile_check.check_nvrtc(source, _nvrtc())
    assert result.ok, result.output


@pytest.mark.skipif(_NVCC is None, reason="nvcc not found")
def test_compile_check_command_line():
    proc = subprocess.run([sys.executable, "-m", "minires.kernels.cuda.compile_check", "--no-nvrtc",
                           "loss.cu"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok   nvcc-cubin loss.cu" in proc.stdout


def test_compile_check_fails_on_a_warning(tmp_path, monkeypatch):
    """A source with a warning (unused variable) must fail the check, not pass it."""
    if _NVCC is None:
        _nvrtc()                                  # skips when neither compiler is here
    (tmp_path / "bad.cu").write_text("template <typename T> __global__ void k(T* a) { int unused; a[0] = T(1); }\n")
    monkeypatch.setattr(_sources, "SOURCE_DIR", tmp_path)
    monkeypatch.setitem(_sources.KERNELS, "bad.cu", ["k<float>", "k<double>"])
    results, _ = compile_check.run(sources=["bad.cu"], kinds=("ptx",))
    assert results and not any(r.ok for r in results), [r.output for r in results]


# ----------------------------------------------------------------- sources
def test_every_source_is_listed_and_shipped():
    on_disk = sorted(p.name for p in (KERNELS_DIR / "cuda").glob("*.cu"))
    assert on_disk == SOURCES


@pytest.mark.parametrize("source", SOURCES)
def test_sources_are_self_contained(source):
    """No #include: NVRTC has no system headers, and RawModule compiles the text alone."""
    assert "#include" not in _sources.read_source(source)


_KERNEL_DEF = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(")


@pytest.mark.parametrize("source", SOURCES)
def test_listed_kernels_are_the_defined_ones(source):
    defined = set(_KERNEL_DEF.findall(_sources.read_source(source)))
    listed = {name.split("<")[0] for name in _sources.KERNELS[source]}
    assert defined == listed
    for name in _sources.KERNELS[source]:              # float and double of each
        if "<" in name:
            assert any(f"<{t}" in name for t in _sources.FLOATS)
    for kernel in listed:
        types = {n.split("<")[1].split(",")[0].rstrip(">") for n in _sources.KERNELS[source]
                 if n.split("<")[0] == kernel}
        assert types == set(_sources.FLOATS), (kernel, types)


# --------------------------------------------------------------- interface
def _module_functions(path):
    """{name: FunctionDef} of a module, following `from .sub import name` one level down."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            sub = path.parent / (node.module.replace(".", "/") + ".py")
            if sub.exists():
                defs = {n.name: n for n in ast.parse(sub.read_text(encoding="utf-8")).body
                        if isinstance(n, ast.FunctionDef)}
                for alias in node.names:
                    if alias.name in defs:
                        found[alias.asname or alias.name] = defs[alias.name]
    return tree, found


def _all_names(tree):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("no __all__")


def _signature(fn):
    a = fn.args
    return {
        "posonly": [x.arg for x in a.posonlyargs],
        "args": [x.arg for x in a.args],
        "defaults": [ast.dump(d) for d in a.defaults],
        "vararg": a.vararg and a.vararg.arg,
        "kwonly": [x.arg for x in a.kwonlyargs],
        "kw_defaults": [d and ast.dump(d) for d in a.kw_defaults],
        "kwarg": a.kwarg and a.kwarg.arg,
    }


def test_cuda_module_has_the_cpu_interface():
    cpu_tree, cpu_funcs = _module_functions(CPU_INIT)
    cuda_tree, cuda_defs = _module_functions(CUDA_INIT)
    interface = _all_names(cpu_tree)
    assert len(interface) >= 8
    for name in interface:
        assert name in cpu_funcs, f"CPU interface name {name} has no definition"
        assert name in cuda_defs, f"kernels/cuda/__init__.py does not provide {name}"
        assert _signature(cuda_defs[name]) == _signature(cpu_funcs[name]), name
    assert set(interface) <= set(_all_names(cuda_tree))
    cuda_globals = {t.id for n in cuda_tree.body if isinstance(n, ast.Assign) for t in n.targets
                    if isinstance(t, ast.Name)}
    assert "CONV_WORKSPACE_BYTES" in cuda_globals


def test_gpu_extras_are_defined():
    cuda_tree, defs = _module_functions(CUDA_INIT)
    assert set(defs) <= set(_all_names(cuda_tree))
    assert _signature(defs["sgd_step"])["args"] == ["params", "grads", "bufs", "lr", "momentum",
                                                     "weight_decay", "dampening", "nesterov", "first_step"]
    assert _signature(defs["matmul"])["args"] == ["a", "b", "out"]
    assert _signature(defs["gemm"])["args"][:3] == ["a", "b", "out"]
    for name in ("batch_norm_relu_forward", "batch_norm_relu_backward", "cross_entropy_forward",
                 "cross_entropy_backward", "load_all"):
        assert name in defs


_LAUNCHES = re.compile(r'_kernel\("(\w+\.cu)"')


def test_each_source_has_its_wrapper_module_and_the_index_imports_them_all():
    """kernels/cuda is split by job: x.py wraps x.cu alone, and __init__ imports every module."""
    folder = KERNELS_DIR / "cuda"
    imported = {node.module for node in ast.parse(CUDA_INIT.read_text(encoding="utf-8")).body
                if isinstance(node, ast.ImportFrom) and node.level == 1}
    wrappers = {p.stem for p in folder.glob("*.py")} - {"__init__", "_sources", "compile_check"}
    assert wrappers == {Path(s).stem for s in SOURCES} | {"_launch"}
    assert wrappers <= imported, f"kernels/cuda/__init__.py does not import {sorted(wrappers - imported)}"
    for source in SOURCES:
        launched = set(_LAUNCHES.findall((folder / source).with_suffix(".py").read_text(encoding="utf-8")))
        assert launched == {source}, f"{Path(source).stem}.py launches kernels of {sorted(launched)}"


# --------------------------------------------------------- launch constants
def _constexprs(source):
    return {k: int(v) for k, v in re.findall(r"constexpr int (\w+) = (\d+);", _sources.read_source(source))}


def test_launch_constants_match_the_sources():
    import minires.kernels.cuda as K
    gemm = _constexprs("gemm.cu")
    assert (K.GEMM_BM, K.GEMM_BN) == (gemm["BM"], gemm["BN"])
    assert K.GEMM_THREADS == (gemm["BN"] // gemm["TN"]) * (gemm["BM"] // gemm["TM"])
    assert K.SGD_CHUNK == _constexprs("sgd.cu")["SGD_CHUNK"]
    assert K.BN_REDUCE_BLOCK % 32 == 0 and K.BN_REDUCE_BLOCK <= 1024
    assert K.BLOCK % 32 == 0
    assert K.GEMM in ("cublas", "own")
    assert K.POOL_GEOMETRY_INTS == _constexprs("pooling.cu")["POOL_GEOMETRY_INTS"] >= 7


def test_importing_the_cuda_kernels_does_not_import_cupy():
    code = ("import sys, minires.kernels.cuda, minires.kernels.cuda.compile_check; "
            "assert 'cupy' not in sys.modules, 'cupy imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
