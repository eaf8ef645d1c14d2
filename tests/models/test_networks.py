"""The six networks against docs/spec/models.md: sizes, parameter counts, Keras layer semantics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from network_spec import SPEC_KERAS_TOTALS, SPEC_PARAMETERS
from torch import nn

from lexactum.errors import LexactumError
from lexactum.models import create_model, list_models
from lexactum.models.blocks import (
    KerasConv2d,
    ResidualBlock,
    batch_norm_1d,
    batch_norm_2d,
    keras_same_padding,
)

#: Spatial sizes along each network (spec "Sizes" lines, and the floor rule for the others).
SPEC_SIZES = {
    "cas_swinburne": [101, 33, 11, 3],
    "lastro_epfl": [101, 98, 96, 48, 46, 44, 22, 20, 18, 9, 7, 5],
    "cmu_deeplens": [101, 51, 26, 13, 7, 3],
    "wsi_net": [101, 51, 25],
    "lens_flow": [101, 33, 16, 8, 4],
    "lens_finder": [101, 50, 25],
}
#: Keras layers with weights, in order, for the Sequential networks: (kind, out units, kernel).
SPEC_WEIGHTED_LAYERS = {
    "cas_swinburne": [("conv", 96, 11), ("conv", 128, 5), ("conv", 256, 3),
                      ("dense", 1024), ("dense", 1024), ("dense", 1)],
    "lastro_epfl": [("conv", 16, 4), ("conv", 16, 3), ("bn", 16),
                    ("conv", 32, 3), ("conv", 32, 3), ("bn", 32),
                    ("conv", 64, 3), ("conv", 64, 3), ("bn", 64),
                    ("conv", 128, 3), ("conv", 128, 3), ("bn", 128),
                    ("dense", 1024), ("dense", 1024), ("dense", 1024), ("bn", 1024), ("dense", 1)],
    "lens_flow": [("conv", 16, 5), ("conv", 25, 5), ("conv", 36, 4), ("dense", 128), ("dense", 1)],
    "lens_finder": [("conv", 64, 5), ("conv", 128, 3), ("dense", 128), ("dense", 1)],
}


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    return {name: create_model(name, in_channels=1).eval() for name in SPEC_PARAMETERS}


def test_registry_has_the_six_networks():
    assert set(list_models()) >= set(SPEC_PARAMETERS)


@pytest.mark.parametrize("bands", [1, 4])
@pytest.mark.parametrize("name", sorted(SPEC_PARAMETERS))
def test_parameter_counts_match_keras(name, bands):
    with torch.device("meta"):
        model = create_model(name, in_channels=bands)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == SPEC_PARAMETERS[name][bands == 4]
    moving = sum(b.numel() for key, b in model.named_buffers()
                 if key.endswith(("running_mean", "running_var")))
    keras_total = SPEC_KERAS_TOTALS[name][bands == 4]
    assert trainable + moving == keras_total


@pytest.mark.parametrize("name", sorted(SPEC_PARAMETERS))
def test_one_band_logits_and_intermediate_sizes(networks, name):
    model = networks[name]
    sizes = []
    spatial = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, ResidualBlock)
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
             for m in model.modules() if isinstance(m, spatial)]
    try:
        with torch.no_grad():
            logits = model(torch.rand(2, 1, 101, 101))
    finally:
        for hook in hooks:
            hook.remove()
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    sizes = [101, *sizes]
    along = [s for i, s in enumerate(sizes) if i == 0 or s != sizes[i - 1]]
    assert along == SPEC_SIZES[name]


@pytest.mark.parametrize("name", sorted(SPEC_PARAMETERS))
def test_four_band_logits(name):
    torch.manual_seed(1)
    model = create_model(name, in_channels=4).eval()
    assert model.name == name and model.in_channels == 4
    images = torch.rand(2, 4, 101, 101)
    with torch.no_grad():
        logits = model(images)
        single = model(images[1:])
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    # in eval mode images are scored independently: alone or in a batch, the same logit
    torch.testing.assert_close(single, logits[1:], atol=1e-5, rtol=1e-4)


def test_wrong_input_shape_is_refused(networks):
    with pytest.raises(LexactumError, match=r"lens_flow expects images of shape \(N, 1, 101, 101\)"):
        networks["lens_flow"](torch.rand(1, 4, 101, 101))
    with pytest.raises(LexactumError, match="cmu_deeplens"):
        networks["cmu_deeplens"](torch.rand(1, 1, 64, 64))


@pytest.mark.parametrize("name", sorted(SPEC_WEIGHTED_LAYERS))
def test_sequential_networks_list_weighted_layers_in_keras_order(networks, name):
    """The Keras importer pairs ``.h5`` layers with these modules by order."""
    found = []
    for m in networks[name].modules():
        if isinstance(m, nn.Conv2d):
            assert m.kernel_size[0] == m.kernel_size[1]
            found.append(("conv", m.out_channels, m.kernel_size[0]))
        elif isinstance(m, nn.Linear):
            found.append(("dense", m.out_features))
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            found.append(("bn", m.num_features))
    assert found == SPEC_WEIGHTED_LAYERS[name]


def test_dropout_rates(networks):
    rates = {name: [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
             for name, model in networks.items()}
    assert rates["cas_swinburne"] == [0.5, 0.5]
    assert rates["lastro_epfl"] == [0.1] * 5
    assert rates["lens_flow"] == [0.5]
    assert rates["lens_finder"] == rates["cmu_deeplens"] == rates["wsi_net"] == []


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_even_kernel_same_padding_is_one_before_two_after():
    torch.manual_seed(2)
    conv = KerasConv2d(3, 5, 4)
    x = torch.randn(2, 3, 8, 8)
    explicit = F.conv2d(F.pad(x, (1, 2, 1, 2)), conv.weight, conv.bias)
    torch.testing.assert_close(conv(x), explicit)
    # PyTorch's own padding='same' (stride 1) also puts the odd pixel after: a library cross-check
    reference = nn.Conv2d(3, 5, 4, padding="same")
    reference.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x), reference(x))
    assert conv(x).shape[-2:] == (8, 8)


@pytest.mark.parametrize(("size", "kernel", "stride", "pads"), [
    (101, 4, 1, (1, 2)), (101, 7, 1, (3, 3)), (101, 1, 2, (0, 0)), (51, 1, 2, (0, 0)), (8, 3, 2, (0, 1)),
    (9, 3, 2, (1, 1)), (101, 11, 1, (5, 5)),
])
def test_keras_same_padding_rule(size, kernel, stride, pads):
    assert keras_same_padding(size, kernel, stride) == pads
    conv = KerasConv2d(1, 1, kernel, stride=stride, padding="same")
    assert conv(torch.zeros(1, 1, size, size)).shape[-1] == math.ceil(size / stride)


def test_strided_same_conv_matches_explicit_padding():
    torch.manual_seed(3)
    conv = KerasConv2d(2, 4, 3, stride=2)
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(conv(x), F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2))


def test_valid_conv_does_not_pad():
    conv = KerasConv2d(1, 1, 4, padding="valid")
    assert conv(torch.zeros(1, 1, 101, 101)).shape[-1] == 98
    with pytest.raises(ValueError):
        KerasConv2d(1, 1, 3, padding="full")


def test_batch_norm_uses_keras_epsilon_and_momentum(networks):
    norms = [m for model in networks.values() for m in model.modules()
             if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    assert len(norms) == 4 + 1 + 3 * 15 + 1 + 2 * 3 + 2  # lastro 2-D + 1-D, cmu stem + blocks, wsi blocks + 2
    assert all(m.eps == 1e-3 and m.momentum == pytest.approx(0.01) for m in norms)
    # Keras: moving = 0.99 * moving + 0.01 * batch statistic
    bn = batch_norm_2d(3).train()
    x = torch.randn(16, 3, 5, 5) + torch.tensor([1.0, -2.0, 3.0]).view(1, 3, 1, 1)
    bn(x)
    torch.testing.assert_close(bn.running_mean, 0.01 * x.mean(dim=(0, 2, 3)))
    assert isinstance(batch_norm_1d(7), nn.BatchNorm1d) and batch_norm_1d(7).eps == 1e-3


def test_kernels_are_glorot_uniform_and_biases_zero(networks):
    checked_spread = 0
    for model in networks.values():
        for m in model.modules():
            if not isinstance(m, nn.Conv2d | nn.Linear):
                continue
            assert torch.count_nonzero(m.bias) == 0
            receptive = m.weight[0, 0].numel() if m.weight.ndim == 4 else 1
            fan_in, fan_out = m.weight.shape[1] * receptive, m.weight.shape[0] * receptive
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            assert m.weight.abs().max() <= bound
            if m.weight.numel() >= 10_000:  # enough draws to tell uniform(-bound, bound) from other inits
                assert m.weight.abs().max() > 0.99 * bound
                assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
                checked_spread += 1
    assert checked_spread > 20


def _reference_block(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    """The spec's residual block written out with functional calls (eval mode)."""

    def bn(layer, t):
        return F.batch_norm(t, layer.running_mean, layer.running_var, layer.weight, layer.bias,
                            training=False, eps=1e-3)

    def conv(layer, t, stride=1, padding=0):
        return F.elu(F.conv2d(t, layer.weight, layer.bias, stride=stride, padding=padding))

    stride = 2 if block.downsample else 1
    activated = F.elu(bn(block.bn0, x))
    shortcut = conv(block.shortcut, activated, stride=2) if block.downsample else x
    main = F.elu(bn(block.bn1, conv(block.conv1, activated, stride=stride)))
    main = F.elu(bn(block.bn2, conv(block.conv2, main, padding=1)))
    return conv(block.conv3, main) + shortcut


