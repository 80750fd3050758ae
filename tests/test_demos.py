"""The demos' measuring code on tiny nets, and the demos as commands (their data, their errors)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_data import SHARED_DATA, SHARED_DATA_ALL

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


# ------------------------------------------------------------------ lesion.py and loss_landscape.py
SHARED_MODELS = SHARED_DATA_ALL.parent / "models"
SUBSET = SHARED_DATA / "cifar-10-subset-python.tar.gz"
needs_weights_and_subset = pytest.mark.skipif(
    not (SHARED_MODELS / "resnet20-12fca82f.npz").is_file() or not SUBSET.is_file(),
    reason=f"needs the converted weights in {SHARED_MODELS} and the CIFAR-10 subset")


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """One plain-20 smoke run folder that both demos' smoke runs share (the second loads it)."""
    return tmp_path_factory.mktemp("plain") / "plain20"


def smoke(name, out, plain_run):
    env = {**os.environ, "PYTHONPATH": str(DEMOS.parent)}
    done = subprocess.run([sys.executable, str(DEMOS / f"{name}.py"), "--smoke", "--device", "cpu",
                           "--data-dir", SUBSET, "--weights-dir", SHARED_MODELS,
                           "--plain-run", plain_run, "--out", out],
                          capture_output=True, text=True, cwd=out.parent, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0 and "wrote" in done.stdout
    return json.loads(out.with_suffix(".json").read_text()), done.stdout


@pytest.mark.slow                       # a smoke run: 10-25 s on the 2 shared cores
@needs_weights_and_subset
def test_lesion_smoke_run_deleting_a_resnet_block_hurts_far_less_than_a_plain_one(tmp_path, plain_run):
    results, stdout = smoke("lesion", tmp_path / "lesion.png", plain_run)
    assert results["blocks"] == [f"layer{s}.{i}" for s in (1, 2, 3) for i in range(3)]
    resnet, plain = results["nets"]["ResNet-20"], results["nets"]["plain-20"]
    for r in (resnet, plain):
        assert len(r["single_deletion"]) == 9 and r["random_deletion"]["k"] == [1, 2]
        assert list(r["swap"]) == ["layer1.1", "layer2.1", "layer3.1"]
        values = [r["error"], *r["single_deletion"], *r["random_deletion"]["mean"], *r["swap"].values()]
        assert all(0 <= v <= 1 for v in values)
    assert resnet["error"] < 0.25                               # the published weights, intact
    # Veit et al.: the ResNet survives most single deletions (chance is 90 % error)
    assert np.median(resnet["single_deletion"]) < 0.5
    assert np.mean(resnet["single_deletion"]) < np.mean(plain["single_deletion"])
    assert "ResNet-20 (published weights resnet20-12fca82f" in stdout


@pytest.mark.slow
@needs_weights_and_subset
def test_loss_landscape_smoke_run_is_the_models_own_loss_at_the_origin(tmp_path, plain_run):
    results, _ = smoke("loss_landscape", tmp_path / "ll.png", plain_run)
    assert results["line"] == [-1.0, -0.5, 0.0, 0.5, 1.0] and results["axis"] == [-1.0, 0.0, 1.0]
    for r in results["nets"].values():
        surface = np.array(r["surface"])
        assert len(r["line_loss"]) == 5 and surface.shape == (3, 3)
        assert np.isfinite(surface).all() and np.isfinite(r["line_loss"]).all()
        # no step from θ: the model's own loss, on the line and on the grid
        assert np.isclose(r["line_loss"][2], r["loss"], rtol=1e-5)
        assert np.isclose(surface[1, 1], r["loss"], rtol=1e-5)
        assert r["grid_local_minima"] >= 1
    assert results["nets"]["ResNet-20"]["loss"] < 0.5            # the published weights fit their data


def test_filter_normalized_directions_match_each_filter_and_skip_bn_and_biases(monkeypatch):
    monkeypatch.syspath_prepend(str(DEMOS))
    demo = load("loss_landscape")
    mr.manual_seed(0)
    model = mr.models.resnet_cifar(8)
    d = demo.filter_normalized_direction(model, np.random.default_rng(0))
    for name, p in model.named_parameters():
        w = p.data
        if w.ndim == 1:
            assert not d[name].any(), name                         # BN scale/shift, linear bias
        else:
            axes = tuple(range(1, w.ndim))
            assert np.allclose(np.sqrt((d[name] ** 2).sum(axes)), np.sqrt((w ** 2).sum(axes)), rtol=1e-4)
    before = model.state_dict()
    x = np.random.default_rng(1).integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    loader = mr.data.DataLoader((x, np.arange(4)), 4)
    losses = demo.loss_surface(model, loader, [d], [(-1.0,), (0.0,), (0.5,)])
    assert losses.shape == (3,) and losses[0] != losses[1]
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())   # weights restored


@pytest.mark.parametrize("name", ["lesion", "loss_landscape"])
def test_lesion_and_loss_landscape_without_their_data_are_one_line(tmp_path, name):
    env = {**os.environ, "PYTHONPATH": str(DEMOS.parent)}
    done = subprocess.run([sys.executable, str(DEMOS / f"{name}.py"), "--smoke", "--data-dir",
                           tmp_path / "missing", "--no-download"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{name}.py: error: CIFAR-10 not found") and "--data-dir" in lines[0]
