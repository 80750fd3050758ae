"""The minires command: help, version, exit codes, and errors as one line in CLI words."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import SHARED_DATA

import minires
from minires import cli, models
from minires.data import cifar

REPO = Path(__file__).resolve().parents[1]
HAS_SUBSET = (SHARED_DATA / "cifar-10-subset-python.tar.gz").is_file()
needs_subset = pytest.mark.skipif(not HAS_SUBSET, reason=f"CIFAR-10 subset not found in {SHARED_DATA}")
LIBRARY_WORDS = ("root=", "download=True", "get_model", "Traceback")


def minires_cmd(*args, cwd=None):
    """``python -m minires ARGS`` in a fresh process: (exit status, stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "minires", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or REPO, env=env, timeout=300)
    return done.returncode, done.stdout, done.stderr


def assert_one_cli_line(stderr, command, *needles):
    """stderr is exactly one 'minires COMMAND: error: ...' line, in CLI words, naming the needles."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"minires {command}: error: "), stderr
    assert not any(word in stderr for word in LIBRARY_WORDS), stderr
    for needle in needles:
        assert needle in stderr, stderr


# ------------------------------------------------------------------ help and version
def test_bare_minires_prints_the_help_with_a_usage_status():
    rc, out, err = minires_cmd()
    assert rc == 2 and err == ""
    assert out.startswith("usage: minires") and all(c in out for c in ("train", "eval", "summary"))


def test_version():
    rc, out, _ = minires_cmd("--version")
    assert rc == 0 and out == f"minires {minires.__version__}\n" == "minires 0.1.0\n"


def _subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return parser, action.choices


@pytest.mark.parametrize("command", ["eval", "summary"])
def test_every_eval_and_summary_option_has_help_and_shows_its_default(command):
    sub = _subparsers()[1][command]
    formatter = sub._get_formatter()
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
        takes_value = action.option_strings and action.nargs != 0    # not -h, not an on/off switch
        if takes_value:
            assert "(default: " in formatter._get_help_string(action), f"{command} {action.option_strings}"
    if command == "eval":
        assert "--batch-size BATCH_SIZE" in sub.format_help()
        assert "(default: 500)" in sub.format_help() and "(default: auto)" in sub.format_help()


def test_no_rest_markup_in_any_help():
    parser, subs = _subparsers()
    for p in (parser, *subs.values()):
        assert "``" not in p.format_help(), p.prog


# ------------------------------------------------------------------ errors: one line, CLI words
@needs_subset
def test_unknown_model_is_one_line_naming_the_flag(tmp_path):
    rc, _, err = minires_cmd("train", "--model", "resnt20", "--data-dir", SHARED_DATA, "--no-download",
                             "--iterations", 1, "--out", tmp_path / "run")
    assert rc == 1
    assert_one_cli_line(err, "train", "--model: unknown model 'resnt20'", "did you mean 'resnet20'")


def test_unknown_model_in_summary(capsys):
    assert cli.main(["summary", "resnt20"]) == 1
    assert_one_cli_line(capsys.readouterr().err, "summary", "unknown model 'resnt20'")


def test_missing_data_with_no_download_names_the_flags_and_creates_nothing(tmp_path):
    missing = tmp_path / "no" / "such"
    rc, _, err = minires_cmd("train", "--no-download", "--data-dir", missing, "--iterations", 1,
                             "--out", tmp_path / "run")
    assert rc == 1
    assert_one_cli_line(err, "train", f"{missing} does not exist", "--data-dir", "remove --no-download")
    assert not (tmp_path / "no").exists()


def test_failed_download_does_not_leave_the_data_dir_behind(tmp_path, monkeypatch, capsys):
    src = cifar.CIFAR10_SOURCES["python"]
    unreachable = (tmp_path / "nowhere.tar.gz").as_uri()        # a file:// URL: no network needed
    monkeypatch.setitem(cifar.CIFAR10_SOURCES, "python", src._replace(url=unreachable))
    data_dir = tmp_path / "new" / "data"
    assert cli.main(["train", "--data-dir", str(data_dir), "--iterations", "1", "--no-progress",
                     "--out", str(tmp_path / "run")]) == 1
    assert_one_cli_line(capsys.readouterr().err, "train", "Nothing was saved", "as --data-dir")
    assert not (tmp_path / "new").exists()


def test_unknown_device_lists_every_accepted_value(tmp_path, capsys):
    assert cli.main(["train", "--device", "bogus", "--data-dir", str(tmp_path), "--no-download",
                     "--iterations", "1", "--out", str(tmp_path / "run")]) == 1
    checkpoint = tmp_path / "checkpoint.npz"
    checkpoint.write_bytes(b"not read: the device is checked first")
    assert cli.main(["eval", str(checkpoint), "--device", "bogus"]) == 1
    err = capsys.readouterr().err.splitlines()
    for line, command in zip(err, ("train", "eval"), strict=True):
        assert_one_cli_line(line, command, "--device", "'bogus'", "cpu", "gpu", "cuda", "auto")


def test_eval_missing_or_damaged_checkpoint_is_one_line(tmp_path, capsys):
    assert cli.main(["eval", str(tmp_path / "nothing.npz")]) == 1
    assert_one_cli_line(capsys.readouterr().err, "eval", "no checkpoint at", "run folder")
    assert cli.main(["eval", str(tmp_path)]) == 1                 # a folder without a checkpoint
    assert_one_cli_line(capsys.readouterr().err, "eval", f"no checkpoint at {tmp_path / 'checkpoint.npz'}")
    damaged = tmp_path / "checkpoint.npz"
    damaged.write_bytes(b"not a checkpoint")
    assert cli.main(["eval", str(tmp_path)]) == 1
    assert_one_cli_line(capsys.readouterr().err, "eval", str(damaged))


@needs_subset
def test_eval_of_a_short_run_and_of_missing_data(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--data-dir", str(SHARED_DATA), "--iterations", "1", "--batch-size", "8",
                     "--limit-train", "8", "--limit-test", "8", "--no-progress", "--device", "cpu",
                     "--out", str(run)]) == 0
    capsys.readouterr()
    assert cli.main(["eval", str(run), "--device", "cpu"]) == 0   # the run folder is enough
    assert "resnet20 on cifar10 (epoch 1, iteration 1)" in capsys.readouterr().out
    partial = tmp_path / "partial"                                  # 1 of the epoch's 2 batches
    assert cli.main(["train", "--data-dir", str(SHARED_DATA), "--iterations", "1", "--batch-size", "8",
                     "--limit-train", "16", "--limit-test", "8", "--no-progress", "--device", "cpu",
                     "--out", str(partial)]) == 0
    capsys.readouterr()
    assert cli.main(["eval", str(partial), "--device", "cpu"]) == 0
    assert "(iteration 1, in epoch 1)" in capsys.readouterr().out
    assert cli.main(["eval", str(run / "checkpoint.npz"), "--data-dir", str(tmp_path / "empty")]) == 1
    assert_one_cli_line(capsys.readouterr().err, "eval", "CIFAR-10 not found", "--data-dir")


def test_errors_stay_one_line_and_signals_set_the_status(capsys):
    before = signal.getsignal(signal.SIGTERM)

    def multi_line():
        raise ValueError("first\nsecond")
    assert cli.run_command("prog", multi_line, cli.error_words()) == 1
    assert capsys.readouterr().err == "prog: error: first second\n"

    def ctrl_c():
        raise KeyboardInterrupt
    assert cli.run_command("prog", ctrl_c, cli.error_words()) == 130
    assert cli.run_command("prog", lambda: os.kill(os.getpid(), signal.SIGTERM), cli.error_words()) == 143
    assert capsys.readouterr().err == "prog: interrupted\nprog: terminated\n"
    assert signal.getsignal(signal.SIGTERM) == before           # the handler is put back


# ------------------------------------------------------------------ summary --list
BIG = ("1202", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")   # seconds each


def test_summary_list_leaves_out_the_families_that_need_a_depth(capsys):
    assert cli.main(["summary", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert names == models.available(ready_made=True)
    assert "resnet20" in names and "resnet_cifar" not in names and "plain_cifar" not in names
    assert cli.main(["summary", "resnet_cifar"]) == 1
    assert_one_cli_line(capsys.readouterr().err, "summary", "'resnet_cifar' is a family of models "
                        "that needs depth; choose a ready-made one: resnet20")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.endswith(BIG) else n
                                  for n in models.available(ready_made=True)])
def test_every_listed_model_has_a_summary(name, capsys):
    assert cli.main(["summary", name]) == 0
    assert "Total MACs" in capsys.readouterr().out


@pytest.mark.parametrize("model, words", [("bogus", "unknown model 'bogus'"),
                                          ("resnet_cifar", "needs depth"),
                                          ("resnet56:shortcut=Z", "shortcut option 'Z'")])
def test_a_bad_model_is_refused_before_any_data_is_looked_for(tmp_path, capsys, model, words):
    missing = tmp_path / "no-data-here"
    assert cli.main(["train", "--model", model, "--data-dir", str(missing), "--out",
                     str(tmp_path / "run")]) == 1
    assert_one_cli_line(capsys.readouterr().err, "train", words)
    assert not missing.exists() and not (tmp_path / "run").exists()
