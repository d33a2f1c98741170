"""Convolution-family operations with torch's signatures, computed by diagrams
shipped inside the package (``tndiagram/diagrams``).

Every function takes inputs of shape ``[N, C, *spatial]`` with any number of
spatial dimensions. Integer hyper-parameters (stride, dilation, …) apply to
every dimension, and sequences give one entry per dimension.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from . import sizes as size_rules
from .bind import expand_families
from .ir import Factor, Network, Operand, verify
from .lower import Program, parse
from .runtime import CompiledFunction, compile

__all__ = [
    "conv",
    "conv_transpose",
    "conv_input_vjp",
    "conv_weight_vjp",
    "conv_weight_vjp_dropout",
    "conv_weight_ggn_diagonal",
    "unfold",
    "fold",
    "kfc",
    "kfac_reduce",
    "diagram",
    "lowering",
    "normalize_padding",
]


@functools.lru_cache(maxsize=None)
def diagram(name: str) -> Program:
    """Return the parsed diagram file ``tndiagram/diagrams/<name>.tn``."""
    resource = importlib.resources.files("tndiagram") / "diagrams" / f"{name}.tn"
    return parse(resource.read_text(encoding="utf-8"), f"tndiagram/diagrams/{name}.tn")


# The compile options of this module's operations, which lowering() changes.
_LOWERING = {"simplify": True, "native": True}


@contextlib.contextmanager
def lowering(simplify: bool = True, native: bool = True) -> Iterator[None]:
    """Compile this module's operations with other options inside the block.

    ``simplify=False`` turns the rewrite passes off and ``native=False`` keeps
    exact convolutions as einsum contractions instead of torch's kernels, as in
    :func:`tndiagram.compile`; benchmarks and tests compare these lowerings.
    """
    previous = dict(_LOWERING)
    _LOWERING.update(simplify=simplify, native=native)
    try:
        yield
    finally:
        _LOWERING.update(previous)


def _compiled(file: str, network: str, hyper: tuple[tuple[str, Any], ...]) -> CompiledFunction:
    return _compiled_with(file, network, hyper, _LOWERING["simplify"], _LOWERING["native"])


@functools.lru_cache(maxsize=None)
def _compiled_with(
    file: str, network: str, hyper: tuple[tuple[str, Any], ...], simplify: bool, native: bool
) -> CompiledFunction:
    return compile(diagram(file)[network], simplify=simplify, native=native, **dict(hyper))


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
    hyper = _convolution_hyper(count, stride, padding, dilation, groups)
    return _compiled("conv", "conv", hyper)(x, weight, bias)


def _check_groups(groups: Any) -> int:
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    return groups


def _convolution_hyper(
    count: int, stride: Any, padding: Any, dilation: Any, groups: Any = None, **extra: Any
) -> tuple[tuple[str, Any], ...]:
    """Return the hyper-parameters of a convolution-family diagram as a sorted,
    hashable tuple, one entry per spatial dimension where it applies."""
    hyper = dict(extra)
    hyper["stride"] = _per_dimension("stride", stride, count)
    hyper["padding"] = normalize_padding(padding, count)
    hyper["dilation"] = _per_dimension("dilation", dilation, count)
    if groups is not None:
        hyper["groups"] = _check_groups(groups)
    return tuple(sorted(hyper.items()))


def _check_shape(name: str, shape: Any, rank: int) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of ``rank`` positive integers, or raise naming it."""
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) != rank:
        raise ValueError(f"{name} must be a sequence of {rank} integers, got {shape!r}")
    if not all(isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in shape):
        raise ValueError(f"{name} must hold positive integers, got {tuple(shape)!r}")
    return tuple(shape)


def _output_sizes(
    input_sizes: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Any,
    dilation: Sequence[int],
) -> tuple[int, ...]:
    """Return the output size of the index pattern along each spatial dimension."""
    result = []
    for d, (input_size, kernel) in enumerate(zip(input_sizes, kernel_size)):
        entry = padding if isinstance(padding, str) else padding[d]
        pair = size_rules.padding_pair(entry, kernel, dilation[d], stride[d])
        parameters = size_rules.PatternParameters(stride[d], pair, dilation[d])
        result.append(size_rules.output_size(input_size, kernel, parameters))
    return tuple(result)


# -- unfold and fold -----------------------------------------------------


