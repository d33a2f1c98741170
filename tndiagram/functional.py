"""Convolution-family operations with torch's signatures, computed by diagrams
shipped inside the package (``tndiagram/diagrams``)."""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any, Sequence

import torch

from .lower import Program, parse
from .runtime import CompiledFunction, compile

__all__ = ["conv", "diagram", "normalize_padding"]


@functools.lru_cache(maxsize=None)
def diagram(name: str) -> Program:
    """Return the parsed diagram file ``tndiagram/diagrams/<name>.tn``."""
    resource = importlib.resources.files("tndiagram") / "diagrams" / f"{name}.tn"
    return parse(resource.read_text(encoding="utf-8"), f"tndiagram/diagrams/{name}.tn")


@functools.lru_cache(maxsize=None)
def _compiled(file: str, network: str, hyper: tuple[tuple[str, Any], ...]) -> CompiledFunction:
    return compile(diagram(file)[network], **dict(hyper))


def _per_dimension(name: str, value: Any, count: int) -> tuple:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * count
    if isinstance(value, (tuple, list)) and len(value) == count:
        return tuple(value)
    raise ValueError(
        f"{name} must be an integer or a sequence of {count} integers (one per spatial dimension),"
        f" got {value!r}"
    )


def normalize_padding(padding: Any, count: int) -> Any:
    """Return padding as 'same', 'valid', or a tuple with one entry per spatial
    dimension: an integer (both sides) or a (left, right) pair."""
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"invalid padding string {padding!r}: expected 'same' or 'valid'")
        return padding
    if isinstance(padding, int) and not isinstance(padding, bool):
        return (padding,) * count
    if isinstance(padding, (tuple, list)) and len(padding) == count:
        entries = []
        for entry in padding:
            if isinstance(entry, (tuple, list)):
                entries.append(tuple(entry))
            else:
                entries.append(entry)
        return tuple(entries)
    raise ValueError(
        f"padding must be 'same', 'valid', an integer, or a sequence of {count} entries"
        f" (an integer or a (left, right) pair per spatial dimension), got {padding!r}"
    )


def _spatial_count(x: torch.Tensor, name: str = "x") -> int:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3:
        raise ValueError(
            f"{name} has rank {x.dim()}, expected at least 3: [N, C, *spatial] with one or more spatial dimensions"
        )
    return x.dim() - 2


def conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Convolve ``x`` of shape ``[N, C_in, *spatial]`` with ``weight`` of shape
    ``[C_out, C_in / groups, *kernel]``, as ``torch.nn.functional.conv1d/2d/3d``
    do, for any number of spatial dimensions.

    ``padding`` may also give a (left, right) pair per dimension. The network
    is compiled once per hyper-parameters and once per shape signature.
    """
    count = _spatial_count(x)
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    hyper = (
        ("dilation", _per_dimension("dilation", dilation, count)),
        ("groups", groups),
        ("padding", normalize_padding(padding, count)),
        ("stride", _per_dimension("stride", stride, count)),
    )
    return _compiled("conv", "conv", hyper)(x, weight, bias)
