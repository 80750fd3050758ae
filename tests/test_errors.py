"""Bad inputs: every one gets a clear error that names the op and what was wrong, and loses nothing.

Each test checks the exception type AND the message (the op's name, the
offending shapes or values, what was expected).  Where state could be touched
(running statistics, num_batches_tracked, parameters, .grad, the graph) the
tests also check that a failed call left it exactly as it was.
"""
import re

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
from minires import nn


# ---------------------------------------------------------------- helpers
def shp(*dims):
    """A regex for a shape as an error message may print it: (2, 3); (4) or (4,) for one dim."""
    if len(dims) == 1:
        return rf"\({dims[0]},?\)"
    return re.escape("(" + ", ".join(str(d) for d in dims) + ")")


def all_of(*patterns):
    """A regex matching text that contains every pattern, in any order (for pytest.raises(match=))."""
    return "".join(f"(?=[\\s\\S]*?{p})" for p in patterns)


def t(rng, *shape, device="cpu", dtype=np.float32, requires_grad=False):
    return mr.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=requires_grad,
                     device=device)


def snapshot(module):
    return {k: v.copy() for k, v in module.state_dict().items()}


def assert_same_state(module, before):
    after = module.state_dict()
    assert list(after) == list(before)
    for k in before:
        assert after[k].dtype == before[k].dtype, k
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


# ---------------------------------------------------------------- elementwise
def test_add_shape_mismatch(rng, device):
    a, b = t(rng, 2, 3, device=device), t(rng, 4, device=device)
    with pytest.raises(ValueError, match=all_of("add", shp(2, 3), shp(4), "broadcast")):
        a + b


def test_mul_shape_mismatch(rng, device):
    a, b = t(rng, 2, 3, device=device), t(rng, 3, 2, device=device)
    with pytest.raises(ValueError, match=all_of("mul", shp(2, 3), shp(3, 2), "broadcast")):
        mr.ops.mul(a, b)


def test_sub_and_div_shape_mismatch(rng):
    a, b = t(rng, 5), t(rng, 3)
    with pytest.raises(ValueError, match=all_of("sub", shp(5), shp(3))):
        a - b
    with pytest.raises(ValueError, match=all_of("div", shp(5), shp(3))):
        a / b


@pytest.mark.parametrize("op, fn", [("add", lambda a, b: a + b), ("mul", lambda a, b: a * b),
                                    ("sub", lambda a, b: a - b), ("div", lambda a, b: a / b)])
def test_float32_with_float64_is_a_type_error(rng, device, op, fn):
    a = t(rng, 2, 3, device=device, dtype=np.float32)
    b = t(rng, 2, 3, device=device, dtype=np.float64)
    with pytest.raises(TypeError, match=all_of(op, "float32", "float64")):
        fn(a, b)


def test_float_number_with_int_tensor_is_not_silently_truncated():
    """minires never promotes silently; turning 0.5 into 0 would be silent data loss."""
    ints = mr.tensor([1, 2, 3])
    with pytest.raises(TypeError, match=all_of("add", "int64")):
        ints + 0.5
    with pytest.raises(TypeError, match=all_of("mul", "int64")):
        ints * 0.5


def test_unsupported_operand_type(rng):
    a = t(rng, 2)
    with pytest.raises(TypeError, match=all_of("add", "str")):
        a + "x"


# ---------------------------------------------------------------- matmul / linear
def test_matmul_inner_dim_mismatch(rng, device):
    a, b = t(rng, 2, 3, device=device), t(rng, 4, 5, device=device)
    with pytest.raises(ValueError, match=all_of("matmul", shp(2, 3), shp(4, 5), "3 != 4")):
        a @ b


def test_matmul_rank_zero(rng):
    a, s = t(rng, 3), mr.tensor(np.float32(2.0))
    with pytest.raises(ValueError, match=all_of("matmul", "rank", r"\(\)", shp(3))):
        mr.ops.matmul(a, s)


def test_matmul_batch_dims_do_not_broadcast(rng):
    a, b = t(rng, 2, 3, 4), t(rng, 5, 4, 2)
    with pytest.raises(ValueError, match=all_of("matmul", "batch", shp(2, 3, 4), shp(5, 4, 2))):
        a @ b


