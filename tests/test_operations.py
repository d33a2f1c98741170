"""Unfold, fold, transpose convolution and the convolution VJPs of
tndiagram.functional against torch and the slicing references, in float64."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tndiagram
from tndiagram import functional
from test_operations_reference import (
    CASES,
    DTYPE,
    TRANSPOSED_CASES,
    case_ids,
    reference_conv_input_vjp,
    reference_conv_transpose,
    reference_conv_weight_vjp,
    reference_unfold,
    torch_conv,
    torch_conv_transpose,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


def hyper(case):
    return dict(stride=case.stride, padding=case.padding, dilation=case.dilation)


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_unfold_matches_reference(case):
    x = case.random_input(torch.Generator().manual_seed(10))
    result = functional.unfold(x, case.kernel_size, **hyper(case))
    torch.testing.assert_close(result, reference_unfold(x, case))
    if case.dims == 2 and case.torch_supports and not isinstance(case.padding, str):
        expected = F.unfold(x, case.kernel_size, case.dilation, case.padding, case.stride)
        torch.testing.assert_close(result, expected)


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_fold_matches_reference(case):
    """Fold is the adjoint of unfold: its result is unfold's input gradient."""
    generator = torch.Generator().manual_seed(11)
    columns = torch.randn(
        case.batch, case.in_channels * math.prod(case.kernel_size), math.prod(case.output_size),
        dtype=DTYPE, generator=generator,
    )
    result = functional.fold(columns, case.input_size, case.kernel_size, **hyper(case))
    x = torch.zeros(case.batch, case.in_channels, *case.input_size, dtype=DTYPE, requires_grad=True)
    (expected,) = torch.autograd.grad(reference_unfold(x, case), x, columns)
    torch.testing.assert_close(result, expected)
    if case.dims == 2 and case.torch_supports and not isinstance(case.padding, str):
        torch_result = F.fold(columns, case.input_size, case.kernel_size, case.dilation, case.padding, case.stride)
        torch.testing.assert_close(result, torch_result)


def test_fold_with_integer_sizes_is_two_dimensional():
    columns = torch.randn(2, 3 * 4, 9, dtype=DTYPE)
    expected = F.fold(columns, 4, 2, stride=1)
    torch.testing.assert_close(functional.fold(columns, 4, 2), expected)


def test_fold_rejects_wrong_column_count():
    columns = torch.randn(1, 4, 10, dtype=DTYPE)
    with pytest.raises(ValueError, match="x has 10 columns .* expected 9"):
        functional.fold(columns, (4, 4), (2, 2))


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=case_ids(TRANSPOSED_CASES))
def test_conv_transpose_matches_torch(case):
    generator = torch.Generator().manual_seed(12)
    x = case.random_input(generator)
    weight = torch.randn(case.transposed_weight_size(), dtype=DTYPE, generator=generator)
    bias = torch.randn(case.out_channels, dtype=DTYPE, generator=generator)
    result = functional.conv_transpose(
        x, weight, bias, case.stride, case.padding, case.output_padding, case.groups, case.dilation
    )
    if case.torch_supports:
        expected = torch_conv_transpose(x, weight, case, bias)
    else:
        expected = reference_conv_transpose(x, weight, case) + bias.reshape(-1, *[1] * case.dims)
    torch.testing.assert_close(result, expected)


def test_conv_transpose_same_padding_adjoint():
    """With padding 'same' the transpose convolution is the adjoint of the 'same' convolution."""
    generator = torch.Generator().manual_seed(13)
    x = torch.randn(2, 4, 6, 5, dtype=DTYPE, generator=generator)
    weight = torch.randn(4, 3, 2, 4, dtype=DTYPE, generator=generator)
    y = torch.randn(2, 3, 6, 5, dtype=DTYPE, generator=generator)
    transposed = functional.conv_transpose(x, weight, padding="same", dilation=(2, 1))
    forward = F.conv2d(y, weight, padding="same", dilation=(2, 1))
    torch.testing.assert_close((transposed * y).sum(), (forward * x).sum())


