"""kill -9 at random moments: a small run killed again and again, each time continued with
``minires train --resume`` (or started again when it died before its first commit), must
end bit-identical to the same run left alone, and after every kill the run folder must be
consistent (metrics.jsonl never ahead of the checkpoint, at most one row behind it).

    python tests/kill_drill.py [--rounds 12] [--seconds 50] [--seed 0]

tests/test_resume.py runs a short version of it; the helpers here are shared with it.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import SHARED_DATA as DATA  # noqa: E402

from minires.checkpoint import load_checkpoint  # noqa: E402

# resnet20 for 3 epochs of 3 steps on 48 real CIFAR-10 images: seconds on a CPU.
FLAGS = ["--model", "resnet20", "--epochs", "3", "--batch-size", "16", "--limit-train", "48",
         "--limit-test", "16", "--eval-batch-size", "16", "--data-dir", str(DATA), "--no-download",
         "--device", "cpu", "--seed", "3"]
TIMING = ("seconds", "images_per_second")                 # the only fields a resume may change
ROOT = Path(__file__).resolve().parents[1]


def start(out, *args):
    """``python -m minires train ARGS --out OUT`` in the background, output line-buffered."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "minires", "train", *args, "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def train(out, *args):
    """Run ``minires train`` to its end: (exit status, stdout, stderr)."""
    return finish(start(out, *args))


def start_or_resume(out):
    """--resume when the folder holds a run, else the first start (it died before committing)."""
    return ("--resume",) if (Path(out) / "config.json").exists() else tuple(FLAGS)


def wait_for(predicate, timeout=120, what="a condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"kill_drill: waited {timeout} s for {what}")
        time.sleep(0.01)


def metrics_rows(out):
    path = Path(out) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def state(out):
    """(arrays, history) of the run folder's checkpoint, or None without one."""
    path = Path(out) / "checkpoint.npz"
    if not path.exists():
        return None
    arrays, meta = load_checkpoint(path)
    return arrays, meta["history"]


def comparable(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def check_consistent(out):
    """After a crash: metrics.jsonl equals the checkpoint's history or is one row behind."""
    saved, rows = state(out), comparable(metrics_rows(out))
    if saved is None:
        assert rows == [], f"{out}: metrics.jsonl without a checkpoint: {rows}"
        return
    history = comparable(saved[1])
    assert rows in (history, history[:-1]), f"{out}: metrics {rows} vs checkpoint {history}"


def check_identical(out, reference):
    """The run in ``out`` ended exactly like ``reference`` (arrays, history): every weight,
    optimizer buffer, loss and error bit for bit."""
    arrays, history = state(out)
    ref_arrays, ref_history = reference
    assert comparable(history) == comparable(ref_history)
    assert comparable(metrics_rows(out)) == comparable(ref_history)
    assert arrays.keys() == ref_arrays.keys()
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], ref_arrays[k], err_msg=k)


def reference_run(out):
    """The run left alone: (arrays, history, seconds it took)."""
    started = time.monotonic()
    code, _, err = train(out, *FLAGS)
    assert code == 0, err
    return (*state(out), time.monotonic() - started)


def drill(workdir, rounds, seconds, seed=0, reference=None, log=print):
    """Kill -9 up to ``rounds`` times within ``seconds``: one run killed again and again and
    resumed until a start reaches its end, then compared with the run left alone; then the
    next run, in a new folder, while kills and time remain."""
    workdir = Path(workdir)
    if reference is None:
        reference = reference_run(workdir / "reference")
    arrays, history, duration = reference
    rng, kills, runs = random.Random(seed), 0, 0
    deadline = time.monotonic() + seconds
    while kills < rounds and time.monotonic() < deadline:
        out = workdir / f"killed-{runs}"
        while kills < rounds and time.monotonic() < deadline:
            process = start(out, *start_or_resume(out))
            time.sleep(rng.uniform(0.2, duration))
            if process.poll() is not None:             # it reached its end before the kill
                code, _, err = finish(process)
                assert code == 0, err
                break
            process.send_signal(signal.SIGKILL)
            code, _, err = finish(process)
            if code == 0:                                  # it ended between poll() and the kill
                break
            assert code == -signal.SIGKILL, f"exit status {code}: {err}"
            kills += 1
            check_consistent(out)
        code, _, err = train(out, *start_or_resume(out))  # to its end (a no-op if it is there)
        assert code == 0, err
        check_identical(out, (arrays, history))
        runs += 1
    log(f"kill_drill: {kills} kills of `minires train` over {runs} runs, each then resumed to "
        f"its end: bit-identical to the run left alone")
    return kills


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="kills at most (default: 12)")
    parser.add_argument("--seconds", type=float, default=50, help="time for the kills (default: 50)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default: 0)")
    args = parser.parse_args(argv)
    if not (DATA / "cifar-10-subset-python.tar.gz").exists():
        print(f"kill_drill: the CIFAR-10 subset is missing in {DATA}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as workdir:
        drill(workdir, args.rounds, args.seconds, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
