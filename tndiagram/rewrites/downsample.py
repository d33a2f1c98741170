"""Down-sampling: windows that do not overlap, read by a reshape.

Identity: with no padding and stride S > D·(K−1), the positions
``i = S·o + D·k`` for 0 ≤ k < K lie inside block o, that is in [S·o, S·o + S).
So ``Σ_i Π[k, o, i] T[…i…]`` reads T along i as follows: take the first O·S
elements (slicing off an input remainder, or zero-padding the last block when
I < O·S, whose padding is never read), reshape them to (o, s) with s of size
S, and keep the positions s = D·k. Every tensor that carries i takes these
three view steps, and the pattern disappears.

Precondition: padding (0, 0), S > D·(K−1), the pattern's three indices are
distinct, i is not on the output, at least one other factor carries i, and
each such factor is an operand or a view that carries i once and carries
neither k nor o. Kernel size one qualifies too, but the pipeline gives it to
the kernel-one pass first.
"""

from __future__ import annotations

from ..bind import BoundNetwork
from ..ir import Factor, ViewStep
from .common import as_view, fresh_index, pattern_parameters, replace_term, viewable_input

NAME = "downsample"


def is_downsampling(bound: BoundNetwork, pattern: Factor) -> bool:
    kernel = bound.sizes[pattern.indices[0]]
    stride, padding, dilation = pattern_parameters(pattern)
    return padding == (0, 0) and stride > dilation * (kernel - 1)


def rewrite_downsample(bound: BoundNetwork) -> BoundNetwork:
    """Turn the first down-sampling pattern into a slice, reshape and slice of its input."""
    for number, term in enumerate(bound.network.terms):
        for position, pattern in enumerate(term.factors):
            if pattern.kind != "pattern" or not is_downsampling(bound, pattern):
                continue
            found = viewable_input(bound, number, position)
            if found is None:
                continue
            kernel, output, input = pattern.indices
            stride, _, dilation = pattern_parameters(pattern)
            length = bound.sizes[output] * stride
            steps = []
            new_sizes = {}
            blocks = input
            if length != bound.sizes[input]:
                blocks = fresh_index(bound, input)
                new_sizes[blocks] = length
                steps.append(ViewStep("slice", (input,), (blocks,), start=0, step=1))
            within = fresh_index(bound, "s", new_sizes)
            new_sizes[within] = stride
            steps.append(ViewStep("split", (blocks,), (output, within)))
            steps.append(ViewStep("slice", (within,), (kernel,), start=0, step=dilation))
            factors = []
            for n, factor in enumerate(term.factors):
                if n == position:
                    continue
                if n in found:
                    for step in steps:
                        factor = as_view(factor, step)
                factors.append(factor)
            return replace_term(bound, number, factors, new_sizes=new_sizes)
    return bound
