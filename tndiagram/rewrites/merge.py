"""Merging indices that always travel together.

Identity: if indices a and b occur on every tensor of a term together, b right
after a, then ``Σ_{a,b} ∏ T[…a b…]`` equals ``Σ_m ∏ T[…m…]`` with m = a·size(b) + b
the row-major flattening, so the einsums see one longer axis instead of two.

Precondition: a and b are distinct indices of a term. Every factor of the
term that carries either carries both, once each, with b right after a in its
index order, and is an operand or a view. An operand whose a and b sit in one
group takes m in the group; any other operand or view takes a ``merge`` step. If the output carries either, it carries both in one group axis,
b right after a, and no other term carries a or b. Indices that one factor
alone carries, outside the output, stay apart: the plan sums them first.
"""

from __future__ import annotations

from ..bind import BoundNetwork
from ..ir import Factor, ViewStep
from .common import (
    VIEWABLE_KINDS,
    as_view,
    fresh_index,
    output_indices,
    replace_output,
    replace_term,
    terms_carrying,
)

NAME = "merge"


def _adjacent(indices: tuple[str, ...], a: str, b: str) -> bool:
    return indices.count(a) == 1 and indices.count(b) == 1 and indices.index(b) == indices.index(a) + 1


def _merged_axes(axes, a: str, b: str, merged: str):
    result = []
    for axis in axes:
        if a in axis:
            place = axis.index(a)
            axis = axis[:place] + (merged,) + axis[place + 2 :]
        result.append(axis)
    return tuple(result)


def _in_one_group(axes, a: str, b: str) -> bool:
    return any(a in axis and b in axis for axis in axes)


def _applies(bound: BoundNetwork, number: int, a: str, b: str) -> bool:
    term = bound.network.terms[number]
    carrying = [f for f in term.factors if a in f.indices or b in f.indices]
    if not carrying:
        return False
    for factor in carrying:
        if factor.kind not in VIEWABLE_KINDS or not _adjacent(factor.indices, a, b):
            return False
    outputs = output_indices(bound)
    if len(carrying) == 1 and a not in outputs and b not in outputs:
        # The plan sums indices that one tensor alone carries before anything
        # else; merging them first would only copy a strided view.
        return False
    if a in outputs or b in outputs:
        if not _adjacent(outputs, a, b) or not _in_one_group(bound.network.output, a, b):
            return False
        if set(terms_carrying(bound, a) + terms_carrying(bound, b)) != {number}:
            return False
    return True


def _merged(factor: Factor, a: str, b: str, merged: str) -> Factor:
    if factor.kind == "operand" and _in_one_group(factor.axes, a, b):
        return Factor("operand", factor.name, _merged_axes(factor.axes, a, b, merged), factor.params, factor.span)
    return as_view(factor, ViewStep("merge", (a, b), (merged,)))


def merge_indices(bound: BoundNetwork) -> BoundNetwork:
    """Merge the first pair of indices that travel together into one index."""
    for number, term in enumerate(bound.network.terms):
        for factor in term.factors:
            flat = factor.indices
            for a, b in zip(flat, flat[1:]):
                if a == b or not _applies(bound, number, a, b):
                    continue
                merged = fresh_index(bound, a + b)
                size = bound.sizes[a] * bound.sizes[b]
                factors = [_merged(f, a, b, merged) if a in f.indices else f for f in term.factors]
                result = replace_term(bound, number, factors, new_sizes={merged: size})
                if a in output_indices(bound):
                    result = replace_output(result, _merged_axes(bound.network.output, a, b, merged))
                return result
    return bound
