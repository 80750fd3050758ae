"""minires.models and minires.summary: architectures, counts, gradients, PyTorch parity."""
import math
import time

import numpy as np
import pytest
from helpers import assert_close

import minires as mr
from minires import models
from minires.models import cifar
from minires.model_summary import count_macs, summary

# He et al. 2015, Table 6 (option A) -- exact counts, and the paper's rounded figure
CIFAR_PARAMS = {20: (269_722, "0.27"), 32: (464_154, "0.46"), 44: (658_586, "0.66"),
                56: (853_018, "0.85"), 110: (1_727_962, "1.7"), 1202: (19_421_274, "19.4")}
# torchvision's parameter counts; MACs at 224x224 with torchvision's stride placement
# (stride on the bottleneck's 3x3); the paper's Table 1 figure (stride on the first 1x1)
IMAGENET = {"resnet18": (11_689_512, 1_814_073_344, 1.8),
            "resnet34": (21_797_672, 3_663_761_408, 3.6),
            "resnet50": (25_557_032, 4_089_184_256, 3.8),
            "resnet101": (44_549_160, 7_801_405_440, 7.6),
            "resnet152": (60_192_808, 11_513_626_624, 11.3)}


def paper_rounding(count, paper):
    """count in millions rounded to as many decimals as the paper prints."""
    decimals = len(paper.split(".")[1])
    return f"{round(count / 1e6, decimals):.{decimals}f}"


def weighted_layers(model, input_shape):
    return sum(r.type in ("Conv2d", "Linear") for r in summary(model, input_shape).rows)


def rand(rng, *shape):
    return mr.tensor(rng.standard_normal(shape))          # float64: an explicit array


# ------------------------------------------------------------------ CIFAR counts
@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_parameter_counts(depth):
    model = models.get_model(f"resnet{depth}")
    count, paper = CIFAR_PARAMS[depth]
    assert model.num_parameters() == count
    assert paper_rounding(count, paper) == paper
    assert weighted_layers(model, (3, 32, 32)) == depth      # convs + fc = the depth


def test_resnet1202_builds_fast_and_counts():
    start = time.perf_counter()
    model = models.resnet1202()
    built = time.perf_counter() - start
    assert built < 10, f"building ResNet-1202 took {built:.1f} s"
    count, paper = CIFAR_PARAMS[1202]
    assert model.num_parameters() == count and paper_rounding(count, paper) == paper
    start = time.perf_counter()
    s = summary(model, (3, 32, 32))
    assert time.perf_counter() - start < 10
    assert s.total_params == count and s.output_shape == (1, 10)
    assert sum(r.type in ("Conv2d", "Linear") for r in s.rows) == 1202


def test_shortcut_options_parameter_differences():
    a, b, c = (models.resnet20(shortcut=o).num_parameters() for o in "ABC")
    proj = lambda i, o: i * o + 2 * o                      # noqa: E731  1x1 conv + BN
    # B projects only where the shape changes: the first block of stages 2 and 3
    assert b - a == proj(16, 32) + proj(32, 64)
    # C projects on all 9 blocks
    assert c - a == (3 * proj(16, 16) + proj(16, 32) + 2 * proj(32, 32)
                     + proj(32, 64) + 2 * proj(64, 64))
    model = models.resnet20(shortcut="B")
    kinds = [type(blk.shortcut).__name__ for layer in (model.layer1, model.layer2, model.layer3)
             for blk in layer]
    assert [i for i, k in enumerate(kinds) if k != "Identity"] == [3, 6]   # layer2.0, layer3.0
    assert set(kinds) == {"Identity", "Sequential"}


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_nets_have_the_option_a_parameters(depth):
    plain = models.get_model(f"plain{depth}")
    assert plain.num_parameters() == CIFAR_PARAMS[depth][0]
    assert all(blk.shortcut is None for layer in (plain.layer1, plain.layer2, plain.layer3)
               for blk in layer)
    assert list(plain.state_dict()) == list(models.get_model(f"resnet{depth}").state_dict())


