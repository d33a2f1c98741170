"""Summed index patterns.

Identity: an index that only one pattern carries is summed inside that
pattern alone, so ``Σ_o Π[k, o, i]`` can be computed once, when the code is
built, as a constant ``C[k, i]`` (the number of output positions that read
input ``i`` through kernel position ``k``). The same holds for a private kernel
or input index. In KFAC-reduce, each unfolded input is summed over the output
positions, and this turns a contraction with ``Π[k, o, i]`` into one with the
much smaller ``C[k, i]``.

Precondition: a term holds an index pattern with at least one index that no
other factor of the term carries and that is not on the output. If all three
indices are private, the pattern is the number of its ones, which multiplies
the coefficient; that needs another factor in the term.
"""

from __future__ import annotations

from ..bind import BoundNetwork
from ..ir import Factor
from .common import carriers, output_indices, pattern_parameters, replace_term

NAME = "summed-pattern"


def count_ones(bound: BoundNetwork, pattern: Factor) -> int:
    """Return the number of ones of a bound pattern: pairs (k, o) that read an input inside [0, I)."""
    kernel, output, input = (bound.sizes[i] for i in pattern.indices)
    stride, (left, _), dilation = pattern_parameters(pattern)
    return sum(
        1 for k in range(kernel) for o in range(output) if 0 <= stride * o + dilation * k - left < input
    )


def sum_pattern_index(bound: BoundNetwork) -> BoundNetwork:
    """Replace the first pattern with a private index by a precomputed constant."""
    outputs = output_indices(bound)
    for number, term in enumerate(bound.network.terms):
        factors = term.factors
        for position, pattern in enumerate(factors):
            if pattern.kind != "pattern" or len(set(pattern.indices)) != 3:
                continue
            kept = tuple(i for i in pattern.indices if i in outputs or carriers(term, i, skip=position))
            if len(kept) == 3:
                continue
            rest = [f for n, f in enumerate(factors) if n != position]
            if not kept:
                if not rest:
                    continue
                return replace_term(bound, number, rest, term.coefficient * count_ones(bound, pattern))
            constant = Factor(
                "constant", "constant", tuple((i,) for i in kept), (("factors", (pattern,)),), pattern.span
            )
            return replace_term(bound, number, rest[:position] + [constant] + rest[position:])
    return bound
