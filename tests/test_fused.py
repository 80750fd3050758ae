"""The fused ops (minires/ops/fused.py): float64 gradients against central differences, float32
results against the eager ops they replace, the switch, and what the models build with it."""
import tracemalloc

import numpy as np
import pytest

import minires as mr
from minires import backend
from minires.nn import functional as F
from helpers import assert_close, make


def channels_last(t):
    """t with the same values in channels-last memory (conv2d's output layout)."""
    t.data = t.xp.ascontiguousarray(t.data.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return t


def bn_inputs(rng, device, shape=(4, 3, 5, 5), dtype=np.float64, layout="nchw"):
    c = shape[1]
    x = make(rng, *shape, device=device, dtype=dtype)
    if layout == "channels-last":
        x = channels_last(x)
    w = mr.tensor(rng.uniform(0.5, 1.5, c).astype(dtype), requires_grad=True, device=device)
    b = make(rng, c, device=device, dtype=dtype)
    return x, w, b


def stats(rng, device, c, dtype=np.float64):
    return (mr.tensor(rng.standard_normal(c).astype(dtype), device=device),
            mr.tensor(rng.uniform(0.5, 2.0, c).astype(dtype), device=device))


# ------------------------------------------------------------------ float64 gradient checks
@pytest.mark.parametrize("layout", ["nchw", "channels-last"])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_gradcheck(layout, training, rng, device):
    x, w, b = bn_inputs(rng, device, layout=layout)
    mean, var = stats(rng, device, 3)
    assert mr.gradcheck(lambda x, w, b: F.batch_norm_relu(x, mean, var, w, b, training=training),
                        (x, w, b))


def test_batch_norm_relu_gradcheck_1d_without_affine(rng, device):
    x = make(rng, 6, 4, device=device)
    assert mr.gradcheck(lambda x: F.batch_norm_relu(x, None, None, training=True), (x,))


@pytest.mark.parametrize("layouts", [("channels-last", "channels-last"), ("channels-last", "nchw"),
                                     ("nchw", "nchw")])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_add_relu_gradcheck(layouts, training, rng, device):
    x, w, b = bn_inputs(rng, device, layout=layouts[0])
    r = make(rng, *x.shape, device=device)
    if layouts[1] == "channels-last":
        r = channels_last(r)
    mean, var = stats(rng, device, 3)
    assert mr.gradcheck(lambda x, r, w, b: F.batch_norm_add_relu(x, r, mean, var, w, b, training=training),
                        (x, r, w, b))


@pytest.mark.parametrize("shapes", [((2, 3, 4, 4), (2, 3, 4, 4)), ((3, 4), (4,)), ((2, 3, 1), (1, 3, 5))])
def test_add_relu_gradcheck(shapes, rng, device):
    a, b = make(rng, *shapes[0], device=device), make(rng, *shapes[1], device=device)
    assert mr.gradcheck(F.add_relu, (a, b))
    if len(shapes[0]) == 4:          # the residual addition's layout: both channels-last
        assert mr.gradcheck(F.add_relu, (channels_last(a), channels_last(b)))


# ------------------------------------------------------------------ parity with the eager ops
# float32: the fused kernels are the eager ones with the mask applied as a select, so the
# results agree to float32 rounding -- held to 1e-6 of each result's largest value (on the
# CPU they are bit-identical: the same kernel with its relu flag set).
FLOAT32_RTOL = 1e-6
# batch_norm_add_relu may round x·scale + shift + r once where the eager ops round twice (a
# fused multiply-add), so an element next to 0 can fall on the other side of the ReLU and its
# gradient move by the whole of g there.  Measured (CPU, float32): the op's gradients equal
# the eager ones in 20 seeds; a whole ResNet-20/56's parameter gradients differ by at most
# 2e-6 of each one's largest value.  Held to 1e-4.
BN_ADD_RTOL = 1e-4


def grads_of(fn, tensors, g):
    for t in tensors:
        t.grad = None
    out = fn(*tensors)
    out.backward(g)
    return out, [t.grad for t in tensors]


@pytest.mark.parametrize("layout", ["nchw", "channels-last"])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_equals_batch_norm_then_relu(layout, training, rng, device):
    x, w, b = bn_inputs(rng, device, shape=(8, 16, 6, 6), dtype=np.float32, layout=layout)
    runs = {}
    for name, fn in (("eager", lambda s: lambda x, w, b: F.relu(F.batch_norm(x, *s, w, b, training))),
                     ("fused", lambda s: lambda x, w, b: F.batch_norm_relu(x, *s, w, b, training))):
        s = stats(np.random.default_rng(5), device, 16, np.float32)
        g = make(np.random.default_rng(6), 8, 16, 6, 6, device=device, dtype=np.float32, requires_grad=False)
        out, grads = grads_of(fn(s), (x, w, b), g)
        runs[name] = (out, grads, s)
    (out_e, grads_e, s_e), (out_f, grads_f, s_f) = runs["eager"], runs["fused"]
    assert_close(out_f, out_e, FLOAT32_RTOL, "output")
    assert mr.backend.is_cupy_array(out_f.data) == (device == "cuda")
    assert out_f.data.strides == x.data.strides              # the input's layout, kept
    # (CuPy's eager relu returns C order: on the GPU the fused op also saves a relayout)
    for what, a, e in zip(("dx", "dgamma", "dbeta"), grads_f, grads_e):
        assert_close(a, e, FLOAT32_RTOL, what)
    for a, e in zip(s_f, s_e):                                 # running statistics, updated
        assert_close(a, e, FLOAT32_RTOL, "running statistics")
    if device == "cpu":
        assert np.array_equal(out_f.numpy(), out_e.numpy())


@pytest.mark.parametrize("layout", ["nchw", "channels-last"])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_add_relu_equals_the_three_ops(layout, training, rng, device):
    x, w, b = bn_inputs(rng, device, shape=(8, 16, 6, 6), dtype=np.float32, layout=layout)
    r = channels_last(make(rng, 8, 16, 6, 6, device=device, dtype=np.float32))
    g = make(rng, 8, 16, 6, 6, device=device, dtype=np.float32, requires_grad=False)
    runs = []
    for fn in (lambda s: lambda x, r, w, b: F.relu(F.batch_norm(x, *s, w, b, training) + r),
               lambda s: lambda x, r, w, b: F.batch_norm_add_relu(x, r, *s, w, b, training)):
        s = stats(np.random.default_rng(5), device, 16, np.float32)
        runs.append((*grads_of(fn(s), (x, r, w, b), g), s))
    (out_e, grads_e, s_e), (out_f, grads_f, s_f) = runs
    # one rounding apart: the fused kernel adds the residual inside x·scale + shift
    assert_close(out_f, out_e, 2 * FLOAT32_RTOL, "output")
    assert out_f.data.strides == x.data.strides
    for what, a, e in zip(("dx", "dresidual", "dgamma", "dbeta"), grads_f, grads_e):
        assert_close(a, e, BN_ADD_RTOL, what)
    for a, e in zip(s_f, s_e):
        assert_close(a, e, FLOAT32_RTOL, "running statistics")


@pytest.mark.parametrize("layout", ["nchw", "channels-last"])
def test_add_relu_equals_add_then_relu(layout, rng, device):
    a = make(rng, 8, 16, 6, 6, device=device, dtype=np.float32)
    b = make(rng, 8, 16, 6, 6, device=device, dtype=np.float32)
    if layout == "channels-last":
        a, b = channels_last(a), channels_last(b)
    g = make(rng, 8, 16, 6, 6, device=device, dtype=np.float32, requires_grad=False)
    out_e, grads_e = grads_of(lambda a, b: F.relu(a + b), (a, b), g)
    out_f, grads_f = grads_of(F.add_relu, (a, b), g)
    assert np.array_equal(backend.to_numpy(out_f.data), backend.to_numpy(out_e.data))
    assert out_f.data.strides == out_e.data.strides
    for gf, ge in zip(grads_f, grads_e):
        assert np.array_equal(gf.numpy(), ge.numpy())


def test_add_relu_with_mixed_layouts_and_numbers(rng):
    a = make(rng, 2, 3, 4, 4, dtype=np.float32)
    b = channels_last(make(rng, 2, 3, 4, 4, dtype=np.float32))
    np.testing.assert_array_equal(F.add_relu(a, b).numpy(), np.maximum(a.numpy() + b.numpy(), 0))
    np.testing.assert_array_equal(F.add_relu(a, -0.5).numpy(), np.maximum(a.numpy() - 0.5, 0))
    ints = mr.tensor(np.array([-2, 1, 3]))
    assert F.add_relu(ints, ints).numpy().tolist() == [0, 2, 6]


def test_errors_name_the_fused_op(rng):
    x, w, b = bn_inputs(rng, "cpu")
    with pytest.raises(ValueError, match=r"^batch_norm_relu: weight has shape \(4\), expected \(3,\)"):
        F.batch_norm_relu(x, None, None, make(rng, 4), b, training=True)
    with pytest.raises(ValueError, match=r"^batch_norm_relu: evaluation mode .* needs running_mean"):
        F.batch_norm_relu(x, None, None, w, b, training=False)
    with pytest.raises(ValueError, match=r"^add_relu: shapes \(2, 3\) and \(4\) cannot be broadcast"):
        F.add_relu(make(rng, 2, 3), make(rng, 4))
    with pytest.raises(ValueError, match=r"^batch_norm_add_relu: residual has shape \(4, 3, 5\), "
                                         r"expected the input's \(4, 3, 5, 5\)"):
        F.batch_norm_add_relu(x, make(rng, 4, 3, 5), None, None, w, b, training=True)


# ------------------------------------------------------------------ the switch
def test_the_switch_trace_and_environment(monkeypatch):
    monkeypatch.delenv("MINIRES_FUSION", raising=False)
    assert mr.fusion_enabled()
    with mr.fusion(False):
        assert not mr.fusion_enabled()
        with mr.fusion(True):
            assert mr.fusion_enabled()
        assert not mr.fusion_enabled()
    assert mr.fusion_enabled()
    with mr.trace():
        assert not mr.fusion_enabled()          # the tracer sees every op
    assert mr.set_fusion(False) is None and mr.set_fusion(None) is False
    monkeypatch.setenv("MINIRES_FUSION", "0")
    assert not mr.fusion_enabled()
    monkeypatch.setenv("MINIRES_FUSION", "yes")
    with pytest.raises(ValueError, match=r"MINIRES_FUSION='yes'; expected 1 .* or 0"):
        mr.fusion_enabled()
    with pytest.raises(TypeError, match=r"set_fusion: expected True, False or None, got 'off'"):
        mr.set_fusion("off")


def graph_ops(model, x):
    out = F.cross_entropy(model(x), mr.tensor(np.arange(x.shape[0]) % 10))
    return out, [t._op for t in mr.autograd.topological_order(out)]


@pytest.mark.parametrize("variant", ["original", "bn_after_add", "relu_before_add", "relu_only_preact",
                                     "full_preact"])
def test_models_fuse_only_when_asked_and_compute_the_same(variant, rng):
    x = mr.tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
    results = {}
    for fused in (True, False):
        mr.manual_seed(0)
        model = mr.models.resnet_cifar(8, variant=variant)
        with mr.fusion(fused):
            loss, ops = graph_ops(model, x)
            loss.backward()
        results[fused] = loss.item(), {n: p.grad.numpy() for n, p in model.named_parameters()}, ops
    assert abs(results[True][0] - results[False][0]) <= 1e-6 * abs(results[False][0])
    for name, g in results[False][1].items():
        assert_close(results[True][1][name], g, BN_ADD_RTOL, name)
    fused_ops, eager_ops = results[True][2], results[False][2]
    assert "batch_norm_relu" in fused_ops and "relu" in eager_ops
    assert ("batch_norm_add_relu" in fused_ops) == (variant == "original")
    assert not {"batch_norm_relu", "add_relu", "batch_norm_add_relu"} & set(eager_ops)


def test_trace_hooks_and_summary_see_the_eager_ops(rng):
    mr.manual_seed(0)
    model = mr.models.resnet20()
    x = mr.tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    with mr.trace() as t:
        loss = F.cross_entropy(model(x), mr.tensor(np.arange(2)))
        loss.backward()
    ops = {r.op for r in t.records}
    assert {"batch_norm", "relu", "add"} <= ops and not ops & {"batch_norm_relu", "add_relu",
                                                                "batch_norm_add_relu"}
    seen = []
    handle = model.layer1[0].bn1.register_forward_hook(lambda m, i, out: seen.append(out._op))
    _, built = graph_ops(model, x)
    handle.remove()
    assert seen == ["batch_norm"] and built.count("batch_norm_relu") == 9   # 10 BN + ReLU, one watched
    assert "layer1.0.bn1" in str(mr.summary(model, (3, 32, 32)))


def test_residual_blocks_are_found_in_a_fused_graph(rng):
    mr.manual_seed(0)
    loss, _ = graph_ops(mr.models.resnet20(), mr.tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32)))
    blocks = mr.graph.residual_blocks(loss)
    assert [b.stage for b in blocks] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [n._op for n in blocks[0].nodes] == ["conv2d", "batch_norm_relu", "conv2d", "batch_norm_add_relu"]
    assert [b.shortcut_ops for b in blocks if b.number in (4, 7)] == [["getitem", "pad"]] * 2
    assert all(blocks[k + 1].input is blocks[k].add for k in range(8))


