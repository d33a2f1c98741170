"""Operations and their inputs: one problem is one layer under one operation.

Every implementation of an operation receives the same :class:`Problem`, so
they all compute from the same random tensors and their results can be
compared entry by entry.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import torch

from .layers import Layer

__all__ = ["OPERATIONS", "OPERATION_TITLES", "Problem", "make_problem", "select_operations"]

# Operation names, in report order, with their titles in the report.
OPERATION_TITLES: dict[str, str] = {
    "forward": "Forward",
    "input_vjp": "Input VJP",
    "weight_vjp": "Weight VJP",
    "unfold": "Unfold",
    "conv_transpose": "Transposed convolution",
    "kfc": "KFC",
    "kfac_reduce": "KFAC-reduce",
}
OPERATIONS: tuple[str, ...] = tuple(OPERATION_TITLES)

# The tensors each operation reads. grad_output has the shape of the
# convolution's output. The transposed convolution takes it as its input, so
# its result has the shape of the layer's input.
_OPERANDS: dict[str, tuple[str, ...]] = {
    "forward": ("x", "weight"),
    "input_vjp": ("weight", "grad_output"),
    "weight_vjp": ("x", "grad_output"),
    "unfold": ("x",),
    "conv_transpose": ("grad_output", "weight"),
    "kfc": ("x",),
    "kfac_reduce": ("x",),
}


@dataclass
class Problem:
    """A layer under one operation, with the tensors the operation reads."""

    layer: Layer
    operation: str
    quick: bool
    tensors: dict[str, torch.Tensor] = field(repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        layer = self.layer
        return (layer.batch(self.quick), layer.in_channels, *layer.spatial(self.quick))

    @property
    def weight_shape(self) -> tuple[int, ...]:
        layer = self.layer
        return (layer.out_channels, layer.in_channels // layer.groups, *layer.kernel_size)

    @property
    def output_shape(self) -> tuple[int, ...]:
        layer = self.layer
        return (layer.batch(self.quick), layer.out_channels, *layer.output_spatial(self.quick))

    @property
    def output_padding(self) -> tuple[int, ...]:
        """Return the output_padding under which the transposed convolution of the
        layer's output has exactly the layer's input size (always below the stride)."""
        layer = self.layer
        result = []
        for size, out, kernel, step, pad, dil in zip(
            layer.spatial(self.quick),
            layer.output_spatial(self.quick),
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
        ):
            result.append(size - ((out - 1) * step - 2 * pad + dil * (kernel - 1) + 1))
        return tuple(result)

    def conv_arguments(self) -> dict[str, object]:
        """Return stride, padding, dilation and groups as keyword arguments."""
        layer = self.layer
        return {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation, "groups": layer.groups}


def make_problem(layer: Layer, operation: str, quick: bool, device: torch.device) -> Problem:
    """Draw the tensors that ``operation`` reads for ``layer``, in float32 on ``device``.

    The seed depends only on the layer and operation names, so reruns and
    filtered runs see the same numbers.
    """
    if operation not in _OPERANDS:
        raise ValueError(f"unknown operation {operation!r}; valid names: {', '.join(OPERATIONS)}")
    generator = torch.Generator().manual_seed(zlib.crc32(f"{layer.name}/{operation}".encode()))
    problem = Problem(layer, operation, quick, {})
    shapes = {"x": problem.input_shape, "weight": problem.weight_shape, "grad_output": problem.output_shape}
    for name in _OPERANDS[operation]:
        # Drawn on the CPU, so that every device gets the same values.
        tensor = torch.randn(shapes[name], generator=generator, dtype=torch.float32)
        problem.tensors[name] = tensor.to(device)
    return problem


def select_operations(names: list[str] | None) -> list[str]:
    """Return the named operations in report order, or all of them for None."""
    if not names:
        return list(OPERATIONS)
    unknown = [name for name in names if name not in OPERATION_TITLES]
    if unknown:
        raise ValueError(f"unknown operation(s) {', '.join(unknown)}; valid names: {', '.join(OPERATIONS)}")
    return [name for name in OPERATIONS if name in names]