def test_matmul_dtype_mismatch(rng):
    a, b = t(rng, 2, 3), t(rng, 3, 2, dtype=np.float64)
    with pytest.raises(TypeError, match=all_of("matmul", "float32", "float64")):
        a @ b


def test_linear_feature_mismatch(rng, device):
    x, w = t(rng, 2, 5, device=device), t(rng, 3, 4, device=device)
    with pytest.raises(ValueError, match=all_of("linear", shp(2, 5), shp(3, 4), "4")):
        F.linear(x, w)


def test_linear_weight_rank(rng):
    x, w = t(rng, 2, 4), t(rng, 4)
    with pytest.raises(ValueError, match=all_of("linear", "weight", "rank 2", shp(4))):
        F.linear(x, w)


def test_linear_bias_shape(rng):
    x, w, b = t(rng, 2, 4), t(rng, 3, 4), t(rng, 4)
    with pytest.raises(ValueError, match=all_of("linear", "bias", shp(4), shp(3))):
        F.linear(x, w, b)


def test_linear_dtype_mismatch(rng):
    x, w = t(rng, 2, 4, dtype=np.float64), t(rng, 3, 4)
    with pytest.raises(TypeError, match=all_of("linear", "float32", "float64")):
        F.linear(x, w)


def test_linear_module_wrong_features_changes_nothing(rng):
    layer = nn.Linear(4, 3)
    before = snapshot(layer)
    with pytest.raises(ValueError, match=all_of("linear", shp(2, 7), shp(3, 4))):
        layer(t(rng, 2, 7))
    assert_same_state(layer, before)
    assert layer.weight.grad is None and layer.bias.grad is None


# ---------------------------------------------------------------- conv2d
def test_conv2d_input_rank(rng, device):
    x, w = t(rng, 3, 8, 8, device=device), t(rng, 4, 3, 3, 3, device=device)
    with pytest.raises(ValueError, match=all_of("conv2d", "input", "rank 4", shp(3, 8, 8))):
        F.conv2d(x, w)


def test_conv2d_weight_rank(rng):
    x, w = t(rng, 1, 3, 8, 8), t(rng, 4, 27)
    with pytest.raises(ValueError, match=all_of("conv2d", "weight", "rank 4", shp(4, 27))):
        F.conv2d(x, w)


def test_conv2d_channel_mismatch(rng, device):
    x, w = t(rng, 2, 4, 5, 5, device=device), t(rng, 8, 3, 3, 3, device=device)
    with pytest.raises(ValueError, match=all_of("conv2d", shp(2, 4, 5, 5), shp(8, 3, 3, 3),
                                                "channels")):
        F.conv2d(x, w)


def test_conv2d_channel_mismatch_with_groups(rng):
    x, w = t(rng, 2, 4, 5, 5), t(rng, 4, 1, 3, 3)        # groups=2 expects 1*2 = 2 channels
    with pytest.raises(ValueError, match=all_of("conv2d", shp(2, 4, 5, 5), shp(4, 1, 3, 3),
                                                "groups=2")):
        F.conv2d(x, w, groups=2)


def test_conv2d_groups_must_divide_channels(rng):
    x, w = t(rng, 1, 4, 5, 5), t(rng, 6, 1, 3, 3)
    with pytest.raises(ValueError, match=all_of("conv2d", "groups=3", "4")):
        F.conv2d(x, w, groups=3)
    with pytest.raises(ValueError, match=all_of("Conv2d", "groups=3")):
        nn.Conv2d(4, 6, 3, groups=3)


def test_conv2d_kernel_larger_than_input(rng, device):
    x, w = t(rng, 1, 3, 2, 2, device=device), t(rng, 4, 3, 3, 3, device=device)
    with pytest.raises(ValueError, match=all_of("conv2d", shp(1, 3, 2, 2), "3x3", "smaller")):
        F.conv2d(x, w)


