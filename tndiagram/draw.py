"""Draw a network as a tensor diagram with Graphviz.

Tensors are nodes: operands and views as boxes, index patterns as inverted
triangles labelled with their stride, padding and dilation, other constants
as ellipses. An index carried by two tensors is an edge labelled with its
name; an index carried by three or more tensors, or by one tensor alone
(summed inside it), meets at a dot. An index of the output is a loose leg
ending at its name. Edges of index patterns are drawn bold and orange. Each term of a sum is a cluster labelled with its
coefficient. Rendering SVG or PNG needs the Graphviz ``dot`` program.
"""

from __future__ import annotations

from pathlib import Path

import graphviz
import sympy

from .errors import TNError
from .ir import Factor, Network, Term
from .printer import format_axes

__all__ = ["diagram", "render", "svg"]

PATTERN_STYLE = {"shape": "invtriangle", "style": "filled", "fillcolor": "#fde3a7", "margin": "0.02"}
CONSTANT_STYLE = {"shape": "ellipse", "style": "filled", "fillcolor": "#e4e4e4", "fontsize": "10"}
OPERAND_STYLE = {"shape": "box", "style": "filled,rounded", "fillcolor": "#cfe2f3"}
VIEW_STYLE = {"shape": "box", "style": "filled,rounded,dashed", "fillcolor": "#d9ead3"}


def _pattern_parameters(factor: Factor) -> str:
    params = dict(factor.params)
    return " ".join(f"{key[0]}={params[key]}" for key in ("stride", "padding", "dilation") if key in params)


def _label(factor: Factor) -> str:
    if factor.kind == "pattern":
        return "Π"
    if factor.kind == "view":
        steps = "\n".join(str(step) for step in factor.param("steps"))
        return f"{factor.name}\n{steps}"
    if factor.kind == "constant":
        members = " ".join(member.kind for member in factor.param("factors"))
        return f"C\n({members})"
    if factor.kind == "delta":
        return "δ"
    if factor.kind == "ones":
        return "1"
    return factor.name


def _style(factor: Factor) -> dict[str, str]:
    if factor.kind == "pattern":
        return PATTERN_STYLE
    if factor.kind == "view":
        return VIEW_STYLE
    if factor.kind == "operand":
        return OPERAND_STYLE
    return CONSTANT_STYLE


def _add_term(graph: graphviz.Graph, term: Term, prefix: str, output: tuple[str, ...]) -> None:
    factors = term.factors
    ends: dict[str, list[tuple[str, str]]] = {}
    for number, factor in enumerate(factors):
        node = f"{prefix}t{number}"
        extra = {"xlabel": _pattern_parameters(factor), "fontsize": "10"} if factor.kind == "pattern" else {}
        graph.node(node, _label(factor), **_style(factor), **extra)
        for place, index in enumerate(factor.indices):
            role = ""
            if factor.kind == "pattern":
                role = ("kernel ", "output ", "input ")[place]
            ends.setdefault(index, []).append((node, role))
    legs = set()
    for index in output:
        # An output index that no factor of this term carries is broadcast: no leg.
        if index in ends:
            leg = f"{prefix}leg_{index}"
            graph.node(leg, index, shape="plaintext", fontcolor="#444444")
            ends[index].append((leg, ""))
            legs.add(index)
    for index, places in ends.items():
        pattern_edge = any(role for _, role in places)
        style = {"style": "bold", "color": "#b45f06"} if pattern_edge else {}
        if len(places) == 2:
            (a, _), (b, _) = places
            graph.edge(a, b, label="" if index in legs else index, **style)
        else:
            dot = f"{prefix}dot_{index}"
            graph.node(dot, "", shape="point", width="0.09", xlabel=index, fontsize="10")
            for node, _ in places:
                graph.edge(node, dot, **style)


def diagram(network: Network) -> graphviz.Graph:
    """Return the Graphviz graph of a network, one cluster per term."""
    graph = graphviz.Graph(network.name, graph_attr={"rankdir": "LR", "fontname": "Helvetica"})
    graph.attr("node", fontname="Helvetica")
    graph.attr("edge", fontname="Helvetica", fontsize="10")
    output = tuple(index for axis in network.output for index in axis)
    title = f"{network.name}: {network.output_name}{format_axes(network.output)}"
    for number, term in enumerate(network.terms):
        coefficient = sympy.sstr(term.coefficient)
        label = f"term {number + 1}" + ("" if term.coefficient == 1 else f", × {coefficient}")
        with graph.subgraph(name=f"cluster_{number}") as cluster:
            cluster.attr(label=label, style="rounded", color="#999999")
            _add_term(cluster, term, f"term{number}_", output)
    graph.attr(label=title, labelloc="t")
    return graph


def svg(network: Network) -> str:
    """Return the network's diagram as SVG text."""
    return diagram(network).pipe(format="svg").decode("utf-8")


def render(network: Network, path: str | Path) -> Path:
    """Write the network's diagram to ``path``; the suffix (.svg or .png) picks the format."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("svg", "png"):
        raise TNError(f"cannot draw to {str(path)!r}: the file name must end in .svg or .png")
    try:
        data = diagram(network).pipe(format=suffix)
    except graphviz.ExecutableNotFound as error:
        raise TNError("drawing needs the Graphviz program 'dot': install Graphviz (apt-get install graphviz)") from error
    path.write_bytes(data)
    return path
