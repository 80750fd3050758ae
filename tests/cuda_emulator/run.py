"""Run minires's GPU tests on the CPU: CUDA kernels emulated, CuPy faked.

    python tests/cuda_emulator/run.py                 # self-test + the CI subset
    python tests/cuda_emulator/run.py --subset full   # every test marked gpu
    python tests/cuda_emulator/run.py --own-gemm      # + a pass with kernels.cuda.GEMM = 'own'
    python tests/cuda_emulator/run.py -- -k conv2d -x # extra pytest arguments after --

Builds the emulation libraries (g++ >= 12, C++20) into a temporary folder (or
--build DIR, reused while the .cu files are unchanged), runs selftest.py, then
pytest -m gpu with the fake cupy first on the path.  Exit status: nonzero if the
build, the self-test or any pytest pass failed.  See README.md for what it proves.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import gen  # noqa: E402

# Too slow under emulation for CI (they pass: ~200 s for the first; the second needs
# CUDA_EMU_MEMORY >= 14e9 and ~12 GB of RAM, else it skips itself).
SLOW = ["test_train_cli_runs_on_the_gpu", "test_columns_index_past_2_to_the_31"]
# With GEMM = 'own': the tests whose products go through kernels.cuda.matmul.
OWN_GEMM_K = "conv2d or resnet or matmul or gemm or training_step"


def up_to_date(build: Path, src: Path) -> bool:
    try:
        manifest = json.loads((build / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    sources = gen.load_sources(src)
    if set(manifest) != {name[:-3] for name in sources.KERNELS}:
        return False
    header = (HERE / "cuda_emu.h").stat().st_mtime
    for name in sources.KERNELS:
        entry = manifest[name[:-3]]
        lib = build / f"{name[:-3]}.so"
        if (not lib.exists() or lib.stat().st_mtime < header
                or entry["sha256"] != hashlib.sha256((src / name).read_bytes()).hexdigest()):
            return False
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subset", choices=("ci", "full"), default="ci",
                   help="ci: every gpu test but the slow ones (%s); full: all of them" % ", ".join(SLOW))
    p.add_argument("--own-gemm", action="store_true",
                   help="also run the GEMM-using tests with minires.kernels.cuda.GEMM = 'own'")
    p.add_argument("--build", type=Path, help="folder for the libraries (default: a temporary one)")
    p.add_argument("--no-selftest", action="store_true")
    p.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    a = p.parse_args(argv)

    src = ROOT / "kernels" / "cuda"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cuda-emu-") as tmp:
        build = a.build or Path(tmp) / "build"
        if a.build and up_to_date(build, src):
            print(f"cuda emulator: libraries in {build} are up to date")
        else:
            try:
                gen.build(build, src=src)
            except (RuntimeError, OSError) as e:
                print(f"cuda emulator: build failed: {e}", file=sys.stderr)
                return 2
            print(f"cuda emulator: built {build} in {time.perf_counter() - t0:.1f} s")

        env = dict(os.environ)
        env["CUDA_EMU_BUILD"] = str(build)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE / "fake"), str(HERE / "plugins")]
                                            + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        status = 0
        if not a.no_selftest:
            t = time.perf_counter()
            status = subprocess.run([sys.executable, str(HERE / "selftest.py")], env=env, cwd=ROOT).returncode
            print(f"cuda emulator: self-test {'passed' if status == 0 else 'FAILED'} "
                  f"({time.perf_counter() - t:.1f} s)")
            if status:
                return status

        base = [sys.executable, "-m", "pytest", "-m", "gpu", "tests", "-q", "-p", "no:cacheprovider"]
        deselect = [] if a.subset == "full" else ["-k", " and ".join(f"not {name}" for name in SLOW)]
        passes = [("cupy.matmul", base + deselect + a.pytest_args)]
        if a.own_gemm:
            k = f"({OWN_GEMM_K})" + ("" if a.subset == "full" else
                                    " and " + " and ".join(f"not {name}" for name in SLOW))
            passes.append(("GEMM = 'own'", base + ["-p", "cuda_emu_own_gemm", "-k", k] + a.pytest_args))
        for what, cmd in passes:
            t = time.perf_counter()
            print(f"cuda emulator: pytest ({what}): {' '.join(cmd[2:])}", flush=True)
            rc = subprocess.run(cmd, env=env, cwd=ROOT).returncode
            print(f"cuda emulator: pytest ({what}) {'passed' if rc == 0 else f'FAILED (exit {rc})'} "
                  f"in {time.perf_counter() - t:.1f} s", flush=True)
            status = status or rc
    print(f"cuda emulator: total {time.perf_counter() - t0:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
