"""The built wheel: one top-level import name (minires), kernels inside it, CUDA sources shipped."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(out)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"could not build a wheel here: {done.stderr.strip()[-300:]}")
    (wheel,) = out.glob("minires-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


def test_only_minires_is_a_top_level_name(wheel_files):
    tops = {name.split("/")[0] for name in wheel_files if not name.startswith("minires-")}
    assert tops == {"minires"}, f"unexpected top-level entries: {tops - {'minires'}}"
    top_level = [n for n in wheel_files if n.endswith("top_level.txt")]
    assert not top_level or all("kernels" not in n for n in top_level)


def test_kernels_install_inside_minires(wheel_files):
    for path in ("minires/kernels/__init__.py", "minires/kernels/cpu/columns.py",
                 "minires/kernels/cuda/__init__.py", "minires/kernels/cuda/columns.cu",
                 "minires/kernels/cuda/gemm.cu"):
        assert path in wheel_files, path
    assert not any(n.startswith("kernels/") for n in wheel_files)
