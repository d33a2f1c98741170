"""Reference implementations for the operation tests, built from slicing and
torch's autograd only (no index patterns), and tests that check them
against torch where torch has the operation.

The shared grid ``CASES`` covers 1-, 2-, 3- and 4-d convolutions. Its awkward
cases are a stride larger than the kernel, even kernels with 'same' padding,
dilation with padding, groups including depthwise, batch size 1, size-1
spatial dimensions and (left, right) padding pairs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F

DTYPE = torch.float64


@dataclass(frozen=True)
class Case:
    """One convolution configuration; ``output_padding`` is for the transposed ops."""

    name: str
    batch: int
    in_channels: int
    out_channels: int
    input_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    output_padding: Any = 0
    tags: tuple[str, ...] = field(default=())

    @property
    def dims(self) -> int:
        return len(self.input_size)

    def per_dimension(self, value: Any) -> tuple:
        return value if isinstance(value, tuple) else (value,) * self.dims

    @property
    def strides(self) -> tuple[int, ...]:
        return self.per_dimension(self.stride)

    @property
    def dilations(self) -> tuple[int, ...]:
        return self.per_dimension(self.dilation)

    @property
    def output_paddings(self) -> tuple[int, ...]:
        return self.per_dimension(self.output_padding)

    @property
    def padding_pairs(self) -> tuple[tuple[int, int], ...]:
        return padding_pairs(self.padding, self.kernel_size, self.dilations)

    @property
    def output_size(self) -> tuple[int, ...]:
        return tuple(
            (size + left + right - dilation * (kernel - 1) - 1) // stride + 1
            for size, kernel, stride, (left, right), dilation in zip(
                self.input_size, self.kernel_size, self.strides, self.padding_pairs, self.dilations
            )
        )

    @property
    def transposed_output_size(self) -> tuple[int, ...]:
        """Spatial output size of a transpose convolution whose input has ``input_size``."""
        return tuple(
            (size - 1) * stride - left - right + dilation * (kernel - 1) + 1 + extra
            for size, kernel, stride, (left, right), dilation, extra in zip(
                self.input_size, self.kernel_size, self.strides, self.padding_pairs,
                self.dilations, self.output_paddings,
            )
        )

    @property
    def torch_supports(self) -> bool:
        """Whether torch's convolutions take this padding (no pairs) and dimension count."""
        pairs = isinstance(self.padding, tuple) and any(isinstance(p, tuple) for p in self.padding)
        return self.dims <= 3 and not pairs

    def weight_size(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def transposed_weight_size(self) -> tuple[int, ...]:
        return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)

    def random_input(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(self.batch, self.in_channels, *self.input_size, dtype=DTYPE, generator=generator)


CASES = [
    Case("1d-groups", 2, 4, 6, (9,), (3,), stride=2, padding=1, groups=2, output_padding=1),
    Case("1d-stride-over-kernel", 1, 3, 2, (10,), (2,), stride=3, dilation=2, output_padding=2),
    Case("2d-mixed", 2, 3, 4, (7, 6), (2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
         output_padding=(1, 1)),
    Case("2d-same-even", 2, 4, 4, (6, 5), (2, 4), padding="same", dilation=(2, 1), groups=2,
         tags=("string-padding",)),
    Case("2d-depthwise", 1, 3, 6, (8, 7), (3, 3), stride=2, padding=2, dilation=2, groups=3,
         output_padding=(1, 0)),
    Case("3d-size-one", 2, 2, 3, (1, 4, 5), (1, 2, 3), stride=(1, 2, 3), padding=(0, 1, 1),
         output_padding=(0, 1, 2)),
    Case("3d-valid-batch-one", 1, 4, 2, (3, 5, 4), (2, 2, 2), padding="valid", groups=2,
         tags=("string-padding",)),
    Case("4d-pairs", 2, 4, 2, (4, 3, 5, 3), (2, 1, 3, 2), stride=(2, 1, 1, 2),
         padding=(1, 0, (1, 2), (0, 1)), dilation=(1, 1, 2, 1), groups=2, output_padding=(1, 0, 0, 1)),
]

# Transpose convolutions take integer padding only in torch; the string
# padding cases stand for the adjoint of the 'same' or 'valid' convolution.
TRANSPOSED_CASES = [case for case in CASES if "string-padding" not in case.tags]


def case_ids(cases: list[Case]) -> list[str]:
    return [case.name for case in cases]


def padding_pairs(padding: Any, kernel_size: tuple[int, ...], dilations: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Return (left, right) padding per dimension; 'same' puts the odd element on the right."""
    pairs = []
    for d, (kernel, dilation) in enumerate(zip(kernel_size, dilations)):
        entry = padding if isinstance(padding, (str, int)) else padding[d]
        if entry == "valid":
            pairs.append((0, 0))
        elif entry == "same":
            total = dilation * (kernel - 1)
            pairs.append((total // 2, total - total // 2))
        elif isinstance(entry, tuple):
            pairs.append(entry)
        else:
            pairs.append((entry, entry))
    return tuple(pairs)


def _pad(x: torch.Tensor, pairs: tuple[tuple[int, int], ...]) -> torch.Tensor:
    # F.pad lists the last dimension first.
    flat = [side for pair in reversed(pairs) for side in pair]
    return F.pad(x, flat)


def reference_unfold(x: torch.Tensor, case: Case) -> torch.Tensor:
    """Unfold by slicing the padded input once per kernel position: ``[N, C·∏K, ∏O]``."""
    padded = _pad(x, case.padding_pairs)
    output = case.output_size
    slices = []
    for offsets in itertools.product(*(range(k) for k in case.kernel_size)):
        index = [slice(None), slice(None)]
        for offset, size, stride, dilation in zip(offsets, output, case.strides, case.dilations):
            start = dilation * offset
            index.append(slice(start, start + stride * (size - 1) + 1, stride))
        slices.append(padded[tuple(index)])
    stacked = torch.stack(slices, dim=2)  # [N, C, ∏K, *O]
    return stacked.reshape(x.shape[0], x.shape[1] * math.prod(case.kernel_size), math.prod(output))


def reference_conv(x: torch.Tensor, weight: torch.Tensor, case: Case) -> torch.Tensor:
    """Convolve as the unfolded input times the weight matrix of each group."""
    groups = case.groups
    unfolded = reference_unfold(x, case)
    unfolded = unfolded.reshape(x.shape[0], groups, -1, unfolded.shape[-1])
    matrix = weight.reshape(groups, weight.shape[0] // groups, -1)
    result = torch.einsum("gkr,ngrp->ngkp", matrix, unfolded)
    return result.reshape(x.shape[0], weight.shape[0], *case.output_size)


def reference_conv_input_vjp(input_size: tuple[int, ...], weight: torch.Tensor, grad_output: torch.Tensor, case: Case) -> torch.Tensor:
    """Differentiate :func:`reference_conv` with respect to its input; the result
    stays differentiable with respect to ``weight`` and ``grad_output``."""
    x = torch.zeros(input_size, dtype=weight.dtype, requires_grad=True)
    (gradient,) = torch.autograd.grad(reference_conv(x, weight, case), x, grad_output, create_graph=True)
    return gradient


def reference_conv_weight_vjp(x: torch.Tensor, weight_size: tuple[int, ...], grad_output: torch.Tensor, case: Case) -> torch.Tensor:
    """Differentiate :func:`reference_conv` with respect to its weight."""
    weight = torch.zeros(weight_size, dtype=x.dtype, requires_grad=True)
    (gradient,) = torch.autograd.grad(reference_conv(x, weight, case), weight, grad_output)
    return gradient


def transposed_view(case: Case) -> Case:
    """Return the convolution whose input gradient is the transpose convolution of ``case``."""
    return Case(
        case.name, case.batch, case.out_channels, case.in_channels, case.transposed_output_size,
        case.kernel_size, case.stride, case.padding, case.dilation, case.groups,
    )


def reference_conv_transpose(x: torch.Tensor, weight: torch.Tensor, case: Case) -> torch.Tensor:
    """A transpose convolution is the input gradient of the convolution with the same weight.

    With output_padding at least the stride, that convolution has more output
    positions than x; they get zero gradient, so x is padded with zeros.
    """
    forward = transposed_view(case)
    extra = [(0, size - own) for size, own in zip(forward.output_size, case.input_size)]
    input_size = (x.shape[0], case.out_channels, *case.transposed_output_size)
    return reference_conv_input_vjp(input_size, weight, _pad(x, tuple(extra)), forward)


def transposed_unfold(x: torch.Tensor, case: Case) -> torch.Tensor:
    """Return U[n, (c k), i] = Σ_o x[n, c, o] Π[k, o, i] for a transpose convolution's input x.

    It is the transpose convolution of x with a one-hot weight
    W[c, (c' k'), k] = δ(c, c') δ(k, k'), computed by torch where it can.
    """
    channels, kernel = x.shape[1], math.prod(case.kernel_size)
    identity = torch.eye(channels * kernel, dtype=x.dtype)  # rows (c, k), columns (c', k')
    one_hot = identity.reshape(channels, *case.kernel_size, channels * kernel).movedim(-1, 1)
    single = Case(
        case.name, case.batch, channels, channels * kernel, case.input_size, case.kernel_size,
        case.stride, case.padding, case.dilation, 1, case.output_padding,
    )
    if case.torch_supports:
        result = torch_conv_transpose(x, one_hot, single)
    else:
        result = reference_conv_transpose(x, one_hot, single)
    return result.reshape(x.shape[0], channels * kernel, -1)


def torch_conv(x: torch.Tensor, weight: torch.Tensor, case: Case) -> torch.Tensor:
    convolution = (F.conv1d, F.conv2d, F.conv3d)[case.dims - 1]
    return convolution(x, weight, None, case.stride, case.padding, case.dilation, case.groups)


def torch_conv_transpose(x: torch.Tensor, weight: torch.Tensor, case: Case, bias: torch.Tensor | None = None) -> torch.Tensor:
    convolution = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[case.dims - 1]
    return convolution(x, weight, bias, case.stride, case.padding, case.output_padding, case.groups, case.dilation)


# -- tests of the references against torch -----------------------------------


@pytest.mark.parametrize("case", [c for c in CASES if c.torch_supports], ids=case_ids([c for c in CASES if c.torch_supports]))
def test_reference_conv_matches_torch(case):
    generator = torch.Generator().manual_seed(0)
    x = case.random_input(generator)
    weight = torch.randn(case.weight_size(), dtype=DTYPE, generator=generator)
    torch.testing.assert_close(reference_conv(x, weight, case), torch_conv(x, weight, case))


@pytest.mark.parametrize("case", [c for c in CASES if c.dims == 2 and isinstance(c.padding, (int, tuple))], ids=str)
def test_reference_unfold_matches_torch(case):
    generator = torch.Generator().manual_seed(1)
    x = case.random_input(generator)
    expected = F.unfold(x, case.kernel_size, case.dilation, case.padding, case.stride)
    torch.testing.assert_close(reference_unfold(x, case), expected)


@pytest.mark.parametrize("case", [c for c in TRANSPOSED_CASES if c.torch_supports], ids=case_ids([c for c in TRANSPOSED_CASES if c.torch_supports]))
def test_reference_conv_transpose_matches_torch(case):
    generator = torch.Generator().manual_seed(2)
    x = case.random_input(generator)
    weight = torch.randn(case.transposed_weight_size(), dtype=DTYPE, generator=generator)
    torch.testing.assert_close(reference_conv_transpose(x, weight, case), torch_conv_transpose(x, weight, case))


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=case_ids(TRANSPOSED_CASES))
def test_transposed_unfold_gives_weight_gradient(case):
    """The weight gradient of a transpose convolution is Σ_n grad_output_n U_nᵀ per group."""
    generator = torch.Generator().manual_seed(3)
    x = case.random_input(generator)
    weight = torch.randn(case.transposed_weight_size(), dtype=DTYPE, generator=generator, requires_grad=True)
    output = reference_conv_transpose(x, weight, case)
    grad_output = torch.randn(output.shape, dtype=DTYPE, generator=generator)
    (expected,) = torch.autograd.grad(output, weight, grad_output)

    groups = case.groups
    unfolded = transposed_unfold(x, case).reshape(case.batch, groups, case.in_channels // groups, math.prod(case.kernel_size), -1)
    gradient_rows = grad_output.reshape(case.batch, groups, case.out_channels // groups, -1)
    result = torch.einsum("ngckp,ngop->gcok", unfolded, gradient_rows)
    torch.testing.assert_close(result.reshape(expected.shape), expected)
