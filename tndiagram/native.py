"""Recognize terms that are exactly a convolution, its input VJP or its weight
VJP, and lower them to torch's native convolution kernels.

A term matches when it contains two operands and one index pattern per spatial
dimension (one to three of them), and every other index plays one of the
roles a convolution has. For the forward convolution ``x * w * Π…`` the roles
are, by which of (data, kernel, output) carry the index:

* batch: data and output; flattened into torch's batch axis;
* group: data, kernel and output; torch's ``groups``;
* input channel: data and kernel, summed;
* output channel: kernel and output.

The input VJP (cotangent and kernel, output carries the pattern's input index)
is a transpose convolution, and the weight VJP (data and cotangent, output
carries the kernel index) is ``torch.nn.grad.conv*d_weight``. Asymmetric
padding pads the data first; a transpose convolution whose size torch cannot
express with ``padding`` and ``output_padding`` is computed unpadded and sliced.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Mapping, Sequence

from .ir import Axis, Factor, Term
from .sizes import PatternParameters, output_size

__all__ = ["NativeConvolution", "match_convolution", "match_term", "emit_convolution", "arrange"]

MAX_NATIVE_DIMENSIONS = 3
LINE_WIDTH = 100
DESCRIPTIONS = {
    "forward": "convolution",
    "input_vjp": "transpose convolution (the input VJP)",
    "weight_vjp": "convolution weight gradient (the weight VJP)",
}


@dataclass(frozen=True)
class NativeConvolution:
    """A term recognized as a native convolution operation.

    ``kind`` is ``"forward"``, ``"input_vjp"`` or ``"weight_vjp"``. ``first``
    and ``second`` are factor positions of the two operands in the term: data
    and kernel for forward, cotangent and kernel for the input VJP, data and
    cotangent for the weight VJP. Index roles are tuples of index names.
    """

    kind: str
    first: int
    second: int
    batch: tuple[str, ...]
    group: tuple[str, ...]
    input_channel: tuple[str, ...]
    output_channel: tuple[str, ...]
    kernel: tuple[str, ...]
    output: tuple[str, ...]
    input: tuple[str, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]


def match_convolution(
    factors: Sequence[Factor], output: Sequence[str], sizes: Mapping[str, int]
) -> NativeConvolution | None:
    """Return how a term lowers to a native convolution, or None if it does not."""
    operands = [n for n, f in enumerate(factors) if f.kind == "operand"]
    patterns = [f for f in factors if f.kind == "pattern"]
    if len(operands) != 2 or len(patterns) + 2 != len(factors):
        return None
    if factors[operands[0]].name == factors[operands[1]].name:
        return None
    if not 1 <= len(patterns) <= MAX_NATIVE_DIMENSIONS:
        return None
    for factor in factors:
        if len(set(factor.indices)) != len(factor.indices):
            return None
    if len(set(output)) != len(output):
        return None
    kernel = tuple(p.axes[0][0] for p in patterns)
    pattern_output = tuple(p.axes[1][0] for p in patterns)
    pattern_input = tuple(p.axes[2][0] for p in patterns)
    spatial = set(kernel) | set(pattern_output) | set(pattern_input)
    if len(spatial) != 3 * len(patterns):
        return None
    outputs = set(output)
    first, second = (set(factors[n].indices) for n in operands)

    def carried_by(index: str) -> tuple[bool, bool, bool]:
        return (index in first, index in second, index in outputs)

    # Each spatial index sits on exactly one of the two operands or the output.
    def place(indices: tuple[str, ...]) -> tuple[bool, bool, bool] | None:
        places = {carried_by(i) for i in indices}
        if len(places) != 1:
            return None
        found = places.pop()
        return found if sum(found) == 1 else None

    places = (place(kernel), place(pattern_output), place(pattern_input))
    if None in places:
        return None
    layout = {
        ((False, True, False), (False, False, True), (True, False, False)): "forward",
        ((False, True, False), (True, False, False), (False, False, True)): "input_vjp",
        ((False, False, True), (False, True, False), (True, False, False)): "weight_vjp",
    }
    kind = layout.get(places)
    swapped = False
    if kind is None:
        # The same layouts with the two operands in the other order.
        flipped = tuple((b, a, c) for a, b, c in places)
        kind = layout.get(flipped)
        swapped = True
    if kind is None:
        return None
    first_position, second_position = operands[::-1] if swapped else operands
    first_indices = set(factors[first_position].indices)
    second_indices = set(factors[second_position].indices)

    # Role of each other index by (first operand, second operand, output).
    roles_by_kind = {
        "forward": {
            (True, False, True): "batch",
            (True, True, True): "group",
            (True, True, False): "input_channel",
            (False, True, True): "output_channel",
        },
        "input_vjp": {
            (True, False, True): "batch",
            (True, True, True): "group",
            (True, True, False): "output_channel",
            (False, True, True): "input_channel",
        },
        "weight_vjp": {
            (True, True, False): "batch",
            (True, True, True): "group",
            (True, False, True): "input_channel",
            (False, True, True): "output_channel",
        },
    }[kind]
    roles: dict[str, list[str]] = {"batch": [], "group": [], "input_channel": [], "output_channel": []}
    every = list(factors[first_position].indices) + list(factors[second_position].indices) + list(output)
    seen: set[str] = set()
    for index in every:
        if index in spatial or index in seen:
            continue
        seen.add(index)
        role = roles_by_kind.get((index in first_indices, index in second_indices, index in outputs))
        if role is None:
            return None
        roles[role].append(index)
    params = [dict(p.params) for p in patterns]
    if kind != "input_vjp":
        # A transpose convolution's output padding can leave the pattern fewer output
        # positions than torch's convolution computes; the einsum handles that case.
        for p, k, o, i in zip(params, kernel, pattern_output, pattern_input):
            parameters = PatternParameters(p["stride"], tuple(p["padding"]), p["dilation"])
            if output_size(sizes[i], sizes[k], parameters) != sizes[o]:
                return None
    return NativeConvolution(
        kind,
        first_position,
        second_position,
        tuple(roles["batch"]),
        tuple(roles["group"]),
        tuple(roles["input_channel"]),
        tuple(roles["output_channel"]),
        kernel,
        pattern_output,
        pattern_input,
        tuple(p["stride"] for p in params),
        tuple(tuple(p["padding"]) for p in params),
        tuple(p["dilation"] for p in params),
    )


def match_term(term: Term, sizes: Mapping[str, int]) -> NativeConvolution | None:
    """Return how a term lowers to a native convolution, or None; the term's
    output is the network's output indices that its factors carry."""
    present = {index for factor in term.factors for index in factor.indices}
    output = [index for axis in term.output for index in axis if index in present]
    return match_convolution(term.factors, output, sizes)


