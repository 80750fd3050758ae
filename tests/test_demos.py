"""The demos' measuring code, on tiny nets (the demos themselves run on real data)."""
import importlib.util
from pathlib import Path

import numpy as np

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
