"""Describe networks for people: symbolic index sizes, terms and planned costs."""

from __future__ import annotations

from typing import Any

import sympy

from . import sizes as size_rules
from .bind import BoundNetwork
from .ir import HyperReference, Network, hyper_symbol, is_family, size_symbol
from .plan import ContractionPlan
from .printer import format_axes, format_term

__all__ = ["symbolic_sizes", "describe"]


def _symbolic_parameter(value: Any) -> Any:
    if isinstance(value, HyperReference):
        return hyper_symbol(value.name, value.element)
    return value


def symbolic_sizes(network: Network) -> dict[str, sympy.Expr]:
    """Return each index's size as a sympy expression of operand sizes and hyper-parameters.

    An index on an operand axis of its own keeps its free symbol ``size(index)``;
    ``size`` statements and index patterns give expressions. For a pattern whose
    padding is a hyper-parameter, the expression assumes an integer padding.
    """
    result: dict[str, sympy.Expr] = {}
    for declaration in network.sizes:
        result[declaration.index] = declaration.expression
    for term in network.terms:
        for factor in term.factors:
            if factor.kind != "pattern":
                continue
            kernel, output, input = (axis[0] for axis in factor.axes)
            if output in result:
                continue
            params = {key: _symbolic_parameter(value) for key, value in factor.params}
            padding = params.get("padding", 0)
            if isinstance(padding, tuple) and not all(isinstance(p, int) for p in padding):
                padding = 0
            result[output] = size_rules.output_size_expression(
                result.get(input, size_symbol(input)),
                result.get(kernel, size_symbol(kernel)),
                params.get("stride", 1),
                padding,
                params.get("dilation", 1),
            )
    for index in network.all_indices():
        result.setdefault(index, size_symbol(index))
    return {index: result[index] for index in network.all_indices()}


def describe(
    network: Network,
    bound: BoundNetwork | None = None,
    plan: ContractionPlan | None = None,
    hyper: dict[str, Any] | None = None,
) -> str:
    """Return a report of a network: indices, tensors, terms and, when planned, its cost.

    ``hyper`` contains the hyper-parameter values that the caller set; the others show their defaults.
    """
    hyper = hyper or {}
    lines = [f"network {network.name}"]
    lines.append(
        "  operands: "
        + ", ".join(f"{o.name}{'?' if o.optional else ''}{format_axes(o.axes)}" for o in network.operands)
    )
    if network.hyper_parameters:
        lines.append(
            "  hyper-parameters: "
            + ", ".join(f"{h.name}={hyper.get(h.name, h.default)!r}" for h in network.hyper_parameters)
        )
    lines.append(f"  output: {network.output_name}{format_axes(network.output)}")
    lines.append("  indices:")
    sizes = symbolic_sizes(network)
    for index, size in sizes.items():
        kind = "family" if is_family(index) else "index"
        lines.append(f"    {index:<8} {kind:<6} size {sympy.sstr(size)}")
    declared = {o.name: o.axes for o in network.operands}
    lines.append("  terms:")
    for number, term in enumerate(network.terms, start=1):
        constants = sum(1 for f in term.factors if f.is_constant)
        lines.append(
            f"    {number}. {format_term(term, declared)}"
            f"    ({len(term.factors)} tensors, {constants} constant)"
        )
    if bound is not None and plan is not None:
        lines.append("  bound sizes: " + ", ".join(f"{i}={s}" for i, s in bound.sizes.items()))
        lines.append("  contraction path:")
        for number, term in enumerate(plan.terms, start=1):
            lines.append(
                f"    term {number}: {len(term.steps)} step(s) ({term.strategy}), {term.flops:,} FLOPs,"
                f" largest intermediate {term.largest_intermediate:,} elements"
            )
            for step in term.steps:
                inputs = ", ".join(f"[{' '.join(indices)}]" for indices in step.inputs)
                lines.append(f"      {inputs} -> [{' '.join(step.output)}]")
        lines.append(f"  total: {plan.flops:,} FLOPs, largest intermediate {plan.largest_intermediate:,} elements")
    else:
        lines.append("  contraction path: give operand shapes (--shape NAME=SIZES) to plan it")
    return "\n".join(lines)