@pytest.mark.parametrize("kwargs, words", [
    (dict(stride=0), ["stride", r"\(0, 0\)"]),
    (dict(padding=-1), ["padding", r"\(-1, -1\)"]),
    (dict(stride=(1, 1, 1)), ["stride", r"\(1, 1, 1\)"]),
    (dict(dilation=0), ["dilation"]),
])
def test_conv2d_bad_stride_padding_dilation(rng, kwargs, words):
    x, w = t(rng, 1, 3, 6, 6), t(rng, 4, 3, 3, 3)
    with pytest.raises(ValueError, match=all_of("conv2d", *words)):
        F.conv2d(x, w, **kwargs)


def test_conv2d_bias_shape(rng):
    x, w, b = t(rng, 1, 3, 6, 6), t(rng, 4, 3, 3, 3), t(rng, 3)
    with pytest.raises(ValueError, match=all_of("conv2d", "bias", shp(3), shp(4))):
        F.conv2d(x, w, b)


def test_conv2d_dtype_mismatch(rng):
    x, w = t(rng, 1, 3, 6, 6, dtype=np.float64), t(rng, 4, 3, 3, 3)
    with pytest.raises(TypeError, match=all_of("conv2d", "float32", "float64")):
        F.conv2d(x, w)


def test_conv2d_module_bad_input_changes_nothing(rng):
    conv = nn.Conv2d(3, 4, 3, padding=1)
    before = snapshot(conv)
    with pytest.raises(ValueError, match=all_of("conv2d", shp(2, 5, 6, 6))):
        conv(t(rng, 2, 5, 6, 6))
    assert_same_state(conv, before)
    assert conv.weight.grad is None


# ---------------------------------------------------------------- batch norm
def test_batch_norm_weight_shape(rng, device):
    x = t(rng, 2, 4, 3, 3, device=device)
    rm, rv = mr.zeros(4, device=device), mr.ones(4, device=device)
    w, b = mr.ones(3, device=device), mr.zeros(4, device=device)
    with pytest.raises(ValueError, match=all_of("batch_norm", "weight", shp(3), shp(4),
                                                shp(2, 4, 3, 3))):
        F.batch_norm(x, rm, rv, w, b, training=True)
    np.testing.assert_array_equal(rm.numpy(), np.zeros(4))
    np.testing.assert_array_equal(rv.numpy(), np.ones(4))


@pytest.mark.parametrize("which", ["running_mean", "running_var"])
def test_batch_norm_running_stat_shape(rng, which):
    x = t(rng, 2, 4, 3, 3)
    stats = {"running_mean": mr.zeros(4), "running_var": mr.ones(4)}
    stats[which] = mr.zeros(5)
    other = "running_var" if which == "running_mean" else "running_mean"
    kept = stats[other].numpy().copy()
    with pytest.raises(ValueError, match=all_of("batch_norm", which, shp(5), shp(4))):
        F.batch_norm(x, stats["running_mean"], stats["running_var"], training=True)
    np.testing.assert_array_equal(stats[other].numpy(), kept)       # untouched


def test_batch_norm_input_rank(rng):
    with pytest.raises(ValueError, match=all_of("batch_norm", shp(4))):
        F.batch_norm(t(rng, 4), mr.zeros(4), mr.ones(4), training=True)


def test_batch_norm_eval_needs_running_stats(rng):
    with pytest.raises(ValueError, match=all_of("batch_norm", "running")):
        F.batch_norm(t(rng, 2, 4), None, None, training=False)


def test_batch_norm_one_value_per_channel_functional(rng):
    x = t(rng, 1, 4)
    rm, rv = mr.zeros(4), mr.ones(4)
    with pytest.raises(ValueError, match=all_of("batch_norm", "more than 1 value per channel",
                                                shp(1, 4))):
        F.batch_norm(x, rm, rv, training=True)
    np.testing.assert_array_equal(rm.numpy(), np.zeros(4))
    np.testing.assert_array_equal(rv.numpy(), np.ones(4))


