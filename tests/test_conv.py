"""Convolutions computed by tndiagram against torch.nn.functional.conv1d/2d/3d,
and above three spatial dimensions against a plain loop over positions.

Up to three dimensions a convolution term runs on torch's own kernel by
default, so each case also runs through the einsum lowering (index patterns
contracted on the planned path) and through the rewrite pipeline (patterns
turned into views of x), both with ``native=False``.

Everything runs in float64 on seeded random tensors; sizes stay small.
"""

import itertools
from pathlib import Path

import pytest
import torch

import tndiagram
from tndiagram import functional

F = torch.nn.functional
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DTYPE = torch.float64

# torch warns that 'same' with an even kernel may copy the input; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def randn(*shape):
    return torch.randn(*shape, dtype=DTYPE)


def torch_conv(x, weight, bias=None, **options):
    return getattr(F, f"conv{x.dim() - 2}d")(x, weight, bias, **options)


# How a network is compiled: compile() options for each lowering.
LOWERINGS = {
    "native": {},
    "einsum": {"native": False, "simplify": False},
    "rewritten": {"native": False, "simplify": True},
}
lowerings = pytest.mark.parametrize("lowering", list(LOWERINGS))


def conv(lowering, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """functional.conv by default; otherwise its packaged diagram, compiled with other options."""
    if lowering == "native":
        return functional.conv(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    count = x.dim() - 2
    per_dimension = lambda value: value if isinstance(value, tuple) else (value,) * count  # noqa: E731
    hyper = dict(
        stride=per_dimension(stride),
        padding=functional.normalize_padding(padding, count),
        dilation=per_dimension(dilation),
        groups=groups,
    )
    network = functional.diagram("conv")["conv"]
    return tndiagram.compile(network, **LOWERINGS[lowering], **hyper)(x, weight, bias)


def case(x_shape, weight_shape, bias=True, id=None, **options):
    return pytest.param(x_shape, weight_shape, bias, options, id=id)


# One row per situation worth checking: shapes of x and weight, whether a bias
# is passed, and the keyword arguments that both torch and tndiagram take.
GRID = [
    # 1-d
    case((2, 3, 11), (4, 3, 2), stride=3, id="1d-stride-above-kernel"),
    case((2, 3, 10), (4, 3, 4), padding="same", id="1d-same-even-kernel"),
    case((2, 3, 10), (4, 3, 2), padding="same", dilation=3, id="1d-same-even-kernel-dilation-3"),
    case((2, 3, 9), (4, 3, 3), padding="same", dilation=2, id="1d-same-odd-kernel-dilation-2"),
    case((2, 3, 9), (4, 3, 3), padding="valid", id="1d-valid"),
    case((2, 3, 12), (4, 3, 3), padding=3, dilation=2, stride=2, id="1d-dilation-padding-stride"),
    case((2, 4, 9), (4, 1, 3), groups=4, padding=1, id="1d-depthwise"),
    case((1, 2, 7), (3, 2, 3), False, id="1d-batch-1-no-bias"),
    case((2, 2, 1), (3, 2, 1), id="1d-size-1"),
    case((1, 2, 5), (3, 2, 7), padding=1, id="1d-kernel-as-large-as-padded-input"),
    # 2-d
    case((2, 3, 9, 8), (4, 3, 2, 2), stride=(3, 4), id="2d-stride-above-kernel"),
    case((2, 3, 7, 6), (5, 3, 4, 2), padding="same", id="2d-same-even-kernels"),
    case((2, 3, 7, 8), (5, 3, 2, 4), padding="same", dilation=(2, 3), id="2d-same-even-kernels-dilation"),
    case((2, 3, 9, 5), (4, 3, 3, 2), padding="valid", id="2d-valid-non-square"),
    case((2, 3, 9, 8), (4, 3, 3, 2), padding=(2, 1), dilation=(2, 3), id="2d-dilation-with-padding"),
    case((2, 3, 10, 7), (4, 3, 3, 3), padding=(1, 2), dilation=(1, 2), stride=(2, 1), id="2d-mixed-per-dimension"),
    case((2, 4, 7, 6), (6, 2, 3, 3), False, groups=2, id="2d-groups-2-no-bias"),
    case((2, 6, 5, 7), (6, 1, 3, 3), groups=6, padding=1, id="2d-depthwise"),
    case((1, 3, 5, 6), (6, 1, 3, 2), groups=3, stride=2, id="2d-depthwise-multiplier-2"),
    case((1, 3, 1, 1), (4, 3, 1, 1), id="2d-batch-1-size-1-spatial"),
    case((2, 3, 1, 9), (4, 3, 1, 3), padding=(0, 1), id="2d-one-size-1-dimension"),
    case((1, 2, 4, 3), (3, 2, 6, 5), padding=1, id="2d-kernel-as-large-as-padded-input"),
    case((2, 2, 13, 4), (3, 2, 3, 4), False, stride=(4, 1), padding=(1, 0), id="2d-tall-input"),
    # 3-d
    case((2, 4, 5, 4, 6), (6, 2, 3, 2, 3), stride=(1, 2, 2), padding=(1, 0, 1), dilation=(1, 1, 2), groups=2, id="3d-mixed"),
    case((1, 2, 4, 5, 3), (3, 2, 2, 3, 2), padding="same", id="3d-same-even-kernels"),
    case((1, 3, 1, 4, 1), (3, 1, 1, 3, 1), groups=3, padding=(0, 1, 0), id="3d-depthwise-size-1"),
    case((2, 2, 3, 4, 5), (2, 2, 3, 4, 5), False, padding="valid", id="3d-kernel-as-large-as-input"),
]


@lowerings
@pytest.mark.parametrize("x_shape, weight_shape, with_bias, options", GRID)
def test_conv_matches_torch(x_shape, weight_shape, with_bias, options, lowering):
    x, weight = randn(*x_shape), randn(*weight_shape)
    bias = randn(weight_shape[0]) if with_bias else None
    result = conv(lowering, x, weight, bias, **options)
    expected = torch_conv(x, weight, bias, **options)
    assert result.shape == expected.shape
    torch.testing.assert_close(result, expected)


def _pad_arguments(padding):
    """Turn per-dimension (left, right) pairs into torch.nn.functional.pad's list,
    which starts at the last dimension."""
    pairs = [p if isinstance(p, tuple) else (p, p) for p in padding]
    return [side for pair in reversed(pairs) for side in pair]


ASYMMETRIC = [
    pytest.param((2, 3, 9), (4, 3, 3), ((2, 0),), {}, id="1d-left-only"),
    pytest.param((2, 3, 9), (4, 3, 2), ((0, 3),), {"stride": 2}, id="1d-right-only-stride-2"),
    pytest.param((2, 3, 6, 5), (4, 3, 3, 2), ((1, 2), (0, 3)), {}, id="2d-pairs"),
    pytest.param((2, 3, 6, 5), (4, 3, 3, 2), ((1, 2), 1), {}, id="2d-pair-and-integer"),
    pytest.param((2, 3, 7, 6), (4, 3, 3, 3), ((2, 1), (0, 2)), {"stride": 2}, id="2d-pairs-stride-2"),
    pytest.param((1, 4, 6, 6), (4, 2, 2, 3), ((0, 1), (3, 1)), {"dilation": (3, 2), "groups": 2}, id="2d-pairs-dilation-groups"),
    pytest.param((1, 2, 4, 3, 5), (2, 2, 2, 2, 2), ((0, 1), (2, 0), 1), {"stride": (1, 2, 1)}, id="3d-pairs"),
]


@lowerings
@pytest.mark.parametrize("x_shape, weight_shape, padding, options", ASYMMETRIC)
def test_asymmetric_padding_matches_padded_torch(x_shape, weight_shape, padding, options, lowering):
    x, weight, bias = randn(*x_shape), randn(*weight_shape), randn(weight_shape[0])
    result = conv(lowering, x, weight, bias, padding=padding, **options)
    expected = torch_conv(F.pad(x, _pad_arguments(padding)), weight, bias, padding=0, **options)
    assert result.shape == expected.shape
    torch.testing.assert_close(result, expected)


# -- the example diagrams ------------------------------------------------------


@pytest.fixture(scope="module")
def examples():
    return {name: tndiagram.load(str(EXAMPLES / f"{name}.tn")) for name in ("conv1d", "conv2d", "conv_nd")}


CONV2D_EXAMPLE = [
    pytest.param({}, {}, id="defaults"),
    pytest.param({"padding": 1}, {"padding": 1}, id="padding-1"),
    pytest.param(
        {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2)},
        {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2)},
        id="per-dimension-tuples",
    ),
    pytest.param({"stride": 3, "dilation": 2}, {"stride": 3, "dilation": 2}, id="stride-3-dilation-2"),
    pytest.param({"padding": ((1, 2), (0, 1))}, None, id="asymmetric-pairs"),
]


