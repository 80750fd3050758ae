"""The demos' measuring code on tiny nets, and the demos as commands (their data, their errors)."""
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_data import SHARED_DATA, SHARED_DATA_ALL

import minires as mr
from minires.checkpoint import save_checkpoint

DEMOS = Path(__file__).resolve().parents[1] / "demos"


def load(name):
    if str(DEMOS) not in sys.path:                     # the demos import their _common helpers
        sys.path.insert(0, str(DEMOS))
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
def run_script(name, *args, cwd):
    env = {**os.environ, "PYTHONPATH": str(DEMOS.parent)}
    return subprocess.run([sys.executable, str(DEMOS / f"{name}.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def run_demo(*args, cwd):
    return run_script("gradient_flow", *args, cwd=cwd)


def test_gradient_flow_without_its_data_is_one_line_like_the_cli(tmp_path):
    done = run_demo("--data-dir", tmp_path / "missing", "--no-download", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradient_flow.py: error: CIFAR-10 not found"), done.stderr
    assert "--data-dir" in lines[0] and "--no-download" in lines[0]
    assert "download=True" not in lines[0] and "root=" not in lines[0]
    assert not (tmp_path / "missing").exists()


# ------------------------------------------------------------------ gradient_flow, ode_view, identity
SUBSET = SHARED_DATA / "cifar-10-subset-python.tar.gz"
needs_subset = pytest.mark.skipif(not SUBSET.is_file(), reason=f"CIFAR-10 subset not found in {SHARED_DATA}")


def numbers(line):
    """The numbers in a printed line, in order (nan and inf included)."""
    return [float(t) for t in re.findall(r"-?(?:\d+\.?\d*(?:e[+-]?\d+)?|nan|inf)", line)]


def run_smoke(name, tmp_path, capsys, *extra):
    """Run the demo's --smoke preset in this process; its printed lines."""
    out = tmp_path / f"{name}.png"
    assert load(name).main(["--smoke", *extra, "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    return capsys.readouterr().out.splitlines()


def checkpoint_of(model, path, step=5):
    """A checkpoint as minires train writes it, as far as the demos read one."""
    save_checkpoint(path, {f"model/{k}": v for k, v in model.state_dict().items()},
                    {"model_config": model.config, "step": step, "config": {"dataset": "cifar10"}})
    return str(path)


@needs_subset
def test_gradient_flow_smoke(tmp_path, capsys):
    mr.manual_seed(3)
    lines = run_smoke("gradient_flow", tmp_path, capsys, "--data-dir", str(SUBSET), "--checkpoint",
                  checkpoint_of(mr.models.plain_cifar(14), tmp_path / "ckpt.npz", step=7))
    rows = [line for line in lines if "gradient at block 1 / at block 3" in line]
    assert [r.split()[0] for r in rows] == ["plain-8", "ResNet-8,", "ResNet-8,", "ResNet-8,"]
    for row in rows:
        ratios = numbers(row.split("at init")[1])
        assert len(ratios) >= 2 and all(np.isfinite(ratios[:2])) and ratios[0] > 0, row
    measured = [line for line in lines if line.startswith("plain_cifar depth 14, minires train, 7 iterations")]
    assert len(measured) == 1 and "at block 6:" in measured[0], lines   # its own depth, 14


def test_gradient_flow_refuses_a_damaged_checkpoint_in_one_line(tmp_path, capsys):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert load("gradient_flow").main(["--smoke", "--checkpoint", str(tmp_path / "bad.npz"),
                                       "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("gradient_flow.py: error: ") and "bad.npz" in err[0], err


def test_gradient_flow_a_doubled_shortcut_explodes_the_gradient_reaching_the_input(rng):
    # h(x) = 2x: the shortcut path carries 2^(L-l) to block l; at init it dominates the branches
    demo = load("gradient_flow")
    x = rng.standard_normal((8, 3, 8, 8)).astype(np.float32)
    y = np.arange(8) % 10
    ratios = []
    for lam in (1.0, 2.0):
        mr.manual_seed(0)
        norms = demo.block_gradient_norms(mr.models.scaled_resnet_cifar(14, scale=lam),
                                          mr.tensor(x, requires_grad=True), y)
        ratios.append(norms[0] / norms[-1])
    assert ratios[1] > 4 * ratios[0], ratios


def test_ode_view_smoke_converges_at_first_order(tmp_path, capsys):
    lines = run_smoke("ode_view", tmp_path, capsys)
    table = lines[lines.index(next(l for l in lines if l.lstrip().startswith("blocks L"))) + 1:][:3]
    rows = [numbers(line.replace("%", "")) for line in table]
    assert [int(r[0]) for r in rows] == [2, 4, 8] and all(np.isfinite(v) for r in rows for v in r)
    assert 1.5 < rows[-1][-1] < 2.5, table                 # halving Δt halves the distance to the flow
    stability = [numbers(l.split(":", 1)[1]) for l in lines if l.lstrip().startswith("Δt")]
    assert len(stability) == 5 and all(len(r) == 4 for r in stability)
    assert all(abs(v - 1) < 0.05 for v in stability[0])     # Δt = 0.01: nothing grows
    assert stability[-1][0] > stability[0][0]


@needs_subset
def test_identity_smoke_a_grown_resnet_keeps_its_function(tmp_path, capsys):
    mr.manual_seed(5)
    resnet = mr.models.resnet_cifar(8)
    for m in resnet.modules():                        # statistics unlike a fresh net's
        if isinstance(m, mr.nn.BatchNorm2d):
            m.running_var.data[...] = 2.0
    lines = run_smoke("identity", tmp_path, capsys, "--data-dir", str(SUBSET),
                  "--checkpoint", checkpoint_of(resnet, tmp_path / "r.npz"))
    assert "ResNet: grown from resnet_cifar depth 8, minires train, 5 iterations on cifar10, " \
           "not trained here" in lines
    fits = [l for l in lines if l.startswith("fit y = x")]
    assert len(fits) == 2 and all(np.isfinite(numbers(l.split(":", 1)[1])).all() for l in fits)
    grown = {l.split()[0]: l for l in lines if "max |logit difference|" in l}
    assert set(grown) == {"ResNet-8", "plain-8"}
    assert numbers(grown["ResNet-8"].split("images")[1])[0] == 0        # exactly the same logits
    assert numbers(grown["plain-8"].split("images")[1])[0] > 1e-2
    errors = {k: numbers(l.split("test error")[1])[:3] for k, l in grown.items()}
    assert errors["ResNet-8"][0] == errors["ResNet-8"][1]             # shallow == grown
    assert all(0 <= e <= 100 for e in errors["plain-8"])


PUBLISHED_56 = SHARED_DATA_ALL.parent / "models" / "resnet56-4bfd9763.npz"


PUBLISHED_20 = SHARED_DATA_ALL.parent / "models" / "resnet20-12fca82f.npz"


@needs_subset
@pytest.mark.skipif(not PUBLISHED_20.is_file(), reason=f"{PUBLISHED_20} not found")
def test_gradient_flow_measures_the_published_weights(tmp_path, capsys):
    lines = run_smoke("gradient_flow", tmp_path, capsys, "--data-dir", str(SUBSET), "--depth", "20",
                      "--steps", "1", "--pretrained", str(PUBLISHED_20))
    published = [l for l in lines if l.startswith("ResNet-20, published weights")]
    assert len(published) == 1 and "at block 9: after 200 epochs" in published[0], lines
    ratio = numbers(published[0].split("epochs")[1])[0]
    assert np.isfinite(ratio) and ratio > 0


@pytest.mark.skipif(not PUBLISHED_56.is_file(), reason=f"{PUBLISHED_56} not found")
def test_gradient_flow_refuses_published_weights_of_another_depth_before_any_work(tmp_path, capsys):
    demo = load("gradient_flow")
    missing = tmp_path / "data"                       # the weights are checked before the data
    for weights, says in ((PUBLISHED_56, "not the weights of a ResNet-8"),
                          (tmp_path / "no.npz", "no such file")):
        assert demo.main(["--smoke", "--data-dir", str(missing), "--pretrained", str(weights)]) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and says in err[0]
        assert err[0].startswith("gradient_flow.py: error: --pretrained ")


def test_identity_refuses_a_checkpoint_deeper_than_deep(tmp_path, capsys):
    path = checkpoint_of(mr.models.plain_cifar(20), tmp_path / "p.npz")
    assert load("identity").main(["--smoke", "--checkpoint", path, "--data-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (f"identity.py: error: --checkpoint {path}: its plain_cifar "
                                       f"depth 20 is deeper than --deep 14; give a --deep of at least 20\n")


def test_demos_share_the_size_flags(capsys):
    for name in ("gradient_flow", "ode_view", "identity"):
        with pytest.raises(SystemExit):
            load(name).parse_args(["--smoke", "--quick"])
        assert "not allowed with argument" in capsys.readouterr().err
        assert load(name).parse_args([]).size == "full"
        with pytest.raises(SystemExit):
            load(name).parse_args(["--steps", "0"])
        assert "argument --steps: must be >= 1, got 0" in capsys.readouterr().err


def test_an_option_given_wins_over_the_preset():
    demo = load("gradient_flow")
    common = load("_common")
    chosen = common.preset(demo.PRESETS, demo.parse_args(["--smoke", "--depth", "14"]))
    assert (chosen.depth, chosen.batch, chosen.steps) == (14, 4, 2)       # the rest: smoke's
    assert common.preset(demo.PRESETS, demo.parse_args(["--quick"])).depth == 20
    assert str(common.out_path(demo.parse_args(["--quick"]), "gradient_flow")) == "gradient_flow-quick.png"


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


def smoke(name, out, plain_run, *more):
    env = {**os.environ, "PYTHONPATH": str(DEMOS.parent)}
    done = subprocess.run([sys.executable, str(DEMOS / f"{name}.py"), "--smoke", "--device", "cpu",
                           "--data-dir", SUBSET, "--weights-dir", SHARED_MODELS,
                           "--plain-run", plain_run, "--out", out, *map(str, more)],
                          capture_output=True, text=True, cwd=out.parent, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0 and "wrote" in done.stdout
    return json.loads(out.with_suffix(".json").read_text()), done.stdout


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
    # the paths (Veit et al. Fig. 6): C(9, k) of the 2^9 have length k, each carries a finite gradient
    paths = results["paths"]
    assert paths["length"] == list(range(10)) and paths["paths"] == [math.comb(9, k) for k in range(10)]
    assert all(math.isfinite(g) and g > 0 for g in paths["per_path"])
    lo, hi = paths["effective"]
    assert 0 <= lo <= hi <= 9 and sum(paths["total"][lo:hi + 1]) >= 0.9 * sum(paths["total"])
    # --reuse: the deletions read back from that .json, the paths measured again, no plain net
    again, stdout = smoke("lesion", tmp_path / "again.png", tmp_path / "no-plain-here",
                          "--reuse", tmp_path / "lesion.json")
    assert again["nets"] == results["nets"] and again["paths"]["paths"] == paths["paths"]
    assert "read from" in stdout and not (tmp_path / "no-plain-here").exists()


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
