"""The demos' measuring code on tiny nets, and the demos as commands (their data, their errors)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_data import SHARED_DATA

import minires as mr

DEMOS = Path(__file__).resolve().parents[1] / "demos"


def load(name):
    spec = importlib.util.spec_from_file_location(name, DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gradient_flow_measures_every_block_input():
    demo = load("gradient_flow")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    mr.manual_seed(0)
    model = mr.models.resnet_cifar(14)                 # 2 blocks per stage
    norms = demo.block_gradient_norms(model, mr.tensor(x, requires_grad=True), y)
    assert len(norms) == 6 and all(np.isfinite(norms)) and all(n > 0 for n in norms)
    # the last block's input gradient equals what a direct hook on it sees
    seen = {}

    def watch(module, inputs, output):                 # returns None: the output is kept
        inputs[0].register_hook(lambda g: seen.setdefault("g", g.numpy().copy()))
    model.layer3[1].register_forward_hook(watch)
    model.zero_grad()
    demo.block_gradient_norms(model, mr.tensor(x, requires_grad=True), y)
    assert np.isclose(np.linalg.norm(seen["g"]), norms[-1], rtol=1e-5)


# ------------------------------------------------------------------ the demo as a command
def run_demo(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(DEMOS.parent)}
    return subprocess.run([sys.executable, str(DEMOS / "gradient_flow.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_gradient_flow_without_its_data_is_one_line_like_the_cli(tmp_path):
    done = run_demo("--data-dir", tmp_path / "missing", "--no-download", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradient_flow.py: error: CIFAR-10 not found"), done.stderr
    assert "--data-dir" in lines[0] and "--no-download" in lines[0]
    assert "download=True" not in lines[0] and "root=" not in lines[0]
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(not (SHARED_DATA / "cifar-10-subset-python.tar.gz").is_file(),
                    reason=f"CIFAR-10 subset not found in {SHARED_DATA}")
def test_gradient_flow_runs_on_the_shared_data(tmp_path):
    done = run_demo("--data-dir", SHARED_DATA, "--depth", 8, "--batch", 4, "--out", tmp_path / "g.png",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "plain-8: gradient norm" in done.stdout and "ResNet-8: gradient norm" in done.stdout
    assert (tmp_path / "g.png").stat().st_size > 0
