"""Compile every CUDA source of minires without a GPU:  python -m minires.kernels.cuda.compile_check

Two compilers, both optional, each used when present:

* nvcc (the CUDA toolkit): each source is compiled to PTX and to a cubin for
  one architecture, with every float and double instantiation that the runtime
  asks NVRTC for (a tiny wrapper takes each kernel's address, which makes nvcc
  instantiate it), with warnings turned into errors (``-Werror all-warnings``,
  which covers ptxas too).  Needs no GPU and no CuPy.
* NVRTC, through CuPy's binding ``cupy_backends.cuda.libs.nvrtc``, with the
  name expressions and the options CuPy's RawModule passes (ours plus
  ``-ftz=true``, ``--device-as-default-execution-space`` and ``-arch=sm_XX``),
  to a cubin as CuPy does.  NVRTC needs ``libnvrtc`` -- the
  ``nvidia-cuda-nvrtc`` wheel (13.x for cupy-cuda13x) provides it -- and no
  GPU.  A warning in NVRTC's log counts as a failure too.  (CuPy's binding finds
  libnvrtc through ``cupy._environment``, so this step imports cupy; importing
  cupy needs no GPU.  We cannot go through RawModule itself: it asks the device
  for its architecture before compiling.)

Exit status 0 when every compile that could run succeeded (and at least one
compiler was found, unless ``--allow-none``); 1 otherwise, with the compiler's
output.  This module imports no cupy of its own, and none at all when CuPy is
not installed or NVRTC is skipped (--no-nvrtc): nvcc alone needs nothing.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from . import _sources

DEFAULT_ARCH = "90"        # H100; any sm_XX that the installed compiler supports will do


@dataclass
class Result:
    compiler: str          # 'nvcc-ptx', 'nvcc-cubin' or 'nvrtc'
    source: str
    ok: bool
    output: str            # compiler messages (empty when all went well)


def find_nvcc():
    """Path of nvcc, or None: $PATH, then $CUDA_HOME/bin, /usr/local/cuda/bin."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
            return os.path.join(root, "bin", "nvcc")
    return None


def load_nvrtc():
    """CuPy's NVRTC binding when it and libnvrtc load, else None (and why, as a string)."""
    try:
        nvrtc = importlib.import_module("cupy_backends.cuda.libs.nvrtc")
        nvrtc.getVersion()                     # loads libnvrtc now
        return nvrtc, None
    except Exception as exc:                   # ImportError, or libnvrtc not found
        return None, f"{type(exc).__name__}: {exc}".strip()


def _instantiation_wrapper(source: str) -> str:
    """A .cu that includes the source and takes the address of every listed instantiation."""
    lines = [f'#include "{_sources.source_path(source)}"',
             "// taking a kernel's address makes nvcc instantiate the template",
             "void* minires_instantiations[] = {"]
    lines += [f"    (void*)&{name}," for name in _sources.KERNELS[source]]
    lines += ["};", ""]
    return "\n".join(lines)


def check_nvcc(source: str, nvcc: str, arch: str = DEFAULT_ARCH, kind: str = "cubin") -> Result:
    """Compile one source with nvcc to 'ptx' or 'cubin'; warnings are errors."""
    flag = {"ptx": "--ptx", "cubin": "--cubin"}[kind]
    with tempfile.TemporaryDirectory(prefix="minires-cuda-") as tmp:
        wrapper = os.path.join(tmp, "instantiate_" + source)
        with open(wrapper, "w", encoding="utf-8") as f:
            f.write(_instantiation_wrapper(source))
        cmd = [nvcc, "-std=c++17", f"-arch=sm_{arch}", flag, "-ftz=true",
               "-Werror", "all-warnings", "-o", os.path.join(tmp, "out." + kind), wrapper]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    ok = proc.returncode == 0 and "warning" not in output.lower()
    if not ok:
        output = f"$ {' '.join(cmd)}\n{output}"
    return Result(f"nvcc-{kind}", source, ok, output)


def nvrtc_options(arch: str = DEFAULT_ARCH):
    """The options CuPy's RawModule hands NVRTC for our sources on an sm_<arch> device."""
    return _sources.RAWMODULE_OPTIONS + _sources.CUPY_ADDED_NVRTC_OPTIONS + (f"-arch=sm_{arch}",)


def check_nvrtc(source: str, nvrtc, arch: str = DEFAULT_ARCH) -> Result:
    """Compile one source with NVRTC to a cubin, as RawModule would (name expressions included)."""
    text = _sources.read_source(source)
    options = nvrtc_options(arch)
    prog = nvrtc.createProgram(text, source, (), ())
    try:
        for name in _sources.KERNELS[source]:
            nvrtc.addNameExpression(prog, name)
        try:
            nvrtc.compileProgram(prog, options)
            failed = False
        except nvrtc.NVRTCError:
            failed = True
        log = nvrtc.getProgramLog(prog)
        log = (log.decode() if isinstance(log, bytes) else log).strip().strip("\x00")
        missing = []
        if not failed:
            for name in _sources.KERNELS[source]:
                try:
                    nvrtc.getLoweredName(prog, name)
                except nvrtc.NVRTCError:
                    missing.append(name)
            if not nvrtc.getCUBIN(prog):
                missing.append("(no cubin)")
    finally:
        nvrtc.destroyProgram(prog)
    ok = not failed and not missing and "warning" not in log.lower()
    output = log
    if missing:
        output += f"\nname expressions not instantiated: {missing}"
    if not ok:
        output = f"NVRTC options: {' '.join(options)}\n{output}"
    return Result("nvrtc", source, ok, output.strip())


def run(arch=DEFAULT_ARCH, use_nvcc=True, use_nvrtc=True, sources=None, kinds=("ptx", "cubin")):
    """Every requested compile of every source; -> (results, notes about compilers not found)."""
    sources = list(sources or _sources.KERNELS)
    results, notes = [], []
    nvcc = find_nvcc() if use_nvcc else None
    if use_nvcc and nvcc is None:
        notes.append("nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin): skipped")
    nvrtc = None
    if use_nvrtc:
        nvrtc, why = load_nvrtc()
        if nvrtc is None:
            notes.append(f"NVRTC not usable ({why}): skipped; pip install nvidia-cuda-nvrtc provides libnvrtc")
    for source in sources:
        if nvcc is not None:
            results += [check_nvcc(source, nvcc, arch, kind) for kind in kinds]
        if nvrtc is not None:
            results.append(check_nvrtc(source, nvrtc, arch))
    return results, notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minires.kernels.cuda.compile_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default=DEFAULT_ARCH, help="compute capability, e.g. 90 (default), 80, 120")
    parser.add_argument("--no-nvcc", action="store_true", help="skip nvcc")
    parser.add_argument("--no-nvrtc", action="store_true", help="skip NVRTC")
    parser.add_argument("--allow-none", action="store_true",
                        help="exit 0 even when no compiler is available")
    parser.add_argument("sources", nargs="*", help=f"sources to check (default: all of {list(_sources.KERNELS)})")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sources if s not in _sources.KERNELS]
    if unknown:
        parser.error(f"unknown sources {unknown}; known: {list(_sources.KERNELS)}")

    results, notes = run(args.arch, not args.no_nvcc, not args.no_nvrtc, args.sources)
    for note in notes:
        print(f"note: {note}")
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.compiler:10s} {r.source}"
              f"  ({len(_sources.KERNELS[r.source])} instantiations, sm_{args.arch})")
        if not r.ok:
            print("    " + r.output.replace("\n", "\n    "))
    if not results:
        print("no compiler available: nothing was compiled")
        return 0 if args.allow_none else 1
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} compiles ok, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
