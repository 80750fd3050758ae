"""Errors in the caller's words: the library names its parameters, the CLI its flags."""
import pytest

from minires import backend, cli, models
from minires.data import CIFAR10, DatasetNotFoundError, FashionMNIST
from minires.messages import Message, reword


def test_a_message_renders_library_words_and_any_front_end_words():
    m = Message("nothing in {path}; pass its folder as {root}", path="/data/{odd}")
    assert str(m) == "nothing in /data/{odd}; pass its folder as root="     # fields are never templates
    assert m.render({"root": "--data-dir"}) == "nothing in /data/{odd}; pass its folder as --data-dir"
    nested = Message("failed: {advice}", advice=Message("use {root}"))
    assert nested.render({"root": "--data-dir"}) == "failed: use --data-dir"


def test_reword_leaves_plain_messages_alone():
    assert reword(ValueError("plain {root}"), {"root": "--data-dir"}) == "plain {root}"
    error = FileNotFoundError(Message("see {root}"))
    assert str(error) == "see root=" and reword(error, {"root": "--data-dir"}) == "see --data-dir"


def test_dataset_errors_speak_python_to_python_callers_and_flags_to_the_cli(tmp_path):
    with pytest.raises(DatasetNotFoundError) as cifar:
        CIFAR10(tmp_path / "absent")
    with pytest.raises(DatasetNotFoundError) as fashion:
        FashionMNIST(tmp_path)
    words = cli.error_words(download=False)
    assert f"{tmp_path / 'absent'} does not exist" in str(cifar.value)
    assert "as root=, or pass download=True to fetch it." in str(cifar.value)
    assert "as --data-dir, or remove --no-download to fetch it." in reword(cifar.value, words)
    assert str(fashion.value).endswith("pass their folder as root=.")
    assert reword(fashion.value, words).endswith("pass their folder as --data-dir.")
    assert "--" not in str(cifar.value) + str(fashion.value)


def test_model_and_device_errors():
    with pytest.raises(ValueError) as family:
        models.get_model("resnet_cifar")
    assert str(family.value).startswith("get_model: 'resnet_cifar' is a family of models that needs "
                                        "depth: pass depth=... as a keyword, or choose a ready-made one: ")
    assert models.get_model("resnet_cifar", depth=8).depth == 8
    assert models.available(ready_made=True) == [n for n in models.available()
                                                 if n not in ("resnet_cifar", "plain_cifar")]
    with pytest.raises(ValueError) as device:
        backend.normalize_device("tpu")
    assert str(device.value) == "unknown device 'tpu': expected 'cpu' or 'cuda' (also 'cuda:0', alias 'gpu')"
    assert reword(device.value, cli.error_words()) == \
        "--device: unknown device 'tpu': expected one of cpu, gpu, cuda, auto"
