"""Every floating-point op says which dtypes it takes: uint8, bool, int64 and float16 inputs are
refused with one line naming the op, the tensor, its dtype and the cure -- never a silently wrong
result (uint8 wrapping around, bool saturating, an integer batch norm truncating) and never an
error from inside Numba (float16)."""
import re

import numpy as np
import pytest

import minires as mr
from minires import nn
from minires.nn import functional as F

REFUSED = [np.uint8, np.bool_, np.int64, np.float16]


def of(dtype, *shape, device="cpu", seed=0):
    data = np.random.default_rng(seed).standard_normal(shape) * 3
    return mr.tensor(data.astype(dtype), device=device)


def message(op, name, dtype):
    return (rf"^{op}: {name} has dtype {np.dtype(dtype)}; {op} takes float32 or float64 "
            rf"-- convert with \.float\(\) \(float32\) or \.double\(\) \(float64\)$")


# op name -> a call of the op with every tensor in the given dtype (the drills' case)
CALLS = {
    "conv2d": lambda d, dev: F.conv2d(of(d, 2, 3, 5, 5, device=dev), of(d, 4, 3, 3, 3, device=dev),
                                      of(d, 4, device=dev), padding=1),
    "batch_norm": lambda d, dev: F.batch_norm(of(d, 2, 3, 4, 4, device=dev), of(d, 3, device=dev),
                                              of(d, 3, device=dev), of(d, 3, device=dev),
                                              of(d, 3, device=dev), training=True),
    "max_pool2d": lambda d, dev: F.max_pool2d(of(d, 1, 2, 4, 4, device=dev), 2),
    "avg_pool2d": lambda d, dev: F.avg_pool2d(of(d, 1, 2, 4, 4, device=dev), 2),
    "adaptive_avg_pool2d": lambda d, dev: F.adaptive_avg_pool2d(of(d, 1, 2, 5, 5, device=dev), 2),
    "global_avg_pool2d": lambda d, dev: F.global_avg_pool2d(of(d, 1, 2, 4, 4, device=dev)),
    "linear": lambda d, dev: F.linear(of(d, 2, 5, device=dev), of(d, 3, 5, device=dev), of(d, 3, device=dev)),
    "cross_entropy": lambda d, dev: F.cross_entropy(of(d, 4, 5, device=dev),
                                                    mr.tensor(np.array([0, 1, 2, 3]), device=dev)),
    "log_softmax": lambda d, dev: F.log_softmax(of(d, 4, 5, device=dev)),
    "dropout": lambda d, dev: F.dropout(of(d, 4, 5, device=dev), 0.5),
}


@pytest.mark.parametrize("dtype", REFUSED, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", list(CALLS))
def test_op_refuses_integer_bool_and_float16_input(op, dtype, device):
    with pytest.raises(TypeError, match=message(op, "input", dtype)):
        CALLS[op](dtype, device)


@pytest.mark.parametrize("dtype", REFUSED, ids=lambda d: np.dtype(d).name)
def test_layers_given_images_of_the_wrong_dtype_name_the_input(dtype, rng):
    # the common mistake: uint8 images into a float32 model; not a vague "dtype mismatch"
    images = mr.tensor((rng.random((2, 3, 8, 8)) * 255).astype(dtype))
    for layer, op in ((nn.Conv2d(3, 4, 3), "conv2d"), (nn.BatchNorm2d(3), "batch_norm"),
                      (nn.MaxPool2d(2), "max_pool2d"), (nn.AvgPool2d(2), "avg_pool2d"),
                      (nn.AdaptiveAvgPool2d(1), "adaptive_avg_pool2d")):
        with pytest.raises(TypeError, match=message(op, "input", dtype)):
            layer(images)
    with pytest.raises(TypeError, match=message("linear", "input", dtype)):
        nn.Linear(8, 2)(images)


@pytest.mark.parametrize("dtype", REFUSED, ids=lambda d: np.dtype(d).name)
def test_parameters_of_the_wrong_dtype_are_named(dtype):
    x = of(np.float32, 2, 3, 5, 5)
    with pytest.raises(TypeError, match=message("conv2d", "weight", dtype)):
        F.conv2d(x, of(dtype, 4, 3, 3, 3))
    with pytest.raises(TypeError, match=message("conv2d", "bias", dtype)):
        F.conv2d(x, of(np.float32, 4, 3, 3, 3), of(dtype, 4))
    with pytest.raises(TypeError, match=message("linear", "weight", dtype)):
        F.linear(of(np.float32, 2, 5), of(dtype, 3, 5))
    stats = of(np.float32, 3), of(np.float32, 3)
    with pytest.raises(TypeError, match=message("batch_norm", "weight", dtype)):
        F.batch_norm(x, *stats, of(dtype, 3), training=True)
    with pytest.raises(TypeError, match=message("batch_norm", "running_var", dtype)):
        F.batch_norm(x, stats[0], of(dtype, 3), training=False)


def test_refused_batch_norm_leaves_the_running_statistics_alone(rng):
    bn = nn.BatchNorm2d(3)
    before = {k: v.copy() for k, v in bn.state_dict().items()}
    with pytest.raises(TypeError, match=message("batch_norm", "input", np.int64)):
        bn(mr.tensor(rng.integers(0, 9, (2, 3, 4, 4))))
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_the_conversion_the_message_names_works(rng):
    images = mr.tensor(rng.integers(0, 256, (2, 3, 6, 6)).astype(np.uint8))
    conv = nn.Conv2d(3, 4, 3)
    out = conv(images.float())
    assert out.dtype == np.float32
    expected = F.conv2d(mr.tensor(images.numpy().astype(np.float32)), conv.weight, conv.bias)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())
    assert F.max_pool2d(of(np.float16, 1, 1, 4, 4).float(), 2).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("op", list(CALLS))
def test_float32_and_float64_are_taken(op, dtype, device):
    assert CALLS[op](dtype, device).dtype == dtype


def test_message_is_one_line():
    with pytest.raises(TypeError) as err:
        CALLS["conv2d"](np.uint8, "cpu")
    assert "\n" not in str(err.value) and re.match(r"conv2d: input has dtype uint8", str(err.value))