def conv_vjp_operands(case, seed):
    generator = torch.Generator().manual_seed(seed)
    x = case.random_input(generator)
    weight = torch.randn(case.weight_size(), dtype=DTYPE, generator=generator)
    grad_output = torch.randn(case.batch, case.out_channels, *case.output_size, dtype=DTYPE, generator=generator)
    return x, weight, grad_output


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_conv_input_vjp_matches_torch(case):
    x, weight, grad_output = conv_vjp_operands(case, 14)
    result = functional.conv_input_vjp(x.shape, weight, grad_output, groups=case.groups, **hyper(case))
    expected = reference_conv_input_vjp(tuple(x.shape), weight, grad_output, case)
    torch.testing.assert_close(result, expected)
    if case.torch_supports and not isinstance(case.padding, str):
        function = (torch.nn.grad.conv1d_input, torch.nn.grad.conv2d_input, torch.nn.grad.conv3d_input)[case.dims - 1]
        torch_result = function(x.shape, weight, grad_output, case.stride, case.padding, case.dilation, case.groups)
        torch.testing.assert_close(result, torch_result)


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_conv_weight_vjp_matches_torch(case):
    x, weight, grad_output = conv_vjp_operands(case, 15)
    result = functional.conv_weight_vjp(x, weight.shape, grad_output, groups=case.groups, **hyper(case))
    expected = reference_conv_weight_vjp(x, tuple(weight.shape), grad_output, case)
    torch.testing.assert_close(result, expected)
    if case.torch_supports:
        # Differentiate torch's own convolution, which also takes 'same' and 'valid'.
        leaf = weight.clone().requires_grad_(True)
        (torch_result,) = torch.autograd.grad(torch_conv(x, leaf, case), leaf, grad_output)
        torch.testing.assert_close(result, torch_result)


def test_conv_input_vjp_takes_input_size_from_argument():
    """With stride 2, inputs of size 7 and 8 give the same output size 3."""
    weight = torch.randn(2, 3, 3, dtype=DTYPE)
    grad_output = torch.randn(1, 2, 3, dtype=DTYPE)
    for size in (7, 8):
        result = functional.conv_input_vjp((1, 3, size), weight, grad_output, stride=2)
        expected = torch.nn.grad.conv1d_input((1, 3, size), weight, grad_output, stride=2)
        torch.testing.assert_close(result, expected)


def test_conv_input_vjp_rejects_inconsistent_sizes():
    weight = torch.randn(2, 3, 3, dtype=DTYPE)
    grad_output = torch.randn(1, 2, 3, dtype=DTYPE)
    with pytest.raises(ValueError, match="input_size .* has 4 channels, but weight"):
        functional.conv_input_vjp((1, 4, 7), weight, grad_output, stride=2)
    with pytest.raises(ValueError, match="input_size .* has batch size 2, but grad_output has 1"):
        functional.conv_input_vjp((2, 3, 7), weight, grad_output, stride=2)
    with pytest.raises(tndiagram.ShapeError, match="size 4, expected 3"):
        functional.conv_input_vjp((1, 3, 9), weight, grad_output, stride=2)


def test_conv_weight_vjp_rejects_inconsistent_sizes():
    x = torch.randn(1, 4, 7, dtype=DTYPE)
    grad_output = torch.randn(1, 2, 5, dtype=DTYPE)
    with pytest.raises(ValueError, match="weight_size .* has 3 output channels, but grad_output has 2"):
        functional.conv_weight_vjp(x, (3, 4, 3), grad_output)
    with pytest.raises(ValueError, match="takes 6 input channels, but the input has 4"):
        functional.conv_weight_vjp(x, (2, 3, 3), grad_output, groups=2)
    with pytest.raises(ValueError, match="weight_size must be a sequence of 3 integers"):
        functional.conv_weight_vjp(x, (2, 4), grad_output)


def test_reindexed_operand_fixes_sizes():
    """A second use of an operand under other index names takes its sizes from the operand's shape."""
    program = tndiagram.parse(
        "network gram(x[n, (g c), i]; groups=1) {"
        "  size g = groups"
        "  y[g, c, d] = x * x[n, (g d), i]"
        "}"
    )
    x = torch.randn(3, 6, 5, dtype=DTYPE)
    result = tndiagram.compile(program["gram"], groups=2)(x)
    grouped = x.reshape(3, 2, 3, 5)
    torch.testing.assert_close(result, torch.einsum("ngci,ngdi->gcd", grouped, grouped))


def test_operations_doc_shows_shipped_diagrams():
    root = Path(__file__).resolve().parent.parent
    document = (root / "docs" / "operations.md").read_text(encoding="utf-8")
    files = sorted((root / "tndiagram" / "diagrams").glob("*.tn"))
    shipped = [path for path in files if path.stem != "conv"]
    assert len(shipped) == 8
    for path in shipped:
        text = path.read_text(encoding="utf-8").rstrip("\n")
        assert f"```\n{text}\n```" in document, f"docs/operations.md does not show {path.name} as shipped"