@lowerings
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("hyper, torch_options", CONV2D_EXAMPLE)
def test_conv2d_example(examples, hyper, torch_options, with_bias, lowering):
    x, weight = randn(2, 3, 9, 8), randn(4, 3, 3, 2)
    bias = randn(4) if with_bias else None
    function = tndiagram.compile(examples["conv2d"]["conv2d"], **LOWERINGS[lowering], **hyper)
    if torch_options is None:
        expected = F.conv2d(F.pad(x, _pad_arguments(hyper["padding"])), weight, bias)
    else:
        expected = F.conv2d(x, weight, bias, **torch_options)
    torch.testing.assert_close(function(x, weight, bias), expected)


CONV_ND_EXAMPLE = [
    pytest.param((2, 4, 9), (6, 2, 3), {"groups": 2, "padding": 1}, id="1d-groups"),
    pytest.param((2, 3, 10), (4, 3, 4), {"padding": "same", "dilation": 2}, id="1d-same-even-kernel"),
    pytest.param((2, 3, 7, 6), (4, 3, 3, 2), {"stride": (2, 1), "padding": (1, 0)}, id="2d-tuples"),
    pytest.param((1, 4, 6, 5), (4, 1, 3, 3), {"groups": 4, "dilation": (1, 2)}, id="2d-depthwise"),
    pytest.param((2, 3, 5, 4, 6), (6, 1, 2, 3, 2), {"groups": 3, "stride": 2}, id="3d-groups-stride"),
    pytest.param((1, 2, 4, 3, 5), (3, 2, 3, 2, 2), {"padding": "same"}, id="3d-same"),
]


