"""Published weights: PyTorch's two file formats read without PyTorch or pickle code, hashes
checked, akamaster's names mapped, and the shared converted weights scoring as published."""
import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
from shared_data import SHARED_DATA, SHARED_DATA_ALL

import minires as mr
from minires import hub
from minires.train import evaluate
from minires.torchfile import TorchFileError, UnsafeTorchFileError, load_torch_file

SHARED_MODELS = SHARED_DATA_ALL.parent / "models"        # ../shared/models beside the checkout
needs_shared_models = pytest.mark.skipif(not (SHARED_MODELS / "resnet20-12fca82f.npz").is_file(),
                                         reason=f"converted weights not found in {SHARED_MODELS}")


def akamaster_style(torch, state):
    """The dict akamaster's trainer.py saves: DataParallel names, no num_batches_tracked."""
    sd = collections.OrderedDict((f"module.{k}", torch.from_numpy(np.array(v))) for k, v in state.items()
                                 if not k.endswith("num_batches_tracked"))
    return {"state_dict": sd, "best_prec1": 91.78}


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_both_torch_formats_read_back_identical_arrays(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    t = torch.randn(3, 4, generator=g)
    obj = {"state_dict": collections.OrderedDict([
        ("module.conv1.weight", torch.randn(4, 3, 3, 3, generator=g)),
        ("module.bn1.running_var", torch.rand(4, generator=g, dtype=torch.float64)),
        ("module.transposed", t.t()), ("module.row", t[1]),          # strided views of one storage
        ("module.count", torch.tensor(7)), ("module.half", torch.randn(5, generator=g).half()),
        ("module.empty", torch.zeros(0, 3))]), "best_prec1": 91.5, "arch": ["resnet20", (1, 2)]}
    path = tmp_path / "w.th"
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    assert zipfile.is_zipfile(path) == zip_format
    got = load_torch_file(path)
    assert list(got["state_dict"]) == list(obj["state_dict"])
    for k, v in obj["state_dict"].items():
        a = got["state_dict"][k]
        assert a.dtype == v.numpy().dtype and a.shape == tuple(v.shape) and np.array_equal(a, v.numpy()), k
    assert got["best_prec1"] == 91.5 and got["arch"] == ["resnet20", (1, 2)]


class _OldTensor:
    """A tensor as torch < 1.0 pickled it: a view into a root storage, kept on the GPU."""

    def __init__(self, root_key, root_numel, view_offset, view_numel, offset, size, stride):
        self.storage = ("view", root_key, root_numel, view_offset, view_numel)
        self.args = (offset, size, stride)


def _torch04_file(torch, path, tensors, roots):
    """The legacy format as torch 0.4 wrote it from a DataParallel model on a GPU:
    torch.cuda.FloatStorage, location 'cuda:0', and storage views (key, offset, size)."""
    class Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, _OldTensor):
                return torch._utils._rebuild_tensor_v2, (obj.storage, *obj.args, False, collections.OrderedDict())
            return NotImplemented

        def persistent_id(self, obj):
            if isinstance(obj, tuple) and obj and obj[0] == "view":
                _, root, numel, view_offset, view_numel = obj
                return ("storage", torch.cuda.FloatStorage, root, "cuda:0", numel,
                        (f"{root}-view{view_offset}", view_offset, view_numel))
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"state_dict": tensors, "best_prec1": 91.0})
    with open(path, "wb") as f:
        f.write(_legacy(buffer.getvalue()))
        f.write(pickle.dumps(sorted(roots), protocol=2))
        for key in sorted(roots):
            f.write(np.int64(len(roots[key])).tobytes() + roots[key].astype("<f4").tobytes())


def test_a_torch_0_4_file_with_gpu_storages_and_storage_views_reads(tmp_path):
    torch = pytest.importorskip("torch")
    root = np.arange(20, dtype=np.float32)
    tensors = collections.OrderedDict([
        ("module.a", _OldTensor("7", 20, 4, 12, 1, (2, 3), (3, 1))),      # root[4:16][1:7] as 2x3
        ("module.b", _OldTensor("7", 20, 0, 20, 0, (5, 4), (1, 5)))])     # root, read transposed
    path = tmp_path / "old.th"
    _torch04_file(torch, path, tensors, {"7": root})
    got = load_torch_file(path)["state_dict"]
    assert np.array_equal(got["module.a"], root[4:16][1:7].reshape(2, 3))
    assert np.array_equal(got["module.b"], root.reshape(4, 5).T)
    tensors["module.c"] = _OldTensor("7", 20, 16, 4, 0, (5,), (1,))     # 5 elements of a 4-element view
    _torch04_file(torch, path, tensors, {"7": root})
    with pytest.raises(TorchFileError, match="reaches past its storage of 4 elements"):
        load_torch_file(path)


