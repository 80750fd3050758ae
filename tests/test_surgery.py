"""Block deletion and swapping on copies (Veit et al. 2016), and plain_cifar as the no-shortcut twin."""
import numpy as np
import pytest

import minires as mr
from minires.autograd import no_grad
from minires.models.surgery import delete_blocks, residual_blocks, swap_blocks
from minires.nn import functional as F


def trained_looking(build, depth=14):
    """A small net in eval mode with non-trivial BN statistics (so blocks differ from identity)."""
    mr.manual_seed(0)
    model = build(depth)
    rng = np.random.default_rng(0)
    for name, module in model.named_modules():
        if isinstance(module, mr.nn.BatchNorm2d):
            module.running_mean.data[...] = rng.normal(0, 0.1, module.running_mean.shape)
            module.running_var.data[...] = rng.uniform(0.5, 1.5, module.running_var.shape)
    return model.eval()


def forward_through(model, blocks, x):
    """The CIFAR net's forward with its block list replaced by ``blocks`` (callables)."""
    out = F.relu(model.bn1(model.conv1(x)))
    for b in blocks:
        out = b(out)
    return model.linear(F.flatten(model.avgpool(out), 1))


def block_list(model):
    return [b for stage in (model.layer1, model.layer2, model.layer3) for b in stage]


X = mr.tensor(np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32))


def test_blocks_are_named_in_data_flow_order():
    assert residual_blocks(mr.models.resnet_cifar(14)) == [
        "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1"]


@pytest.mark.parametrize("build", [mr.models.resnet_cifar, mr.models.plain_cifar], ids=["resnet", "plain"])
def test_deleting_blocks_passes_their_input_on_and_leaves_the_original_alone(build):
    model = trained_looking(build)
    before = model.state_dict()
    with no_grad():
        expected_full = model(X).numpy()
        lesioned = delete_blocks(model, ["layer1.1", 4])          # a shape-keeping and a downsampling block
        got = lesioned(X).numpy()
        blocks = block_list(model)
        # what is left: x itself, and at layer3.0 the subsample-and-pad to 64 channels
        pad = mr.models.cifar.PadShortcut(32, 64, 2)
        kept = [blocks[0], lambda x: x, blocks[2], blocks[3], pad, blocks[5]]
        want = forward_through(model, kept, X).numpy()
        assert np.allclose(got, want, atol=1e-5)
        assert np.array_equal(model(X).numpy(), expected_full)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert not np.allclose(got, expected_full, atol=1e-3)
    assert lesioned.config is None and type(lesioned.layer1[1]).__name__ == "DeletedBlock"


def test_a_deleted_projection_block_keeps_its_projection():
    model = trained_looking(lambda d: mr.models.resnet_cifar(d, shortcut="B"))
    lesioned = delete_blocks(model, "layer2.0")
    assert "layer2.0.shortcut.0.weight" in lesioned.state_dict()
    with no_grad():
        blocks = block_list(model)
        want = forward_through(model, [*blocks[:2], blocks[2].shortcut, *blocks[3:]], X).numpy()
        assert np.allclose(lesioned(X).numpy(), want, atol=1e-5)


def test_swapping_neighbours_reorders_them_and_keeps_their_names():
    model = trained_looking(mr.models.resnet_cifar, depth=20)       # three blocks per stage
    swapped = swap_blocks(model, "layer2.1")
    assert list(swapped.layer2._modules) == ["0", "2", "1"]
    with no_grad():
        b = block_list(model)
        want = forward_through(model, [*b[:4], b[5], b[4], *b[6:]], X).numpy()
        assert np.allclose(swapped(X).numpy(), want, atol=1e-5)
    assert set(swapped.state_dict()) == set(model.state_dict())


def test_swaps_that_would_change_shapes_or_run_off_the_stage_are_refused():
    model = mr.models.resnet_cifar(20)
    for bad in ("layer2.0", "layer1.2"):
        with pytest.raises(ValueError, match="cannot swap .* choose one of layer1.1, layer2.1, layer3.1"):
            swap_blocks(model, bad)
    with pytest.raises(ValueError, match=r"no block 'layer4.0' .* blocks are 0..8 or layer1.0 ... layer3.2"):
        delete_blocks(model, ["layer4.0"])
    with pytest.raises(TypeError, match="expected a CIFAR ResNet"):
        delete_blocks(mr.nn.Linear(2, 2), [0])


def test_plain_cifar_is_the_no_shortcut_twin_of_an_option_a_resnet():
    resnet, plain = mr.models.resnet_cifar(14), mr.models.plain_cifar(14)
    shapes = {k: v.shape for k, v in resnet.state_dict().items()}
    assert {k: v.shape for k, v in plain.state_dict().items()} == shapes
    plain.load_state_dict(resnet.state_dict())                      # key for key
    assert all(b.shortcut is None for b in block_list(plain))
    assert all(b.shortcut is not None for b in block_list(resnet))
    resnet.eval(), plain.eval()
    with no_grad():
        x = F.relu(resnet.bn1(resnet.conv1(X)))
        r, p = resnet.layer1[1], plain.layer1[1]
        # the same block minus "x +": original unit relu(F(x) + x) vs relu(F(x))
        branch = r.bn2(r.conv2(F.relu(r.bn1(r.conv1(x)))))
        assert np.allclose(p(x).numpy(), F.relu(branch).numpy(), atol=1e-6)
        assert np.allclose(r(x).numpy(), F.relu(branch + x).numpy(), atol=1e-6)


# ------------------------------------------------------------------ route_gradients (Veit et al., Sec. 5)
def input_gradient(model, x):
    x = mr.tensor(x.numpy(), requires_grad=True)
    model(x).sum().backward()
    return x.grad.numpy()


def test_routed_gradients_over_every_subset_of_branches_add_up_to_the_whole_gradient():
    """The backward of a ResNet expands into its 2^n paths: routing it through each subset of
    branches in turn (and through the shortcuts elsewhere) must give terms that sum to it."""
    import itertools
    model = trained_looking(mr.models.resnet_cifar, depth=14)
    names = residual_blocks(model)
    total = np.zeros(X.shape)
    for k in range(len(names) + 1):
        for subset in itertools.combinations(names, k):
            routed = mr.models.route_gradients(model, list(subset))
            total += input_gradient(routed, X)
    whole = input_gradient(model, X)
    np.testing.assert_allclose(total, whole, rtol=1e-3, atol=1e-5 * np.abs(whole).max())
    with no_grad():                      # the forward is unchanged
        np.testing.assert_array_equal(mr.models.route_gradients(model, names[:2])(X).numpy(), model(X).numpy())
    assert model.layer1[0].gradient_route is None          # the original is untouched


def test_route_gradients_refuses_a_plain_net_and_unknown_blocks():
    with pytest.raises(ValueError, match="route_gradients: a plain net has no shortcuts"):
        mr.models.route_gradients(mr.models.plain_cifar(14), [])
    with pytest.raises(ValueError, match="route_gradients: no block 'layer9.0'"):
        mr.models.route_gradients(mr.models.resnet_cifar(14), ["layer9.0"])