def unfold(
    x: torch.Tensor,
    kernel_size: int | Sequence[int],
    dilation: int | Sequence[int] = 1,
    padding: Any = 0,
    stride: int | Sequence[int] = 1,
) -> torch.Tensor:
    """Unfold ``x`` of shape ``[N, C, *spatial]`` into the patches that a
    convolution multiplies with its kernel, as ``torch.nn.functional.unfold``
    does for 2-d inputs, for any number of spatial dimensions.

    Returns shape ``[N, C·∏K, ∏O]``; rows run over (c, k1, k2, …) with the
    last kernel index fastest, columns over output positions in row-major
    order. ``padding`` may also be 'same', 'valid' or a (left, right) pair
    per dimension.
    """
    count = _spatial_count(x)
    hyper = _convolution_hyper(count, stride, padding, dilation, kernel_size=_per_dimension("kernel_size", kernel_size, count))
    result = _compiled("unfold", "unfold", hyper)(x)
    return result.reshape(result.shape[0], result.shape[1], -1)


def _fold_dimensions(*values: Any) -> int:
    for value in values:
        if isinstance(value, (tuple, list, torch.Size)):
            return len(value)
    return 2


def fold(
    x: torch.Tensor,
    output_size: int | Sequence[int],
    kernel_size: int | Sequence[int],
    dilation: int | Sequence[int] = 1,
    padding: Any = 0,
    stride: int | Sequence[int] = 1,
) -> torch.Tensor:
    """Sum the columns of ``x`` of shape ``[N, C·∏K, L]`` into an output of shape
    ``[N, C, *output_size]``, as ``torch.nn.functional.fold`` does for 2-d
    outputs, for any number of spatial dimensions: the adjoint of :func:`unfold`.

    The number of spatial dimensions is the length of the first sequence among
    output_size, kernel_size, dilation, padding and stride, or 2 if all are
    integers (as in torch).
    """
    count = _fold_dimensions(output_size, kernel_size, dilation, padding, stride)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"x has rank {x.dim()}, expected 3: [N, C·∏kernel_size, L]")
    output_sizes = _check_shape("output_size", _per_dimension("output_size", output_size, count), count)
    kernel = _per_dimension("kernel_size", kernel_size, count)
    hyper = _convolution_hyper(count, stride, padding, dilation, kernel_size=kernel, output_size=output_sizes)
    values = dict(hyper)
    try:
        positions = _output_sizes(output_sizes, kernel, values["stride"], values["padding"], values["dilation"])
    except ValueError as error:
        raise ValueError(f"fold with output_size {output_sizes}: {error}") from None
    if x.shape[2] != math.prod(positions):
        raise ValueError(
            f"x has {x.shape[2]} columns (axis 2), expected {math.prod(positions)}: the kernel"
            f" {kernel} fits {' × '.join(map(str, positions))} times into output_size {output_sizes}"
        )
    return _compiled("fold", "fold", hyper)(x.reshape(*x.shape[:2], *positions))


# -- transpose convolution and the VJPs of convolution --------------------


def conv_transpose(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
) -> torch.Tensor:
    """Apply a transpose convolution to ``x`` of shape ``[N, C_in, *spatial]``
    with ``weight`` of shape ``[C_in, C_out / groups, *kernel]``, as
    ``torch.nn.functional.conv_transpose1d/2d/3d`` do, for any number of
    spatial dimensions (note torch's argument order: groups before dilation).
    """
    count = _spatial_count(x)
    hyper = _convolution_hyper(
        count, stride, padding, dilation, groups,
        output_padding=_per_dimension("output_padding", output_padding, count),
    )
    return _compiled("conv_transpose", "conv_transpose", hyper)(x, weight, bias)


