"""The intermediate representation: a Network is a sum of terms, each term a
scalar coefficient times one tensor network stored as a bipartite networkx graph.

Graph nodes are of two kinds:

* tensor nodes, ids ``"t0"``, ``"t1"``, … in factor order, plus one ``"output"``
  node. Attributes: ``kind`` (``"operand"``, ``"pattern"``, ``"delta"``,
  ``"ones"`` or ``"output"``), ``name`` (the operand name, or the kind for a
  constant), ``axes`` (a tuple of axes; an axis is a tuple of index names, more
  than one for a group such as ``(g c)``), ``params`` (a pattern's
  hyper-parameters as sorted ``(name, value)`` pairs) and ``span`` (the source).
* index nodes, ids ``("index", name)``. Attribute ``family`` is true for an
  index family such as ``i...``, which stands for one index per spatial
  dimension until :func:`tndiagram.bind.expand_families` replaces it.

An edge joins a tensor node and each index it carries; its ``positions``
attribute lists the axes (and places inside a group) where the index sits. An
index that joins three or more tensors, or a tensor and the output, is an
ordinary hyper-edge: one index node with several edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import networkx as nx
import sympy

from .errors import Span, TNError

__all__ = [
    "Axis",
    "REQUIRED",
    "HyperReference",
    "Operand",
    "HyperParameter",
    "SizeDeclaration",
    "Factor",
    "Term",
    "Network",
    "IRError",
    "size_symbol",
    "hyper_symbol",
    "is_family",
    "verify",
]

Axis = tuple[str, ...]
FAMILY_SUFFIX = "..."
CONSTANT_KINDS = ("pattern", "delta", "ones")


class IRError(TNError):
    """A network that breaks an invariant of the IR: a compiler bug, or a
    network built by hand that :func:`verify` rejects."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()
"""Default of a hyper-parameter that the caller must set."""


def is_family(index: str) -> bool:
    """Tell whether ``index`` names an index family such as ``i...``."""
    return index.endswith(FAMILY_SUFFIX)


def size_symbol(index: str) -> sympy.Symbol:
    """Return the sympy symbol for the size of ``index``, printed ``size(index)``."""
    return sympy.Symbol(f"size({index})", positive=True, integer=True)


def hyper_symbol(name: str, element: int | None = None) -> sympy.Symbol:
    """Return the sympy symbol of a hyper-parameter, or of one element of it."""
    return sympy.Symbol(name if element is None else f"{name}[{element}]")


@dataclass(frozen=True)
class HyperReference:
    """A pattern argument that reads a hyper-parameter, or one element of it."""

    name: str
    element: int | None = None

    def __str__(self) -> str:
        return self.name if self.element is None else f"{self.name}[{self.element}]"


@dataclass(frozen=True)
class Operand:
    """A tensor that the caller passes, with the axes declared in the signature."""

    name: str
    axes: tuple[Axis, ...]
    optional: bool = False
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class HyperParameter:
    """A named compile-time value (stride, groups, …) with an optional default."""

    name: str
    default: Any = REQUIRED
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SizeDeclaration:
    """``size index = expression``: the size of an index as a sympy expression."""

    index: str
    expression: sympy.Expr
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Factor:
    """One tensor of a term: an operand or a constant, with the indices on each axis."""

    kind: str
    name: str
    axes: tuple[Axis, ...]
    params: tuple[tuple[str, Any], ...] = ()
    span: Span | None = field(default=None, compare=False)

    @property
    def indices(self) -> tuple[str, ...]:
        """All index names on this factor, in axis order, groups flattened."""
        return tuple(index for axis in self.axes for index in axis)

    @property
    def is_constant(self) -> bool:
        return self.kind in CONSTANT_KINDS

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    def sort_key(self) -> tuple:
        return (self.kind, self.name, self.axes, tuple((k, repr(v)) for k, v in self.params))


