"""Write a :class:`~tndiagram.ir.Network` back as diagram text that parses to an equal network.

A rewritten network may hold views and precomputed constants, which the
grammar has no syntax for. They print readably but do not parse: a view as
``x{i1 = 2*o1 + j1 - 1}[n, c, o1, j1]`` (the operand, how its source indices
follow from the new ones, the resulting axes) and a constant as
``constant{pattern[j1, o1, i1](...)}[j1, i1]`` (the factors it contracts and
the axes it keeps). Such a network prints with a comment line that states this.
"""

from __future__ import annotations

from typing import Any

import sympy

from .ir import REQUIRED, Axis, Factor, HyperReference, Network, Term

__all__ = ["format_network", "format_axes", "format_value", "format_factor", "format_term"]

LINE_WIDTH = 88


def format_axes(axes: tuple[Axis, ...]) -> str:
    """Return ``[n, (g c), i...]`` for a tuple of axes."""
    return "[" + ", ".join(axis[0] if len(axis) == 1 else "(" + " ".join(axis) + ")" for axis in axes) + "]"


def format_value(value: Any) -> str:
    """Return a hyper-parameter value as diagram text: 2, 'same', (1, 2), none."""
    if isinstance(value, HyperReference):
        return str(value)
    if value is None:
        return "none"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, tuple):
        inner = ", ".join(format_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return str(value)


def format_factor(factor: Factor, declared: dict[str, tuple[Axis, ...]] | None = None) -> str:
    """Return one factor as text; an operand with its declared axes prints as its name."""
    if factor.kind == "operand" and declared is not None and declared.get(factor.name) == factor.axes:
        return factor.name
    if factor.kind == "view":
        source = format_axes(factor.param("source"))
        steps = "; ".join(str(step) for step in factor.param("steps"))
        return f"{factor.name}{source}{{{steps}}}{format_axes(factor.axes)}"
    if factor.kind == "constant":
        members = " * ".join(format_factor(member) for member in factor.param("factors"))
        return f"constant{{{members}}}{format_axes(factor.axes)}"
    if factor.kind == "pattern":
        arguments = ", ".join(f"{key}={format_value(value)}" for key, value in factor.params)
        return f"pattern{format_axes(factor.axes)}({arguments})"
    return f"{factor.name}{format_axes(factor.axes)}"


def _format_coefficient(coefficient: sympy.Expr) -> str:
    text = sympy.sstr(coefficient)
    if coefficient.is_Atom or text.startswith("size(") and text.endswith(")") and "*" not in text:
        return text
    return f"({text})"


def format_term(term: Term, declared: dict[str, tuple[Axis, ...]] | None = None) -> str:
    """Return one term as ``coefficient * factor * factor``."""
    parts = [format_factor(f, declared) for f in term.factors]
    if term.coefficient != 1 or not parts:
        parts.insert(0, _format_coefficient(term.coefficient))
    return " * ".join(parts)


def format_network(network: Network) -> str:
    """Return the diagram text of a network."""
    operands = [
        f"{o.name}{'?' if o.optional else ''}{format_axes(o.axes)}" for o in network.operands
    ]
    hyper = [
        h.name if h.default is REQUIRED else f"{h.name}={format_value(h.default)}"
        for h in network.hyper_parameters
    ]
    signature = ", ".join(operands)
    if hyper:
        signature += "; " + ", ".join(hyper)
    lines = []
    if any(f.kind in ("view", "constant") for term in network.terms for f in term.factors):
        lines.append("# Rewritten network: its views x{...}[...] and constants constant{...}[...] do not parse.")
    lines.append(f"network {network.name}({signature}) {{")
    for declaration in network.sizes:
        lines.append(f"    size {declaration.index} = {sympy.sstr(declaration.expression)}")
    head = f"    {network.output_name}{format_axes(network.output)} ="
    declared = {o.name: o.axes for o in network.operands}
    terms = [format_term(t, declared) for t in network.terms]
    one_line = head + " " + " + ".join(terms)
    if len(one_line) <= LINE_WIDTH:
        lines.append(one_line)
    else:
        lines.append(head)
        lines.append("        " + terms[0])
        lines.extend("        + " + term for term in terms[1:])
    lines.append("}")
    return "\n".join(lines)
