"""Shared fixtures: devices (CPU always, CUDA behind the `gpu` marker), tensor makers, closeness."""
import numpy as np
import pytest

import minires as mr
from minires import backend


def pytest_collection_modifyitems(config, items):
    if backend.cuda_is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU and CuPy")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Every test that takes ``device`` runs on the CPU and, mirrored, on the GPU."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _fusion_back_to_default():
    """A test that switches fusion off (docs/autograd.md's tour does, globally) leaves the
    next test at the default."""
    yield
    mr.set_fusion(None)
