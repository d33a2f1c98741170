"""Squeezing size-one indices.

Identity: an index of size one takes the single value 0, so a tensor that
carries it equals the same tensor with that axis indexed at 0, and the sum
over it has one summand.

Precondition: a term contains an index of size one that is not on the output,
carried only by operands, views, all-ones vectors, deltas and precomputed
constants (not by index patterns, whose three axes are fixed), and the term
keeps at least one factor. An operand with the index inside a group drops it
from the group; any other operand or view reads ``select`` at 0; an all-ones
vector or a delta of size one is the number 1 and disappears; a precomputed
constant sums over the index internally.
"""

from __future__ import annotations

from ..bind import BoundNetwork
from ..ir import Factor, ViewStep
from .common import as_view, output_indices, replace_term

NAME = "squeeze"

SQUEEZABLE_KINDS = ("operand", "view", "ones", "delta", "constant")


def _squeezed(factor: Factor, index: str) -> Factor | None:
    """Return ``factor`` without ``index``, or None when the factor disappears."""
    if factor.kind in ("ones", "delta"):
        return None
    if factor.kind == "constant":
        axes = tuple(axis for axis in factor.axes if axis != (index,))
        return Factor("constant", "constant", axes, factor.params, factor.span)
    if factor.kind == "operand":
        for axis in factor.axes:
            if index in axis and len(axis) > 1:
                axes = tuple(tuple(i for i in a if i != index) if a is axis else a for a in factor.axes)
                return Factor("operand", factor.name, axes, factor.params, factor.span)
    return as_view(factor, ViewStep("select", (index,), (), start=0))


def squeeze_index(bound: BoundNetwork) -> BoundNetwork:
    """Remove the first removable index of size one from a term."""
    outputs = output_indices(bound)
    for number, term in enumerate(bound.network.terms):
        factors = term.factors
        for index in term.indices():
            if bound.sizes[index] != 1 or index in outputs:
                continue
            if any(index in f.indices and f.kind not in SQUEEZABLE_KINDS for f in factors):
                continue
            if any(f.indices.count(index) > 1 for f in factors if f.kind in ("operand", "view", "constant")):
                continue
            result = []
            for factor in factors:
                if index not in factor.indices:
                    result.append(factor)
                    continue
                squeezed = _squeezed(factor, index)
                if squeezed is not None:
                    result.append(squeezed)
            if not result:
                continue
            return replace_term(bound, number, result)
    return bound