# ------------------------------------------------------------------ ImageNet counts
@pytest.mark.parametrize("name", list(IMAGENET))
def test_imagenet_parameters_and_macs(name):
    params, macs, paper = IMAGENET[name]
    model = models.get_model(name)
    assert model.num_parameters() == params
    assert count_macs(model, (3, 224, 224)) == macs
    # The paper's figures are for stride on the first 1x1 of a bottleneck (same
    # parameters; basic blocks have no 1x1).  They are rounded unevenly (3.66 -> 3.6,
    # 7.57 -> 7.6), so: within one unit of the last printed digit.
    if isinstance(model.layer1[0], models.imagenet.Bottleneck):
        model = models.get_model(name, stride_in_1x1=True)
        assert model.num_parameters() == params
    gmacs = count_macs(model, (3, 224, 224)) / 1e9
    assert abs(gmacs - paper) < 0.1, f"{name}: {gmacs:.3f} GMACs, paper {paper}"


def test_imagenet_nets_on_fashion_mnist_shapes(rng):
    model = models.resnet18(in_channels=1, num_classes=10)
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    out = model(mr.tensor(rng.standard_normal((2, 1, 28, 28)).astype(np.float32)))
    assert out.shape == (2, 10)


# ------------------------------------------------------------------ variants
@pytest.mark.parametrize("variant", cifar.VARIANTS)
@pytest.mark.parametrize("shortcut", ["A", "B", "C", None])
def test_every_variant_trains(variant, shortcut, rng):
    mr.manual_seed(0)
    build = models.plain_cifar if shortcut is None else models.resnet_cifar
    kw = {} if shortcut is None else {"shortcut": shortcut}
    model = build(8, variant=variant, num_classes=5, **kw)
    assert (model.bn_final is not None) == (variant in cifar.PREACT_VARIANTS)
    assert (model.bn1 is None) == (variant == "full_preact")
    x = mr.tensor(rng.standard_normal((4, 3, 16, 16)).astype(np.float32))
    out = model(x)
    assert out.shape == (4, 5)
    mr.nn.functional.cross_entropy(out, mr.tensor(np.array([0, 1, 2, 3]))).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert np.isfinite(p.grad.numpy()).all(), name


GRADCHECKED = ([(v, "A") for v in cifar.VARIANTS]
               + [(v, s) for v in ("original", "full_preact") for s in ("B", "C")]
               + [("original", None), ("full_preact", None)])


@pytest.mark.parametrize("variant,shortcut", GRADCHECKED)
def test_variant_gradients(variant, shortcut, rng):
    """Depth 8 in float64, BN in training mode: the input, the stem, the whole
    shape-changing block layer2.0 (its shortcut too), the final BN and the classifier."""
    mr.manual_seed(1)
    model = (models.plain_cifar(8, variant=variant) if shortcut is None
             else models.resnet_cifar(8, shortcut=shortcut, variant=variant)).double()
    checked = [p for name, p in model.named_parameters()
               if name.startswith(("conv1.", "layer2.0.", "bn_final.", "linear.weight"))]
    x = mr.tensor(rng.standard_normal((2, 3, 8, 8)), requires_grad=True)
    assert mr.gradcheck(lambda x, *ps: model(x), [x, *checked], max_elements=3, n_directions=1)


def test_unit_formulas():
    """Each variant computes its He 2016 Fig. 4 formula (checked against the parts)."""
    rng = np.random.default_rng(0)
    relu = mr.nn.functional.relu
    x = rand(rng, 2, 16, 6, 6)
    for variant in cifar.VARIANTS:
        blk = cifar.BasicBlock(16, 16, variant=variant).double()
        c1, b1, c2, b2 = blk.conv1, blk.bn1, blk.conv2, blk.bn2
        expected = {"original": lambda: relu(x + b2(c2(relu(b1(c1(x)))))),
                    "bn_after_add": lambda: relu(b2(x + c2(relu(b1(c1(x)))))),
                    "relu_before_add": lambda: x + relu(b2(c2(relu(b1(c1(x)))))),
                    "relu_only_preact": lambda: x + b2(c2(relu(b1(c1(relu(x)))))),
                    "full_preact": lambda: x + c2(relu(b2(c1(relu(b1(x))))))}[variant]()
        assert_close(blk(x), expected, 1e-12, variant)


