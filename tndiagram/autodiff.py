"""Derivatives of networks: the VJP and JVP networks of an operand.

Every term of a network is multilinear in its tensors, so its derivative with
respect to an operand T needs no chain rule, only a cut:

* The VJP (vector-Jacobian product) of a term removes one occurrence of T and
  attaches the cotangent of the output in its place. The open indices of the
  result are T's declared axes. The occurrence's indices are renamed to T's
  declared indices, and a Kronecker delta ties the declared indices of an axis
  pair that the occurrence indexes with one index (a diagonal such as x[i, i]).
* The JVP (Jacobian-vector product) of a term replaces one occurrence of T by
  its tangent, which has T's axes.

A network is a sum of terms, so both sum over the terms and, within a term,
over the occurrences of T (a product x·x gives two terms). Terms without T
vanish, constants (index patterns, deltas, all-ones vectors) have no
derivative, and scalar coefficients carry over. The results are ordinary
networks, so applying :func:`vjp` or :func:`jvp` again gives second derivatives.

A VJP no longer contains T, so the sizes of T's indices may have no source left:
an index that only T and an index pattern carried would otherwise get its size
from the pattern read backwards, which is ambiguous for strides above 1. Such
an index gets a ``size`` statement that reads a new required hyper-parameter
``<index>_size``; :func:`primal_size_values` fills these in from the sizes of
a bound forward network.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import sympy

from .errors import RewriteError, Span
from .ir import (
    REQUIRED,
    Axis,
    Factor,
    HyperParameter,
    Network,
    Operand,
    SizeDeclaration,
    Term,
    hyper_symbol,
    is_family,
    size_symbol,
    verify,
)

__all__ = ["vjp", "jvp", "derive", "occurs_in", "primal_size_values"]


def vjp(network: Network, wrt: str, name: str | None = None) -> Network:
    """Return the VJP network of ``network`` with respect to operand ``wrt``.

    Its operands are the original ones (``wrt`` only where it occurs more than
    once in a term) followed by the cotangent ``grad_<output>`` with the
    output's axes, and its output is ``grad_<wrt>`` with the axes of ``wrt``.
    Raises :class:`RewriteError` when ``wrt`` is not an operand or occurs in
    no term, so that the derivative is zero.
    """
    target = _differentiable_operand(network, wrt)
    taken = set(network.operand_names) | {h.name for h in network.hyper_parameters}
    cotangent = Operand(_fresh_name(f"grad_{network.output_name}", taken), network.output, False, network.span)
    renamer = _IndexRenamer(network)

    terms = []
    for term in network.terms:
        for position, factor in enumerate(term.factors):
            if factor.kind == "operand" and factor.name == wrt:
                terms.append(_cut(term, position, target, cotangent, renamer, network))

    used = {f.name for term in terms for f in term.factors if f.kind == "operand"}
    # The operand itself stays only where a term still contains it (x·x gives x).
    operands = tuple(o for o in network.operands if o.name != wrt or wrt in used) + (cotangent,)
    derived = network.replace(
        name=name or f"{network.name}_vjp_{wrt}",
        operands=operands,
        sizes=network.sizes + tuple(renamer.declarations(terms, operands)),
        output_name=f"grad_{wrt}",
        output=target.axes,
        terms=tuple(terms),
    )
    return verify(_declare_missing_sizes(derived))


def jvp(network: Network, wrt: str, name: str | None = None) -> Network:
    """Return the JVP network of ``network`` with respect to operand ``wrt``.

    Its operands are the original ones followed by the tangent
    ``tangent_<wrt>`` with the axes of ``wrt`` (optional where ``wrt`` is), and
    its output ``tangent_<output>`` has the original output's axes. Raises
    :class:`RewriteError` when ``wrt`` is not an operand or occurs in no term.
    """
    target = _differentiable_operand(network, wrt)
    taken = set(network.operand_names) | {h.name for h in network.hyper_parameters}
    tangent_name = _fresh_name(f"tangent_{wrt}", taken)
    tangent = Operand(tangent_name, target.axes, target.optional, network.span)
    terms = []
    for term in network.terms:
        factors = term.factors
        for position, factor in enumerate(factors):
            if factor.kind == "operand" and factor.name == wrt:
                replaced = Factor("operand", tangent_name, factor.axes, (), factor.span)
                terms.append(term.with_factors(factors[:position] + (replaced,) + factors[position + 1 :]))
    derived = network.replace(
        name=name or f"{network.name}_jvp_{wrt}",
        operands=network.operands + (tangent,),
        output_name=f"tangent_{network.output_name}",
        terms=tuple(terms),
    )
    return verify(_declare_missing_sizes(derived))


def derive(mode: str, network: Network, wrt: str, name: str, span: Span | None = None) -> Network:
    """Build the network of ``network d = vjp(source, x)`` or ``jvp``: the lowering hook."""
    rules: dict[str, Callable[[Network, str, str | None], Network]] = {"vjp": vjp, "jvp": jvp}
    if mode not in rules:
        raise RewriteError(f"unknown derivative {mode!r}: expected vjp or jvp", span)
    try:
        derived = rules[mode](network, wrt, name)
    except RewriteError as error:
        if error.span is not None or span is None:
            raise
        raise RewriteError(error.message, span) from None
    return derived.replace(span=span or derived.span)


def occurs_in(network: Network, operand: str) -> bool:
    """Tell whether any term of ``network`` contains ``operand``, so its derivative is not zero."""
    return any(f.kind == "operand" and f.name == operand for term in network.terms for f in term.factors)


def primal_size_values(
    derived: Network, sizes: Mapping[str, int], given: Mapping[str, Any], spatial_dimensions: int | None
) -> dict[str, Any]:
    """Return values for the size hyper-parameters that :func:`vjp` added.

    ``sizes`` are the index sizes of the bound forward network, and ``given``
    the hyper-parameters already set. An index family gets one size per
    spatial dimension, as a tuple.
    """
    values: dict[str, Any] = {}
    declared = derived.hyper_defaults
    for declaration in derived.sizes:
        expression = declaration.expression
        if not isinstance(expression, sympy.Symbol):
            continue
        parameter = expression.name
        if parameter not in declared or parameter in given or declared[parameter] is not REQUIRED:
            continue
        index = declaration.index
        if is_family(index):
            if spatial_dimensions is None:
                raise RewriteError(f"the size of index family {index!r} needs the number of spatial dimensions")
            values[parameter] = tuple(sizes[f"{index[:-3]}{d + 1}"] for d in range(spatial_dimensions))
        else:
            values[parameter] = sizes[index]
    return values


def _differentiable_operand(network: Network, wrt: str) -> Operand:
    if wrt not in network.operand_names:
        raise RewriteError(
            f"network {network.name!r} has no operand {wrt!r} to differentiate by; its operands are"
            f" {', '.join(network.operand_names)} (constants such as index patterns have no derivative)",
            network.span,
        )
    if not occurs_in(network, wrt):
        raise RewriteError(
            f"operand {wrt!r} occurs in no term of network {network.name!r}, so its derivative is zero",
            network.span,
        )
    return network.operand(wrt)


def _fresh_name(base: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    if base not in taken:
        return base
    number = 1
    while f"{base}_{number}" in taken:
        number += 1
    return f"{base}_{number}"


class _IndexRenamer:
    """Fresh names for indices that would clash with the declared indices of the
    operand, shared by all terms, since an index name stands for one size in the
    whole network."""

    def __init__(self, network: Network):
        self.taken = set(network.all_indices())
        self.renamed: dict[str, str] = {}

    def fresh(self, index: str) -> str:
        if index not in self.renamed:
            base, suffix = (index[:-3], "...") if is_family(index) else (index, "")
            number = 1
            while f"{base}_{number}{suffix}" in self.taken:
                number += 1
            self.renamed[index] = f"{base}_{number}{suffix}"
            self.taken.add(self.renamed[index])
        return self.renamed[index]

    def declarations(self, terms: list[Term], operands: tuple[Operand, ...]) -> list[SizeDeclaration]:
        """Declare the size of each fresh index that no required operand carries
        on an axis of its own: it equals the size of the index it replaces."""
        required = {o.name for o in operands if not o.optional}
        carried = {
            axis[0]
            for term in terms
            for factor in term.factors
            if factor.kind == "operand" and factor.name in required
            for axis in factor.axes
            if len(axis) == 1
        }
        return [
            SizeDeclaration(new, size_symbol(old)) for old, new in self.renamed.items() if new not in carried
        ]


def _cut(
    term: Term, position: int, target: Operand, cotangent: Operand, renamer: _IndexRenamer, network: Network
) -> Term:
    """Return the VJP term of one occurrence of the operand: the occurrence is
    removed, its indices take the declared names, and the cotangent takes the
    output's place."""
    occurrence = term.factors[position]
    declared = [index for axis in target.axes for index in axis]

    # Map each index of the occurrence to the declared index at its place. An
    # index at several places is a diagonal, so its declared indices are tied
    # by a delta.
    renaming: dict[str, str] = {}
    diagonals: dict[str, list[str]] = {}
    for index, declared_index in zip(occurrence.indices, declared):
        if index in renaming:
            if is_family(index):
                raise RewriteError(
                    f"operand {target.name!r} is used with the index family {index!r} on two axes;"
                    " the derivative of such a diagonal needs a delta over families, which is not supported",
                    occurrence.span or network.span,
                )
            diagonals.setdefault(index, [renaming[index]]).append(declared_index)
        else:
            renaming[index] = declared_index
    for index in term.indices():
        if index not in renaming:
            renaming[index] = renamer.fresh(index) if index in declared else index

    factors = [_rename_factor(f, renaming) for number, f in enumerate(term.factors) if number != position]
    factors.extend(
        Factor("delta", "delta", tuple((i,) for i in indices), (), occurrence.span) for indices in diagonals.values()
    )
    factors.append(Factor("operand", cotangent.name, _rename_axes(network.output, renaming), (), None))
    return Term.from_factors(_rename_sizes(term.coefficient, renaming), factors, target.axes)


