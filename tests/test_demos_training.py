"""The training demos (degradation, depth_sweep, shortcuts, unit_variants, d2l_resnet18) at --smoke:
their numbers finite and shaped right, their PNG written, and one cheap real property each;
the run reuse they share (demos/_runs.py): a finished run is read back, --run takes another's."""
import dataclasses
import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest
from shared_data import SHARED_DATA

from minires import models

DEMOS = Path(__file__).resolve().parents[1] / "demos"
pytestmark = pytest.mark.skipif(not (SHARED_DATA / "cifar-10-subset-python.tar.gz").is_file(),
                                reason=f"CIFAR-10 subset not found in {SHARED_DATA}")


def load(name):
    if str(DEMOS) not in sys.path:
        sys.path.insert(0, str(DEMOS))          # the demos import _runs from their folder
    spec = importlib.util.spec_from_file_location(name, DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_demo(name, capsys, *argv, data=True):
    """(exit status, stdout, stderr) of ``python demos/NAME.py --smoke ARGV``, in this process."""
    demo = load(name)
    argv = ["--smoke", "--no-download", *(["--data-dir", str(SHARED_DATA)] if data else []), *map(str, argv)]
    args = demo._runs.parse_args(demo.__doc__, demo.PRESETS, argv, getattr(demo, "extra", None))
    status = demo._runs.main(f"{name}.py", args, demo.run)
    out, err = capsys.readouterr()
    return status, out, err


def table(out, first_column):
    """The rows of the printed table whose header starts with ``first_column``: lists of cells."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(re.escape(first_column) + r" {2,}\S", line))
    rows = []
    for line in lines[start + 1:]:
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) < 3:
            break
        rows.append(cells)
    return rows


def percent_cells(rows, *columns):
    values = [float(row[c]) for row in rows for c in columns]
    assert all(math.isfinite(v) and 0 <= v <= 100 for v in values), rows
    return values


def assert_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def degradation_runs(tmp_path_factory):
    """One smoke run of degradation.py, shared: its run folders serve the --run tests."""
    return tmp_path_factory.mktemp("degradation")


# ------------------------------------------------------------------ degradation.py
def test_degradation_smoke_and_a_second_run_reads_the_first_back(degradation_runs, capsys):
    status, out, err = run_demo("degradation", capsys, "--out", degradation_runs)
    assert status == 0, err
    rows = table(out, "net")
    assert [r[0] for r in rows] == ["plain-8", "plain-14", "ResNet-8", "ResNet-14"]
    percent_cells(rows, 2, 3)
    params = {r[0]: r[1] for r in rows}
    # a plain net is its ResNet without the shortcuts: option A adds no parameters
    assert params["plain-8"] == params["ResNet-8"] and params["plain-14"] == params["ResNet-14"]
    assert {r[-1] for r in rows} == {"trained"}
    assert_png(degradation_runs / "degradation.png")
    numbers = json.loads((degradation_runs / "degradation.json").read_text())
    assert [f"{100 * numbers['runs'][r[0]]['final']['test_error']:.2f}" for r in rows] == [r[3] for r in rows]
    assert numbers["caption"].startswith("smoke preset: CIFAR-10 subset (official pixels), first 16 train")
    assert re.search(r"plain-14 (above|below|level with) plain-8 in training error .*; the paper: above", out)
    assert re.search(r"ResNet-14 (above|below|level with) ResNet-8 in training error .*; the paper: below", out)

    status, again, err = run_demo("degradation", capsys, "--out", degradation_runs)
    assert status == 0, err
    rows_again = table(again, "net")
    assert {r[-1] for r in rows_again} == {"reused"}                    # nothing trained again
    assert [r[:-1] for r in rows_again] == [r[:-1] for r in rows]       # the same numbers


def test_a_demo_refuses_an_out_folder_holding_other_runs(degradation_runs, capsys):
    status, out, err = run_demo("degradation", capsys, "--out", degradation_runs, "--epochs", 3)
    assert status == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("degradation.py: error: ")
    assert "holds another run (--epochs unset, this demo's --epochs 3)" in lines[0]
    assert "give another --out" in lines[0]


def test_without_its_data_a_demo_says_so_in_one_line(tmp_path, capsys):
    status, out, err = run_demo("degradation", capsys, "--data-dir", tmp_path / "missing",
                                "--out", tmp_path, data=False)
    assert status == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("degradation.py: error: CIFAR-10 not found"), err
    assert "--data-dir" in lines[0] and "--no-download" in lines[0] and "root=" not in lines[0]


# ------------------------------------------------------------------ depth_sweep.py and --run
def test_depth_sweep_smoke_with_one_run_taken_from_another_demo(degradation_runs, tmp_path, capsys):
    given = degradation_runs / "resnet-8"                          # written by minires's trainer
    status, out, err = run_demo("depth_sweep", capsys, "--out", tmp_path, "--run", f"resnet-8={given}")
    assert status == 0, err
    rows = table(out, "net")
    assert [r[0] for r in rows] == ["ResNet-8", "ResNet-14"]
    percent_cells(rows, 3, 4)
    assert [r[-1] for r in rows] == ["--run", "trained"]
    assert not (tmp_path / "resnet-8").exists()                   # not trained here
    last = json.loads((given / "metrics.jsonl").read_text().splitlines()[-1])
    assert rows[0][4] == f"{100 * last['test_error']:.2f}"        # that run's own numbers
    counts = [int(r[1].replace(",", "")) for r in rows]
    assert counts == [sum(p.size for p in models.get_model(f"resnet_cifar:depth={d}").parameters())
                      for d in (8, 14)] and counts[0] < counts[1]
    assert_png(tmp_path / "depth_sweep.png")


def test_run_of_another_model_is_refused_in_one_line(degradation_runs, tmp_path, capsys):
    status, out, err = run_demo("depth_sweep", capsys, "--out", tmp_path,
                                "--run", f"ResNet-8={degradation_runs / 'plain-8'}")
    assert status == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("depth_sweep.py: error: --run ResNet-8=")
    assert "that run trained plain_cifar:depth=8" in lines[0]


def test_run_needs_a_known_label_and_a_run_folder(tmp_path, capsys):
    status, _, err = run_demo("depth_sweep", capsys, "--out", tmp_path, "--run", "ResNet-9=x")
    assert status == 1 and "LABEL one of ResNet-8, ResNet-14 (or resnet-8, resnet-14)" in err
    status, _, err = run_demo("depth_sweep", capsys, "--out", tmp_path, "--run", f"ResNet-8={tmp_path}")
    assert status == 1 and "no config.json and metrics.jsonl there" in err


# ------------------------------------------------------------------ shortcuts.py, unit_variants.py
def test_shortcuts_smoke_projections_cost_parameters(tmp_path, capsys):
    # a run folder with its settings but no checkpoint yet (cut off before its first epoch):
    # the demo continues that run instead of refusing the folder or starting another
    demo = load("shortcuts")
    args = demo._runs.parse_args(demo.__doc__, demo.PRESETS, ["--smoke", "--data-dir", str(SHARED_DATA),
                                                              "--no-download", "--out", str(tmp_path)])
    cut = demo._runs.config_for(args, "resnet_cifar:depth=8,shortcut=A", "shortcuts", "A: zero-pad")
    Path(cut.out).mkdir(parents=True)
    (Path(cut.out) / "config.json").write_text(json.dumps(dataclasses.asdict(cut)))
    status, out, err = run_demo("shortcuts", capsys, "--out", tmp_path)
    assert status == 0, err
    rows = table(out, "shortcut")
    assert [r[0][0] for r in rows] == ["A", "B", "C"]
    assert [r[-1] for r in rows] == ["resumed", "trained", "trained"]
    percent_cells(rows, 2, 3)
    a, b, c = (int(r[1].replace(",", "")) for r in rows)
    assert a < b < c                        # B projects twice (where the shape changes), C everywhere
    assert [r[4] for r in rows] == ["25.03", "24.52", "24.19"]
    assert_png(tmp_path / "shortcuts.png")


def test_unit_variants_smoke_trains_each_unit(tmp_path, capsys):
    status, out, err = run_demo("unit_variants", capsys, "--out", tmp_path)
    assert status == 0, err
    rows = table(out, "unit")
    assert len(rows) == 5
    percent_cells(rows, 2, 3)
    demo = load("unit_variants")
    for label, (variant, paper) in demo.UNITS.items():          # each run folder built its unit
        saved = json.loads((tmp_path / demo._runs.slug(label) / "config.json").read_text())
        assert models.get_model(saved["model"]).variant == variant
    assert [r[4] for r in rows] == [paper for _, paper in demo.UNITS.values()]
    assert_png(tmp_path / "unit_variants.png")


# ------------------------------------------------------------------ d2l_resnet18.py
def test_d2l_full_preset_is_the_books_recipe():
    demo = load("d2l_resnet18")
    full = demo.PRESETS["full"]
    assert {k: full[k] for k in ("lr", "batch_size", "epochs", "resize", "momentum", "weight_decay",
                                 "schedule", "augment")} == {
        "lr": 0.05, "batch_size": 256, "epochs": 10, "resize": 96, "momentum": 0.0,
        "weight_decay": 0.0, "schedule": "constant", "augment": False}
    assert "limit_train" not in full and demo.ENGLISH == {"lr": 0.01, "batch_size": 128}


fashion = pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                             reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


@fashion
def test_d2l_smoke_minires_side(tmp_path, capsys):
    status, out, err = run_demo("d2l_resnet18", capsys, "--out", tmp_path, "--no-torch", "--english",
                                data=False)
    assert status == 0, err
    rows = table(out, "framework")
    assert [r[0] for r in rows] == ["minires"]
    loss, train_acc, test_acc = map(float, rows[0][1:4])
    assert math.isfinite(loss) and 0 <= train_acc <= 1 and 0 <= test_acc <= 1
    assert "PyTorch: not run (--no-torch)" in out
    saved = json.loads((tmp_path / "minires" / "config.json").read_text())
    assert (saved["model"], saved["dataset"], saved["lr"], saved["batch_size"]) == \
        ("d2l_resnet18", "fashion-mnist", 0.01, 128)
    assert_png(tmp_path / "d2l_resnet18.png")


@fashion
@pytest.mark.slow
def test_d2l_smoke_both_sides(tmp_path, capsys):
    pytest.importorskip("torch")
    status, out, err = run_demo("d2l_resnet18", capsys, "--out", tmp_path, data=False)
    assert status == 0, err
    rows = table(out, "framework")
    assert [r[0] for r in rows] == ["minires", "PyTorch"]
    assert all(0 <= float(r[3]) <= 1 for r in rows)
    theirs = json.loads((tmp_path / "pytorch" / "config.json").read_text())
    ours = json.loads((tmp_path / "minires" / "config.json").read_text())
    assert all(theirs[k] == ours[k] for k in ("lr", "batch_size", "resize", "iterations", "limit_train",
                                               "momentum", "weight_decay", "schedule"))
