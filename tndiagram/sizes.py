"""Size arithmetic of the convolution index pattern along one dimension.

``Π[k, o, i] = 1`` if ``i = S·o + D·k − P_left``, for ``0 ≤ k < K``, ``0 ≤ o < O``,
``0 ≤ i < I``, where ``O = ⌊(I + P_left + P_right − D·(K−1) − 1) / S⌋ + 1``.
A transpose convolution reads the same pattern the other way: its output size
``I = (O−1)·S − P_left − P_right + D·(K−1) + 1 + output_padding``.
The checks follow the ones torch applies to ``conv*d`` and ``conv_transpose*d``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy

__all__ = [
    "PatternParameters",
    "check_pattern_argument",
    "family_element",
    "padding_pair",
    "output_size",
    "input_size",
    "output_size_expression",
]


@dataclass(frozen=True)
class PatternParameters:
    """The hyper-parameters of one index pattern, once sizes are known."""

    stride: int
    padding: tuple[int, int]
    dilation: int
    output_padding: int = 0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_pattern_argument(key: str, value: Any, family: bool = False) -> None:
    """Raise ValueError if ``value`` is not valid for pattern argument ``key``.

    For an index family, a value may also be a tuple with one entry per
    spatial dimension. None stands for a value not known yet and passes.
    """
    if value is None:
        return
    if family and isinstance(value, tuple):
        for entry in value:
            check_pattern_argument(key, entry, family=False)
        return
    if key in ("stride", "dilation"):
        if not _is_int(value) or value < 1:
            raise ValueError(f"invalid {key} {value!r}: {key} must be a positive integer")
    elif key == "output_padding":
        if not _is_int(value) or value < 0:
            raise ValueError(f"invalid output_padding {value!r}: it must be a non-negative integer")
    elif key == "padding":
        if isinstance(value, str):
            if value not in ("same", "valid"):
                raise ValueError(f"invalid padding {value!r}: expected 'same', 'valid', an integer or a pair")
        elif _is_pair(value):
            if min(value) < 0:
                raise ValueError(f"invalid padding {value!r}: padding must not be negative")
        elif not _is_int(value) or value < 0:
            raise ValueError(
                f"invalid padding {value!r}: expected a non-negative integer, a (left, right)"
                " pair, 'same' or 'valid'"
            )
    else:
        raise ValueError(f"unknown index pattern argument {key!r}")


def _is_pair(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(_is_int(v) for v in value)


def family_element(key: str, value: Any, element: int, count: int) -> Any:
    """Return the value of argument ``key`` for spatial dimension ``element``.

    A scalar (or a string such as 'same') applies to every dimension; a tuple
    must have one entry per dimension.
    """
    if isinstance(value, (tuple, list)):
        if len(value) != count:
            raise ValueError(
                f"{key} {tuple(value)!r} has {len(value)} entries, but the network has"
                f" {count} spatial dimension(s): give one entry per dimension or a single value"
            )
        return value[element]
    return value


def padding_pair(padding: Any, kernel: int, dilation: int, stride: int) -> tuple[int, int]:
    """Return (left, right) padding; 'same' puts an odd extra element on the right, as torch does."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        if stride != 1:
            raise ValueError(f"padding 'same' needs stride 1, got stride {stride} (torch rejects it too)")
        total = dilation * (kernel - 1)
        return (total // 2, total - total // 2)
    if _is_pair(padding):
        return (padding[0], padding[1])
    return (padding, padding)


def output_size(input: int, kernel: int, parameters: PatternParameters) -> int:
    """Return the output size O of a pattern, raising ValueError if it is below 1."""
    left, right = parameters.padding
    span = parameters.dilation * (kernel - 1) + 1
    padded = input + left + right
    if padded < span:
        raise ValueError(
            f"the kernel spans {span} elements (size {kernel}, dilation {parameters.dilation}),"
            f" more than the padded input's {padded} (size {input}, padding {left}+{right})"
        )
    return (padded - span) // parameters.stride + 1


def input_size(output: int, kernel: int, parameters: PatternParameters) -> int:
    """Return the input size I that a transpose convolution produces from output size O."""
    left, right = parameters.padding
    if parameters.output_padding >= max(parameters.stride, parameters.dilation):
        raise ValueError(
            f"output_padding {parameters.output_padding} must be smaller than the stride"
            f" ({parameters.stride}) or the dilation ({parameters.dilation})"
        )
    size = (
        (output - 1) * parameters.stride
        - left
        - right
        + parameters.dilation * (kernel - 1)
        + 1
        + parameters.output_padding
    )
    if size < 1:
        raise ValueError(f"the padding {left}+{right} removes the whole input of size {size + left + right}")
    return size


def output_size_expression(input: sympy.Expr, kernel: sympy.Expr, stride: Any, padding: Any, dilation: Any) -> sympy.Expr:
    """Return the output size as a sympy expression, for sizes not bound yet."""
    stride, dilation = sympy.sympify(stride), sympy.sympify(dilation)
    if padding == "same":
        return input
    if padding == "valid":
        left = right = sympy.Integer(0)
    elif isinstance(padding, tuple):
        left, right = (sympy.sympify(p) for p in padding)
    else:
        left = right = sympy.sympify(padding)
    return sympy.floor((input + left + right - dilation * (kernel - 1) - 1) / stride) + 1