@pytest.mark.parametrize("shape", [(1, 3, 1, 1)])
def test_batchnorm2d_one_value_per_channel_changes_nothing(rng, shape):
    bn = nn.BatchNorm2d(3)
    bn(t(rng, 4, 3, 2, 2))                            # one good batch: stats move
    before = snapshot(bn)
    assert before["num_batches_tracked"] == 1
    with pytest.raises(ValueError, match=all_of("more than 1 value per channel", shp(*shape))):
        bn(t(rng, *shape))
    assert_same_state(bn, before)                     # running stats and counter untouched
    assert int(bn.num_batches_tracked.item()) == 1
    bn.eval()
    out = bn(t(rng, *shape))                          # evaluation needs no batch statistics
    assert out.shape == shape


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1)])
def test_batchnorm1d_one_value_per_channel_changes_nothing(rng, shape):
    bn = nn.BatchNorm1d(3)
    before = snapshot(bn)
    with pytest.raises(ValueError, match=all_of("more than 1 value per channel", shp(*shape))):
        bn(t(rng, *shape))
    assert_same_state(bn, before)
    assert int(bn.num_batches_tracked.item()) == 0


def test_batchnorm_cumulative_momentum_one_value_per_channel_changes_nothing(rng):
    bn = nn.BatchNorm2d(2, momentum=None)
    before = snapshot(bn)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(t(rng, 1, 2, 1, 1))
    assert_same_state(bn, before)


def test_batchnorm2d_wrong_channels_changes_nothing(rng):
    bn = nn.BatchNorm2d(3)
    before = snapshot(bn)
    with pytest.raises(ValueError, match=all_of("batch_norm", shp(3), shp(2, 5, 4, 4))):
        bn(t(rng, 2, 5, 4, 4))
    assert_same_state(bn, before)
    assert int(bn.num_batches_tracked.item()) == 0


def test_batchnorm2d_wrong_rank_changes_nothing(rng):
    bn = nn.BatchNorm2d(3)
    before = snapshot(bn)
    with pytest.raises(ValueError, match=all_of("BatchNorm2d", "rank 4", shp(2, 3, 4))):
        bn(t(rng, 2, 3, 4))
    assert_same_state(bn, before)


def test_batchnorm2d_dtype_mismatch_changes_nothing(rng):
    bn = nn.BatchNorm2d(3)
    before = snapshot(bn)
    with pytest.raises(TypeError, match=all_of("batch_norm", "float32", "float64")):
        bn(t(rng, 2, 3, 4, 4, dtype=np.float64))
    assert_same_state(bn, before)


# ---------------------------------------------------------------- pooling
@pytest.mark.parametrize("pool, name", [(F.max_pool2d, "max_pool2d"), (F.avg_pool2d, "avg_pool2d")])
def test_pool_padding_more_than_half_kernel(rng, device, pool, name):
    x = t(rng, 1, 2, 6, 6, device=device)
    with pytest.raises(ValueError, match=all_of(name, "padding", r"\(2, 2\)", r"\(3, 3\)")):
        pool(x, 3, padding=2)
    pool(x, 3, padding=1)                              # exactly half (rounded down) is fine


@pytest.mark.parametrize("pool, name", [(F.max_pool2d, "max_pool2d"), (F.avg_pool2d, "avg_pool2d")])
def test_pool_input_smaller_than_kernel(rng, device, pool, name):
    x = t(rng, 1, 2, 2, 2, device=device)
    with pytest.raises(ValueError, match=all_of(name, shp(1, 2, 2, 2), r"\(3, 3\)", "smaller")):
        pool(x, 3)


@pytest.mark.parametrize("pool, name", [(F.max_pool2d, "max_pool2d"), (F.avg_pool2d, "avg_pool2d")])
def test_pool_bad_rank_and_kernel(rng, pool, name):
    with pytest.raises(ValueError, match=all_of(name, "rank 4", shp(2, 6, 6))):
        pool(t(rng, 2, 6, 6), 2)
    with pytest.raises(ValueError, match=all_of(name, "kernel_size")):
        pool(t(rng, 1, 1, 6, 6), 0)


def test_adaptive_avg_pool_bad_rank(rng):
    with pytest.raises(ValueError, match=all_of("adaptive_avg_pool2d", "rank 4", shp(3, 4))):
        F.adaptive_avg_pool2d(t(rng, 3, 4), 1)