def _rename_axes(axes: tuple[Axis, ...], renaming: Mapping[str, str]) -> tuple[Axis, ...]:
    return tuple(tuple(renaming.get(index, index) for index in axis) for axis in axes)


def _rename_factor(factor: Factor, renaming: Mapping[str, str]) -> Factor:
    return Factor(factor.kind, factor.name, _rename_axes(factor.axes, renaming), factor.params, factor.span)


def _rename_sizes(expression: sympy.Expr, renaming: Mapping[str, str]) -> sympy.Expr:
    """Rename the indices of ``size(index)`` symbols in a coefficient."""
    substitutions = {}
    for symbol in expression.free_symbols:
        name = symbol.name
        if name.startswith("size(") and name.endswith(")") and name[5:-1] in renaming:
            substitutions[symbol] = size_symbol(renaming[name[5:-1]])
    return expression.xreplace(substitutions)


def _declare_missing_sizes(network: Network) -> Network:
    """Declare the size of every index that lost its source with the vanished
    terms or the cut operand, as a new required hyper-parameter ``<index>_size``."""
    taken = set(network.operand_names) | {h.name for h in network.hyper_parameters}
    hyper_parameters = list(network.hyper_parameters)
    sizes = list(network.sizes)
    for index in _indices_without_size(network):
        parameter = _fresh_name(f"{index.removesuffix('...')}_size", taken)
        taken.add(parameter)
        hyper_parameters.append(HyperParameter(parameter, REQUIRED, network.span))
        sizes.append(SizeDeclaration(index, hyper_symbol(parameter), network.span))
    return network.replace(sizes=tuple(sizes), hyper_parameters=tuple(hyper_parameters))


