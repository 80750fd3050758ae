"""Drills on real `python -m minires train` processes (resnet20, a few steps on 48 CIFAR-10
images): kill -9 at random moments and right after a metrics row, SIGTERM, SIGINT, two
trainers on one folder, orphaned and damaged files, a full disk -- each then resumed with plain
`--resume --out R` must give the uninterrupted run bit for bit.

Marked slow (each process loads numba and the data: ~5 s on a quiet core, a few minutes
in all); CI runs them with `pytest -m slow tests/test_resume.py`, and tests/kill_drill.py
is the longer random-kill loop as a script.  tests/test_train.py checks the same exit
codes and refusals in-process, fast."""
import os
import signal
import subprocess

import pytest

import kill_drill
from kill_drill import FLAGS, check_consistent, check_identical, finish, metrics_rows, start, train
from shared_data import SHARED_DATA as DATA

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (DATA / "cifar-10-subset-python.tar.gz").exists(),
                                 reason="the CIFAR-10 subset in ../shared/data is missing")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run left alone: (arrays, history, seconds)."""
    return kill_drill.reference_run(tmp_path_factory.mktemp("reference") / "run")


def started_training(process):
    """Wait for the trainer's first line: the data is loaded and the loop is about to start."""
    said = []
    while not (said and said[-1].startswith("training resnet20")):
        said.append(process.stdout.readline())
        assert said[-1], "".join(said) + process.stderr.read()      # it ended before training


def test_kill_9_right_after_a_metrics_row_then_resume(tmp_path, reference):
    out = tmp_path / "run"
    process = start(out, *FLAGS)
    kill_drill.wait_for(lambda: len(metrics_rows(out)) >= 1, what="the first metrics row")
    process.kill()
    finish(process)
    check_consistent(out)                  # never metrics without the checkpoint behind them
    code, stdout, err = train(out, "--resume")
    assert code == 0, err
    assert "resumed from" in stdout
    check_identical(out, reference[:2])


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_exits_128_plus_it_and_resumes_exactly(tmp_path, reference, sig, code):
    out = tmp_path / "run"
    process = start(out, *FLAGS)
    started_training(process)
    process.send_signal(sig)
    status, stdout, err = finish(process)
    assert status == code, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert f"interrupted by {sig.name}: saved" in err and "--resume --out" in err
    assert "final test error" not in stdout
    status, _, err = train(out, "--resume")
    assert status == 0, err
    check_identical(out, reference[:2])


def test_a_second_trainer_on_the_same_folder_is_refused_with_the_holders_pid(tmp_path, reference):
    out = tmp_path / "run"
    first = start(out, *FLAGS)
    started_training(first)
    code, _, err = train(out, "--resume")
    assert code == 1 and f"in use by another trainer (pid {first.pid})" in err
    code, _, err = train(out, *FLAGS)
    assert code == 1 and "in use by another trainer" in err
    assert finish(first)[0] == 0
    check_identical(out, reference[:2])


def test_orphaned_temporary_files_go_and_a_damaged_checkpoint_is_one_line(tmp_path, reference):
    out = tmp_path / "run"
    process = start(out, *FLAGS)
    kill_drill.wait_for(lambda: len(metrics_rows(out)) >= 1, what="the first metrics row")
    process.kill()
    finish(process)
    (out / ".tmp-killed1234.npz").write_bytes(b"PK\x03\x04 half a zip")
    checkpoint = out / "checkpoint.npz"
    whole = checkpoint.read_bytes()
    checkpoint.write_bytes(whole[: len(whole) // 2])
    code, _, err = train(out, "--resume")
    assert code == 1 and "checkpoint.npz" in err and "Traceback" not in err
    assert err.startswith("minires train: error:") and err.strip().count("\n") == 0
    checkpoint.write_bytes(whole)
    code, _, err = train(out, "--resume")
    assert code == 0, err
    assert [p.name for p in out.iterdir() if p.name.startswith(".tmp-")] == []
    check_identical(out, reference[:2])


def test_kill_9_at_random_moments(tmp_path, reference):
    kills = kill_drill.drill(tmp_path, rounds=3, seconds=20, seed=os.getpid(), reference=reference,
                             log=lambda *a: None)
    assert kills >= 1


@pytest.fixture
def small_disk(tmp_path):
    """A mount point and a function that (re)mounts a tmpfs of the given size on it; skips
    where tmpfs cannot be mounted (not root, no mount namespace)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()

    def mount(size, remount=False):
        options = f"remount,size={size}" if remount else f"size={size}"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount_point, mount
    subprocess.run(["umount", str(mount_point)], capture_output=True)


@pytest.mark.parametrize("size", ["600k", "3m"])      # no checkpoint fits / the second does not
def test_disk_full_names_the_file_and_resumes_once_space_is_back(small_disk, reference, size):
    disk, mount = small_disk
    mount(size)
    out = disk / "run"
    code, _, err = train(out, *FLAGS)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"cannot write checkpoint {out / 'checkpoint.npz'}: No space left on device" in err
    check_consistent(out)
    mount("20m", remount=True)
    code, _, err = train(out, "--resume")
    assert code == 0, err
    check_identical(out, reference[:2])
