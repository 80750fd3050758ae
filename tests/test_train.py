"""`minires train` end to end on a few real CIFAR-10 images: metrics, plots, checkpoints,
exact resume after a real Ctrl-C, divergence detection, eval and the CLI."""
import dataclasses
import json
import os
import signal

import numpy as np
import pytest

from minires import cli
from minires.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minires.run_folder import RunFolder, RunFolderError
from minires.train import (RunInterrupted, TrainConfig, Trainer, TrainingDiverged, evaluate_checkpoint,
                           train)
from shared_data import SHARED_DATA as DATA

pytestmark = pytest.mark.skipif(not (DATA / "cifar-10-subset-python.tar.gz").exists(),
                                reason="the CIFAR-10 subset in ../shared/data is missing")


def config(tmp_path, **kw):
    base = dict(model="resnet20", data_dir=str(DATA), download=False, epochs=2, batch_size=32,
                limit_train=96, limit_test=64, eval_batch_size=64, out=str(tmp_path / "run"),
                device="cpu", progress=False, seed=3)
    return TrainConfig(**{**base, **kw})


def weights(path):
    arrays, meta = load_checkpoint(path)
    return arrays, meta


def test_run_writes_metrics_plots_and_checkpoint(tmp_path):
    history = train(config(tmp_path), log=lambda *a: None)
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows == history
    for r in rows:
        assert 0 <= r["train_error"] <= 1 and 0 <= r["test_error"] <= 1 and np.isfinite(r["train_loss"])
    assert (run / "curves.png").stat().st_size > 1000
    arrays, meta = weights(run / "checkpoint.npz")
    assert meta["epoch"] == 2 and meta["step"] == 6 and meta["model_config"]["name"] == "resnet20"
    assert "model/layer1.0.conv1.weight" in arrays and "model/bn1.running_mean" in arrays
    assert any(k.startswith("optim/") and k.endswith("momentum_buffer") for k in arrays)


def test_refuses_to_overwrite_a_run(tmp_path):
    train(config(tmp_path, epochs=1), log=lambda *a: None)
    with pytest.raises(RunFolderError, match="already holds a run .*--resume"):
        train(config(tmp_path, epochs=1), log=lambda *a: None)


def test_ctrl_c_then_resume_gives_exactly_the_uninterrupted_run(tmp_path):
    reference = train(config(tmp_path / "a"), log=lambda *a: None)

    # Interrupt run b with a real SIGINT in the middle of epoch 1 (after its 2nd step).
    cfg = config(tmp_path / "b")
    with RunFolder(cfg.out) as folder:
        trainer = Trainer(cfg, folder, log=lambda *a: None)
        folder.write_settings(dataclasses.asdict(cfg))
        calls = []

        def interrupt(module, inputs, output):
            calls.append(1)
            if len(calls) == 2 and module.training:
                os.kill(os.getpid(), signal.SIGINT)
        trainer.model.register_forward_hook(interrupt)
        with pytest.raises(RunInterrupted, match="interrupted by SIGINT: saved .*--resume") as stop:
            trainer.run()
    assert stop.value.exit_code == 130
    _, meta = load_checkpoint(trainer.checkpoint_path)
    assert (meta["epoch"], meta["step"], meta["batch_in_epoch"]) == (0, 2, 2)
    assert meta["history"] == []                           # stopped before any epoch ended

    resumed = train(cfg, resume=True, log=lambda *a: None)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in resumed]
    ref = [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in reference]
    assert strip == ref                                    # every loss and error, exactly
    a, _ = weights(tmp_path / "a" / "run" / "checkpoint.npz")
    b, _ = weights(tmp_path / "b" / "run" / "checkpoint.npz")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # overflow on the way to inf is the point
def test_diverging_loss_stops_and_names_the_step(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"iteration \d+"):
        train(config(tmp_path, lr=1e12, weight_decay=0.0, epochs=3), log=lambda *a: None)


def test_eval_checkpoint_matches_the_last_epoch(tmp_path):
    history = train(config(tmp_path, epochs=1), log=lambda *a: None)
    loss, error, meta = evaluate_checkpoint(tmp_path / "run" / "checkpoint.npz", device="cpu")
    assert loss == pytest.approx(history[-1]["test_loss"], rel=1e-6)
    assert error == history[-1]["test_error"]


def test_cli_train_eval_summary(tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli.main(["train", "--epochs", "1", "--batch-size", "32", "--limit-train", "64",
                     "--limit-test", "32", "--data-dir", str(DATA), "--no-download", "--device", "cpu",
                     "--out", str(out), "--no-progress", "--milestones", "1"])
    assert code == 0
    assert "final test error" in capsys.readouterr().out
    assert cli.main(["eval", str(out / "checkpoint.npz"), "--data-dir", str(DATA), "--device", "cpu"]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert cli.main(["summary", "resnet20"]) == 0
    assert "269,722" in capsys.readouterr().out      # 0.27M, He et al. 2015 Table 6


def test_cli_reports_missing_data_in_one_line(tmp_path, capsys):
    code = cli.main(["train", "--data-dir", str(tmp_path / "nothing"), "--no-download", "--device", "cpu",
                     "--out", str(tmp_path / "x"), "--epochs", "1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "error" in err and "--data-dir" in err and "Traceback" not in err


def test_checkpoint_format_is_pickle_free_and_atomic(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.arange(3.0)}, {"epoch": 1})
    arrays, meta = load_checkpoint(path)
    assert meta["epoch"] == 1 and np.array_equal(arrays["w"], np.arange(3.0))
    np.savez(tmp_path / "bad.npz", w=np.arange(3))
    with pytest.raises(CheckpointError, match="not a minires checkpoint"):
        load_checkpoint(tmp_path / "bad.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "obj.npy")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_unknown_dataset_and_bad_lengths_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--dataset 'imagenet' is unknown"):
        config(tmp_path, dataset="imagenet")
    with pytest.raises(ValueError, match="--epochs must be >= 1"):
        config(tmp_path, epochs=0)
    with pytest.raises(ValueError, match="schedule"):
        config(tmp_path, schedule="exponential")

