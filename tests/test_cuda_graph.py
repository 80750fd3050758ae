"""CUDA-graph mode (minires/cuda_graph.py, ``minires train --graph``).

The ``gpu`` tests need CuPy and a device; in CI they run in the CUDA emulator, whose
fake CuPy records a capture and runs it only at each Graph.launch() (results
allocated during capture are garbage until then), refuses host reads, cuBLAS and
cuRAND during capture, and refuses to launch a graph whose memory went back to the
default pool.  Graph mode and eager mode use the same kernels here (eager with
kernels.cuda.GEMM = 'own', as the captured step), so they must agree to the bit.
The rest runs everywhere: the CPU refusal and the resume rule.
"""
import json

import numpy as np
import pytest

import minires as mr
from minires import cli, cuda_graph, data, optim
from minires import train as train_mod
from minires.models.cifar import resnet_cifar
from minires.nn import functional as F
from minires.run_folder import resume_settings

gpu = pytest.mark.gpu

# A tiny problem so that the emulator runs it in seconds: ResNet-8 on 4x4 images,
# batches of 4 from 10 images (so each epoch ends with a short batch of 2).
RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (10, 3, 4, 4), dtype=np.uint8)
LABELS = RNG.integers(0, 10, 10)
BATCH = 4


def _cupy():
    return pytest.importorskip("cupy")


def _setup(milestone=3):
    mr.manual_seed(0)
    model = resnet_cifar(8).to("cuda")
    loader = data.DataLoader((IMAGES, LABELS), BATCH, shuffle=True, seed=0, augment=True, device="cuda")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return model, loader, opt, optim.MultiStepLR(opt, [milestone], 0.1)


def _eager(epochs, monkeypatch):
    """Losses and final state of eager steps with the graph's GEMM kernel."""
    from minires.kernels import cuda as K
    monkeypatch.setattr(K, "GEMM", "own")
    model, loader, opt, sched = _setup()
    losses = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.data))
    monkeypatch.undo()
    return losses, model.state_dict()


@gpu
def test_graph_mode_equals_eager_mode_bit_for_bit(monkeypatch):
    """Two epochs: warm-up, capture, replays, the short tail batch eagerly, the lr milestone
    at iteration 3 (the rate is read from the device: a baked-in 0.1 would differ)."""
    cp = _cupy()
    eager_losses, eager_state = _eager(2, monkeypatch)
    model, loader, opt, sched = _setup()
    tg = cuda_graph.TrainingGraph(model, opt, loader)
    losses, step = [], 0
    for epoch in range(2):
        tg.start_epoch(epoch, 0, step)
        for b in range(len(loader)):
            batch = min(BATCH, len(IMAGES) - b * BATCH)
            tg.step(batch)
            sched.step()
            step += 1
            loss_sum, wrong, bad = tg.read()
            losses.append(loss_sum / batch)
            assert bad == -1 and 0 <= wrong <= batch
    assert tg.graph.captured and tg.graph.calls == 4          # 1 warm-up + capture/launch + 2 launches
    # the buffers the kernel wrappers cache (made at the warm-up, used by the graph) are held
    from minires.kernels.cuda import _launch, sgd
    held = {id(x) for x in tg.graph._held}
    assert _launch._workspaces and sgd._sgd_tables
    assert all(id(v) in held for v in (*_launch._workspaces.values(), *sgd._sgd_tables.values()))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)     # the milestone passed
    assert losses == eager_losses
    state = model.state_dict()
    assert any("running_mean" in k for k in state)
    for k, v in eager_state.items():                           # weights and BN running stats
        assert np.array_equal(state[k], v), k
    assert cp.cuda.get_current_stream().ptr == 0               # the capture stream is left


@gpu
def test_non_finite_flag_names_the_iteration():
    cp = _cupy()
    model, loader, opt, sched = _setup()
    tg = cuda_graph.TrainingGraph(model, opt, loader)
    tg.start_epoch(0, 0, 7)                    # resumed at iteration 7
    tg.step(BATCH)                             # warm-up (eager), iteration 7
    tg.step(BATCH)                             # captured and launched, iteration 8
    assert tg.read()[2] == -1
    w = next(iter(model.parameters()))
    w.data[...] = cp.nan                       # in place: the graph reads the same memory
    tg.start_epoch(1, 0, 9)
    tg.step(BATCH)                             # iteration 9: NaN
    tg.step(BATCH)
    loss_sum, wrong, bad = tg.read()
    assert bad == 9 and np.isnan(loss_sum)
    assert tg.read()[2] == 9                   # the flag stays up; only the sums reset


@gpu
def test_what_cannot_be_captured_is_a_clear_error():
    cp = _cupy()
    from minires.kernels import cuda as K
    K.load_all()
    x = mr.tensor(np.ones((2, 3), np.float32), device="cuda")
    lin = mr.nn.Linear(3, 2).to("cuda")

    def host_read():
        return (lin(x).sum() * 2).item()

    def host_copy():
        return lin(x).data + cp.asarray(np.ones(2, np.float32))

    def with_hook():
        return lin(x).data

    cases = [(host_read, "own", "read a device value on the host"),
             (lambda: lin(x).data, "keep", "cuBLAS"),
             (lambda: cp.random.rand(3), "own", "random numbers")]      # cuRAND's setStream refuses
    if cp.__version__.endswith("emulated"):
        # the emulator refuses host-to-device copies in capture (stricter than CuPy, which may
        # capture a copy from a staging buffer it reuses)
        cases.append((host_copy, "own", "copies host data to the device"))
    for step, gemm, words in cases:
        g = cuda_graph.graphed(step, gemm=gemm)
        g()                                                    # the eager warm-up is fine
        with pytest.raises(cuda_graph.CaptureError, match=words):
            g()
    handle = lin.register_forward_hook(lambda m, i, o: None)
    g = cuda_graph.graphed(with_hook)
    g()
    with pytest.raises(cuda_graph.CaptureError, match="forward hook on Linear"):
        g()
    handle.remove()
    t = mr.tensor(np.ones(3, np.float32), device="cuda", requires_grad=True)

    def backward_with_hook():
        y = t * 2
        y.register_hook(lambda g: g)
        y.sum().backward()
    g = cuda_graph.graphed(backward_with_hook)
    g()
    with pytest.raises(cuda_graph.CaptureError, match="tensor hook"):
        g()
    with pytest.raises(ValueError, match="warmup"):
        cuda_graph.graphed(with_hook, warmup=0)


