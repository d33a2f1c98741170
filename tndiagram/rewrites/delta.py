"""Kronecker-delta elimination.

Identity: ``Σ_b δ[a, b] T[…b…] = T[…a…]``; a delta of any order equates all its
indices, so it can be removed by renaming them to one name.

Precondition: a term contains a delta whose indices are distinct, at most one of
them is on the output, the term has another factor, and after renaming no
factor carries the kept index twice. The kept name is the output index if
there is one, so the output is untouched. If no factor then carries the kept
index, the delta's sum ran over it freely, and the coefficient takes its size.
"""

from __future__ import annotations

from ..bind import BoundNetwork
from .common import output_indices, rename_factor, replace_term

NAME = "delta"


def eliminate_delta(bound: BoundNetwork) -> BoundNetwork:
    """Remove the first removable Kronecker delta by renaming its indices."""
    outputs = output_indices(bound)
    for number, term in enumerate(bound.network.terms):
        factors = term.factors
        if len(factors) < 2:
            continue
        for position, delta in enumerate(factors):
            if delta.kind != "delta":
                continue
            indices = delta.indices
            on_output = [index for index in indices if index in outputs]
            if len(set(indices)) != len(indices) or len(on_output) > 1:
                continue
            kept = on_output[0] if on_output else indices[0]
            mapping = {index: kept for index in indices if index != kept}
            rest = [rename_factor(f, mapping) for n, f in enumerate(factors) if n != position]
            if any(f.indices.count(kept) > 1 for f in rest):
                continue
            coefficient = term.coefficient
            if not on_output and not any(kept in f.indices for f in rest):
                coefficient = coefficient * bound.sizes[kept]
            return replace_term(bound, number, rest, coefficient)
    return bound
