"""The GPU session's scripts parse their arguments (cheap: no benchmark runs here, no GPU).

Their --smoke runs take minutes under the CUDA emulator, so they are checked by hand
(docs/gpu-session.md says how), not in the default suite.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")


def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("script, words", [
    ("graph_step.py", ["--repeats", "--batch", "--only", "--smoke", "--precision", "minires-graph",
                       "torch-compile"]),
    ("gpu_epoch.py", ["--data", "--epochs", "--only", "--smoke"]),
])
def test_help_parses(script, words):
    done = run(sys.executable, os.path.join(BENCH, script), "--help")
    assert done.returncode == 0, done.stderr
    for word in words:
        assert word in done.stdout


def test_bad_usage_exits_2():
    done = run(sys.executable, os.path.join(BENCH, "graph_step.py"), "--only", "no-such-variant")
    assert done.returncode == 2 and "invalid choice" in done.stderr
    done = run(sys.executable, os.path.join(BENCH, "gpu_epoch.py"))          # neither --data nor --smoke
    assert done.returncode == 2 and "--data is needed" in done.stderr
    done = run(sys.executable, os.path.join(BENCH, "gpu_epoch.py"), "--data", "/no/such/folder")
    assert done.returncode == 1 and "does not exist" in done.stderr


def test_gpu_session_script_usage():
    script = os.path.join(BENCH, "gpu_session.sh")
    assert run("bash", "-n", script).returncode == 0
    done = run("bash", script, "--part", "4")
    assert done.returncode == 2 and "--part must be 1, 2 or 3" in done.stderr
    done = run("bash", script, "--help")
    assert done.returncode == 0 and "--part 2" in done.stdout