def conv_input_vjp(
    input_size: Sequence[int],
    weight: torch.Tensor,
    grad_output: torch.Tensor,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Return the gradient of a convolution with respect to its input of shape
    ``input_size`` (``[N, C_in, *spatial]``), given ``weight`` and
    ``grad_output``, as ``torch.nn.grad.conv1d_input/conv2d_input/conv3d_input``
    do, for any number of spatial dimensions."""
    count = _spatial_count(grad_output, "grad_output")
    input_size = _check_shape("input_size", input_size, count + 2)
    if input_size[0] != grad_output.shape[0]:
        raise ValueError(
            f"input_size {input_size} has batch size {input_size[0]}, but grad_output has"
            f" {grad_output.shape[0]} (axis 0)"
        )
    channels = weight.shape[1] * _check_groups(groups) if weight.dim() >= 2 else None
    if channels != input_size[1]:
        raise ValueError(
            f"input_size {input_size} has {input_size[1]} channels, but weight of shape"
            f" {tuple(weight.shape)} with groups={groups} takes {channels}"
        )
    hyper = _convolution_hyper(count, stride, padding, dilation, groups, input_size=input_size[2:])
    return _compiled("conv_input_vjp", "conv_input_vjp", hyper)(weight, grad_output)


def _check_weight_size(weight_size: Any, x: torch.Tensor, grad_output: torch.Tensor, groups: int) -> tuple[int, ...]:
    count = x.dim() - 2
    weight_size = _check_shape("weight_size", weight_size, count + 2)
    if weight_size[0] != grad_output.shape[1]:
        raise ValueError(
            f"weight_size {weight_size} has {weight_size[0]} output channels, but grad_output has"
            f" {grad_output.shape[1]} (axis 1)"
        )
    if weight_size[1] * groups != x.shape[1]:
        raise ValueError(
            f"weight_size {weight_size} with groups={groups} takes {weight_size[1] * groups} input"
            f" channels, but the input has {x.shape[1]} (axis 1)"
        )
    return weight_size


def conv_weight_vjp(
    input: torch.Tensor,
    weight_size: Sequence[int],
    grad_output: torch.Tensor,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Return the gradient of a convolution with respect to its weight of shape
    ``weight_size`` (``[C_out, C_in / groups, *kernel]``), given the input and
    ``grad_output``, as ``torch.nn.grad.conv1d_weight/conv2d_weight/conv3d_weight``
    do, for any number of spatial dimensions."""
    count = _spatial_count(input, "input")
    _spatial_count(grad_output, "grad_output")
    weight_size = _check_weight_size(weight_size, input, grad_output, _check_groups(groups))
    hyper = _convolution_hyper(count, stride, padding, dilation, groups, kernel_size=weight_size[2:])
    return _compiled("conv_weight_vjp", "conv_weight_vjp", hyper)(input, grad_output)


# -- Kronecker factors and the GGN diagonal --------------------------------


def _kronecker_factor(
    network: str,
    x: torch.Tensor,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    transposed: bool,
    output_padding: Any,
) -> torch.Tensor:
    count = _spatial_count(x)
    extra = {"kernel_size": _per_dimension("kernel_size", kernel_size, count)}
    if transposed:
        extra["output_padding"] = _per_dimension("output_padding", output_padding, count)
        network += "_transpose"
    elif output_padding != 0:
        raise ValueError(
            f"output_padding={output_padding!r} applies only to transpose convolutions: pass transposed=True"
        )
    hyper = _convolution_hyper(count, stride, padding, dilation, groups, **extra)
    file = "kfc" if network.startswith("kfc") else "kfac_reduce"
    return _compiled(file, network, hyper)(x)


def kfc(
    x: torch.Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    *,
    transposed: bool = False,
    output_padding: int | Sequence[int] = 0,
) -> torch.Tensor:
    """Return the input-side Kronecker factor of KFC, ``(1/N) Σ_n U_n U_nᵀ`` per
    group, of shape ``[groups, C_in/groups·∏K, C_in/groups·∏K]``.

    ``U_n`` is the unfolded input of sample n (see :func:`unfold`) restricted
    to the group's channels. With ``transposed=True``, ``x`` is the input of a
    transpose convolution and ``U_n[(c, k), i] = Σ_o x[n, c, o] Π[k, o, i]``
    has one column per position i of the transpose convolution's output, so
    that its weight gradient is ``Σ_n U_n grad_output_nᵀ`` per group.
    """
    return _kronecker_factor("kfc", x, kernel_size, stride, padding, dilation, groups, transposed, output_padding)


def kfac_reduce(
    x: torch.Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    *,
    transposed: bool = False,
    output_padding: int | Sequence[int] = 0,
) -> torch.Tensor:
    """Return the input-side Kronecker factor of KFAC-reduce,
    ``(1/(N·P²)) Σ_n (U_n 1)(U_n 1)ᵀ`` per group, with ``U_n`` as in :func:`kfc`
    and P its number of columns; shape ``[groups, C_in/groups·∏K, C_in/groups·∏K]``."""
    return _kronecker_factor(
        "kfac_reduce", x, kernel_size, stride, padding, dilation, groups, transposed, output_padding
    )


def conv_weight_ggn_diagonal(
    input: torch.Tensor,
    weight_size: Sequence[int],
    sqrt_hessian: torch.Tensor,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Return the diagonal of the generalized Gauss-Newton matrix with respect to
    a convolution's weight, ``Σ_m Σ_n (J_nᵀ s_mn)²``, of shape ``weight_size``.

    ``sqrt_hessian`` of shape ``[M, N, C_out, *O]`` contains M vectors per sample
    whose outer products sum to the loss Hessian with respect to that sample's
    output; ``J_nᵀ s_mn`` is the weight gradient of sample n for the vector
    ``s_mn``.
    """
    count = _spatial_count(input, "input")
    if not isinstance(sqrt_hessian, torch.Tensor) or sqrt_hessian.dim() != count + 3:
        shape = tuple(sqrt_hessian.shape) if isinstance(sqrt_hessian, torch.Tensor) else sqrt_hessian
        raise ValueError(
            f"sqrt_hessian must be a tensor of shape [M, N, C_out, *output] with rank {count + 3},"
            f" got {shape!r}"
        )
    weight_size = _check_weight_size(weight_size, input, sqrt_hessian[0], _check_groups(groups))
    hyper = _convolution_hyper(count, stride, padding, dilation, groups, kernel_size=weight_size[2:])
    return _compiled("conv_weight_ggn_diagonal", "conv_weight_ggn_diagonal", hyper)(input, sqrt_hessian)


# -- randomized weight VJP -------------------------------------------------


@functools.lru_cache(maxsize=None)
def _weight_vjp_with_pattern_operands(count: int) -> Network:
    """Return the weight VJP network for ``count`` spatial dimensions with each
    index pattern turned into an operand ``pattern1``, ``pattern2``, …, so that
    the caller can pass patterns whose input leg keeps only some positions."""
    network = expand_families(diagram("conv_weight_vjp")["conv_weight_vjp"], count)
    (term,) = network.terms
    operands = list(network.operands)
    factors = []
    for factor in term.factors:
        if factor.kind == "pattern":
            name = f"pattern{len(operands) - 1}"
            operands.append(Operand(name, factor.axes, span=factor.span))
            factor = Factor("operand", name, factor.axes, (), factor.span)
        factors.append(factor)
    # Stride, padding and dilation now live in the pattern operands.
    hyper = tuple(h for h in network.hyper_parameters if h.name in ("groups", "kernel_size"))
    return verify(
        network.replace(
            name="conv_weight_vjp_sampled",
            operands=tuple(operands),
            hyper_parameters=hyper,
            terms=(term.with_factors(factors),),
        )
    )


def _gathered_pattern(
    kernel: int, output: int, kept_inputs: torch.Tensor, stride: int, left_padding: int, dilation: int, dtype: torch.dtype
) -> torch.Tensor:
    """Return the index pattern Π[k, o, i] restricted to the input positions ``kept_inputs``."""
    device = kept_inputs.device
    k = torch.arange(kernel, device=device).view(-1, 1, 1)
    o = torch.arange(output, device=device).view(1, -1, 1)
    i = kept_inputs.view(1, 1, -1)
    return (i == stride * o + dilation * k - left_padding).to(dtype)


@dataclass(frozen=True)
class _SampledWeightVJP:
    """One draw of :func:`conv_weight_vjp_dropout`: the network to compile, the
    sliced operands by name, the kept indices of each sampled axis, and the
    factor that makes the estimate unbiased."""

    network: str
    operands: dict[str, torch.Tensor]
    kept: tuple[torch.Tensor, ...]
    scale: float


def _keep_indices(size: int, keep_prob: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    draw_device = generator.device if generator is not None else device
    keep = torch.rand(size, generator=generator, device=draw_device) < keep_prob
    return keep.nonzero().flatten().to(device)


def _sample_weight_vjp(
    input: torch.Tensor,
    weight_size: tuple[int, ...],
    grad_output: torch.Tensor,
    hyper: dict[str, Any],
    keep_prob: float,
    dim: str,
    generator: torch.Generator | None,
) -> _SampledWeightVJP:
    count = input.dim() - 2
    groups = hyper["groups"]
    if dim == "channel":
        batch, channels, *spatial = input.shape
        kept = _keep_indices(channels // groups, keep_prob, generator, input.device)
        grouped = input.reshape(batch, groups, channels // groups, *spatial)
        sliced = grouped.index_select(2, kept).reshape(batch, groups * kept.numel(), *spatial)
        return _SampledWeightVJP(
            "conv_weight_vjp", {"x": sliced, "grad_output": grad_output}, (kept,), 1 / keep_prob
        )
    kernel, stride, dilation = weight_size[2:], hyper["stride"], hyper["dilation"]
    output = grad_output.shape[2:]
    operands = {"x": input, "grad_output": grad_output}
    kept_per_dimension = []
    for d in range(count):
        kept = _keep_indices(input.shape[2 + d], keep_prob, generator, input.device)
        kept_per_dimension.append(kept)
        operands["x"] = operands["x"].index_select(2 + d, kept)
        entry = hyper["padding"] if isinstance(hyper["padding"], str) else hyper["padding"][d]
        left, _ = size_rules.padding_pair(entry, kernel[d], dilation[d], stride[d])
        operands[f"pattern{d + 1}"] = _gathered_pattern(
            kernel[d], output[d], kept, stride[d], left, dilation[d], input.dtype
        )
    return _SampledWeightVJP("conv_weight_vjp_sampled", operands, tuple(kept_per_dimension), keep_prob**-count)


def conv_weight_vjp_dropout(
    input: torch.Tensor,
    weight_size: Sequence[int],
    grad_output: torch.Tensor,
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    *,
    keep_prob: float,
    dim: str = "spatial",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return an unbiased random estimate of :func:`conv_weight_vjp` that
    contracts only a random part of the input.

    ``dim='spatial'``: along each spatial dimension, each input position (a
    slice of ``input``) is kept with probability ``keep_prob``. The weight VJP
    sums over input positions, so the estimate contracts the kept slices of
    ``input`` with index patterns gathered at the same positions. It scales by
    ``keep_prob ** -d`` for d spatial dimensions, the inverse of the
    probability that a position is kept.

    ``dim='channel'``: each input channel within a group (the same channels in
    every group) is kept with probability ``keep_prob``. The weight VJP does
    not sum over input channels, so each entry of the estimate is the exact
    value scaled by ``1 / keep_prob`` or zero, and only the kept channels are
    computed.

    ``generator`` draws the kept positions or channels; without one, torch's
    global generator does.
    """
    count = _spatial_count(input, "input")
    _spatial_count(grad_output, "grad_output")
    groups = _check_groups(groups)
    weight_size = _check_weight_size(weight_size, input, grad_output, groups)
    if isinstance(keep_prob, bool) or not isinstance(keep_prob, (int, float)) or not 0 < keep_prob <= 1:
        raise ValueError(f"keep_prob must be a probability in (0, 1], got {keep_prob!r}")
    if dim not in ("spatial", "channel"):
        raise ValueError(f"invalid dim {dim!r}: expected 'spatial' or 'channel'")
    hyper = dict(_convolution_hyper(count, stride, padding, dilation, groups, kernel_size=weight_size[2:]))
    sample = _sample_weight_vjp(input, weight_size, grad_output, hyper, keep_prob, dim, generator)
    if any(kept.numel() == 0 for kept in sample.kept):
        return input.new_zeros(weight_size)
    # NOTE: the compiled network specializes once per shape, so each new
    # number of kept slices costs one compilation until all have been seen.
    if sample.network == "conv_weight_vjp":
        function = _compiled("conv_weight_vjp", "conv_weight_vjp", tuple(sorted(hyper.items())))
        kept_weight = function(**sample.operands) * sample.scale
        result = input.new_zeros(weight_size)
        return result.index_copy(1, sample.kept[0], kept_weight)
    function = _compiled_sampled_weight_vjp(
        count, groups, weight_size[2:], _LOWERING["simplify"], _LOWERING["native"]
    )
    return function(**sample.operands) * sample.scale


@functools.lru_cache(maxsize=None)
def _compiled_sampled_weight_vjp(
    count: int, groups: int, kernel_size: tuple[int, ...], simplify: bool, native: bool
) -> CompiledFunction:
    return compile(
        _weight_vjp_with_pattern_operands(count),
        groups=groups,
        kernel_size=kernel_size,
        simplify=simplify,
        native=native,
    )