def test_option_a_pads_half_the_new_channels_each_side():
    rng = np.random.default_rng(0)
    x = rand(rng, 2, 16, 5, 5)
    out = cifar.PadShortcut(16, 32, 2)(x).numpy()
    assert out.shape == (2, 32, 3, 3)
    assert (out[:, :8] == 0).all() and (out[:, 24:] == 0).all()
    np.testing.assert_array_equal(out[:, 8:24], x.numpy()[:, :, ::2, ::2])


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("depth", [21, 2, 7, "20", True, 20.0])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        models.resnet_cifar(depth)


def test_bad_choices():
    with pytest.raises(ValueError, match="variant 'preact'.*full_preact"):
        models.resnet20(variant="preact")
    with pytest.raises(ValueError, match="shortcut option 'D'.*'A', 'B', 'C'"):
        models.resnet20(shortcut="D")
    with pytest.raises(ValueError, match="plain_cifar"):
        models.resnet_cifar(20, shortcut=None)
    with pytest.raises(TypeError, match="fixed to 'full_preact'"):
        models.preact_resnet20(variant="original")
    with pytest.raises(ValueError, match="did you mean .*'resnet20'"):
        models.get_model("resnet21")
    with pytest.raises(TypeError, match="resnet18"):
        models.resnet18(depth=18)
    with pytest.raises(ValueError, match="four block counts"):
        models.ResNet(models.imagenet.BasicBlock, [2, 2, 2])


# ------------------------------------------------------------------ registry, config
def test_registry_names():
    names = models.available()
    for d in cifar.DEPTHS:
        assert {f"resnet{d}", f"plain{d}", f"preact_resnet{d}"} <= set(names)
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
            "resnet_cifar", "plain_cifar"} <= set(names)
    assert models.get_model("resnet110").depth == 110
    assert models.get_model("preact_resnet110").variant == "full_preact"
    assert models.get_model("resnet56", shortcut="b").shortcut_option == "B"


def test_config_rebuilds_the_model(rng):
    mr.manual_seed(0)
    model = models.get_model("resnet20", shortcut="B", num_classes=100)
    assert model.config == {"name": "resnet20", "kwargs": {"shortcut": "B", "num_classes": 100}}
    assert models.resnet_cifar(8, variant="full_preact").config == \
        {"name": "resnet_cifar", "kwargs": {"depth": 8, "variant": "full_preact"}}
    assert models.resnet18(in_channels=1).config == {"name": "resnet18", "kwargs": {"in_channels": 1}}
    mr.manual_seed(1)
    again = models.from_config(model.config)
    again.load_state_dict(model.state_dict())
    model.eval(), again.eval()
    x = mr.tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    np.testing.assert_array_equal(model(x).numpy(), again(x).numpy())


# ------------------------------------------------------------------ summary
def test_summary_counts_by_hand():
    conv = mr.nn.Conv2d(3, 16, 3, stride=2, padding=1)
    s = summary(conv, (3, 32, 32))
    assert [(r.name, r.output_shape, r.params) for r in s.rows] == [("(model)", (1, 16, 16, 16), 448)]
    assert s.total_macs == 16 * 16 * 16 * 3 * 9
    net = mr.nn.Sequential(mr.nn.Flatten(), mr.nn.Linear(12, 5), mr.nn.ReLU(), mr.nn.Linear(5, 2))
    assert count_macs(net, (3, 2, 2)) == 12 * 5 + 5 * 2
    text = str(summary(net, (3, 2, 2)))
    assert "Total params: 77" in text and "Total MACs: 70" in text


@pytest.mark.parametrize("build,shape", [(lambda: models.resnet18(), (3, 64, 64)),
                                         (lambda: models.resnet50(stride_in_1x1=True), (3, 48, 40)),
                                         (lambda: models.resnet_cifar(14, "B", "full_preact"), (3, 17, 17))])
def test_summary_shape_only_equals_running_the_convs(build, shape):
    model = build()
    assert summary(model, shape).rows == summary(model, shape, run_convs=True).rows


def test_summary_leaves_the_model_as_it_was():
    model = models.resnet18()
    model.layer2.eval()                                      # a mixed mode to restore
    modes = [m.training for m in model.modules()]
    before = model.state_dict()
    s = summary(model, (3, 32, 32))
    assert [m.training for m in model.modules()] == modes
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert all(not m._forward_hooks and "forward" not in m.__dict__ for m in model.modules())
    # the shared relu of a torchvision block is one module called twice: two rows, params once
    assert [r.name for r in s.rows].count("layer1.0.relu") == 2
    assert s.total_params == s.trainable_params == sum(r.params for r in s.rows) == 11_689_512
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\)"):
        summary(model, (1, 32, 32))                          # the stand-in checks like the op
    assert all(not m._forward_hooks and "forward" not in m.__dict__ for m in model.modules())
    assert [m.training for m in model.modules()] == modes