# ---------------------------------------------------------------- cross entropy
def test_cross_entropy_target_shape(rng):
    logits = t(rng, 3, 4)
    with pytest.raises(ValueError, match=all_of("cross_entropy", shp(3, 1), shp(3, 4), shp(3))):
        F.cross_entropy(logits, mr.tensor(np.zeros((3, 1), np.int64)))
    with pytest.raises(ValueError, match=all_of("cross_entropy", shp(2), shp(3, 4))):
        F.cross_entropy(logits, mr.tensor([0, 1]))


def test_cross_entropy_float_target(rng):
    logits = t(rng, 3, 4)
    with pytest.raises(TypeError, match=all_of("cross_entropy", "integer", "float32")):
        F.cross_entropy(logits, mr.tensor([0.0, 1.0, 2.0]))


@pytest.mark.parametrize("target, bad", [([0, 4, 1], "4"), ([0, -1, 1], "-1")])
def test_cross_entropy_class_index_out_of_range(rng, target, bad):
    logits = t(rng, 3, 4, requires_grad=True)
    with pytest.raises(ValueError, match=all_of("cross_entropy", re.escape("[0, 4)"), bad)):
        F.cross_entropy(logits, mr.tensor(target))
    assert logits.grad is None


def test_cross_entropy_logits_rank(rng):
    with pytest.raises(ValueError, match=all_of("cross_entropy", "rank 2", shp(2, 3, 4))):
        F.cross_entropy(t(rng, 2, 3, 4), mr.tensor([0, 1]))


def test_cross_entropy_bad_reduction(rng):
    with pytest.raises(ValueError, match=all_of("cross_entropy", "reduction", "avg")):
        F.cross_entropy(t(rng, 2, 3), mr.tensor([0, 1]), reduction="avg")


# ---------------------------------------------------------------- shape ops
def test_reshape_wrong_size(rng, device):
    x = t(rng, 2, 3, device=device)
    with pytest.raises(ValueError, match=all_of("reshape", shp(2, 3), "6", shp(4, 2))):
        x.reshape(4, 2)


def test_cat_mismatched_shapes(rng, device):
    a, b = t(rng, 2, 3, device=device), t(rng, 2, 4, device=device)
    with pytest.raises(ValueError, match=all_of("cat", shp(2, 3), shp(2, 4), "axis 0")):
        mr.cat([a, b], axis=0)
    mr.cat([a, b], axis=1)                              # along the differing axis it is fine


def test_cat_mismatched_ranks(rng):
    a, b = t(rng, 2, 3), t(rng, 2, 3, 1)
    with pytest.raises(ValueError, match=all_of("cat", shp(2, 3), shp(2, 3, 1))):
        mr.cat([a, b])


def test_cat_dtype_mismatch_and_empty(rng):
    with pytest.raises(TypeError, match=all_of("cat", "float32", "float64")):
        mr.cat([t(rng, 2), t(rng, 2, dtype=np.float64)])
    with pytest.raises(ValueError, match=all_of("cat", "non-empty")):
        mr.cat([])


def test_cat_axis_out_of_range(rng):
    """axis 5 of rank-2 tensors must not silently wrap around to axis 1."""
    a = t(rng, 2, 3)
    with pytest.raises((ValueError, IndexError), match=all_of("cat", "axis", "5")):
        mr.cat([a, a], axis=5)


def test_stack_axis_out_of_range(rng):
    """stack of rank-2 tensors has axes -3..2; axis 7 must not wrap around to axis 1."""
    a = t(rng, 2, 3)
    with pytest.raises((ValueError, IndexError), match=all_of("stack", "axis", "7")):
        mr.stack([a, a], axis=7)


def test_cat_zero_dim_tensors(rng):
    s = mr.tensor(np.float32(1.0))
    with pytest.raises((ValueError, IndexError), match=all_of("cat", r"\(\)")):
        mr.cat([s, s])


def test_stack_mismatched_shapes(rng):
    with pytest.raises(ValueError, match=all_of("stack", shp(2, 3), shp(3, 2))):
        mr.stack([t(rng, 2, 3), t(rng, 3, 2)])


