"""Helpers shared by the rewrite passes: find the tensors that carry an index,
rename and re-axis factors, and rebuild a bound network around a new term.

Every helper returns new objects; none mutates a network, a term or a graph.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

import sympy

from ..bind import BoundNetwork
from ..ir import Axis, Factor, Term, ViewStep

VIEWABLE_KINDS = ("operand", "view")


def carriers(term: Term, index: str, skip: int | None = None) -> list[int]:
    """Return the positions of the factors that carry ``index``, except position ``skip``."""
    return [n for n, factor in enumerate(term.factors) if n != skip and index in factor.indices]


def output_indices(bound: BoundNetwork) -> tuple[str, ...]:
    return tuple(index for axis in bound.network.output for index in axis)


def terms_carrying(bound: BoundNetwork, index: str) -> list[int]:
    """Return the numbers of the terms with a factor that carries ``index``."""
    return [
        number
        for number, term in enumerate(bound.network.terms)
        if any(index in factor.indices for factor in term.factors)
    ]


def element_count(bound: BoundNetwork, indices: Iterable[str]) -> int:
    count = 1
    for index in indices:
        count *= bound.sizes[index]
    return count


def fresh_index(bound: BoundNetwork, base: str, taken: Iterable[str] = ()) -> str:
    """Return ``base`` followed by a number, unused by any index of ``bound``."""
    used = set(bound.sizes) | set(taken)
    number = 1
    while f"{base}_{number}" in used:
        number += 1
    return f"{base}_{number}"


def replace_term(
    bound: BoundNetwork,
    number: int,
    factors: Iterable[Factor],
    coefficient: sympy.Expr | None = None,
    new_sizes: Mapping[str, int] | None = None,
) -> BoundNetwork:
    """Return ``bound`` with term ``number`` rebuilt from ``factors``; ``new_sizes``
    registers the sizes of indices the rewrite introduced."""
    terms = list(bound.network.terms)
    terms[number] = terms[number].with_factors(factors, coefficient)
    return dataclasses.replace(
        bound,
        network=bound.network.replace(terms=tuple(terms)),
        sizes={**bound.sizes, **(new_sizes or {})},
    )


def replace_output(bound: BoundNetwork, output: tuple[Axis, ...]) -> BoundNetwork:
    """Return ``bound`` with new output axes on the network and on every term."""
    terms = tuple(Term.from_factors(t.coefficient, t.factors, output) for t in bound.network.terms)
    return dataclasses.replace(bound, network=bound.network.replace(output=output, terms=terms))


def substitute_in_axes(axes: tuple[Axis, ...], index: str, replacement: tuple[str, ...]) -> tuple[Axis, ...]:
    """Replace ``index`` by the indices ``replacement`` inside whichever axis contains it."""
    return tuple(
        tuple(member for name in axis for member in (replacement if name == index else (name,))) for axis in axes
    )


def as_view(factor: Factor, step: ViewStep) -> Factor:
    """Return ``factor`` (an operand or a view) read through one more view step."""
    if factor.kind == "operand":
        source, steps = factor.axes, ()
    else:
        source, steps = factor.param("source"), factor.param("steps")
    dims = list(factor.indices)
    position = dims.index(step.source[0])
    dims[position : position + len(step.source)] = list(step.target)
    return Factor(
        "view",
        factor.name,
        tuple((index,) for index in dims),
        (("source", source), ("steps", steps + (step,))),
        factor.span,
    )


def rename_factor(factor: Factor, mapping: Mapping[str, str]) -> Factor:
    """Rename indices on a factor, inside its view steps and constant members too."""

    def name(index: str) -> str:
        return mapping.get(index, index)

    axes = tuple(tuple(name(i) for i in axis) for axis in factor.axes)
    params = factor.params
    if factor.kind == "view":
        source = tuple(tuple(name(i) for i in axis) for axis in factor.param("source"))
        steps = tuple(
            dataclasses.replace(s, source=tuple(map(name, s.source)), target=tuple(map(name, s.target)))
            for s in factor.param("steps")
        )
        params = (("source", source), ("steps", steps))
    elif factor.kind == "constant":
        members = tuple(rename_factor(member, mapping) for member in factor.param("factors"))
        params = (("factors", members),)
    return Factor(factor.kind, factor.name, axes, params, factor.span)


def pattern_parameters(factor: Factor) -> tuple[int, tuple[int, int], int]:
    """Return (stride, (left, right) padding, dilation) of a bound pattern."""
    return factor.param("stride"), tuple(factor.param("padding")), factor.param("dilation")


def viewable_carriers(term: Term, position: int) -> list[int] | None:
    """Return the other carriers of the input index of the pattern at ``position``
    if each is an operand or a view that carries it once and carries neither
    the kernel nor the output index of the pattern, else None."""
    kernel, output, input = term.factors[position].indices
    if len({kernel, output, input}) != 3:
        return None
    found = carriers(term, input, skip=position)
    for n in found:
        factor = term.factors[n]
        if factor.kind not in VIEWABLE_KINDS or factor.indices.count(input) != 1:
            return None
        if kernel in factor.indices or output in factor.indices:
            return None
    return found


def viewable_input(bound: BoundNetwork, number: int, position: int) -> list[int] | None:
    """Return the carriers of the input index of the pattern at ``position`` when
    each of them can take a view step along it, else None.

    That needs :func:`viewable_carriers`, at least one carrier, and the input
    index off the output.
    """
    term = bound.network.terms[number]
    input = term.factors[position].indices[2]
    if input in output_indices(bound):
        return None
    return viewable_carriers(term, position) or None