def test_fused_graph_holds_less_memory(rng):
    """The point of fusing: no BN output before the ReLU, no sum before it.  tracemalloc sees
    NumPy's allocations; the graph of a ResNet-8 step at its largest holds less fused."""
    x = mr.tensor(rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    peaks = {}
    for fused in (False, True):
        mr.manual_seed(0)
        model = mr.models.resnet_cifar(8)
        with mr.fusion(fused):
            graph_ops(model, x)[0].backward()            # compile and warm up first
            tracemalloc.start()
            graph_ops(model, x)[0].backward()
            peaks[fused] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    activation = 8 * 16 * 16 * 16 * 4                    # one stage-1 activation, bytes
    # fused, a graph holds per basic block 3 activations instead of 5 (no BN outputs before
    # a ReLU, no sum before one): asked here, 2 fewer in stage 1 alone
    assert peaks[True] <= peaks[False] - 2 * activation, (peaks, activation)


# ------------------------------------------------------------------ conv2d + batch norm, no graph
def eval_bn_args(rng, c, dtype):
    """Running statistics and an affine map of c channels, as a trained network has them."""
    return (mr.tensor(rng.normal(0, 0.5, c).astype(dtype)), mr.tensor(rng.uniform(0.5, 2.0, c).astype(dtype)),
            mr.tensor(rng.uniform(0.2, 1.5, c).astype(dtype)), mr.tensor(rng.normal(0, 0.5, c).astype(dtype)))


def eager_conv_bn(x, w, bn, residual, **conv):
    y = F.batch_norm(F.conv2d(x, w, **conv), *bn, training=False)
    return F.relu(y if residual is None else y + residual)


# (x shape, conv weight shape, conv arguments): the first two run the Winograd epilogue
# (3x3, stride 1, padding 1, even sizes), the others conv2d and then batch_norm(_add)_relu
CONV_BN_CASES = [((3, 8, 6, 8), (5, 8, 3, 3), {"padding": 1}),
                 ((2, 3, 4, 4), (16, 3, 3, 3), {"padding": 1}),
                 ((2, 4, 7, 7), (6, 4, 3, 3), {"padding": 1}),               # odd: F(2x2) kernel off
                 ((2, 4, 8, 8), (6, 4, 3, 3), {"padding": 1, "stride": 2}),  # im2col
                 ((2, 4, 5, 5), (6, 4, 1, 1), {})]


@pytest.mark.parametrize("case", CONV_BN_CASES, ids=["winograd", "stem", "odd", "stride2", "1x1"])
@pytest.mark.parametrize("with_residual", [False, True], ids=["relu", "add_relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv2d_batch_norm_relu_eval_equals_the_eager_ops(case, with_residual, dtype, rng, device):
    from minires.ops import winograd
    xs, ws, conv = case
    x = make(rng, *xs, device=device, dtype=dtype, requires_grad=False)
    w = make(rng, *ws, device=device, dtype=dtype, requires_grad=False)
    bn = [t.to(device) for t in eval_bn_args(rng, ws[0], dtype)]
    out_shape = F.conv2d(x, w, **conv).shape
    residual = make(rng, *out_shape, device=device, dtype=dtype, requires_grad=False) if with_residual else None
    winograd.set_conv_algorithm("winograd2")       # every 3x3 stride-1 layer, whatever its shape
    try:
        expected = eager_conv_bn(x, w, bn, residual, **conv)
        got = F.conv2d_batch_norm_relu_eval(x, w, *bn, residual=residual, **conv)
    finally:
        winograd.set_conv_algorithm(None)
    assert got.shape == expected.shape and not got.requires_grad
    assert (got.numpy() >= 0).all() and (got.numpy() == 0).any()     # the ReLU acted
    # float32: the affine map may be one fused multiply-add, the residual one more rounding
    assert_close(got, expected, 1e-13 if dtype == np.float64 else 2 * FLOAT32_RTOL, "output")


def test_winograd_output_epilogue_is_the_affine_map_of_the_tiles(rng):
    """The kernel itself: y·scale + shift (+ residual) (ReLU), float64, with and without each part."""
    from minires.kernels.cpu import winograd as W
    mt = rng.standard_normal((16, 2 * 3 * 4, 5))
    plain = W.winograd_output(mt, 2, np.empty((2, 6, 8, 5)))
    scale, shift, r = rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal((2, 6, 8, 5))
    for residual in (None, r):
        for relu in (False, True):
            got = W.winograd_output(mt, 2, np.empty((2, 6, 8, 5)), scale, shift, residual, relu)
            want = plain * scale + shift + (0 if residual is None else residual)
            np.testing.assert_allclose(got, np.maximum(want, 0) if relu else want, rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match=r"^winograd_output: residual .* C-contiguous"):
        W.winograd_output(mt, 2, np.empty((2, 6, 8, 5)), scale, shift, r[:, :, ::-1], True)
    for half in ({"scale": scale}, {"shift": shift}, {"residual": r}, {"relu": True}):
        with pytest.raises(ValueError, match=r"^winograd_output: the batch-norm epilogue takes scale and shift"):
            W.winograd_output(mt, 2, np.empty((2, 6, 8, 5)), **half)
    with pytest.raises(ValueError, match=r"^winograd_output: the batch-norm epilogue runs with F\(2x2\)"):
        W.winograd_output(rng.standard_normal((36, 2 * 2 * 2, 5)), 4, np.empty((2, 8, 8, 5)), scale, shift)


def test_conv2d_batch_norm_relu_eval_builds_no_graph_and_says_so(rng):
    x = make(rng, 2, 4, 6, 6, dtype=np.float32)                     # requires a gradient
    w = make(rng, 6, 4, 3, 3, dtype=np.float32, requires_grad=False)
    bn = eval_bn_args(rng, 6, np.float32)
    with pytest.raises(RuntimeError, match=r"^conv2d_batch_norm_relu_eval: builds no graph.*"
                                           r"minires.no_grad\(\).*conv2d, then batch_norm_relu"):
        F.conv2d_batch_norm_relu_eval(x, w, *bn, padding=1)
    with mr.no_grad():
        out = F.conv2d_batch_norm_relu_eval(x, w, *bn, padding=1)
    assert not out.requires_grad and out._parents == ()
    assert_close(out, eager_conv_bn(x.detach(), w, bn, None, padding=1), FLOAT32_RTOL)


def test_conv2d_batch_norm_relu_eval_errors_name_the_op(rng):
    x = make(rng, 2, 4, 6, 6, dtype=np.float32, requires_grad=False)
    w = make(rng, 6, 4, 3, 3, dtype=np.float32, requires_grad=False)
    mean, var, gamma, beta = eval_bn_args(rng, 6, np.float32)
    op = F.conv2d_batch_norm_relu_eval
    with pytest.raises(ValueError, match=r"^conv2d_batch_norm_relu_eval: input \(2, 4, 6, 6\) has 4 channels"):
        op(x, make(rng, 6, 3, 3, 3, dtype=np.float32, requires_grad=False), mean, var, padding=1)
    with pytest.raises(ValueError, match=r"^conv2d_batch_norm_relu_eval: weight has shape \(4\), expected \(6,\)"):
        op(x, w, mean, var, mr.tensor(np.ones(4, np.float32)), beta, padding=1)
    with pytest.raises(ValueError, match=r"^conv2d_batch_norm_relu_eval: evaluation mode .* needs running_mean"):
        op(x, w, None, None, gamma, beta, padding=1)
    with pytest.raises(ValueError, match=r"^conv2d_batch_norm_relu_eval: residual has shape \(2, 6, 4, 4\), "
                                         r"expected the convolution's output shape \(2, 6, 6, 6\)"):
        op(x, w, mean, var, gamma, beta, residual=make(rng, 2, 6, 4, 4, dtype=np.float32, requires_grad=False),
           padding=1)
    with pytest.raises(TypeError, match=r"^conv2d_batch_norm_relu_eval: .*float64"):
        op(x, w, mean, var, gamma, beta, residual=make(rng, 2, 6, 6, 6, requires_grad=False), padding=1)


@pytest.mark.parametrize("variant", ["original", "relu_only_preact"])
def test_models_evaluate_with_conv_and_batch_norm_as_one_op(variant, rng, monkeypatch):
    """In evaluation under no_grad the models' conv -> BN pairs run conv2d_batch_norm_relu_eval
    (the Winograd layers through its epilogue; the stem, a direct convolution, through the
    op's conv-then-BN path) and give the eager ops' logits; with a graph, or training, or
    fusion off, they do not."""
    import minires.ops.winograd as winograd
    calls, op_calls = [], []
    original = winograd.conv2d_batch_norm_eval
    monkeypatch.setattr(winograd, "conv2d_batch_norm_eval", lambda *a, **k: calls.append(1) or original(*a, **k))
    op = F.conv2d_batch_norm_relu_eval
    monkeypatch.setattr(F, "conv2d_batch_norm_relu_eval", lambda *a, **k: op_calls.append(1) or op(*a, **k))
    mr.manual_seed(0)
    model = mr.models.resnet_cifar(8, variant=variant)
    for mod in model.modules():                     # statistics that are not the identity map
        if isinstance(mod, mr.nn.BatchNorm2d):
            for t, value in zip((mod.running_mean, mod.running_var, mod.weight, mod.bias),
                                eval_bn_args(rng, mod.num_features, np.float32)):
                t.data[...] = value.data
    model.eval()
    x = mr.tensor(rng.standard_normal((4, 3, 32, 32)).astype(np.float32))
    with mr.fusion(False), mr.no_grad():
        eager = model(x)
    assert calls == [] and op_calls == []
    with mr.no_grad():
        fused = model(x)
    # ResNet-8 (original): the stem and the six block convs, the four stride-1 ones through the
    # Winograd epilogue; relu_only_preact fuses its stem only
    assert (len(op_calls), len(calls)) == ((7, 4) if variant == "original" else (1, 0))
    assert_close(fused, eager, FLOAT32_RTOL, "logits")
    calls.clear()
    op_calls.clear()
    model(x)                                        # a graph is built: the eager or fused-BN ops
    model.train()
    with mr.no_grad():
        model(x)
    assert calls == [] and op_calls == []