def test_permute_and_transpose_bad_dims(rng):
    x = t(rng, 2, 3)
    with pytest.raises(ValueError, match=all_of("permute", shp(2, 3))):
        x.permute(0, 0)
    with pytest.raises(ValueError, match=all_of("transpose", "rank 2")):
        x.transpose(0, 2)


def test_permute_dim_out_of_range(rng):
    """permute(0, 5) of a rank-2 tensor must not silently become permute(0, 1)."""
    x = t(rng, 2, 3)
    with pytest.raises((ValueError, IndexError), match=all_of("permute", "5", shp(2, 3))):
        x.permute(0, 5)


def test_flatten_dim_out_of_range(rng):
    x = t(rng, 2, 3)
    with pytest.raises((ValueError, IndexError), match=all_of("flatten", "5")):
        x.flatten(5)


def test_getitem_out_of_range(rng):
    x = t(rng, 2, 3)
    with pytest.raises(IndexError, match=all_of("getitem", shp(2, 3))):
        x[5]


def test_reduction_axis_out_of_range(rng):
    x = t(rng, 2, 3)
    with pytest.raises(ValueError, match=all_of("sum", "axis 5", "rank 2")):
        x.sum(axis=5)


# ---------------------------------------------------------------- autograd
def test_backward_on_non_scalar_without_grad(rng):
    x = t(rng, 2, 3, requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=all_of("backward", shp(2, 3), "grad")):
        y.backward()
    assert x.grad is None
    y.sum().backward()                                   # the graph is still there
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.ones((2, 3)))


def test_backward_with_wrong_shaped_grad_loses_nothing(rng):
    x = t(rng, 2, 3, requires_grad=True)
    y = x * 3
    with pytest.raises(ValueError, match=all_of("backward", shp(3), shp(2, 3))):
        y.backward(np.ones(3, np.float32))
    assert x.grad is None
    y.backward(np.ones((2, 3), np.float32))                # the graph was not freed
    np.testing.assert_allclose(x.grad.numpy(), 3 * np.ones((2, 3)))


def test_backward_on_tensor_without_graph(rng):
    x = t(rng, 3)
    with pytest.raises(RuntimeError, match=all_of("backward", "require")):
        x.sum().backward()


def test_backward_twice_without_retain_graph(rng):
    x = t(rng, 3, requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    first = x.grad.numpy().copy()
    with pytest.raises(RuntimeError, match=all_of("backward", "freed", "retain_graph")):
        loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), first)   # nothing accumulated by the failure


def test_backward_twice_with_retain_graph_is_fine(rng):
    x = t(rng, 3, requires_grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * x.numpy(), rtol=1e-6)


def test_requires_grad_on_int_tensor():
    with pytest.raises(TypeError, match=all_of("floating", "int64")):
        mr.tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(TypeError, match=all_of("floating", "int64")):
        mr.zeros(3, dtype=mr.int64, requires_grad=True)
    ints = mr.tensor([1, 2, 3])
    with pytest.raises(TypeError, match=all_of("floating", "int64")):
        ints.requires_grad_()
    assert ints.requires_grad is False


def test_item_of_many_elements(rng):
    with pytest.raises(ValueError, match=all_of("item", shp(2, 3))):
        t(rng, 2, 3).item()


# ---------------------------------------------------------------- modules
def _small_model():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 5))


def test_load_state_dict_missing_keys_changes_nothing():
    mr.manual_seed(1)
    model = _small_model()
    before = snapshot(model)
    mr.manual_seed(2)
    state = _small_model().state_dict()
    del state["1.running_var"]
    with pytest.raises(ValueError, match=all_of("load_state_dict", "missing", "1.running_var")):
        model.load_state_dict(state)
    assert_same_state(model, before)


