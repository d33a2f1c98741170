"""The implementations under comparison, looked up when the benchmark runs.

Each implementation turns a :class:`~benchmarks.problems.Problem` into a
callable without arguments that returns the operation's result. Work that a
caller would do once per layer (building einconv's einsum expression, the
one-hot weight of the convolution-based unfold) happens here, outside the
timed call. An implementation that lacks an operation raises
:class:`NotAvailable` with the reason, so the benchmark keeps running and picks
the operation up once it exists.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .problems import Problem

__all__ = ["NotAvailable", "Implementation", "IMPLEMENTATIONS", "REFERENCE", "select_implementations"]

Call = Callable[[], torch.Tensor]


class NotAvailable(Exception):
    """Raised when an implementation does not provide an operation."""


@dataclass(frozen=True)
class Implementation:
    name: str  # the key used on the command line and in the JSON results
    label: str  # the column title in the report
    build: Callable[[Problem], Call]


# -- torch native ---------------------------------------------------------


def _torch_unfold(problem: Problem) -> Call:
    """Return a call of torch's unfold: F.unfold for 2-d inputs, else a grouped
    convolution with a one-hot weight, which torch has for 1-d and 3-d too."""
    layer = problem.layer
    x = problem.tensors["x"]
    if layer.spatial_dimensions == 2:
        return lambda: F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)

    # Output channel c·K + k of a convolution with groups=C copies kernel
    # position k of input channel c, which is F.unfold's channel order.
    kernel_volume = math.prod(layer.kernel_size)
    channels = x.shape[1]
    one_hot = torch.eye(kernel_volume, dtype=x.dtype, device=x.device).reshape(kernel_volume, 1, *layer.kernel_size)
    weight = one_hot.repeat(channels, *([1] * (layer.spatial_dimensions + 1)))
    conv = getattr(F, f"conv{layer.spatial_dimensions}d")
    return lambda: conv(x, weight, None, layer.stride, layer.padding, layer.dilation, channels).flatten(2)


def _torch_kronecker_factor(problem: Problem, reduce: bool) -> Call:
    """Return a call computing KFC, or KFAC-reduce when ``reduce``, from the unfolded input."""
    layer = problem.layer
    unfold = _torch_unfold(problem)
    batch = problem.input_shape[0]
    locations = math.prod(layer.output_spatial(problem.quick))

    def kfc() -> torch.Tensor:
        unfolded = unfold().reshape(batch, layer.groups, -1, locations)
        return torch.einsum("ngil,ngjl->gij", unfolded, unfolded) / batch

    def kfac_reduce() -> torch.Tensor:
        summed = unfold().reshape(batch, layer.groups, -1, locations).sum(-1)
        return torch.einsum("ngi,ngj->gij", summed, summed) / (batch * locations**2)

    return kfac_reduce if reduce else kfc


def _build_torch(problem: Problem) -> Call:
    layer = problem.layer
    tensors = problem.tensors
    arguments = problem.conv_arguments()
    dimensions = layer.spatial_dimensions
    operation = problem.operation

    if operation == "forward":
        conv = getattr(F, f"conv{dimensions}d")
        return lambda: conv(tensors["x"], tensors["weight"], None, **arguments)
    if operation == "input_vjp":
        input_vjp = getattr(torch.nn.grad, f"conv{dimensions}d_input")
        return lambda: input_vjp(problem.input_shape, tensors["weight"], tensors["grad_output"], **arguments)
    if operation == "weight_vjp":
        weight_vjp = getattr(torch.nn.grad, f"conv{dimensions}d_weight")
        return lambda: weight_vjp(tensors["x"], problem.weight_shape, tensors["grad_output"], **arguments)
    if operation == "unfold":
        return _torch_unfold(problem)
    if operation == "conv_transpose":
        transpose = getattr(F, f"conv_transpose{dimensions}d")
        return lambda: transpose(
            tensors["grad_output"],
            tensors["weight"],
            None,
            layer.stride,
            layer.padding,
            problem.output_padding,
            layer.groups,
            layer.dilation,
        )
    if operation in ("kfc", "kfac_reduce"):
        return _torch_kronecker_factor(problem, reduce=operation == "kfac_reduce")
    raise NotAvailable(f"no torch implementation of {operation}")


# -- tndiagram ------------------------------------------------------------

# The function of tndiagram.functional that computes each operation.
_TNDIAGRAM_FUNCTIONS = {
    "forward": "conv",
    "input_vjp": "conv_input_vjp",
    "weight_vjp": "conv_weight_vjp",
    "unfold": "unfold",
    "conv_transpose": "conv_transpose",
    "kfc": "kfc",
    "kfac_reduce": "kfac_reduce",
}


def tndiagram_function(operation: str, simplify: bool = True, native: bool = True) -> Callable[..., torch.Tensor]:
    """Return tndiagram.functional's function for ``operation``, compiled with
    the given lowering; raise NotAvailable when it does not exist."""
    import tndiagram.functional

    name = _TNDIAGRAM_FUNCTIONS[operation]
    function = getattr(tndiagram.functional, name, None)
    if function is None:
        raise NotAvailable(f"tndiagram.functional.{name} does not exist")
    if simplify and native:
        return function

    def call(*args, **kwargs):
        with tndiagram.functional.lowering(simplify=simplify, native=native):
            return function(*args, **kwargs)

    return call


def tndiagram_call(problem: Problem, simplify: bool = True, native: bool = True) -> Call:
    """Return a call of tndiagram.functional on the problem's tensors."""
    function = tndiagram_function(problem.operation, simplify, native)
    layer = problem.layer
    tensors = problem.tensors
    arguments = problem.conv_arguments()
    pattern = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation}
    operation = problem.operation

    if operation == "forward":
        return lambda: function(tensors["x"], tensors["weight"], None, **arguments)
    if operation == "input_vjp":
        return lambda: function(problem.input_shape, tensors["weight"], tensors["grad_output"], **arguments)
    if operation == "weight_vjp":
        return lambda: function(tensors["x"], problem.weight_shape, tensors["grad_output"], **arguments)
    if operation == "unfold":
        return lambda: function(tensors["x"], layer.kernel_size, **pattern)
    if operation == "conv_transpose":
        return lambda: function(
            tensors["grad_output"], tensors["weight"], None, output_padding=problem.output_padding, **arguments
        )
    return lambda: function(tensors["x"], layer.kernel_size, **arguments)


