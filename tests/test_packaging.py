"""The real wheel, built as `pip install .` builds it: every subpackage and kernel source is in
it, under the one top-level import name `minires`.

An editable install reads the source tree and hides a package missing from the wheel (it once
shipped without minires/ops/), so this test builds the wheel itself; `build` and a setuptools
with bdist_wheel come with the `test` extra, so it never skips.
"""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # From a clean copy: setuptools' build/ and *.egg-info of earlier builds would leak files
    # into the wheel that the package list no longer names.
    src = tmp_path_factory.mktemp("src") / "minires"
    skip_top = {".git", "build", "dist", "runs", "data"}
    shutil.copytree(ROOT, src, ignore=lambda folder, names: [
        n for n in names if n == "__pycache__" or n.endswith(".egg-info") or n.startswith(".venv")
        or (Path(folder) == ROOT and n in skip_top)])
    out = tmp_path_factory.mktemp("wheel")
    # --no-isolation: the venv's own setuptools (the test extra), no download, a few seconds.
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                           "--outdir", str(out), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, f"building the wheel failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    (wheel,) = out.glob("minires-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel_files(wheel):
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def _sources(folder, patterns):
    return sorted(p.relative_to(folder).as_posix() for pattern in patterns for p in folder.rglob(pattern)
                  if "__pycache__" not in p.parts)


def test_every_minires_module_is_in_the_wheel(wheel_files):
    expected = [f"minires/{p}" for p in _sources(ROOT / "minires", ["*.py"])]
    assert "minires/ops/__init__.py" in expected and "minires/data/__init__.py" in expected
    missing = [p for p in expected if p not in wheel_files]
    assert not missing, f"the wheel lacks {missing}"


def test_every_kernel_source_installs_inside_minires(wheel_files):
    expected = [f"minires/kernels/{p}" for p in _sources(ROOT / "kernels", ["*.py", "*.cu"])]
    assert "minires/kernels/cuda/columns.cu" in expected and "minires/kernels/cpu/__init__.py" in expected
    missing = [p for p in expected if p not in wheel_files]
    assert not missing, f"the wheel lacks {missing}"
    assert not any(n.startswith("kernels/") for n in wheel_files)


def test_only_minires_is_a_top_level_name(wheel_files):
    tops = {name.split("/")[0] for name in wheel_files if not name.startswith("minires-")}
    assert tops == {"minires"}, f"unexpected top-level entries: {tops - {'minires'}}"
    (top_level,) = [n for n in wheel_files if n.endswith("top_level.txt")] or [None]
    assert top_level is None or top_level.startswith("minires-")


def test_console_script_is_declared(wheel, wheel_files):
    (entry_points,) = [n for n in wheel_files if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(wheel) as z:
        text = z.read(entry_points).decode()
    assert "minires = minires.cli:main" in text, text


def test_the_pretrained_weights_license_notice_is_in_the_wheel(wheel_files):
    assert "minires/LICENSE-akamaster" in wheel_files and "minires/hub.py" in wheel_files