class Term:
    """A scalar coefficient times one tensor network (a bipartite networkx graph)."""

    def __init__(self, coefficient: sympy.Expr, graph: nx.Graph):
        self.coefficient = sympy.sympify(coefficient)
        self.graph = graph

    @classmethod
    def from_factors(
        cls, coefficient: sympy.Expr, factors: Iterable[Factor], output: tuple[Axis, ...]
    ) -> "Term":
        """Build a term's graph from its factors and the network's output axes."""
        graph = nx.Graph()
        nodes = [(f"t{number}", factor) for number, factor in enumerate(factors)]
        nodes.append(("output", Factor("output", "output", output)))
        for node, factor in nodes:
            graph.add_node(
                node,
                kind=factor.kind,
                name=factor.name,
                axes=factor.axes,
                params=factor.params,
                span=factor.span,
            )
            for axis_number, axis in enumerate(factor.axes):
                for place, index in enumerate(axis):
                    index_node = ("index", index)
                    if index_node not in graph:
                        graph.add_node(index_node, kind="index", name=index, family=is_family(index))
                    if graph.has_edge(node, index_node):
                        graph.edges[node, index_node]["positions"].append((axis_number, place))
                    else:
                        graph.add_edge(node, index_node, positions=[(axis_number, place)])
        return cls(coefficient, graph)

    @property
    def factors(self) -> tuple[Factor, ...]:
        """The tensors of this term in order, the output node excluded."""
        nodes = sorted(
            (node for node, data in self.graph.nodes(data=True) if data["kind"] not in ("index", "output")),
            key=lambda node: int(node[1:]),
        )
        return tuple(self._factor(node) for node in nodes)

    @property
    def output(self) -> tuple[Axis, ...]:
        return self.graph.nodes["output"]["axes"]

    def _factor(self, node: str) -> Factor:
        data = self.graph.nodes[node]
        return Factor(data["kind"], data["name"], data["axes"], data["params"], data["span"])

    def indices(self) -> list[str]:
        """Index names of this term, in the order they first appear."""
        seen: dict[str, None] = {}
        for factor in self.factors:
            seen.update(dict.fromkeys(factor.indices))
        seen.update(dict.fromkeys(index for axis in self.output for index in axis))
        return list(seen)

    def with_factors(self, factors: Iterable[Factor], coefficient: sympy.Expr | None = None) -> "Term":
        """Return a copy of this term with other factors (and coefficient)."""
        return Term.from_factors(
            self.coefficient if coefficient is None else coefficient, factors, self.output
        )

    def canonical(self) -> tuple:
        return (sympy.srepr(sympy.nsimplify(self.coefficient)), tuple(sorted(f.sort_key() for f in self.factors)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Term):
            return NotImplemented
        return self.canonical() == other.canonical()

    def __hash__(self) -> int:
        return hash(self.canonical())

    def __repr__(self) -> str:
        return f"Term({self.coefficient}, {[f'{f.name}{list(f.axes)}' for f in self.factors]})"


@dataclass(frozen=True, eq=False)
class Network:
    """A named tensor network: its signature and a sum of terms.

    ``str(network)`` writes it back as diagram text, and parsing that text
    gives an equal network.
    """

    name: str
    operands: tuple[Operand, ...]
    hyper_parameters: tuple[HyperParameter, ...]
    sizes: tuple[SizeDeclaration, ...]
    output_name: str
    output: tuple[Axis, ...]
    terms: tuple[Term, ...]
    span: Span | None = None

    def operand(self, name: str) -> Operand:
        for operand in self.operands:
            if operand.name == name:
                return operand
        raise KeyError(name)

    @property
    def operand_names(self) -> tuple[str, ...]:
        return tuple(operand.name for operand in self.operands)

    @property
    def hyper_defaults(self) -> dict[str, Any]:
        return {h.name: h.default for h in self.hyper_parameters}

    def has_families(self) -> bool:
        return any(is_family(index) for index in self.all_indices())

    def all_indices(self) -> list[str]:
        """Every index name of the network, in the order it first appears."""
        seen: dict[str, None] = {}
        for operand in self.operands:
            seen.update(dict.fromkeys(i for axis in operand.axes for i in axis))
        seen.update(dict.fromkeys(i for axis in self.output for i in axis))
        for declaration in self.sizes:
            seen[declaration.index] = None
        for term in self.terms:
            seen.update(dict.fromkeys(term.indices()))
        return list(seen)

    def replace(self, **changes: Any) -> "Network":
        """Return a copy with some fields changed (the network itself is immutable)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields.update(changes)
        return Network(**fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Network):
            return NotImplemented
        return (
            self.name == other.name
            and self.operands == other.operands
            and self.hyper_parameters == other.hyper_parameters
            and sorted((d.index, sympy.srepr(d.expression)) for d in self.sizes)
            == sorted((d.index, sympy.srepr(d.expression)) for d in other.sizes)
            and self.output_name == other.output_name
            and self.output == other.output
            and sorted(t.canonical() for t in self.terms) == sorted(t.canonical() for t in other.terms)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.operands, self.output))

    def __str__(self) -> str:
        from .printer import format_network

        return format_network(self)

    def __repr__(self) -> str:
        return f"<Network {self.name}: {len(self.terms)} term(s), operands {', '.join(self.operand_names)}>"


def _iter_tensor_nodes(graph: nx.Graph) -> Iterator[tuple[Any, dict]]:
    for node, data in graph.nodes(data=True):
        if data["kind"] != "index":
            yield node, data


def verify(network: Network) -> Network:
    """Check the invariants of the IR and return the network unchanged.

    Raises :class:`IRError` naming the first broken invariant. Tests run this
    after every compiler stage, so that a malformed graph fails where it was made.
    """
    operand_names = set(network.operand_names)
    if len(operand_names) != len(network.operands):
        raise IRError(f"network {network.name!r} declares an operand twice")
    if not network.terms:
        raise IRError(f"network {network.name!r} has no terms")
    for number, term in enumerate(network.terms):
        where = f"network {network.name!r}, term {number}"
        graph = term.graph
        if not nx.is_bipartite(graph):
            raise IRError(f"{where}: the graph is not bipartite")
        if "output" not in graph or graph.nodes["output"]["axes"] != network.output:
            raise IRError(f"{where}: the output node is missing or has other axes than the network")
        if not isinstance(term.coefficient, sympy.Expr):
            raise IRError(f"{where}: the coefficient {term.coefficient!r} is not a sympy expression")
        for node, data in _iter_tensor_nodes(graph):
            expected: dict[str, list] = {}
            for axis_number, axis in enumerate(data["axes"]):
                if not axis:
                    raise IRError(f"{where}: tensor {data['name']!r} has an empty axis")
                for place, index in enumerate(axis):
                    expected.setdefault(index, []).append((axis_number, place))
            actual = {graph.nodes[n]["name"]: graph.edges[node, n]["positions"] for n in graph[node]}
            if actual != expected:
                raise IRError(f"{where}: the edges of tensor {data['name']!r} do not match its axes")
            if data["kind"] == "operand":
                if data["name"] not in operand_names:
                    raise IRError(f"{where}: tensor {data['name']!r} is not an operand of the network")
                declared = network.operand(data["name"]).axes
                if [len(a) for a in declared] != [len(a) for a in data["axes"]]:
                    raise IRError(
                        f"{where}: operand {data['name']!r} is used with axes {data['axes']},"
                        f" which do not match its declaration {declared}"
                    )
            elif data["kind"] == "pattern" and len(data["axes"]) != 3:
                raise IRError(f"{where}: an index pattern needs 3 axes (kernel, output, input)")
            elif data["kind"] == "delta" and len(data["axes"]) < 2:
                raise IRError(f"{where}: a Kronecker delta needs at least 2 axes")
            elif data["kind"] == "ones" and len(data["axes"]) != 1:
                raise IRError(f"{where}: an all-ones vector needs 1 axis")
            elif data["kind"] not in ("operand", "output") + CONSTANT_KINDS:
                raise IRError(f"{where}: unknown tensor kind {data['kind']!r}")
        for node, data in graph.nodes(data=True):
            if data["kind"] == "index" and graph.degree(node) == 0:
                raise IRError(f"{where}: index {data['name']!r} touches no tensor")
    return network