def _build_tndiagram(problem: Problem) -> Call:
    return tndiagram_call(problem, simplify=True)


def _build_tndiagram_without_rewrites(problem: Problem) -> Call:
    return tndiagram_call(problem, simplify=False)


def _build_tndiagram_einsum(problem: Problem) -> Call:
    # Rewrites on, but no native convolution kernels: the pure tensor-network lowering.
    return tndiagram_call(problem, native=False)


# -- einconv --------------------------------------------------------------


def _import_einconv(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise NotAvailable(f"einconv is not installed ({error})") from None


def _build_einconv(problem: Problem) -> Call:
    layer = problem.layer
    tensors = problem.tensors
    arguments = problem.conv_arguments()
    pattern = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation}
    operation = problem.operation

    # einconv.functionals build their einsum expression on every call.
    if operation == "forward":
        functionals = _import_einconv("einconv.functionals")
        return lambda: functionals.convNd(tensors["x"], tensors["weight"], None, **arguments)
    if operation == "unfold":
        functionals = _import_einconv("einconv.functionals")
        return lambda: functionals.unfoldNd(tensors["x"], layer.kernel_size, **pattern)
    if operation == "conv_transpose":
        raise NotAvailable("einconv has no transposed convolution")

    # The other operations exist only as einsum expressions: build one once.
    if operation == "input_vjp":
        expression = _import_einconv("einconv.expressions.convNd_input_vjp")
        built = expression.einsum_expression(
            tensors["weight"], tensors["grad_output"], layer.spatial(problem.quick), **arguments
        )
    elif operation == "weight_vjp":
        expression = _import_einconv("einconv.expressions.convNd_weight_vjp")
        built = expression.einsum_expression(tensors["x"], tensors["grad_output"], layer.kernel_size, **arguments)
    elif operation == "kfc":
        expression = _import_einconv("einconv.expressions.convNd_kfc")
        built = expression.einsum_expression(tensors["x"], layer.kernel_size, **arguments)
    elif operation == "kfac_reduce":
        expression = _import_einconv("einconv.expressions.convNd_kfac_reduce")
        built = expression.einsum_expression(tensors["x"], layer.kernel_size, **arguments)
    else:
        raise NotAvailable(f"no einconv implementation of {operation}")
    equation, operands, shape = built
    return lambda: torch.einsum(equation, *operands).reshape(shape)


# -- registry -------------------------------------------------------------

REFERENCE = "torch"

IMPLEMENTATIONS: dict[str, Implementation] = {
    implementation.name: implementation
    for implementation in (
        Implementation("torch", "torch", _build_torch),
        Implementation("tndiagram", "tndiagram", _build_tndiagram),
        Implementation("tndiagram_no_rewrites", "tndiagram, rewrites off", _build_tndiagram_without_rewrites),
        Implementation("tndiagram_einsum", "tndiagram, einsum only", _build_tndiagram_einsum),
        Implementation("einconv", "einconv", _build_einconv),
    )
}


def select_implementations(names: list[str] | None) -> list[Implementation]:
    """Return the named implementations, torch first because it is the reference."""
    if not names:
        return list(IMPLEMENTATIONS.values())
    unknown = [name for name in names if name not in IMPLEMENTATIONS]
    if unknown:
        raise ValueError(f"unknown implementation(s) {', '.join(unknown)}; valid names: {', '.join(IMPLEMENTATIONS)}")
    return [implementation for name, implementation in IMPLEMENTATIONS.items() if name in names or name == REFERENCE]
