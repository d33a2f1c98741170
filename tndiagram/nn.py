"""Modules with the constructors, parameters and state_dict keys of torch's
convolution modules, computed by the diagrams of :mod:`tndiagram.functional`.

Conv1d/2d/3d, ConvTranspose1d/2d/3d, Unfold and Fold are drop-in
replacements; ConvNd and ConvTransposeNd take any number of spatial
dimensions. Only ``padding_mode='zeros'`` is implemented.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from . import functional

__all__ = [
    "ConvNd",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTransposeNd",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "Unfold",
    "Fold",
]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _spatial_dims(spatial_dims: int | None, *values: Any) -> int:
    """Return the number of spatial dimensions: given, or the length of the first sequence."""
    if spatial_dims is not None:
        if not isinstance(spatial_dims, int) or spatial_dims < 1:
            raise ValueError(f"spatial_dims must be a positive integer, got {spatial_dims!r}")
        return spatial_dims
    for value in values:
        if isinstance(value, (tuple, list)):
            return len(value)
    raise ValueError(
        "the number of spatial dimensions is unknown: pass spatial_dims, or give kernel_size as a"
        " sequence with one entry per dimension"
    )


def _tuple(name: str, value: Any, count: int) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * count
    if isinstance(value, (tuple, list)) and len(value) == count:
        return tuple(value)
    raise ValueError(f"{name} must be an integer or a sequence of {count} integers, got {value!r}")


class _ConvBase(nn.Module):
    """Parameters, initialization and checks shared by convolutions and transpose convolutions."""

    transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int],
        padding: Any,
        dilation: int | Sequence[int],
        groups: int,
        bias: bool,
        padding_mode: str,
        device: Any,
        dtype: Any,
        spatial_dims: int,
        output_padding: int | Sequence[int] = 0,
    ) -> None:
        super().__init__()

        if not isinstance(groups, int) or groups <= 0:
            raise ValueError(f"groups must be a positive integer, got {groups!r}")
        if in_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) must be divisible by groups ({groups})")
        if out_channels % groups:
            raise ValueError(f"out_channels ({out_channels}) must be divisible by groups ({groups})")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if padding_mode != "zeros":
            raise NotImplementedError(
                f"padding_mode={padding_mode!r} is not implemented by tndiagram: use padding_mode='zeros'"
            )

        count = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _tuple("kernel_size", kernel_size, count)
        self.stride = _tuple("stride", stride, count)
        self.dilation = _tuple("dilation", dilation, count)
        self.output_padding = _tuple("output_padding", output_padding, count)
        if isinstance(padding, str):
            if self.transposed:
                raise ValueError(f"padding must be an integer or a sequence for {type(self).__name__}, got {padding!r}")
            if padding not in ("same", "valid"):
                raise ValueError(f"invalid padding string {padding!r}: expected 'same' or 'valid'")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            self.padding: Any = padding
        else:
            self.padding = _tuple("padding", padding, count)
        self.groups = groups
        self.padding_mode = padding_mode

        factory = {"device": device, "dtype": dtype}
        if self.transposed:
            shape = (in_channels, out_channels // groups, *self.kernel_size)
        else:
            shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = nn.Parameter(torch.empty(shape, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialize as torch does: Kaiming-uniform weight, bias uniform in ±1/√fan_in."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            # torch computes fan_in from the weight's axis 1 in both layouts.
            fan_in = self.weight.shape[1] * math.prod(self.kernel_size)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * len(self.kernel_size):
            text += f", padding={self.padding!r}"
        if self.dilation != (1,) * len(self.kernel_size):
            text += f", dilation={self.dilation}"
        if self.output_padding != (0,) * len(self.kernel_size):
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text

    def _batched(self, input: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Add a batch axis to an unbatched input [C, *spatial], as torch's modules accept it."""
        count = len(self.kernel_size)
        if input.dim() == count + 1:
            return input.unsqueeze(0), True
        if input.dim() != count + 2:
            raise ValueError(
                f"{type(self).__name__} expects an input of rank {count + 1} or {count + 2}, got shape"
                f" {tuple(input.shape)}"
            )
        return input, False