def _text(values: Sequence[int]) -> str:
    return "(" + ", ".join(str(v) for v in values) + ("," if len(values) == 1 else "") + ")"


def arrange(
    variable: str, axes: Sequence[Axis], order: Sequence[str], shape: Sequence[int], sizes: Mapping[str, int]
) -> str:
    """Return code that brings a tensor with ``axes`` into index ``order`` and ``shape``.

    No code is added where the tensor already has that layout, and a grouped
    axis is split only when a permutation needs it.
    """
    indices = [index for axis in axes for index in axis]
    current = [prod(sizes[i] for i in axis) for axis in axes]
    if indices == list(order):
        return variable if current == list(shape) else f"{variable}.reshape{_text(shape)}"
    expression = variable
    if len(indices) != len(axes):
        expression += f".reshape{_text([sizes[i] for i in indices])}"
    permutation = [indices.index(i) for i in order]
    return f"{expression}.permute{_text(permutation)}.reshape{_text(shape)}"


def emit_convolution(
    match: NativeConvolution,
    variables: Sequence[str],
    axes: Sequence[Sequence[Axis]],
    output: Sequence[str],
    sizes: Mapping[str, int],
    target: str = "convolution",
    bias: str | None = None,
) -> tuple[list[str], str]:
    """Return code lines that assign the kernel's result to ``target``, and the
    expression of the term's value in terms of it.

    ``bias``, for a forward convolution only, is the expression of a vector over
    torch's output channels that the kernel adds to its result.

    ``variables`` are the code names of the term's factors and ``axes`` the
    axes those variables have now (grouped, or split into single indices).
    """
    dims = len(match.kernel)

    def size(indices: Sequence[str]) -> int:
        return prod(sizes[i] for i in indices)

    def spatial(indices: Sequence[str]) -> list[int]:
        return [sizes[i] for i in indices]

    group = size(match.group)
    batch = size(match.batch)
    first_axes, second_axes = axes[match.first], axes[match.second]
    first_name, second_name = variables[match.first], variables[match.second]

    def operand(first_operand: bool, order: Sequence[str], shape: Sequence[int]) -> str:
        if first_operand:
            return arrange(first_name, first_axes, order, shape, sizes)
        return arrange(second_name, second_axes, order, shape, sizes)

    if bias is not None and match.kind != "forward":
        raise ValueError(f"only a forward convolution takes a bias, not a {DESCRIPTIONS[match.kind]}")
    symmetric = all(left == right for left, right in match.padding)
    lines: list[str] = []
    if match.kind == "forward":
        data_order = match.batch + match.group + match.input_channel + match.input
        data = operand(True, data_order, [batch, group * size(match.input_channel)] + spatial(match.input))
        weight_order = match.group + match.output_channel + match.input_channel + match.kernel
        weight = operand(
            False, weight_order, [group * size(match.output_channel), size(match.input_channel)] + spatial(match.kernel)
        )
        if symmetric:
            padding = _text([left for left, _ in match.padding])
        else:
            data = f"torch.nn.functional.pad({data}, {_pad_text(match.padding)})"
            padding = "0"
        lines += _call(
            target,
            f"torch.nn.functional.conv{dims}d",
            [data, weight] + ([bias] if bias is not None else []),
            f"stride={_text(match.stride)}, padding={padding}, dilation={_text(match.dilation)}, groups={group}",
        )
        result_order = match.batch + match.group + match.output_channel + match.output
        torch_shape = [batch, group * size(match.output_channel)] + spatial(match.output)
    elif match.kind == "input_vjp":
        cotangent_order = match.batch + match.group + match.output_channel + match.output
        cotangent = operand(True, cotangent_order, [batch, group * size(match.output_channel)] + spatial(match.output))
        weight_order = match.group + match.output_channel + match.input_channel + match.kernel
        weight = operand(
            False, weight_order, [group * size(match.output_channel), size(match.input_channel)] + spatial(match.kernel)
        )
        full = [
            (sizes[o] - 1) * s + d * (sizes[k] - 1) + 1
            for o, k, s, d in zip(match.output, match.kernel, match.stride, match.dilation)
        ]
        targets = spatial(match.input)
        output_padding = [t - (f - left - right) for t, f, (left, right) in zip(targets, full, match.padding)]
        native = symmetric and all(
            0 <= p < max(s, d) for p, s, d in zip(output_padding, match.stride, match.dilation)
        )
        if native:
            lines += _call(
                target,
                f"torch.nn.functional.conv_transpose{dims}d",
                [cotangent, weight],
                f"stride={_text(match.stride)}, padding={_text([left for left, _ in match.padding])},"
                f" output_padding={_text(output_padding)}, groups={group}, dilation={_text(match.dilation)}",
            )
        else:
            # torch pads both sides alike: compute the unpadded transpose convolution,
            # then keep positions left … left + size; missing ones at the end are zeros.
            lines += _call(
                target,
                f"torch.nn.functional.conv_transpose{dims}d",
                [cotangent, weight],
                f"stride={_text(match.stride)}, groups={group}, dilation={_text(match.dilation)}",
            )
            extra = [max(0, left + t - f) for (left, _), t, f in zip(match.padding, targets, full)]
            if any(extra):
                pad = []
                for amount in reversed(extra):
                    pad += [0, amount]
                lines.append(f"    {target} = torch.nn.functional.pad({target}, {_text(pad)})")
            slices = ", ".join(f"{left}:{left + t}" for (left, _), t in zip(match.padding, targets))
            lines.append(f"    {target} = {target}[:, :, {slices}]")
        result_order = match.batch + match.group + match.input_channel + match.input
        torch_shape = [batch, group * size(match.input_channel)] + spatial(match.input)
    else:
        data_order = match.batch + match.group + match.input_channel + match.input
        data = operand(True, data_order, [batch, group * size(match.input_channel)] + spatial(match.input))
        cotangent_order = match.batch + match.group + match.output_channel + match.output
        cotangent = operand(
            False, cotangent_order, [batch, group * size(match.output_channel)] + spatial(match.output)
        )
        if symmetric:
            padding = _text([left for left, _ in match.padding])
        else:
            data = f"torch.nn.functional.pad({data}, {_pad_text(match.padding)})"
            padding = "0"
        weight_shape = [group * size(match.output_channel), size(match.input_channel)] + spatial(match.kernel)
        lines += _call(
            target,
            f"torch.nn.grad.conv{dims}d_weight",
            [data, _text(weight_shape), cotangent],
            f"stride={_text(match.stride)}, padding={padding}, dilation={_text(match.dilation)}, groups={group}",
        )
        result_order = match.group + match.output_channel + match.input_channel + match.kernel
        torch_shape = weight_shape
    result_shape = [sizes[i] for i in result_order]
    output_order = [i for i in output if i in set(result_order)]
    expression = target
    if result_shape != torch_shape:
        expression += f".reshape{_text(result_shape)}"
    if list(result_order) != output_order:
        permutation = [list(result_order).index(i) for i in output_order]
        expression += f".permute{_text(permutation)}"
    return lines, expression


def _call(target: str, function: str, arguments: Sequence[str], keywords: str) -> list[str]:
    """Return the lines of ``target = function(arguments, keywords)``, wrapped."""
    inner = f"{', '.join(arguments)}, {keywords}"
    one_line = f"    {target} = {function}({inner})"
    if len(one_line) <= LINE_WIDTH:
        return [one_line]
    if len(inner) + 8 <= LINE_WIDTH:
        return [f"    {target} = {function}(", f"        {inner}", "    )"]
    return [f"    {target} = {function}("] + [f"        {a}," for a in arguments] + [f"        {keywords},", "    )"]


def _pad_text(padding: Sequence[tuple[int, int]]) -> str:
    # torch.nn.functional.pad lists the last dimension first.
    values: list[int] = []
    for left, right in reversed(padding):
        values += [left, right]
    return _text(values)
