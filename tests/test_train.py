"""`minires train` end to end on a few real CIFAR-10 images: metrics, plots, checkpoints,
exact resume after a real Ctrl-C, SIGTERM, divergence detection, eval, and the CLI's
validation, help and --resume rules.  (tests/test_resume.py drills real processes.)"""
import argparse
import dataclasses
import json
import os
import re
import signal

import numpy as np
import pytest

from minires import cli
from minires import train as train_module
from minires.plots import history_figure
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


def test_run_writes_settings_metrics_plots_and_checkpoint(tmp_path):
    lines = []
    cfg = config(tmp_path, progress=True)
    history = train(cfg, log=lines.append)
    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text()) == dataclasses.asdict(cfg)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows == history
    for r in rows:
        assert 0 <= r["train_error"] <= 1 and 0 <= r["test_error"] <= 1 and np.isfinite(r["train_loss"])
    # The rate each epoch trained with (milestones at 1 and 1.5 epochs of 3 steps: steps 3, 4).
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.001])
    assert (run / "curves.png").stat().st_size > 1000
    arrays, meta = weights(run / "checkpoint.npz")
    assert meta["epoch"] == 2 and meta["step"] == 6 and meta["model_config"]["name"] == "resnet20"
    assert meta["history"] == history
    assert "model/layer1.0.conv1.weight" in arrays and "model/bn1.running_mean" in arrays
    assert any(k.startswith("optim/") and k.endswith("momentum_buffer") for k in arrays)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.npz", "config.json", "curves.png",
                                                       "metrics.jsonl"]
    # Not a terminal here: plain progress lines, never a carriage return; accuracy and an ETA.
    assert not any("\r" in line for line in lines)
    assert "  epoch 1/2: 1/3 batches (33%)" in "\n".join(lines)
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "ETA" in epoch_lines[0] and epoch_lines[1].endswith("done")
    assert all(" acc " in line and "% (error " in line for line in epoch_lines)


def test_refuses_to_overwrite_a_run(tmp_path):
    train(config(tmp_path, epochs=1), log=lambda *a: None)
    with pytest.raises(RunFolderError, match="already holds a run .*--resume"):
        train(config(tmp_path, epochs=1), log=lambda *a: None)


def test_ctrl_c_then_plain_resume_gives_exactly_the_uninterrupted_run(tmp_path, capsys):
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

    assert cli.main(["train", "--resume", "--out", cfg.out]) == 0   # config.json says the rest
    _, meta = load_checkpoint(trainer.checkpoint_path)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in meta["history"]]
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


def test_eval_of_an_image_folder_run_uses_its_training_statistics(tmp_path, monkeypatch):
    from test_imagefolder import make_tree
    monkeypatch.setenv("MINIRES_DATA", str(tmp_path / "default-root"))
    root = tmp_path / "pets"
    make_tree(root / "train", classes=("cat", "dog"), per_class=3, size=(8, 8))
    make_tree(root / "test", classes=("cat", "dog"), per_class=1, size=(8, 8), seed=1)
    history = train(config(tmp_path, dataset="imagefolder", data_dir=str(root), epochs=1,
                           batch_size=4, limit_train=None, limit_test=None), log=lambda *a: None)
    loss, error, _ = evaluate_checkpoint(tmp_path / "run" / "checkpoint.npz", device="cpu")
    assert loss == pytest.approx(history[-1]["test_loss"], rel=1e-6)
    assert error == history[-1]["test_error"]


