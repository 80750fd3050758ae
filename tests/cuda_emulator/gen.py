"""Build one emulation library per CUDA source of minires: ``<stem>.so`` in the output folder.

    python gen.py OUT_DIR [--src KERNELS_CUDA_DIR] [--sanitize address] [--ucontext] [-j N]

Each library compiles the .cu file as C++ (cuda_emu.h supplies the CUDA
vocabulary) with every name expression of ``_sources.KERNELS`` instantiated, and
exports a small C interface for the fake cupy's RawModule:

    int emu_count(); const char* emu_name(int); const char* emu_sig(int);
    int emu_launch(int i, unsigned gx, gy, gz, bx, void** args);   // 0 or 1 (error)
    const char* emu_error();                                        // the last error

and writes manifest.json: {stem: {"source": path of the .cu, "sha256": of its text}}.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SRC = HERE.parents[1] / "kernels" / "cuda"          # <repo>/tests/cuda_emulator -> <repo>/kernels/cuda
STATIC_SHARED_LIMIT = 48 * 1024     # bytes of static __shared__ memory per block (every GPU since Fermi)


def load_sources(src: Path):
    """kernels/cuda/_sources.py as a module (plain Python: no cupy, no minires import needed)."""
    spec = importlib.util.spec_from_file_location("_minires_cuda_sources", src / "_sources.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wrapper(header: Path, cu: Path, names) -> str:
    lines = [f'#include "{header}"', f'#include "{cu}"', "static Entry entries[] = {"]
    lines += [f'    make_entry<&{n}>("{n}"),' for n in names]
    lines += [
        "};",
        "static thread_local std::string last_error;",
        '#define EMU_API extern "C" __attribute__((visibility("default")))',
        'EMU_API int emu_count() { return sizeof(entries) / sizeof(entries[0]); }',
        'EMU_API const char* emu_name(int i) { return entries[i].name; }',
        'EMU_API const char* emu_sig(int i) { return entries[i].sig.c_str(); }',
        'EMU_API const char* emu_error() { return last_error.c_str(); }',
        "// the __shared__ variables, as offsets from the library's load address (gen.py: nm)",
        'EMU_API void emu_set_shared(const unsigned long long* offset_size, int n) {',
        "    Dl_info info;",
        "    if (!dladdr((void*)&emu_set_shared, &info)) return;",
        "    emu::shared_regions.clear();",
        "    for (int i = 0; i < n; ++i)",
        "        emu::shared_regions.emplace_back((char*)info.dli_fbase + offset_size[2 * i], (size_t)offset_size[2 * i + 1]);",
        "}",
        'EMU_API int emu_launch(int i, unsigned gx, unsigned gy, unsigned gz, unsigned bx, void** args) {',
        "    try { entries[i].run(dim3{gx, gy, gz}, dim3{bx, 1, 1}, args); return 0; }",
        "    catch (const std::exception& e) { last_error = e.what(); return 1; }",
        '    catch (...) { last_error = "unknown error"; return 1; }',
        "}",
        "",
    ]
    return "\n".join(lines)


def _bss_range(lib: Path):
    """(start, end) of the library's .bss section (objdump -h)."""
    r = subprocess.run(["objdump", "-h", str(lib)], capture_output=True, text=True, check=True)
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) >= 4 and f[1] == ".bss":
            start = int(f[3], 16)
            return start, start + int(f[2], 16)
    return 0, 0


def shared_variables(lib: Path):
    """[[offset, bytes, name], ...]: the function-local statics of the kernel code in .bss,
    i.e. its __shared__ variables (CUDA device code has no other statics).  Statics of the
    C++ library and of the emulator itself are left out."""
    lo, hi = _bss_range(lib)
    r = subprocess.run(["nm", "-S", "--defined-only", str(lib)], capture_output=True, text=True, check=True)
    mangled = []
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) == 4 and f[3].startswith("_ZZ") and f[2] in "bBuV" and lo <= int(f[0], 16) < hi:
            mangled.append((int(f[0], 16), int(f[1], 16), f[3]))
    names = subprocess.run(["c++filt"], input="\n".join(m[2] for m in mangled), capture_output=True,
                           text=True, check=True).stdout.splitlines() if mangled else []
    return [[off, size, name] for (off, size, _), name in zip(mangled, names)
            if not name.startswith(("std::", "__gnu", "emu::", "__cxx"))]


def build(out: Path, src: Path = DEFAULT_SRC, sanitize: str = "", ucontext: bool = False, jobs: int = 0,
          cxx: str | None = None, opt: str = "-O1", verbose: bool = True) -> list[Path]:
    """Compile every .cu of ``src`` into ``out``; returns the libraries.  Raises on a compile error."""
    cxx = cxx or os.environ.get("CXX") or shutil.which("g++") or "c++"
    out.mkdir(parents=True, exist_ok=True)
    sources = load_sources(src)
    header = HERE / "cuda_emu.h"

    def one(item):
        name, names = item
        stem = name[:-3]
        cpp = out / f"{stem}.cpp"
        cpp.write_text(wrapper(header, (src / name).resolve(), names))
        lib = out / f"{stem}.so"
        # hidden visibility, no GNU-unique symbols: each library keeps its own emulator state
        # and __shared__ variables, whatever else is loaded into the process
        cmd = [cxx, "-std=c++20", opt, "-g", "-fPIC", "-shared", "-fvisibility=hidden",
               "-fvisibility-inlines-hidden", "-fno-gnu-unique", "-Wall", "-Wno-unknown-pragmas",
               "-Wno-unused-function", "-o", str(lib), str(cpp)]
        if ucontext:
            cmd.insert(1, "-DEMU_UCONTEXT")
        if sanitize:
            cmd[1:1] = ["-fsanitize=" + sanitize, "-fno-omit-frame-pointer", "-DEMU_UCONTEXT"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"building {name} failed:\n{' '.join(cmd)}\n{r.stderr}")
        if verbose and r.stderr.strip():
            print(f"{name}: warnings:\n{r.stderr}", file=sys.stderr)
        return lib, shared_variables(lib)

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        built = list(pool.map(one, sources.KERNELS.items()))
    libs = [lib for lib, _ in built]
    for (name, _), (_, shared) in zip(sources.KERNELS.items(), built):
        per_function = {}
        for _, size, var in shared:
            function = var.rsplit("::", 1)[0]
            per_function[function] = per_function.get(function, 0) + size
        for function, size in per_function.items():
            if size > STATIC_SHARED_LIMIT:
                raise RuntimeError(f"{name}: {function} declares {size} bytes of __shared__ memory, more than "
                                   f"the {STATIC_SHARED_LIMIT} bytes CUDA allows statically")
    # what the fake cupy's RawModule matches the source text it is given against
    manifest = {name[:-3]: {"source": str((src / name).resolve()),
                            "sha256": hashlib.sha256((src / name).read_bytes()).hexdigest(),
                            "shared": shared}
                for name, (_, shared) in zip(sources.KERNELS, built)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return libs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--src", type=Path, default=DEFAULT_SRC, help="the folder of the .cu files and _sources.py")
    p.add_argument("--sanitize", default="", help="e.g. address or undefined (uses ucontext fibers)")
    p.add_argument("--ucontext", action="store_true", help="ucontext fibers instead of the x86-64 switch")
    p.add_argument("-j", "--jobs", type=int, default=0)
    p.add_argument("--opt", default="-O1")
    a = p.parse_args(argv)
    for lib in build(a.out, a.src, a.sanitize, a.ucontext, a.jobs, opt=a.opt):
        print(lib)


if __name__ == "__main__":
    main()
