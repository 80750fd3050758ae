"""demos/gradient_split.py: the two terms of each block's input gradient, on a tiny ResNet."""
import importlib.util
from pathlib import Path

import numpy as np

import minires as mr

DEMO = Path(__file__).resolve().parents[1] / "demos" / "gradient_split.py"


def load():
    spec = importlib.util.spec_from_file_location("gradient_split", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_split_terms_add_up_to_the_hooked_gradient():
    demo = load()
    rng = np.random.default_rng(0)
    x = mr.tensor(rng.standard_normal((4, 3, 8, 8)))
    y = mr.tensor(np.array([0, 1, 2, 3]))
    mr.manual_seed(0)
    model = mr.models.resnet_cifar(14).double()                # 2 blocks per stage
    rows = demo.gradient_split(model, x, y)
    assert [r["stage"] for r in rows] == [1, 1, 2, 2, 3, 3]
    for r in rows:
        assert np.isclose(r["trace_total"], r["total"], rtol=1e-12)
        # two vectors whose sum has norm `total`: the triangle inequality bounds it
        assert abs(r["shortcut"] - r["branch"]) <= r["total"] * (1 + 1e-12) <= \
            (r["shortcut"] + r["branch"]) * (1 + 1e-12)
    # the identity shortcut passes the gradient at the block's add through unchanged
    seen = {}
    last = model.layer3[1]

    def keep(g):                                              # returns None: g is passed on
        seen["add"] = np.linalg.norm(g.numpy())

    def watch(module, inputs, out):                           # out = relu(add): hook the add
        out._parents[0].register_hook(keep)
    last.register_forward_hook(watch)
    rows = demo.gradient_split(model, x, y)
    assert np.isclose(rows[-1]["shortcut"], seen["add"], rtol=1e-12)


def test_plot_writes_a_png(tmp_path):
    rows = [{"block": k, "stage": 1 + k // 3, "total": 1.0 / k, "shortcut": 0.8 / k, "branch": 0.5 / k}
            for k in range(1, 7)]
    load().plot(rows, tmp_path / "split.png", "test")
    assert (tmp_path / "split.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
