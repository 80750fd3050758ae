"""The run folder's commit protocol without training: checkpoint first, metrics derived from
it, orphans removed, one file mode, a lock with the holder's pid, errors that name the file,
and the settings --resume may and may not change."""
import errno
import json
import os

import numpy as np
import pytest

from minires import checkpoint, run_folder
from minires.checkpoint import load_checkpoint
from minires.run_folder import RunFolder, RunFolderError, resume_settings


def row(epoch):
    return {"epoch": epoch, "iteration": 3 * epoch, "lr": 0.1, "train_loss": 1.0 / epoch,
            "train_error": 0.5, "test_loss": 1.0, "test_error": 0.5, "seconds": 1.0,
            "images_per_second": 9.0}


def commit(folder, epochs):
    history = [row(e) for e in range(1, epochs + 1)]
    folder.commit({"model/w": np.full(3, float(epochs))}, {"epoch": epochs, "history": history})
    return history


def metrics(folder):
    return [json.loads(line) for line in folder.file("metrics.jsonl").read_text().splitlines()]


def test_commit_writes_the_checkpoint_then_metrics_from_its_history(tmp_path):
    with RunFolder(tmp_path / "run") as folder:
        commit(folder, 1)
        history = commit(folder, 2)
        assert metrics(folder) == history
        assert load_checkpoint(folder.file("checkpoint.npz"))[1]["history"] == history
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.npz", "metrics.jsonl"]


def test_a_crash_between_checkpoint_and_metrics_is_repaired_at_the_next_start(tmp_path, monkeypatch):
    with RunFolder(tmp_path / "run") as folder:
        commit(folder, 1)
        monkeypatch.setattr(folder, "write_metrics", lambda history: None)     # "killed" here
        history = commit(folder, 2)
        assert len(metrics(folder)) == 1                     # one row behind the checkpoint
    with RunFolder(tmp_path / "run") as folder:
        assert metrics(folder) == history


def test_metrics_ahead_of_the_checkpoint_are_trimmed_to_it(tmp_path):
    # What the old order (metrics first) left after a kill: rows the checkpoint never saw.
    with RunFolder(tmp_path / "run") as folder:
        history = commit(folder, 1)
        with open(folder.file("metrics.jsonl"), "a") as f:
            f.write(json.dumps(row(2)) + "\n" + json.dumps(row(2))[:20])
    with RunFolder(tmp_path / "run") as folder:
        assert metrics(folder) == history


def test_orphaned_temporary_files_are_removed_at_the_next_start(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".tmp-abc123.npz").write_bytes(b"half a checkpoint")
    (run / ".tmp-metrics.jsonl-xyz").write_text("{")
    (run / "notes.txt").write_text("mine")
    with RunFolder(run):
        pass
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_run_files_share_one_mode_that_respects_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with RunFolder(tmp_path / "run") as folder:
            commit(folder, 1)
            folder.write_settings({"lr": 0.1})
            modes = {p.name: p.stat().st_mode & 0o777 for p in folder.path.iterdir()}
    finally:
        os.umask(old)
    assert modes == {"checkpoint.npz": 0o640, "metrics.jsonl": 0o640, "config.json": 0o640,
                     "train.lock": 0o640}


def test_a_second_trainer_is_refused_with_the_holders_pid(tmp_path):
    with RunFolder(tmp_path / "run"):
        with pytest.raises(RunFolderError, match=f"in use by another trainer \\(pid {os.getpid()}\\)"):
            RunFolder(tmp_path / "run").open()
    with RunFolder(tmp_path / "run") as folder:             # released on close
        folder.write_settings({})
    assert not (tmp_path / "run" / "train.lock").exists()
    with RunFolder(tmp_path / "new"):                       # a failed start leaves no empty folder
        pass
    assert not (tmp_path / "new").exists()


def test_a_stale_lock_file_does_not_block(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.lock").write_text("999999\n")              # its trainer was killed: no flock
    with RunFolder(run):
        assert (run / "train.lock").read_text() == f"{os.getpid()}\n"


def test_a_folder_with_only_a_checkpoint_holds_a_run(tmp_path):
    with RunFolder(tmp_path / "run") as folder:
        commit(folder, 1)                         # e.g. a Ctrl-C in epoch 1 saves only this
        folder.file("metrics.jsonl").unlink()
        with pytest.raises(RunFolderError, match=r"already holds a run \(checkpoint.npz\).*--resume"):
            folder.refuse_existing_run()


def test_disk_full_names_the_file_and_keeps_the_last_commit(tmp_path, monkeypatch):
    with RunFolder(tmp_path / "run") as folder:
        history = commit(folder, 1)

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(checkpoint, "_write_sealed_archive", full)
        with pytest.raises(RunFolderError, match=r"cannot write checkpoint .*checkpoint.npz: No space"):
            commit(folder, 2)
        monkeypatch.undo()
        monkeypatch.setattr(run_folder, "atomic_write", full)
        with pytest.raises(RunFolderError, match=r"cannot write .*metrics.jsonl: No space left on device; .*rewrites"):
            commit(folder, 2)
        monkeypatch.undo()
        assert [p.name for p in folder.path.iterdir() if p.name.startswith(".tmp-")] == []
    with RunFolder(tmp_path / "run") as folder:             # space is back: consistent again
        assert load_checkpoint(folder.file("checkpoint.npz"))[1]["epoch"] == 2
        assert len(metrics(folder)) == 2 and metrics(folder)[0] == history[0]


def test_an_unwritable_out_is_refused_before_anything_else(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunFolderError, match=r"--out .*file/run: cannot create the run folder"):
        RunFolder(tmp_path / "file" / "run").open()
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith("train.lock"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(run_folder.os, "open", read_only)
    with pytest.raises(RunFolderError, match=r"--out .* is not writable \(Permission denied\)"):
        RunFolder(tmp_path / "ro").open()


SAVED = {"model": "resnet20", "epochs": 4, "iterations": None, "lr": 0.1, "schedule": "multistep",
         "milestones": [2.0, 3.0], "device": "auto", "progress": True, "nesterov": False, "out": "a"}


def test_resume_refuses_a_changed_setting_naming_its_flag():
    with pytest.raises(RunFolderError, match=r"^--lr 5 would change the saved run \(it has --lr 0.1\)"):
        resume_settings(SAVED, {"lr": 5.0})
    with pytest.raises(RunFolderError, match=r"^--nesterov would change the saved run \(it has --nesterov off\)"):
        resume_settings(SAVED, {"nesterov": True})
    settings, notes = resume_settings(SAVED, {"lr": 0.1, "device": "cpu", "progress": False, "out": "b"})
    assert settings == {**SAVED, "device": "cpu", "progress": False} and notes == []


def test_resume_lengthens_the_run_and_stretches_the_milestones():
    settings, notes = resume_settings(SAVED, {"epochs": 8})
    assert settings["epochs"] == 8 and settings["milestones"] == [4.0, 6.0]
    assert notes == ["lengthening the run from 4 to 8 epochs",
                     "multistep milestones scale with it: now 4, 6 epochs (were 2, 3)"]
    _, notes = resume_settings({**SAVED, "milestones": None}, {"epochs": 6})
    assert notes[1] == "multistep milestones at 50% and 75% of the run: now 3, 4.5 epochs"
    with pytest.raises(RunFolderError, match="--epochs 3 would shorten the saved run of 4 epochs"):
        resume_settings(SAVED, {"epochs": 3})
    with pytest.raises(RunFolderError, match="this run counts in epochs .*--epochs N"):
        resume_settings(SAVED, {"iterations": 100})