def test_cli_train_eval_summary_and_the_resume_rules(tmp_path, capsys):
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

    assert cli.main(["train", "--resume", "--out", str(out), "--lr", "5"]) == 1
    assert capsys.readouterr().err == ("minires train: error: --lr 5 would change the saved run (it "
                                       "has --lr 0.1); with --resume only --device, --threads, "
                                       "--graph/--no-graph, --no-progress and a longer "
                                       "--epochs/--iterations may be given\n")
    # The same data folder spelt relatively is no change; the checkpoint names its run folder.
    assert cli.main(["train", "--resume", str(out / "checkpoint.npz"), "--device", "cpu",
                     "--data-dir", os.path.relpath(DATA)]) == 0
    said = capsys.readouterr().out
    assert "holds a complete run (1 epochs)" in said and "--epochs N (N > 1)" in said
    assert cli.main(["train", "--out", str(out), "--epochs", "1"]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert cli.main(["train", "--resume", "--out", str(out), "--epochs", "2"]) == 0
    said = capsys.readouterr().out
    assert "lengthening the run from 1 to 2 epochs\nmultistep milestones scale with it: now 2 epochs " \
           "(were 1)\n" in said and "after 2 epochs" in said
    assert json.loads((out / "config.json").read_text())["milestones"] == [2.0]


def test_a_longer_iterations_run_continues_mid_epoch_like_a_fresh_longer_run(tmp_path, capsys):
    # A constant lr, so that the first 2 iterations of both runs train alike.
    reference = train(config(tmp_path / "a", epochs=None, iterations=5, schedule="constant"),
                      log=lambda *a: None)
    short = train(config(tmp_path / "b", epochs=None, iterations=2, schedule="constant"),
                  log=lambda *a: None)
    assert [(r["epoch"], r["iteration"], r.get("partial_epoch")) for r in short] == [(1, 2, True)]
    out = str(tmp_path / "b" / "run")
    assert cli.main(["train", "--resume", "--out", out, "--iterations", "5"]) == 0
    said = capsys.readouterr().out
    assert "lengthening the run from 2 to 5 iterations" in said and "epoch   2/2" in said
    longer = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.npz")[1]["history"]
    timing = ("seconds", "images_per_second")
    assert [{k: v for k, v in r.items() if k not in timing} for r in longer] == \
           [{k: v for k, v in r.items() if k not in timing} for r in reference]


def test_cli_sigterm_saves_exits_143_and_resumes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    flags = ["--epochs", "2", "--batch-size", "16", "--limit-train", "32", "--limit-test", "16",
             "--eval-batch-size", "16", "--data-dir", str(DATA), "--no-download", "--device", "cpu",
             "--no-progress", "--out", str(out)]
    real_evaluate = train_module.evaluate

    def evaluate_then_sigterm(*args):          # SIGTERM during epoch 1's test pass
        os.kill(os.getpid(), signal.SIGTERM)
        return real_evaluate(*args)
    monkeypatch.setattr(train_module, "evaluate", evaluate_then_sigterm)
    assert cli.main(["train", *flags]) == 143
    said = capsys.readouterr()
    assert "final test error" not in said.out and said.err.count("\n") == 1
    assert said.err.startswith("minires train: interrupted by SIGTERM: saved ") and "--resume" in said.err
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    monkeypatch.setattr(train_module, "evaluate", real_evaluate)
    assert cli.main(["train", "--resume", "--out", str(out)]) == 0
    assert "after 2 epochs" in capsys.readouterr().out


def test_cli_ctrl_c_while_loading_data_is_one_line_and_leaves_no_run(tmp_path, capsys, monkeypatch):
    def interrupted_load(cfg, log):
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the signal should have stopped the load")
    monkeypatch.setattr(train_module, "load_datasets", interrupted_load)
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--device", "cpu", "--epochs", "1"]) == 130
    assert capsys.readouterr().err == ("minires train: interrupted by SIGINT before training "
                                       "started; the run folder is as it was\n")
    assert RunFolder(tmp_path / "run").run_files() == []         # a plain start again works


def test_cli_refuses_a_second_trainer_on_the_folder(tmp_path, capsys):
    with RunFolder(tmp_path / "run"):
        assert cli.main(["train", "--out", str(tmp_path / "run"), "--device", "cpu"]) == 1
    assert f"is in use by another trainer (pid {os.getpid()})" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--limit-train", "0"], "--limit-train must be >= 1, got 0"),
    (["--limit-test", "-5"], "--limit-test must be >= 1, got -5"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--epochs", "4", "--milestones", "3", "2"], "--milestones must be in increasing order, got 3.0 2.0"),
    (["--epochs", "4", "--milestones", "2", "5"], r"--milestones must lie in \(0, 4\] epochs"),
    (["--milestones", "0"], r"--milestones must lie in \(0, 64000\] iterations"),
    (["--gamma", "0"], "--gamma must be > 0, got 0.0"),
    (["--lr", "nan"], "--lr must be > 0, got nan"),
    (["--device", "tpu"], "--device 'tpu' is unknown; choose from auto, cpu, gpu, cuda, cuda:0"),
    (["--out", "FILE/run"], "--out .*FILE/run: cannot create the run folder"),
])
def test_cli_refuses_bad_values_before_reading_any_data(tmp_path, capsys, flags, message):
    (tmp_path / "FILE").write_text("")
    flags = [f.replace("FILE", str(tmp_path / "FILE")) for f in flags]
    # A --data-dir that does not exist: any data access would be the error instead.
    code = cli.main(["train", "--data-dir", str(tmp_path / "no-data"), "--no-download",
                     "--out", str(tmp_path / "run"), *flags])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert re.match(f"minires train: error: {message}", err), err
    assert not (tmp_path / "no-data").exists()


def test_every_train_option_shows_its_default():
    parser = argparse.ArgumentParser(prog="minires")
    train_parser = cli._train_parser(parser.add_subparsers())
    for action in train_parser._actions:
        if action.dest != "help":
            assert "(default: " in action.help or "(the default " in action.help, action.option_strings
            assert "``" not in action.help
    text = train_parser.format_help()
    assert "(default: 128)" in text and "(default: 0.1)" in text and "(default: 64000)" in text


def test_curves_of_one_epoch_are_visible_points_on_whole_epochs():
    row = {"epoch": 1, "train_error": 0.8, "test_error": 0.85, "train_loss": 2.1, "test_loss": 2.3}
    fig = history_figure([row])
    for ax in fig.axes:
        assert all(line.get_marker() == "o" for line in ax.get_lines())
        assert list(ax.get_xticks()) == [1]
    fig = history_figure([{**row, "epoch": e} for e in range(1, 4)])
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks)


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