class ConvNd(_ConvBase):
    """A convolution over any number of spatial dimensions, with the arguments of torch.nn.Conv2d.

    The number of spatial dimensions is ``spatial_dims``, or the length of
    the first sequence among kernel_size, stride, padding and dilation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: Any = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        spatial_dims: int | None = None,
    ) -> None:
        count = _spatial_dims(spatial_dims, kernel_size, stride, padding, dilation)
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype, count,
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        batched, added = self._batched(input)
        result = functional.conv(batched, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return result.squeeze(0) if added else result


class ConvTransposeNd(_ConvBase):
    """A transpose convolution over any number of spatial dimensions, with the
    arguments of torch.nn.ConvTranspose2d (note: groups before bias, dilation after)."""

    transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | Sequence[int] = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        spatial_dims: int | None = None,
    ) -> None:
        count = _spatial_dims(spatial_dims, kernel_size, stride, padding, output_padding, dilation)
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype, count, output_padding,
        )

    def _output_padding_for(self, input: torch.Tensor, output_size: Sequence[int] | None) -> tuple[int, ...]:
        """Return the output padding that gives ``output_size``, checked as torch checks it."""
        if output_size is None:
            return self.output_padding
        count = len(self.kernel_size)
        output_size = tuple(output_size)
        if len(output_size) in (count + 1, count + 2):
            # The full output shape, with batch and channel axes, or with the channel axis only.
            output_size = output_size[len(output_size) - count:]
        if len(output_size) != count:
            raise ValueError(
                f"output_size must have {count} spatial entries (or the full output shape), got {output_size}"
            )
        minimum = [
            (input.shape[2 + d] - 1) * self.stride[d] - 2 * self.padding[d]
            + self.dilation[d] * (self.kernel_size[d] - 1) + 1
            for d in range(count)
        ]
        maximum = [size + self.stride[d] - 1 for d, size in enumerate(minimum)]
        for d, size in enumerate(output_size):
            if not minimum[d] <= size <= maximum[d]:
                raise ValueError(
                    f"requested an output size of {output_size}, but valid sizes range from {minimum}"
                    f" to {maximum} for an input of spatial size {tuple(input.shape[2:])}"
                )
        return tuple(size - low for size, low in zip(output_size, minimum))

    def forward(self, input: torch.Tensor, output_size: Sequence[int] | None = None) -> torch.Tensor:
        batched, added = self._batched(input)
        output_padding = self._output_padding_for(batched, output_size)
        result = functional.conv_transpose(
            batched, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation
        )
        return result.squeeze(0) if added else result


def _fixed_dimensions(base: type, count: int, name: str) -> type:
    """Make a subclass of ``base`` for ``count`` spatial dimensions, like torch.nn.<name>."""

    class Fixed(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if "spatial_dims" in kwargs:
                raise TypeError(f"{name} takes no spatial_dims: it is always {count}")
            super().__init__(*args, spatial_dims=count, **kwargs)

    Fixed.__name__ = Fixed.__qualname__ = name
    Fixed.__doc__ = f"Drop-in replacement for torch.nn.{name}, computed by a tndiagram diagram."
    Fixed.__module__ = __name__
    return Fixed


Conv1d = _fixed_dimensions(ConvNd, 1, "Conv1d")
Conv2d = _fixed_dimensions(ConvNd, 2, "Conv2d")
Conv3d = _fixed_dimensions(ConvNd, 3, "Conv3d")
ConvTranspose1d = _fixed_dimensions(ConvTransposeNd, 1, "ConvTranspose1d")
ConvTranspose2d = _fixed_dimensions(ConvTransposeNd, 2, "ConvTranspose2d")
ConvTranspose3d = _fixed_dimensions(ConvTransposeNd, 3, "ConvTranspose3d")


class Unfold(nn.Module):
    """Drop-in replacement for torch.nn.Unfold, for any number of spatial dimensions."""

    def __init__(
        self,
        kernel_size: int | Sequence[int],
        dilation: int | Sequence[int] = 1,
        padding: Any = 0,
        stride: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        # As in torch, an input with one axis fewer than [N, C, *spatial] is one unbatched sample.
        arguments = (self.kernel_size, self.dilation, self.padding, self.stride)
        sequences = [argument for argument in arguments if isinstance(argument, (tuple, list))]
        # With single values only, the module is 2-d, as torch's is.
        spatial = _spatial_dims(None, *sequences) if sequences else 2
        if input.dim() == spatial + 1:
            return self.forward(input.unsqueeze(0)).squeeze(0)
        return functional.unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding},"
            f" stride={self.stride}"
        )


class Fold(nn.Module):
    """Drop-in replacement for torch.nn.Fold, for any number of spatial dimensions."""

    def __init__(
        self,
        output_size: int | Sequence[int],
        kernel_size: int | Sequence[int],
        dilation: int | Sequence[int] = 1,
        padding: Any = 0,
        stride: int | Sequence[int] = 1,
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.stride = stride

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        # As in torch, an input [C·∏K, L] without the batch axis is one unbatched sample.
        if input.dim() == 2:
            return self.forward(input.unsqueeze(0)).squeeze(0)
        return functional.fold(input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, kernel_size={self.kernel_size}, dilation={self.dilation},"
            f" padding={self.padding}, stride={self.stride}"
        )