def _indices_without_size(network: Network) -> list[str]:
    """Return the indices whose size no required operand, size statement,
    grouped axis or index pattern read forwards gives.

    bind may also read a pattern backwards (input size from output size), but
    that is ambiguous when the stride is above 1. So a pattern's input index
    must get its size directly from an operand axis or a size statement,
    because bind solves grouped axes only after patterns.
    """
    required = {o.name for o in network.operands if not o.optional}
    uses: list[tuple[Axis, ...]] = [o.axes for o in network.operands if o.name in required]
    uses.extend(
        f.axes for term in network.terms for f in term.factors if f.kind == "operand" and f.name in required
    )
    # A transpose convolution's output padding can reach the stride, and then the
    # forward reading gives one output position more than the primal had.
    patterns = [
        tuple(axis[0] for axis in f.axes)
        for term in network.terms
        for f in term.factors
        if f.kind == "pattern" and f.param("output_padding", 0) == 0
    ]
    pattern_inputs = {input for _, _, input in patterns}

    known = {d.index for d in network.sizes}
    known.update(axis[0] for axes in uses for axis in axes if len(axis) == 1)
    groups = [axis for axes in uses for axis in axes if len(axis) > 1]
    changed = True
    while changed:
        changed = False
        for axis in groups:
            unknown = [index for index in axis if index not in known]
            if len(unknown) == 1 and unknown[0] not in pattern_inputs:
                known.add(unknown[0])
                changed = True
        for kernel, output, input in patterns:
            if kernel in known and input in known and output not in known | pattern_inputs:
                known.add(output)
                changed = True
    return [index for index in network.all_indices() if index not in known]
