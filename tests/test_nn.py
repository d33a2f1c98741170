"""tndiagram.nn modules against the torch.nn modules they replace, in float64."""

from __future__ import annotations

import pytest
import torch

from tndiagram import nn as tn_nn

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

DTYPE = torch.float64

CONV_CASES = [
    ("Conv1d", dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, groups=2), (2, 4, 9)),
    ("Conv2d", dict(in_channels=3, out_channels=4, kernel_size=(2, 4), padding="same", dilation=(2, 1)), (1, 3, 6, 5)),
    ("Conv2d", dict(in_channels=4, out_channels=4, kernel_size=3, stride=3, groups=4, bias=False), (2, 4, 7, 8)),
    ("Conv3d", dict(in_channels=2, out_channels=3, kernel_size=(1, 2, 2), stride=(1, 2, 1), padding=(0, 1, 0)), (2, 2, 1, 4, 3)),
    ("ConvTranspose1d", dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1, groups=2), (2, 4, 5)),
    ("ConvTranspose2d", dict(in_channels=3, out_channels=2, kernel_size=(2, 3), stride=(2, 1), dilation=(1, 2), output_padding=(1, 1)), (1, 3, 4, 3)),
    ("ConvTranspose3d", dict(in_channels=2, out_channels=2, kernel_size=2, stride=2, bias=False), (1, 2, 2, 3, 2)),
]


@pytest.mark.parametrize("name, arguments, shape", CONV_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CONV_CASES)])
def test_module_matches_torch_module(name, arguments, shape):
    torch.manual_seed(0)
    reference = getattr(torch.nn, name)(**arguments, dtype=DTYPE)
    torch.manual_seed(0)
    module = getattr(tn_nn, name)(**arguments, dtype=DTYPE)

    # reset_parameters draws the same numbers as torch's.
    for (key, value), (torch_key, torch_value) in zip(module.state_dict().items(), reference.state_dict().items()):
        assert key == torch_key
        torch.testing.assert_close(value, torch_value)

    module.load_state_dict(reference.state_dict())
    x = torch.randn(shape, dtype=DTYPE, requires_grad=True)
    output, expected = module(x), reference(x)
    torch.testing.assert_close(output, expected)

    grad_output = torch.randn(expected.shape, dtype=DTYPE)
    gradients = torch.autograd.grad(output, [x, *module.parameters()], grad_output)
    expected_gradients = torch.autograd.grad(expected, [x, *reference.parameters()], grad_output)
    assert len(gradients) == len(expected_gradients)
    for gradient, expected_gradient in zip(gradients, expected_gradients):
        torch.testing.assert_close(gradient, expected_gradient)


def test_unbatched_input_matches_torch():
    reference = torch.nn.Conv2d(2, 3, 3, padding=1, dtype=DTYPE)
    module = tn_nn.Conv2d(2, 3, 3, padding=1, dtype=DTYPE)
    module.load_state_dict(reference.state_dict())
    x = torch.randn(2, 5, 4, dtype=DTYPE)
    torch.testing.assert_close(module(x), reference(x))


def test_conv_transpose_output_size_matches_torch():
    reference = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, dtype=DTYPE)
    module = tn_nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, dtype=DTYPE)
    module.load_state_dict(reference.state_dict())
    x = torch.randn(1, 2, 4, 3, dtype=DTYPE)
    for output_size in ((7, 5), (8, 6), (1, 3, 8, 5)):
        torch.testing.assert_close(module(x, output_size), reference(x, output_size))
    with pytest.raises(ValueError, match="requested an output size of \\(9, 5\\)"):
        module(x, (9, 5))


def test_nd_modules_over_four_dimensions():
    """ConvNd and ConvTransposeNd are adjoint to each other over 4 spatial dimensions."""
    torch.manual_seed(1)
    conv = tn_nn.ConvNd(4, 2, (2, 1, 3, 2), stride=(2, 1, 1, 2), padding=1, groups=2, bias=False, dtype=DTYPE)
    transposed = tn_nn.ConvTransposeNd(2, 4, (2, 1, 3, 2), stride=(2, 1, 1, 2), padding=1, groups=2, bias=False, dtype=DTYPE)
    transposed.weight.data.copy_(conv.weight.data)
    x = torch.randn(2, 4, 5, 3, 4, 5, dtype=DTYPE)
    y = conv(x)
    assert y.shape == (2, 2, 3, 5, 4, 3)
    z = torch.randn(y.shape, dtype=DTYPE)
    back = transposed(z, output_size=x.shape[2:])
    assert back.shape == x.shape
    torch.testing.assert_close((y * z).sum(), (back * x).sum())


def test_unfold_and_fold_modules_match_torch():
    x = torch.randn(2, 3, 6, 5, dtype=DTYPE)
    unfold = tn_nn.Unfold((2, 3), dilation=(1, 2), padding=1, stride=(2, 1))
    expected = torch.nn.Unfold((2, 3), dilation=(1, 2), padding=1, stride=(2, 1))(x)
    columns = unfold(x)
    torch.testing.assert_close(columns, expected)
    fold = tn_nn.Fold((6, 5), (2, 3), dilation=(1, 2), padding=1, stride=(2, 1))
    torch_fold = torch.nn.Fold((6, 5), (2, 3), dilation=(1, 2), padding=1, stride=(2, 1))
    torch.testing.assert_close(fold(columns), torch_fold(columns))


def test_invalid_arguments_raise_like_torch():
    with pytest.raises(NotImplementedError, match="padding_mode='reflect' is not implemented"):
        tn_nn.Conv2d(2, 2, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        tn_nn.Conv2d(2, 2, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="in_channels \\(3\\) must be divisible by groups \\(2\\)"):
        tn_nn.Conv1d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        tn_nn.Conv2d(2, 2, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="the number of spatial dimensions is unknown"):
        tn_nn.ConvNd(2, 2, 3)
