"""Dense convolution: non-overlapping windows that tile the input exactly.

Identity: with kernel size K equal to the stride S, dilation 1, no padding and
input size I = O·K, the pattern ``Π[k, o, i] = [i = K·o + k]`` is a bijection
between the pairs (o, k) and the input positions, and ``i = K·o + k`` is the
row-major flattening of (o, k). So ``Σ_i Π[k, o, i] T[…i…] = T[…(o k)…]``:
every tensor that carries i reads it as the group (o k), a plain reshape, and
the pattern disappears.

Precondition: besides the numbers above, the pattern's three indices are
distinct and at least one other tensor (a factor or the output) carries i.
Each factor that carries i is an operand or a view that carries it once and
carries neither k nor o. If the output carries i, it carries it once and
neither k nor o, and no other term carries i, because the output's axes change
for every term.
"""

from __future__ import annotations

from ..bind import BoundNetwork
from ..ir import Factor, ViewStep
from .common import (
    as_view,
    output_indices,
    pattern_parameters,
    replace_output,
    replace_term,
    substitute_in_axes,
    terms_carrying,
    viewable_carriers,
)

NAME = "dense"


def is_dense(bound: BoundNetwork, pattern: Factor) -> bool:
    """Tell whether a bound pattern's numbers make it a bijection (o, k) ↔ i."""
    kernel, output, input = (bound.sizes[i] for i in pattern.indices)
    stride, padding, dilation = pattern_parameters(pattern)
    return kernel == stride and dilation == 1 and padding == (0, 0) and input == output * kernel


def _applies(bound: BoundNetwork, number: int, position: int) -> bool:
    term = bound.network.terms[number]
    pattern = term.factors[position]
    if pattern.kind != "pattern" or len(set(pattern.indices)) != 3 or not is_dense(bound, pattern):
        return False
    kernel, output, input = pattern.indices
    outputs = output_indices(bound)
    found = viewable_carriers(term, position)
    if found is None or (not found and input not in outputs):
        return False
    if input in outputs:
        if outputs.count(input) != 1 or kernel in outputs or output in outputs:
            return False
        if terms_carrying(bound, input) != [number]:
            return False
    return True


def _grouped(factor: Factor, input: str, output: str, kernel: str) -> Factor:
    if factor.kind == "operand":
        axes = substitute_in_axes(factor.axes, input, (output, kernel))
        return Factor("operand", factor.name, axes, factor.params, factor.span)
    return as_view(factor, ViewStep("split", (input,), (output, kernel)))


def rewrite_dense(bound: BoundNetwork) -> BoundNetwork:
    """Turn the first dense pattern into a reshape of the tensors that carry its input index."""
    for number, term in enumerate(bound.network.terms):
        for position, pattern in enumerate(term.factors):
            if not _applies(bound, number, position):
                continue
            kernel, output, input = pattern.indices
            factors = [
                _grouped(f, input, output, kernel) if input in f.indices else f
                for n, f in enumerate(term.factors)
                if n != position
            ]
            result = replace_term(bound, number, factors)
            if input in output_indices(bound):
                result = replace_output(result, substitute_in_axes(bound.network.output, input, (output, kernel)))
            return result
    return bound
