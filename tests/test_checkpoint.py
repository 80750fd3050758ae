"""Checkpoints: a real one (a small conv net and its SGD state after a step) damaged every
way a disk, a copy or a hand can damage it -- each refused with ONE CheckpointError line that
names the file, none accepted silently, none a traceback from numpy, zipfile or json."""
import errno
import hashlib
import json
import os
import re
import stat
import time
import zipfile

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
from minires import cli, nn, optim
from minires.checkpoint import (FORMAT, LEGACY_FORMAT, CheckpointError, CheckpointWriteError,
                                load_checkpoint, meta_value, restore_model, restore_optimizer,
                                save_checkpoint)


# ---------------------------------------------------------------- a real checkpoint
def tiny_net():
    """conv -> batch norm -> linear: parameters, running-stat buffers and an int64 counter."""
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8, 3))


def trained(seed=0):
    """(model, optimizer) after one SGD step with momentum: every parameter has a buffer."""
    mr.manual_seed(seed)
    model = tiny_net()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = mr.tensor(np.random.default_rng(seed).standard_normal((4, 1, 4, 4)).astype(np.float32))
    F.cross_entropy(model(x), mr.tensor(np.array([0, 1, 2, 0]))).backward()
    opt.step()
    return model, opt


def snapshot(model, opt):
    """(arrays, meta) laid out as Trainer.save lays them out."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    state = opt.state_dict()
    for i, entry in state["state"].items():
        for k, v in entry.items():
            arrays[f"optim/{i}/{k}"] = v
    return arrays, {"epoch": 1, "step": 1, "optimizer_groups": state["groups"]}


@pytest.fixture
def ckpt(tmp_path):
    model, opt = trained()
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, *snapshot(model, opt))
    return path


def write_legacy(path, arrays, meta):
    """A checkpoint exactly as save_checkpoint wrote them before the digest (commit 722d4a8)."""
    document = json.dumps({"format": LEGACY_FORMAT, **meta}, sort_keys=True).encode()
    np.savez(path, **arrays, __meta__=np.frombuffer(document, dtype=np.uint8))


def refused(path, *patterns):
    """load_checkpoint(path) must raise CheckpointError: one line naming the file (and patterns)."""
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    for p in patterns:
        assert re.search(p, message), f"{p!r} not in {message!r}"
    return message


def assert_every_damage_refused(tmp_path, data, damages):
    """Each damage(data) -> bytes written to a file must be refused with a one-line CheckpointError
    (a fresh file each time: rewriting one in place makes ext4 flush it to disk, 1 ms a time)."""
    for i, damage in enumerate(damages):
        path = tmp_path / f"damaged-{i}.npz"
        path.write_bytes(damage(data))
        try:
            load_checkpoint(path)
        except CheckpointError as e:
            assert str(path) in str(e) and "\n" not in str(e) and "is damaged" in str(e), str(e)
        else:
            raise AssertionError(f"{damage.__doc__} was accepted")
        path.unlink()


def flip(offset, bit=0x01):
    def damage(data):
        return data[:offset] + bytes([data[offset] ^ bit]) + data[offset + 1:]
    damage.__doc__ = f"a flipped bit at byte {offset}"
    return damage


def cut(size):
    def damage(data):
        return data[:size]
    damage.__doc__ = f"the first {size} bytes"
    return damage


def damaged_copy(src, dst, edit):
    data = bytearray(src.read_bytes())
    dst.write_bytes(bytes(edit(data)))
    return dst


# ---------------------------------------------------------------- the good path
def test_round_trip_restores_model_and_optimizer_exactly(ckpt):
    model, opt = trained()
    arrays, meta = load_checkpoint(ckpt)
    assert meta["format"] == FORMAT and meta["epoch"] == 1
    fresh, fresh_opt = trained(seed=7)
    restore_model(ckpt, fresh, arrays)
    restore_optimizer(ckpt, fresh_opt, arrays, meta)
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert a.dtype == b.dtype and np.array_equal(a, b), k
    for i, entry in opt.state_dict()["state"].items():
        saved = fresh_opt.state_dict()["state"][i]
        assert np.array_equal(entry["momentum_buffer"], saved["momentum_buffer"])
    assert fresh_opt.param_groups[0]["weight_decay"] == 1e-4


def test_the_digest_is_written_last_and_covers_every_byte_before_it(ckpt):
    data = ckpt.read_bytes()
    assert data[-79:-64] == b"minires-sha256:"
    assert data[-64:] == hashlib.sha256(data[:-64]).hexdigest().encode()


def test_equal_content_gives_equal_bytes(tmp_path, monkeypatch):
    arrays, meta = snapshot(*trained())
    save_checkpoint(tmp_path / "a.npz", arrays, meta)
    monkeypatch.setattr(time, "time", lambda: 2e9)              # saved years later
    save_checkpoint(tmp_path / "b.npz", arrays, meta)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_file_mode_follows_the_umask_like_the_other_run_files(tmp_path):
    previous = os.umask(0o027)
    try:
        save_checkpoint(tmp_path / "c.npz", {"w": np.zeros(2)}, {})
        (tmp_path / "metrics.jsonl").write_text("{}\n")
    finally:
        os.umask(previous)
    mode = (tmp_path / "c.npz").stat().st_mode & 0o777
    assert mode == 0o640 == (tmp_path / "metrics.jsonl").stat().st_mode & 0o777


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced, real_fsync = [], os.fsync

    def fsync(fd):
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    save_checkpoint(tmp_path / "c.npz", {"w": np.zeros(2)}, {})
    assert synced == ["file", "folder"]


def test_older_checkpoints_without_a_digest_still_load(tmp_path):
    """A run saved before the digest existed can be resumed; its arrays are CRC-guarded."""
    model, opt = trained()
    arrays, meta = snapshot(model, opt)
    write_legacy(tmp_path / "old.npz", arrays, meta)
    loaded, loaded_meta = load_checkpoint(tmp_path / "old.npz")
    assert loaded_meta["format"] == LEGACY_FORMAT
    fresh, fresh_opt = trained(seed=3)
    restore_model(tmp_path / "old.npz", fresh, loaded)
    restore_optimizer(tmp_path / "old.npz", fresh_opt, loaded, loaded_meta)
    assert np.array_equal(fresh.state_dict()["0.weight"], model.state_dict()["0.weight"])


# ---------------------------------------------------------------- damage on disk
def test_missing_empty_folder_and_npy_files_are_refused(tmp_path):
    refused(tmp_path / "none.npz", "no checkpoint")
    (tmp_path / "empty.npz").write_bytes(b"")
    refused(tmp_path / "empty.npz", "empty", "0 bytes")
    (tmp_path / "dir.npz").mkdir()
    refused(tmp_path / "dir.npz", "folder")
    np.save(tmp_path / "one.npy", np.zeros(3))
    refused(tmp_path / "one.npy", "not a minires checkpoint")
    (tmp_path / "text.npz").write_text("hello")
    refused(tmp_path / "text.npz", "damaged")


def test_every_truncation_is_refused(ckpt, tmp_path):
    data = ckpt.read_bytes()
    assert_every_damage_refused(tmp_path, data, [cut(n) for n in range(len(data))])


def test_every_flipped_byte_is_refused(ckpt, tmp_path):
    data = ckpt.read_bytes()
    assert_every_damage_refused(tmp_path, data, [flip(i) for i in range(len(data))])


def test_resnet20_checkpoint_flipped_and_cut_at_sampled_offsets(tmp_path):
    model = mr.models.resnet20()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "r20.npz"
    save_checkpoint(path, *snapshot(model, opt))
    data = path.read_bytes()
    offsets = np.random.default_rng(0).integers(0, len(data), 24).tolist() + [0, len(data) - 1]
    assert_every_damage_refused(tmp_path, data, [flip(i, 0x80) for i in offsets]
                                + [cut(n) for n in (1, 100, len(data) // 2, len(data) - 80,
                                                    len(data) - 1)])


def test_a_sealed_checkpoint_whose_seal_is_removed_is_refused(ckpt, tmp_path):
    arrays, meta = load_checkpoint(ckpt)
    document = json.dumps(meta).encode()               # format 2, rewritten without the digest
    np.savez(tmp_path / "unsealed.npz", **arrays, __meta__=np.frombuffer(document, np.uint8))
    refused(tmp_path / "unsealed.npz", "digest is missing")


def test_a_flipped_byte_in_an_older_checkpoint_never_changes_what_loads(tmp_path):
    """Without a digest the zip CRC-32s are the guard: a flip is refused or touched only
    zip bookkeeping, never the arrays or the meta (a small file: every offset is parsed)."""
    arrays = {"model/weight": np.ones((2, 2), np.float32), "model/bias": np.zeros(2, np.float32),
              "optim/0/momentum_buffer": np.ones((2, 2), np.float32),
              "optim/1/momentum_buffer": np.zeros(2, np.float32)}
    meta = {"epoch": 1, "optimizer_groups": [{"lr": 0.1}]}
    write_legacy(tmp_path / "old.npz", arrays, meta)
    good_arrays, good_meta = load_checkpoint(tmp_path / "old.npz")
    refusals = 0
    data = (tmp_path / "old.npz").read_bytes()
    for offset in range(len(data)):
        path = tmp_path / f"flip-{offset}.npz"
        path.write_bytes(flip(offset)(data))
        try:
            loaded, loaded_meta = load_checkpoint(path)
        except CheckpointError as e:
            assert "\n" not in str(e) and str(path) in str(e)
            refusals += 1
            continue
        finally:
            path.unlink()
        assert loaded_meta == good_meta and loaded.keys() == good_arrays.keys(), offset
        for k, v in loaded.items():
            assert v.dtype == good_arrays[k].dtype and np.array_equal(v, good_arrays[k]), (offset, k)
    assert refusals > 0


# ---------------------------------------------------------------- damaged content
@pytest.mark.parametrize("document, pattern", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b"[1, 2]", "JSON list, expected an object"),
    (b'"text"', "JSON str"),
    (b"{}", "unknown checkpoint format None"),
    (b'{"format": "minires-checkpoint-9"}', "unknown checkpoint format"),
])
def test_a_damaged_meta_document_is_refused(tmp_path, document, pattern):
    np.savez(tmp_path / "m.npz", w=np.zeros(2), __meta__=np.frombuffer(document, np.uint8))
    refused(tmp_path / "m.npz", pattern)


def test_meta_must_be_bytes_and_present(tmp_path):
    np.savez(tmp_path / "f.npz", __meta__=np.zeros(3))
    refused(tmp_path / "f.npz", "float64", "expected JSON bytes")
    np.savez(tmp_path / "bad.npz", w=np.arange(3))
    refused(tmp_path / "bad.npz", "not a minires checkpoint")


@pytest.mark.parametrize("value, pattern", [
    (np.array([1 + 2j, 3j], np.complex64), "complex64"),
    (np.array(["a", "b"]), "<U1"),
    (np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]), "expected bool, integer or float"),
    (np.array([1.0, np.nan], np.float32), "1 NaN or infinite"),
    (np.array([np.inf, -np.inf, 0.0]), "2 NaN or infinite"),
])
def test_non_numeric_and_non_finite_arrays_are_refused(tmp_path, value, pattern):
    arrays, meta = snapshot(*trained())
    arrays["model/0.weight"] = value
    write_legacy(tmp_path / "x.npz", arrays, meta)
    refused(tmp_path / "x.npz", "'model/0.weight'", pattern)
    with pytest.raises(CheckpointError, match=pattern):           # and never written
        save_checkpoint(tmp_path / "new.npz", arrays, meta)
    assert not any(tmp_path.glob("new.npz")) and not any(tmp_path.glob(".tmp-*"))


def test_a_member_that_is_not_an_npy_array_is_refused(tmp_path):
    write_legacy(tmp_path / "x.npz", {"w": np.zeros(2)}, {})
    with zipfile.ZipFile(tmp_path / "x.npz", "a") as archive:
        archive.writestr("readme.txt", "hello")
    refused(tmp_path / "x.npz", "'readme.txt' is not a .npy array")


def test_pickled_object_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "o.npz", w=np.array([{"a": 1}], dtype=object),
             __meta__=np.frombuffer(json.dumps({"format": LEGACY_FORMAT}).encode(), np.uint8))
    refused(tmp_path / "o.npz", "'w'", "pickle")


# ---------------------------------------------------------------- not matching the model
def restore_refused(path, arrays, *patterns, meta=None):
    """restore_model (or restore_optimizer with meta) must refuse and leave the target as it was."""
    model, opt = trained(seed=5)
    before = model.state_dict()
    before_state = opt.state_dict()
    with pytest.raises(CheckpointError) as info:
        if meta is None:
            restore_model(path, model, arrays)
        else:
            restore_optimizer(path, opt, arrays, meta)
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    for p in patterns:
        assert re.search(p, message), f"{p!r} not in {message!r}"
    for (k, a), b in zip(before.items(), model.state_dict().values()):
        assert np.array_equal(a, b), k
    assert opt.state_dict()["groups"] == before_state["groups"]
    assert opt.param_groups[0]["params"] == list(model.parameters())


def test_weights_of_another_dtype_are_refused_not_cast(ckpt):
    arrays, _ = load_checkpoint(ckpt)
    for dtype in (np.int32, np.float64, np.bool_):
        wrong = {**arrays, "model/4.weight": arrays["model/4.weight"].astype(dtype)}
        restore_refused(ckpt, wrong, "'model/4.weight'", np.dtype(dtype).name, "float32")


def test_missing_unknown_and_misshapen_model_arrays_are_refused(ckpt):
    arrays, _ = load_checkpoint(ckpt)
    missing = {k: v for k, v in arrays.items() if k != "model/1.running_var"}
    restore_refused(ckpt, missing, "missing arrays model/1.running_var")
    restore_refused(ckpt, {**arrays, "model/9.weight": np.zeros(2, np.float32)},
                    "unknown arrays model/9.weight")
    restore_refused(ckpt, {**arrays, "model/4.bias": np.zeros(4, np.float32)},
                    "'model/4.bias'", r"\(4,\)", r"\(3,\)")
    restore_refused(ckpt, {**arrays, "model/4.bias": np.array([0, np.nan, 0], np.float32)},
                    "'model/4.bias'", "NaN")


@pytest.mark.parametrize("groups, pattern", [
    ([], "holds 0 groups, this optimizer has 1"),
    ("all", "'optimizer_groups' is str"),
    ([{"params": [], "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False,
       "dampening": 0.0}], "expected .*dampening"),
    ([{"lr": 0.1}], "hyper-parameters \\['lr'\\]"),
    ([None], "group 0 is a JSON NoneType"),
    ([{"lr": "0.1", "momentum": 0.9, "weight_decay": 0.0, "nesterov": False, "dampening": 0.0}],
     "'lr' is '0.1', expected a finite number"),
    ([{"lr": float("nan"), "momentum": 0.9, "weight_decay": 0.0, "nesterov": False,
       "dampening": 0.0}], "'lr' is nan"),
    ([{"lr": 0.1, "momentum": -1, "weight_decay": 0.0, "nesterov": False, "dampening": 0.0}],
     "'momentum' is -1"),
    ([{"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "nesterov": 1, "dampening": 0.0}],
     "'nesterov' is 1, expected true or false"),
    ([{"lr": True, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False, "dampening": 0.0}],
     "'lr' is True"),
])
def test_optimizer_groups_that_do_not_fit_are_refused(ckpt, groups, pattern):
    arrays, meta = load_checkpoint(ckpt)
    restore_refused(ckpt, arrays, pattern, meta={**meta, "optimizer_groups": groups})


def test_missing_optimizer_groups_are_refused(ckpt):
    arrays, meta = load_checkpoint(ckpt)
    del meta["optimizer_groups"]
    restore_refused(ckpt, arrays, "no 'optimizer_groups'", meta=meta)


def test_optimizer_state_that_does_not_fit_is_refused(ckpt):
    arrays, meta = load_checkpoint(ckpt)
    buffer = arrays["optim/0/momentum_buffer"]
    for key in ("optim/99/momentum_buffer", "optim/x/momentum_buffer", "optim/0"):
        restore_refused(ckpt, {**arrays, key: buffer}, "unknown optimizer array", meta=meta)
    restore_refused(ckpt, {**arrays, "optim/0/momentum_buffer": buffer[:1]},
                    "'optim/0/momentum_buffer'", r"\(1, 1, 3, 3\)", r"\(2, 1, 3, 3\)", meta=meta)
    restore_refused(ckpt, {**arrays, "optim/0/momentum_buffer": buffer.astype(np.float64)},
                    "float64", "its parameter is float32", meta=meta)


def test_meta_value_names_the_file_and_the_field(ckpt):
    _, meta = load_checkpoint(ckpt)
    assert meta_value(ckpt, meta, "epoch", int) == 1
    for key, types, pattern in (("epochs", int, "no 'epochs'"), ("epoch", str, "'epoch' is int"),
                                ("step", (float, str), "expected float or str")):
        with pytest.raises(CheckpointError, match=pattern) as info:
            meta_value(ckpt, meta, key, types)
        assert str(ckpt) in str(info.value)
    with pytest.raises(CheckpointError, match="'flag' is bool"):
        meta_value(ckpt, {"flag": True}, "flag", int)


# ---------------------------------------------------------------- a failing disk
def test_disk_full_mid_write_keeps_the_old_checkpoint_and_names_the_file(ckpt, monkeypatch):
    before = ckpt.read_bytes()
    real_write = np.lib.format.write_array

    def fill_the_disk(fp, array, **kwargs):
        fp.write(b"\0" * 64)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np.lib.format, "write_array", fill_the_disk)
    arrays, meta = snapshot(*trained(seed=2))
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint(ckpt, arrays, meta)
    monkeypatch.setattr(np.lib.format, "write_array", real_write)
    message = str(info.value)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert str(ckpt) in message and "No space left" in message and "free some disk space" in message
    assert "\n" not in message and "[Errno" not in message
    assert ckpt.read_bytes() == before and load_checkpoint(ckpt)[1]["epoch"] == 1
    assert [p.name for p in ckpt.parent.iterdir()] == [ckpt.name]


def test_permission_denied_names_the_file_and_leaves_no_temporary(ckpt, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(CheckpointWriteError, match="cannot write checkpoint .*Permission denied.*"
                                                   "make the folder writable") as info:
        save_checkpoint(ckpt, {"w": np.zeros(2)}, {})
    assert str(ckpt) in str(info.value) and info.value.errno == errno.EACCES
    assert [p.name for p in ckpt.parent.iterdir()] == [ckpt.name]


def test_a_folder_that_cannot_be_synced_is_reported_after_the_rename(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(CheckpointWriteError, match="was written, but syncing its folder failed"):
        save_checkpoint(tmp_path / "c.npz", {"w": np.zeros(2)}, {})
    monkeypatch.undo()
    assert np.array_equal(load_checkpoint(tmp_path / "c.npz")[0]["w"], np.zeros(2))


def test_an_interrupt_mid_write_leaves_no_temporary(ckpt, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(np.lib.format, "write_array", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ckpt, {"w": np.zeros(2)}, {})
    assert [p.name for p in ckpt.parent.iterdir()] == [ckpt.name]


# ---------------------------------------------------------------- the CLI
def test_minires_eval_of_a_damaged_checkpoint_is_one_line(ckpt, tmp_path, capsys):
    damaged_copy(ckpt, tmp_path / "bad.npz", lambda d: d[:len(d) // 2])
    assert cli.main(["eval", str(tmp_path / "bad.npz"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minires eval: error: checkpoint ") and err.count("\n") == 1
    assert "Traceback" not in err and str(tmp_path / "bad.npz") in err
