"""`minires gradcheck`: the suite passes, a broken backward makes it fail loudly, names select
checks; and the README's gradient-check snippet, run as a script, prints what it found."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minires import backend, gradcheck_suite
from minires.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of `minires gradcheck ARGV` on the CPU."""
    try:
        status = main(["gradcheck", "--device", "cpu", *argv])
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def rows(out):
    """{check name: 'pass' or 'FAIL'} from the report's table."""
    found = {}
    for line in out.splitlines()[1:]:
        parts = line.split()
        if parts and parts[-1] in ("pass", "FAIL"):
            found[parts[0]] = parts[-1]
    return found


def test_the_whole_suite_passes(capsys):
    status, out, _ = run_cli(capsys)
    assert status == 0
    table = rows(out)
    assert list(table) == gradcheck_suite.names()
    assert set(table.values()) == {"pass"}
    for wanted in ("conv2d-stride2", "conv2d-groups2", "conv2d-dilation2", "batch_norm-train",
                   "batch_norm-eval", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "linear",
                   "cross_entropy", "relu", "add", "mul", "reshape", "flatten", "cat",
                   "basic_block", "preact_unit", "resnet", "shortcut_plus_one"):
        assert wanted in table
    n = len(table)
    assert re.search(rf"^{n} checks, {n} passed, 0 failed \(seed 0, cpu, [\d.]+ s\)$", out, re.M)
    header = out.splitlines()[0].split()
    assert header[:2] == ["check", "inputs"] and header[-1] == "result"
    assert re.search(r"^conv2d\s+x 2x3x5x5, weight 4x3x3x3, bias 4\s+\d\.\d\de-\d\d\s+1e-03\s+pass$", out, re.M)


def test_a_broken_batch_norm_backward_fails_the_run(capsys, monkeypatch):
    kernels = backend.kernels_for(np)
    right = kernels.batch_norm_backward

    def off_by_one_percent(*args):
        dx, dgamma, dbeta = right(*args)
        return dx * 1.01, dgamma, dbeta
    monkeypatch.setattr(kernels, "batch_norm_backward", off_by_one_percent)
    status, out, _ = run_cli(capsys, "batch_norm")
    assert status == 1
    table = rows(out)
    assert table["batch_norm-train"] == "FAIL" and table["batch_norm-train-1d"] == "FAIL"
    assert table["batch_norm-eval"] == "pass"          # eval mode does not use that kernel
    assert "input 0 (shape (3, 3, 3, 3))" in out       # the detail line says which input
    assert re.search(r"^4 checks, 1 passed, 3 failed .*: batch_norm-train, "
                     r"batch_norm-train-channels-last, batch_norm-train-1d$", out, re.M)


def test_the_shortcut_plus_one_check_sees_a_wrong_add(capsys, monkeypatch):
    from minires.ops import elementwise
    right = elementwise.unbroadcast
    monkeypatch.setattr(elementwise, "unbroadcast", lambda g, shape: right(g, shape) * 0.5)
    status, out, _ = run_cli(capsys, "shortcut_plus_one", "add", "relu")
    assert status == 1
    assert rows(out) == {"shortcut_plus_one": "FAIL", "add": "FAIL", "relu": "pass"}


def test_names_select_checks_and_their_variants(capsys):
    status, out, _ = run_cli(capsys, "conv2d", "batch_norm-eval")
    assert status == 0
    assert list(rows(out)) == ["conv2d", "conv2d-stride2", "conv2d-1x1", "conv2d-groups2",
                               "conv2d-dilation2", "batch_norm-eval"]


def test_unknown_names_are_one_line_listing_the_checks(capsys):
    status, out, err = run_cli(capsys, "conv3d", "relu")
    assert status == 1 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("minires gradcheck: error: unknown check 'conv3d'; the checks are: conv2d, ")
    assert "shortcut_plus_one" in err


def test_list_names_every_check_and_runs_none(capsys):
    status, out, _ = run_cli(capsys, "--list")
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()] == gradcheck_suite.names()
    assert "3x3, stride 2, padding 1" in out


def test_seed_changes_the_inputs_and_is_shown_in_help(capsys):
    a, b = (gradcheck_suite.run_check("linear", seed=s) for s in (0, 1))
    assert a.passed and b.passed and a.max_rel_error != b.max_rel_error
    assert gradcheck_suite.run_check("linear", seed=0) == a            # reproducible
    with pytest.raises(SystemExit):
        main(["gradcheck", "--help"])
    out = capsys.readouterr().out
    assert "(default: 0)" in out and "(default: auto" in out


def test_device_gpu_without_a_gpu_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(backend, "cuda_is_available", lambda: False)
    status = main(["gradcheck", "relu", "--device", "gpu"])
    err = capsys.readouterr().err
    assert status == 1
    assert err == "minires gradcheck: error: --device gpu: no CUDA GPU that CuPy can use here; try --device cpu\n"


def test_readme_gradient_check_snippet_prints_what_it_found(tmp_path):
    section = README.read_text().split("## Autograd and gradient checks in ten lines", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "snippet.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"add\(%0, %3\)\s+\(2, 4, 8, 8\)", out)        # the graph listing
    assert "gradcheck passed" in out
    assert re.search(r"input 0 \(2, 4, 8, 8\): 512 elements and 3 directions, "
                     r"max relative error \d\.\d\de-\d\d", out)
    assert re.search(r"input 1 \(4, 4, 3, 3\): 144 elements", out)


@pytest.mark.gpu
def test_the_suite_runs_on_the_gpu(capsys):
    # the cheap checks that build device tensors in each way the suite does (inputs,
    # class indices, index arrays, a module moved there, dropout's mask, an upstream
    # gradient); under the CUDA emulator each of the conv checks takes minutes
    picked = ["batch_norm-train-1d", "cross_entropy", "getitem-repeated", "dropout", "shortcut_plus_one"]
    status = main(["gradcheck", "--device", "gpu", *picked])
    out = capsys.readouterr().out
    assert status == 0, out
    table = rows(out)
    assert len(table) == 7 and set(table.values()) == {"pass"}
    assert re.search(r"^7 checks, 7 passed, 0 failed \(seed 0, cuda, ", out, re.M)


def test_a_check_that_raises_is_a_failed_row_and_the_others_still_run(capsys, monkeypatch):
    kernels = backend.kernels_for(np)

    def broken(*args, **kwargs):
        raise IndexError("col2im: out of bounds")
    monkeypatch.setattr(kernels, "col2im", broken)
    status, out, _ = run_cli(capsys, "conv2d-1x1", "linear")
    assert status == 1
    assert rows(out) == {"conv2d-1x1": "FAIL", "linear": "pass"}
    assert "raised IndexError: col2im: out of bounds" in out