def test_tensors_claiming_far_more_than_the_files_storages_are_refused(tmp_path):
    torch = pytest.importorskip("torch")
    root = np.zeros(1000, np.float32)                  # 4 kB of storage, read 2,000 times: 8 MB
    tensors = {f"module.t{i}": _OldTensor("7", 1000, 0, 1000, 0, (1000,), (1,)) for i in range(2000)}
    path = tmp_path / "amplified.th"
    _torch04_file(torch, path, tensors, {"7": root})
    with pytest.raises(TorchFileError, match="claim more than twice the 4000 bytes"):
        load_torch_file(path)


def test_a_pickle_nested_past_any_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "deep.th"                        # [[[...]]] 100,000 deep: EMPTY_LIST ..., APPEND ...
    path.write_bytes(_legacy(b"]" * 100_000 + b"a" * 99_999 + b".") + pickle.dumps([], protocol=2))
    with pytest.raises(TorchFileError, match="nested too deeply"):
        load_torch_file(path)


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):                      # what an attacker's pickle does: GLOBAL os.system, REDUCE
        return (os.system, (f"touch {self.marker}",))


def _legacy(payload: bytes) -> bytes:
    header = [0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}]
    return b"".join(pickle.dumps(h, protocol=2) for h in header) + payload


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_a_pickle_that_runs_a_command_is_refused_before_anything_runs(tmp_path, fmt):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"state_dict": {}, "x": _RunsShell(marker)}, protocol=2)
    assert b"system" in evil and b"R" in evil          # GLOBAL posix/nt system ... REDUCE
    path = tmp_path / "evil.th"
    if fmt == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", evil)
    else:
        path.write_bytes(_legacy(evil))
    with pytest.raises(UnsafeTorchFileError, match=r"refused to load the global (posix|nt)\.system") as e:
        load_torch_file(path)
    assert not marker.exists() and "\n" not in str(e.value)


def test_an_allowed_name_cannot_be_rewritten_by_the_pickle(tmp_path):
    path = tmp_path / "build.th"                    # GLOBAL collections.OrderedDict, {} , BUILD
    path.write_bytes(_legacy(b"ccollections\nOrderedDict\n}b."))
    with pytest.raises(UnsafeTorchFileError, match="refused to set the state"):
        load_torch_file(path)


def test_a_file_that_is_not_a_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "noise.th"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(TorchFileError, match="neither a zip nor a legacy PyTorch checkpoint"):
        load_torch_file(path)


# ------------------------------------------------------------------ finding and verifying
def _weights_for(path, name="resnet20"):
    """A table entry whose tag is ``path``'s hash prefix, as the published name carries."""
    return hub.Weights(f"{name}-{hub.sha256sum(path)[:8]}", hub.PRETRAINED[name].npz_sha256, 0.0)


@pytest.fixture
def akamaster_file(tmp_path):
    """A real-sized ResNet-20 .th in akamaster's layout (legacy format), random weights."""
    torch = pytest.importorskip("torch")
    mr.manual_seed(0)
    state = mr.models.resnet20().state_dict()
    path = tmp_path / "src" / "resnet20.th"
    path.parent.mkdir()
    torch.save(akamaster_style(torch, state), path, _use_new_zipfile_serialization=False)
    return path, state


def test_an_akamaster_file_in_a_folder_loads_under_minires_names(tmp_path, akamaster_file, monkeypatch):
    path, state = akamaster_file
    w = _weights_for(path)
    monkeypatch.setitem(hub.PRETRAINED, "resnet20", w)
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / f"{w.stem}.th").write_bytes(path.read_bytes())
    model = mr.models.resnet20(pretrained=folder)
    for k, v in model.state_dict().items():
        assert np.array_equal(v, state[k]), k
    assert model.config == {"name": "resnet20", "kwargs": {}}        # from_config: untrained