@pytest.mark.slow
def test_summary_real_convs_at_224():
    model = models.resnet152()
    s = summary(model, (3, 224, 224), run_convs=True)
    assert s.total_macs == IMAGENET["resnet152"][1]


# ------------------------------------------------------------------ PyTorch parity
def _akamaster_resnet20(torch):
    """akamaster/pytorch_resnet_cifar10 resnet.py (option A), verbatim in substance."""
    nn, F = torch.nn, torch.nn.functional

    class LambdaLayer(nn.Module):
        def __init__(self, lambd):
            super().__init__()
            self.lambd = lambd

        def forward(self, x):
            return self.lambd(x)

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, in_planes, planes, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.shortcut = nn.Sequential()
            if stride != 1 or in_planes != planes:
                self.shortcut = LambdaLayer(lambda x: F.pad(
                    x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out += self.shortcut(x)
            return F.relu(out)

    class ResNet(nn.Module):
        def __init__(self, block, num_blocks, num_classes=10):
            super().__init__()
            self.in_planes = 16
            self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.layer1 = self._make_layer(block, 16, num_blocks[0], stride=1)
            self.layer2 = self._make_layer(block, 32, num_blocks[1], stride=2)
            self.layer3 = self._make_layer(block, 64, num_blocks[2], stride=2)
            self.linear = nn.Linear(64, num_classes)

        def _make_layer(self, block, planes, num_blocks, stride):
            layers = []
            for s in [stride] + [1] * (num_blocks - 1):
                layers.append(block(self.in_planes, planes, s))
                self.in_planes = planes * block.expansion
            return nn.Sequential(*layers)

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.layer3(self.layer2(self.layer1(out)))
            out = F.avg_pool2d(out, out.size()[3])
            return self.linear(out.view(out.size(0), -1))

    return ResNet(BasicBlock, [3, 3, 3])


def _torchvision_resnet(torch, kind, layers):
    """torchvision.models.resnet's layout (BasicBlock / Bottleneck v1.5), rewritten here."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    block = {"basic": BasicBlock, "bottleneck": Bottleneck}[kind]

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = self._make_layer(64, layers[0])
            self.layer2 = self._make_layer(128, layers[1], 2)
            self.layer3 = self._make_layer(256, layers[2], 2)
            self.layer4 = self._make_layer(512, layers[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * block.expansion, 1000)

        def _make_layer(self, planes, blocks, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                    nn.BatchNorm2d(planes * block.expansion))
            out = [block(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * block.expansion
            out += [block(self.inplanes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*out)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet()


def _randomise_bn(torch, model):
    """Non-trivial BN affine parameters and running statistics, so eval mode is a real test."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g, dtype=torch.float64))
                m.bias.copy_(0.1 * torch.randn(c, generator=g, dtype=torch.float64))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g, dtype=torch.float64))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g, dtype=torch.float64))