@lowerings
@pytest.mark.parametrize("x_shape, weight_shape, hyper", CONV_ND_EXAMPLE)
def test_conv_nd_example(examples, x_shape, weight_shape, hyper, lowering):
    x, weight, bias = randn(*x_shape), randn(*weight_shape), randn(weight_shape[0])
    function = tndiagram.compile(examples["conv_nd"]["conv_nd"], **LOWERINGS[lowering], **hyper)
    torch.testing.assert_close(function(x, weight, bias), torch_conv(x, weight, bias, **hyper))
    torch.testing.assert_close(function(x, weight), torch_conv(x, weight, **hyper))


@pytest.mark.parametrize(
    "kernel, hyper",
    [
        pytest.param(3, {}, id="odd-kernel"),
        pytest.param(4, {}, id="even-kernel"),
        pytest.param(4, {"dilation": 2}, id="even-kernel-dilation-2"),
        pytest.param(2, {"dilation": 3}, id="even-kernel-dilation-3"),
    ],
)
@lowerings
def test_conv1d_example_same_padding(examples, kernel, hyper, lowering):
    x, weight, bias = randn(2, 3, 10), randn(4, 3, kernel), randn(4)
    function = tndiagram.compile(examples["conv1d"]["conv1d"], **LOWERINGS[lowering], **hyper)
    result = function(x, weight, bias)
    assert result.shape == x.shape[:1] + (4,) + x.shape[2:]
    torch.testing.assert_close(result, F.conv1d(x, weight, bias, padding="same", **hyper))