def test_a_download_is_verified_cached_and_announces_the_license(tmp_path, akamaster_file, monkeypatch,
                                                                 capsys):
    path, _ = akamaster_file
    w = _weights_for(path)
    monkeypatch.setitem(hub.PRETRAINED, "resnet20", w)
    monkeypatch.setattr(hub, "_BASE_URL", path.parent.as_uri() + "/")
    (path.parent / f"{w.stem}.th").write_bytes(path.read_bytes())     # the "server"
    monkeypatch.setenv("MINIRES_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv(hub.ENV_VAR, raising=False)
    hub.pretrained_state_dict("resnet20", progress=False)
    assert (tmp_path / "cache" / "models" / f"{w.stem}.th").is_file()
    assert "BSD-2-Clause" in capsys.readouterr().err
    hub.pretrained_state_dict("resnet20", progress=False, download=False)   # from the cache now
    assert "BSD-2-Clause" not in capsys.readouterr().err


def test_a_download_with_the_wrong_hash_is_refused_and_removed(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    (server / "resnet20-12fca82f.th").write_bytes(b"someone else's bytes")
    monkeypatch.setattr(hub, "_BASE_URL", server.as_uri() + "/")
    monkeypatch.setenv("MINIRES_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv(hub.ENV_VAR, raising=False)
    with pytest.raises(hub.WeightsError, match="does not start with 12fca82f") as e:
        hub.pretrained_state_dict("resnet20", progress=False)
    assert "\n" not in str(e.value)
    assert not any((tmp_path / "cache" / "models").iterdir())


def test_no_file_and_no_network_is_one_line_naming_the_ways_out(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "_BASE_URL", (tmp_path / "nowhere").as_uri() + "/")
    monkeypatch.setenv("MINIRES_DATA", str(tmp_path / "cache"))
    monkeypatch.delenv(hub.ENV_VAR, raising=False)
    with pytest.raises(mr.data.DownloadError) as e:
        mr.models.resnet20(pretrained=True)
    message = str(e.value)
    assert "\n" not in message and "Nothing was saved" in message and hub.ENV_VAR in message
    with pytest.raises(FileNotFoundError, match="downloading is off"):
        hub.pretrained_state_dict("resnet20", download=False)


def test_a_converted_npz_with_the_wrong_hash_is_refused(tmp_path, monkeypatch):
    np.savez(tmp_path / "resnet20-12fca82f.npz", **mr.models.resnet20().state_dict())
    monkeypatch.setenv(hub.ENV_VAR, str(tmp_path))
    with pytest.raises(hub.WeightsError, match="is not ccff22c2345dd54b"):
        mr.models.resnet20(pretrained=True)


def test_only_the_published_architectures_take_pretrained_weights():
    with pytest.raises(ValueError, match="none published for 'resnet110'"):
        mr.models.resnet110(pretrained=True)
    with pytest.raises(ValueError, match="num_classes=100"):
        mr.models.resnet20(pretrained=True, num_classes=100)


def test_the_license_notice_ships_beside_the_module():
    assert "Yerlan Idelbayev" in hub.LICENSE.read_text() and "Redistributions" in hub.LICENSE.read_text()


@needs_shared_models
def test_the_shared_npz_load_and_resnet20_scores_as_published():
    if not (SHARED_DATA / "cifar-10-subset-python.tar.gz").is_file():
        pytest.skip(f"CIFAR-10 subset not found in {SHARED_DATA}")
    for name in hub.PRETRAINED:                       # every file verifies and fits its model
        getattr(mr.models, name)(pretrained=SHARED_MODELS)
    model = mr.models.resnet20(pretrained=SHARED_MODELS)
    test = mr.data.CIFAR10(SHARED_DATA, train=False)
    loader = mr.data.DataLoader((test.images[:500], test.labels[:500]), 250,
                                mean=hub.PRETRAINED_MEAN, std=hub.PRETRAINED_STD)
    _, error = evaluate(model, loader)
    assert 1 - error > 0.88, f"ResNet-20 with the published weights: {100 * (1 - error):.1f} % on 500 images"