@pytest.fixture
def torch():
    """torch on one thread: its thread pool and Numba's fight over the cores otherwise
    (a 10x slowdown on a small machine)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield torch
    torch.set_num_threads(threads)


def _numpy_state(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.mark.parity
def test_option_a_matches_akamaster_resnet20(torch, rng):
    ref = _akamaster_resnet20(torch).double()
    _randomise_bn(torch, ref)
    model = models.resnet20().double()
    missing, unexpected = model.load_state_dict(_numpy_state(ref))
    assert not missing and not unexpected
    x = rng.standard_normal((4, 3, 32, 32))

    ref.eval(), model.eval()
    assert_close(model(mr.tensor(x)), ref(torch.from_numpy(x)).detach().numpy(), 1e-10, "eval")

    ref.train(), model.train()
    u = rng.standard_normal((4, 10))
    expected = ref(torch.from_numpy(x))
    (expected * torch.from_numpy(u)).sum().backward()
    out = model(mr.tensor(x))
    out.backward(u)
    assert_close(out, expected.detach().numpy(), 1e-10, "train")
    after = _numpy_state(ref)
    for k, v in model.state_dict().items():                 # running stats moved alike
        assert_close(v, after[k], 1e-10, k)
    grads = {k: p.grad.numpy() for k, p in ref.named_parameters()}
    for k, p in model.named_parameters():
        assert_close(p.grad, grads[k], 1e-9, f"grad {k}")


@pytest.mark.parity
@pytest.mark.parametrize("name,kind,layers", [("resnet18", "basic", [2, 2, 2, 2]),
                                               ("resnet50", "bottleneck", [3, 4, 6, 3])])
def test_torchvision_state_dict_layout(name, kind, layers, torch, rng):
    ref = _torchvision_resnet(torch, kind, layers).double()
    _randomise_bn(torch, ref)
    model = models.get_model(name).double()
    theirs, ours = _numpy_state(ref), model.state_dict()
    assert list(ours) == list(theirs)                       # same keys, same order
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    model.load_state_dict(theirs)
    ref.eval(), model.eval()
    x = rng.standard_normal((2, 3, 32, 32))
    assert_close(model(mr.tensor(x)), ref(torch.from_numpy(x)).detach().numpy(), 1e-10, name)


# ------------------------------------------------------------------ a model and its arguments in one string
def test_spec_string_builds_what_the_keywords_build():
    built = models.get_model("resnet20:shortcut=C,variant=full_preact", num_classes=7)
    assert built.config == {"name": "resnet20",
                            "kwargs": {"shortcut": "C", "variant": "full_preact", "num_classes": 7}}
    assert built.shortcut_option == "C" and built.variant == "full_preact"
    assert models.from_config(built.config).config == built.config
    assert models.get_model("resnet_cifar:depth=14").depth == 14      # whole numbers are numbers


@pytest.mark.parametrize("spec, words", [
    ("resnet20:shortcut", "KEY=VALUE"), ("resnet20:shortcut=B,shortcut=C", "shortcut twice"),
    ("resnet20:num_classes=3", "both give num_classes"), ("resnet20:shortcutt=B", "shortcutt")])
def test_spec_string_errors_are_one_line_naming_the_string(spec, words):
    with pytest.raises(ValueError) as caught:
        models.get_model(spec, num_classes=10)
    message = str(caught.value)
    assert message.startswith(f"get_model: {spec!r}") and words in message and "\n" not in message


# ------------------------------------------------------------------ d2l's ResNet-18 (demos/d2l_resnet18.py)
def test_d2l_resnet18_is_the_books_network():
    model = models.get_model("d2l_resnet18", in_channels=1)
    assert sum(p.size for p in model.parameters()) == 11_178_378     # the book's net, one channel
    assert model.b3[0].conv3 is not None and model.b2[0].conv3 is None   # b2 keeps the shape
    assert model.b1[0].bias is not None                                # every conv has a bias
    x = mr.tensor(np.zeros((2, 1, 96, 96), np.float32))
    assert model(x).shape == (2, 10)


def test_d2l_resnet18_initialisation_is_xavier_uniform():
    mr.manual_seed(0)
    weight = models.get_model("d2l_resnet18").b5[1].conv2.weight.numpy()   # 512 -> 512, 3x3
    bound = math.sqrt(6 / (2 * 512 * 9))
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.99 * bound
    assert abs(weight.std() - bound / math.sqrt(3)) < 0.01 * bound        # uniform, not normal


def test_d2l_resnet18_matches_the_books_pytorch_code(torch, rng):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "d2l_resnet18_torch.py"
    spec = importlib.util.spec_from_file_location("d2l_resnet18_torch", path)
    book = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(book)
    theirs = book.d2l_resnet18(in_channels=1).eval()
    ours = models.get_model("d2l_resnet18", in_channels=1)
    # the book's nn.Sequential indices -> minires's names (b1..b5, linear)
    names = {str(i): f"b{i + 1}" for i in range(5)} | {"7": "linear"}
    state = {}
    for key, value in theirs.state_dict().items():
        head, _, rest = key.partition(".")
        state[f"{names[head]}.{rest}"] = value.numpy()
    assert set(state) == set(ours.state_dict())
    ours.load_state_dict(state)
    ours.eval()
    x = rng.standard_normal((2, 1, 64, 64)).astype(np.float32)
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    assert_close(ours(mr.tensor(x)), expected, rtol=1e-4)
