"""Constant folding.

Identity: a product of constant factors (patterns, deltas, all-ones vectors,
precomputed constants) summed over the indices that only they carry does not
depend on the operands, so it can be contracted once, when the code is built,
into one precomputed constant over the indices they share with the rest of
the term or the output.

Precondition: a term holds two or more constant factors that are connected
through shared indices (and by no operand in between), and the folded constant
has no more elements than the largest of them, so folding never grows the
memory the constants take. The folded constant must keep at least one index,
because a term has no scalar factors.
"""

from __future__ import annotations

import networkx as nx

from ..bind import BoundNetwork
from ..ir import Factor
from .common import element_count, output_indices, replace_term

NAME = "fold"


def _constant_components(factors: tuple[Factor, ...]) -> list[list[int]]:
    """Return groups of constant factor positions joined by shared indices, in factor order."""
    graph = nx.Graph()
    constants = [n for n, f in enumerate(factors) if f.is_constant]
    graph.add_nodes_from(constants)
    for a in constants:
        for b in constants:
            if a < b and set(factors[a].indices) & set(factors[b].indices):
                graph.add_edge(a, b)
    return sorted(sorted(component) for component in nx.connected_components(graph))


def fold_constants(bound: BoundNetwork) -> BoundNetwork:
    """Fold the first foldable group of connected constant factors into one constant."""
    outputs = set(output_indices(bound))
    for number, term in enumerate(bound.network.terms):
        factors = term.factors
        for component in _constant_components(factors):
            if len(component) < 2:
                continue
            members = tuple(factors[n] for n in component)
            outside = {i for n, f in enumerate(factors) if n not in component for i in f.indices} | outputs
            kept: dict[str, None] = {}
            for member in members:
                kept.update(dict.fromkeys(i for i in member.indices if i in outside))
            if not kept:
                continue
            largest = max(element_count(bound, member.indices) for member in members)
            if element_count(bound, kept) > largest:
                continue
            constant = Factor(
                "constant", "constant", tuple((i,) for i in kept), (("factors", members),), members[0].span
            )
            rest = [f for n, f in enumerate(factors) if n not in component]
            rest.insert(component[0], constant)
            return replace_term(bound, number, rest)
    return bound