# -- above three spatial dimensions: a plain loop as reference -----------------


def loop_conv(x, weight, bias, stride, padding, dilation, groups):
    """Convolution by its definition: for each output position and kernel offset,
    multiply a slice of the padded input by the weight's channel matrix."""
    dimensions = x.dim() - 2
    x = F.pad(x, _pad_arguments(padding))
    batch, channels = x.shape[:2]
    out_channels, kernel = weight.shape[0], weight.shape[2:]
    outputs = [
        (x.shape[2 + d] - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1 for d in range(dimensions)
    ]
    result = torch.zeros(batch, out_channels, *outputs, dtype=x.dtype)
    per_group_in, per_group_out = channels // groups, out_channels // groups
    for group in range(groups):
        inputs = slice(group * per_group_in, (group + 1) * per_group_in)
        outs = slice(group * per_group_out, (group + 1) * per_group_out)
        for position in itertools.product(*map(range, outputs)):
            for offset in itertools.product(*map(range, kernel)):
                source = tuple(stride[d] * position[d] + dilation[d] * offset[d] for d in range(dimensions))
                result[(slice(None), outs) + position] += (
                    x[(slice(None), inputs) + source] @ weight[(outs, slice(None)) + offset].T
                )
    if bias is not None:
        result += bias.view(1, -1, *[1] * dimensions)
    return result


def test_loop_reference_agrees_with_torch_in_3d():
    x, weight, bias = randn(2, 4, 4, 3, 5), randn(6, 2, 2, 2, 3), randn(6)
    options = dict(stride=(1, 2, 1), padding=(1, 0, 1), dilation=(1, 1, 2), groups=2)
    torch.testing.assert_close(loop_conv(x, weight, bias, **options), F.conv3d(x, weight, bias, **options))


HIGH_DIMENSIONAL = [
    pytest.param(
        (1, 4, 3, 4, 3, 4),
        (6, 2, 2, 2, 1, 3),
        dict(stride=(1, 2, 1, 1), padding=(1, 0, 0, (0, 1)), dilation=(1, 1, 2, 1), groups=2),
        True,
        id="4d-groups-stride-dilation-asymmetric",
    ),
    pytest.param(
        (2, 2, 3, 2, 3, 2, 3),
        (2, 2, 2, 1, 2, 1, 2),
        dict(stride=(1,) * 5, padding=(1, 0, 1, 0, 0), dilation=(1,) * 5, groups=1),
        False,
        id="5d-padding-no-bias",
    ),
]


@pytest.mark.parametrize("x_shape, weight_shape, options, with_bias", HIGH_DIMENSIONAL)
def test_high_dimensional_functional_conv_matches_loop(x_shape, weight_shape, options, with_bias):
    x, weight = randn(*x_shape), randn(*weight_shape)
    bias = randn(weight_shape[0]) if with_bias else None
    expected = loop_conv(x, weight, bias, **options)
    result = functional.conv(x, weight, bias, **options)
    assert result.shape == expected.shape
    torch.testing.assert_close(result, expected)


@pytest.mark.parametrize("x_shape, weight_shape, options, with_bias", HIGH_DIMENSIONAL)
def test_high_dimensional_conv_nd_example_matches_loop(examples, x_shape, weight_shape, options, with_bias):
    x, weight = randn(*x_shape), randn(*weight_shape)
    bias = randn(weight_shape[0]) if with_bias else None
    function = tndiagram.compile(examples["conv_nd"]["conv_nd"], **options)
    torch.testing.assert_close(function(x, weight, bias), loop_conv(x, weight, bias, **options))