@pytest.mark.parametrize(("in_filters", "out_filters", "downsample", "in_size", "out_size"), [
    (16, 32, False, 13, 13), (32, 64, True, 13, 7), (8, 16, True, 26, 13),
])
def test_residual_block_follows_the_spec(in_filters, out_filters, downsample, in_size, out_size):
    torch.manual_seed(4)
    block = ResidualBlock(in_filters, out_filters, downsample)
    block_input = in_filters if downsample else out_filters
    assert block.bn0.num_features == block_input and block.downsample is downsample
    assert (block.shortcut is not None) is downsample
    conv1 = block.conv1
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size) == (block_input, in_filters, (1, 1))
    assert block.conv1.stride == ((2, 2) if downsample else (1, 1))
    assert (block.conv2.out_channels, block.conv2.kernel_size) == (in_filters, (3, 3))
    assert (block.conv3.out_channels, block.conv3.kernel_size) == (out_filters, (1, 1))
    for bn in (block.bn0, block.bn1, block.bn2):  # make the statistics matter
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    block.eval()
    x = torch.randn(2, block_input, in_size, in_size)
    out = block(x)
    assert out.shape == (2, out_filters, out_size, out_size)
    torch.testing.assert_close(out, _reference_block(block, x))


def test_cmu_deeplens_structure(networks):
    model = networks["cmu_deeplens"]
    assert len(model.blocks) == 15
    assert [b.downsample for b in model.blocks] == [False] * 3 + ([True, False, False] * 4)
    assert [b.conv3.out_channels for b in model.blocks][::3] == [32, 64, 128, 256, 512]
    assert (model.stem.out_channels, model.stem.kernel_size, model.stem_bn.num_features) == (32, (7, 7), 32)
    assert model.fc.in_features == 4608


def test_wsi_net_structure(networks):
    model = networks["wsi_net"]
    assert not model.block1.downsample and model.block2.downsample
    assert model.conv_a.kernel_size == (1, 1) and model.conv_b.kernel_size == (5, 5)
    assert (model.fc1.in_features, model.fc1.out_features, model.fc2.out_features) == (20000, 128, 1)


def test_gradients_reach_every_parameter():
    torch.manual_seed(5)
    model = create_model("lens_flow", in_channels=4).train()
    logits = model(torch.rand(3, 4, 101, 101))
    loss = F.binary_cross_entropy_with_logits(logits, torch.tensor([1.0, 0.0, 1.0]))
    loss.backward()
    assert all(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in model.parameters())
