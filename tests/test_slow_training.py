"""Real-data training runs (marker ``slow``: pytest -m slow; minutes on 2 cores).

The full 30-epoch comparison with PyTorch is recorded in docs/results.md; these
check, in a few minutes, that ResNet-20 really learns CIFAR-10 and Fashion-MNIST.
"""
from pathlib import Path

import pytest

from minires.train import TrainConfig, train
from shared_data import SHARED_DATA as DATA

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not (DATA / "cifar-10-subset-python.tar.gz").exists(), reason="no CIFAR-10 subset")
def test_resnet20_learns_the_cifar10_subset(tmp_path):
    cfg = TrainConfig(model="resnet20", data_dir=str(DATA), download=False, epochs=6, milestones=[4, 5],
                      out=str(tmp_path / "run"), device="cpu", progress=False, seed=0)
    history = train(cfg, log=lambda *a: None)
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.5
    assert history[-1]["test_error"] < 0.62          # chance is 0.90; 6 epochs reach ~0.5


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").exists(), reason="no Fashion-MNIST")
def test_resnet20_learns_fashion_mnist(tmp_path):
    cfg = TrainConfig(model="resnet20", dataset="fashion-mnist", epochs=1, limit_train=12800,
                      limit_test=2000, out=str(tmp_path / "run"), device="cpu", progress=False, seed=0)
    history = train(cfg, log=lambda *a: None)
    assert history[-1]["test_error"] < 0.25          # chance is 0.90