def test_load_state_dict_unexpected_keys_changes_nothing():
    mr.manual_seed(1)
    model = _small_model()
    before = snapshot(model)
    mr.manual_seed(2)
    state = _small_model().state_dict()
    state["9.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=all_of("load_state_dict", "unexpected", "9.weight")):
        model.load_state_dict(state)
    assert_same_state(model, before)


def test_load_state_dict_wrong_shape_changes_nothing():
    mr.manual_seed(1)
    model = _small_model()
    before = snapshot(model)
    mr.manual_seed(2)
    state = _small_model().state_dict()                 # every other entry is fine ...
    state["4.weight"] = np.zeros((5, 10), np.float32)   # ... but this one is (5, 64)
    with pytest.raises(ValueError, match=all_of("load_state_dict", "4.weight", shp(5, 10),
                                                shp(5, 64))):
        model.load_state_dict(state)
    assert_same_state(model, before)                    # not even the good entries were copied


def test_load_state_dict_non_strict_still_checks_shapes():
    model = _small_model()
    before = snapshot(model)
    with pytest.raises(ValueError, match=all_of("load_state_dict", "0.bias", shp(3), shp(4))):
        model.load_state_dict({"0.bias": np.zeros(3, np.float32)}, strict=False)
    assert_same_state(model, before)


def test_module_attribute_before_super_init():
    class Bad(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(2, 2)
            super().__init__()

    with pytest.raises(AttributeError, match=all_of("Bad", re.escape("super().__init__()"), "layer")):
        Bad()


def test_module_forward_not_defined():
    class NoForward(nn.Module):
        pass

    with pytest.raises(NotImplementedError, match=all_of("NoForward", "forward")):
        NoForward()(mr.zeros(2))


def test_register_buffer_needs_a_tensor():
    m = nn.Module()
    with pytest.raises(TypeError, match=all_of("register_buffer", "stats", "ndarray")):
        m.register_buffer("stats", np.zeros(3))


def test_module_in_float64_rejects_float32_input(rng):
    layer = nn.Linear(3, 2).double()
    with pytest.raises(TypeError, match=all_of("linear", "float32", "float64")):
        layer(t(rng, 4, 3))


# ---------------------------------------------------------------- optimizers
@pytest.mark.parametrize("kwargs, word", [(dict(lr=-0.1), "-0.1"),
                                          (dict(lr=0.1, momentum=-0.5), "-0.5"),
                                          (dict(lr=0.1, weight_decay=-1e-4), "-0.0001")])
def test_sgd_negative_hyperparameters(kwargs, word):
    p = nn.Parameter(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=all_of("SGD", re.escape(word))):
        mr.optim.SGD([p], **kwargs)


def test_sgd_nesterov_needs_momentum():
    p = nn.Parameter(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=all_of("SGD", "Nesterov", "momentum")):
        mr.optim.SGD([p], lr=0.1, nesterov=True)


def test_sgd_empty_and_frozen_params():
    with pytest.raises(ValueError, match=all_of("SGD", "empty")):
        mr.optim.SGD([], lr=0.1)
    frozen = mr.tensor(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=all_of("SGD", shp(2, 3), "require")):
        mr.optim.SGD([frozen], lr=0.1)


def test_cosine_annealing_bad_t_max():
    opt = mr.optim.SGD([nn.Parameter(np.zeros(2, np.float32))], lr=0.1)
    with pytest.raises(ValueError, match=all_of("CosineAnnealingLR", "T_max", "0")):
        mr.optim.CosineAnnealingLR(opt, T_max=0)


# ---------------------------------------------------------------- devices
@pytest.mark.parametrize("bad", ["tpu", "cuda:1", "mps", "CPU0"])
def test_unknown_device_strings(rng, bad):
    data = np.ones(3, np.float32)
    expected = all_of("unknown device", re.escape(repr(bad)), "'cpu'", "'cuda'")
    with pytest.raises(ValueError, match=expected):
        mr.tensor(data, device=bad)
    with pytest.raises(ValueError, match=expected):
        mr.zeros(3, device=bad)
    with pytest.raises(ValueError, match=expected):
        mr.tensor(data).to(bad)


def test_module_to_unknown_device_changes_nothing():
    model = _small_model()
    before = snapshot(model)
    with pytest.raises(ValueError, match=all_of("unknown device", "'tpu'")):
        model.to("tpu")
    assert_same_state(model, before)
    assert all(p.device == "cpu" for p in model.parameters())