@gpu
def test_graphed_replays_and_keeps_its_memory():
    cp = _cupy()
    a = cp.arange(4, dtype=np.float32)

    def step():
        t = a * 2                      # a temporary: lives in the graph's private pool
        a[...] = t + 1
        return a.sum()
    g = cuda_graph.graphed(step, warmup=2)
    for _ in range(5):
        total = g()
    # 2 eager, then captured once and launched 3 times: a -> 2a + 1 five times
    want = np.arange(4, dtype=np.float32)
    for _ in range(5):
        want = want * 2 + 1
    assert np.array_equal(a.get(), want) and float(total) == want.sum()
    assert g.captured and g.calls == 5


@gpu
def test_evaluation_graph_equals_evaluate(monkeypatch):
    _cupy()
    from minires.kernels import cuda as K
    model, _, _, _ = _setup()
    test = data.DataLoader((IMAGES, LABELS), BATCH, device="cuda")      # batches 4, 4, 2
    monkeypatch.setattr(K, "GEMM", "own")
    want = train_mod.evaluate(model, test)
    monkeypatch.undo()
    eg = cuda_graph.EvaluationGraph(model, test)
    assert eg.evaluate() == want and eg.graph.captured      # batch 1 the warm-up, batch 2 captured
    assert eg.evaluate() == want and eg.graph.calls == 4     # two launches, the tail eagerly
    assert model.training


def _trainer_run(tmp_path, monkeypatch, graph, log_every=2):
    """Trainer on the tiny problem (two epochs, an lr milestone, evaluation with a bigger
    batch than training, so the conv workspace grows between launches)."""
    monkeypatch.setattr(train_mod, "load_datasets", lambda cfg, log: (
        (IMAGES, LABELS), (IMAGES[:8], LABELS[:8]), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 10, True))
    monkeypatch.setattr(train_mod, "build_model", lambda cfg, c, k: resnet_cifar(8))
    from minires.kernels import cuda as K
    monkeypatch.setattr(K, "GEMM", "own")            # eager: the graph's GEMM, for bit-equality
    reads = []
    read = cuda_graph.TrainingGraph.read
    monkeypatch.setattr(cuda_graph.TrainingGraph, "read", lambda self: reads.append(1) or read(self))
    cfg = train_mod.TrainConfig(epochs=2, batch_size=BATCH, eval_batch_size=8, device="gpu",
                                milestones=[1], log_every=log_every, graph=graph,
                                out=str(tmp_path / ("graph" if graph else "eager")), progress=False)
    history = train_mod.train(cfg, log=lambda *a: None)
    monkeypatch.undo()
    return history, len(reads), json.loads((tmp_path / ("graph" if graph else "eager") /
                                            "config.json").read_text())


@gpu
def test_train_graph_equals_eager_and_reads_every_log_interval(tmp_path, monkeypatch):
    eager, _, _ = _trainer_run(tmp_path, monkeypatch, graph=False)
    graphed, reads, config = _trainer_run(tmp_path, monkeypatch, graph=True)
    assert config["graph"] is True
    for a, b in zip(eager, graphed):
        for key in ("train_loss", "train_error", "test_loss", "test_error", "lr", "iteration"):
            assert a[key] == b[key], (key, a, b)
    # 3 steps an epoch, --log-every 2: read after iteration 2 and at each epoch's end
    # (iterations 3 and 6), plus one final read per epoch that finds nothing new
    assert reads == 2 * 2 + 2


def test_graph_is_refused_without_a_gpu(capsys, tmp_path):
    code = cli.main(["train", "--graph", "--device", "cpu", "--out", str(tmp_path / "r")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("minires train: error: --graph needs a CUDA GPU") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()                      # refused before anything is written
    with pytest.raises(ValueError, match="--graph needs a CUDA GPU"):
        train_mod.check_graph(train_mod.TrainConfig(graph=True, device="cpu"))


def test_graph_may_change_on_resume():
    settings, _ = resume_settings({"graph": True, "lr": 0.1}, {"graph": False})
    assert settings["graph"] is False
    settings, _ = resume_settings({"lr": 0.1}, {"graph": True})      # saved before --graph existed
    assert settings["graph"] is True


def test_nan_stop_in_graph_mode_says_when_it_was_found():
    from types import SimpleNamespace
    trainer = SimpleNamespace(epoch=0, checkpoint_path="runs/x/checkpoint.npz")
    with pytest.raises(train_mod.TrainingDiverged) as e:
        train_mod.Trainer._check_finite(trainer, 9, detected=12, every=4)
    said = str(e.value)
    assert "at iteration 9 (epoch 1, found at the read-back after iteration 11" in said
    assert "--log-every 4" in said and "\n" not in said
    with pytest.raises(train_mod.TrainingDiverged, match=r"at iteration 9 \(epoch 1\); stopped"):
        train_mod.Trainer._check_finite(trainer, 9, detected=10, every=4)     # found at once
    train_mod.Trainer._check_finite(trainer, -1, detected=12, every=4)         # all finite
