"""The intermediate representation: a Network is a sum of terms, each term a
scalar coefficient times one tensor network stored as a bipartite networkx graph.

Graph nodes are of two kinds:

* tensor nodes, ids ``"t0"``, ``"t1"``, … in factor order, plus one ``"output"``
  node. Attributes: ``kind`` (``"operand"``, ``"pattern"``, ``"delta"``,
  ``"ones"``, ``"output"``, or, only in rewritten networks, ``"view"`` and
  ``"constant"``), ``name`` (the operand name, or the kind for a constant), ``axes`` (a tuple of axes; an axis is a tuple of index names, more
  than one for a group such as ``(g c)``), ``params`` (a pattern's
  hyper-parameters as sorted ``(name, value)`` pairs) and ``span`` (the source).
* index nodes, ids ``("index", name)``. Attribute ``family`` is true for an
  index family such as ``i...``, which stands for one index per spatial
  dimension until :func:`tndiagram.bind.expand_families` replaces it.

An edge joins a tensor node and each index it carries; its ``positions``
attribute lists the axes (and places inside a group) where the index sits. An
index that joins three or more tensors, or a tensor and the output, is an
ordinary hyper-edge: one index node with several edges.

The rewrite passes of :mod:`tndiagram.rewrites` add two kinds. A ``"view"``
factor is an operand read through a chain of :class:`ViewStep` (slices,
windows, reshapes), stored in ``params`` as ``source`` (the axes of the
operand) and ``steps``; its ``axes`` are single indices. A ``"constant"``
factor is a precomputed tensor: the contraction of the constant factors in
``params["factors"]`` down to its ``axes``. An operand factor of a rewritten
network may also split a declared axis into a group of several indices, which
reads the operand reshaped.
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
    "ViewStep",
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
CONSTANT_KINDS = ("pattern", "delta", "ones", "constant")
VIEW_STEP_KINDS = ("slice", "unfold", "split", "merge", "select")


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


@dataclass(frozen=True)
class ViewStep:
    """One step of a view: it replaces the ``source`` dimensions of a tensor,
    in place, by the ``target`` dimensions.

    Kinds, with positions outside the source read as zero:

    * ``slice``: ``source = (i,)``, ``target = (o,)``; ``out[o] = in[start + step·o]``.
    * ``unfold``: ``source = (i,)``, ``target = (o, k)``;
      ``out[o, k] = in[start + step·o + dilation·k]``.
    * ``split``: ``source = (i,)``, ``target = (a, b)``; ``out[a, b] = in[a·size(b) + b]``.
    * ``merge``: ``source = (a, b)``, adjacent, ``target = (m,)``; the inverse of split.
    * ``select``: ``source = (i,)``, ``target = ()``; ``out = in[start]``.
    """

    kind: str
    source: tuple[str, ...]
    target: tuple[str, ...]
    start: int = 0
    step: int = 1
    dilation: int = 1

    def __str__(self) -> str:
        if self.kind == "slice":
            return f"{self.source[0]} = {_affine(((self.step, self.target[0]),), self.start)}"
        if self.kind == "unfold":
            terms = ((self.step, self.target[0]), (self.dilation, self.target[1]))
            return f"{self.source[0]} = {_affine(terms, self.start)}"
        if self.kind == "split":
            return f"{self.source[0]} = ({' '.join(self.target)})"
        if self.kind == "merge":
            return f"({' '.join(self.source)}) = {self.target[0]}"
        return f"{self.source[0]} = {self.start}"


def _affine(terms: tuple[tuple[int, str], ...], constant: int) -> str:
    """Return ``2*o + k - 1`` for terms ((2, 'o'), (1, 'k')) and constant -1."""
    text = " + ".join(name if factor == 1 else f"{factor}*{name}" for factor, name in terms)
    if constant > 0:
        text += f" + {constant}"
    elif constant < 0:
        text += f" - {-constant}"
    return text


def apply_view_steps(indices: tuple[str, ...], steps: Iterable[ViewStep]) -> tuple[str, ...]:
    """Return the dimensions left after applying ``steps`` to dimensions ``indices``.

    Raises :class:`IRError` if a step's source dimensions are not present (and
    adjacent, in order) or its target dimensions clash with present ones.
    """
    dims = list(indices)
    for step in steps:
        if step.kind not in VIEW_STEP_KINDS:
            raise IRError(f"unknown view step kind {step.kind!r}")
        expected = {"slice": (1, 1), "unfold": (1, 2), "split": (1, 2), "merge": (2, 1), "select": (1, 0)}[step.kind]
        if (len(step.source), len(step.target)) != expected:
            raise IRError(f"view step {step.kind} needs {expected[0]} source and {expected[1]} target indices")
        first = step.source[0]
        if first not in dims or tuple(dims[dims.index(first) : dims.index(first) + len(step.source)]) != step.source:
            raise IRError(f"view step {step} needs the dimensions {step.source} in order, but the view has {tuple(dims)}")
        remaining = [d for d in dims if d not in step.source]
        if any(t in remaining for t in step.target) or len(set(step.target)) != len(step.target):
            raise IRError(f"view step {step} makes an index that the view already has")
        position = dims.index(first)
        dims[position : position + len(step.source)] = list(step.target)
    return tuple(dims)


def _exact(expression: sympy.Expr) -> sympy.Expr:
    """Return an expression with its floats turned into rationals, if it has any."""
    if expression.has(sympy.Float):
        return sympy.nsimplify(expression)
    return expression


class Term:
    """A scalar coefficient times one tensor network (a bipartite networkx graph)."""

    def __init__(self, coefficient: sympy.Expr, graph: nx.Graph):
        self.coefficient = sympy.sympify(coefficient)
        self.graph = graph
        self._canonical: tuple | None = None

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
        # Lowering and binding keep coefficients exact (rationals, not floats),
        # so the printed form compares them without sympy's slow nsimplify.
        if self._canonical is None:
            self._canonical = (
                sympy.srepr(_exact(self.coefficient)),
                tuple(sorted(f.sort_key() for f in self.factors)),
            )
        return self._canonical

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
        """Return every index name of the network, in the order it first appears."""
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

    def _repr_svg_(self) -> str:
        """Draw the network for Jupyter (needs Graphviz, see :mod:`tndiagram.draw`)."""
        from .draw import svg

        return svg(self)

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
            if data["kind"] in ("operand", "view"):
                if data["name"] not in operand_names:
                    raise IRError(f"{where}: tensor {data['name']!r} is not an operand of the network")
                declared = network.operand(data["name"]).axes
                used = data["axes"] if data["kind"] == "operand" else dict(data["params"]).get("source", ())
                # A rewrite may split a declared axis into a group, so only the rank must match.
                if len(declared) != len(used):
                    raise IRError(
                        f"{where}: operand {data['name']!r} is used with axes {used},"
                        f" which do not match its declaration {declared}"
                    )
                if data["kind"] == "view":
                    _verify_view(where, data)
            elif data["kind"] == "pattern" and len(data["axes"]) != 3:
                raise IRError(f"{where}: an index pattern needs 3 axes (kernel, output, input)")
            elif data["kind"] == "delta" and len(data["axes"]) < 2:
                raise IRError(f"{where}: a Kronecker delta needs at least 2 axes")
            elif data["kind"] == "ones" and len(data["axes"]) != 1:
                raise IRError(f"{where}: an all-ones vector needs 1 axis")
            elif data["kind"] == "constant":
                _verify_constant(where, data)
            elif data["kind"] not in ("operand", "output", "view") + CONSTANT_KINDS:
                raise IRError(f"{where}: unknown tensor kind {data['kind']!r}")
        for node, data in graph.nodes(data=True):
            if data["kind"] == "index" and graph.degree(node) == 0:
                raise IRError(f"{where}: index {data['name']!r} touches no tensor")
    return network


def _verify_view(where: str, data: dict) -> None:
    params = dict(data["params"])
    source = tuple(index for axis in params.get("source", ()) for index in axis)
    if any(len(axis) != 1 for axis in data["axes"]):
        raise IRError(f"{where}: a view of {data['name']!r} must have single-index axes, got {data['axes']}")
    result = apply_view_steps(source, params.get("steps", ()))
    if result != tuple(axis[0] for axis in data["axes"]):
        raise IRError(f"{where}: the steps of the view of {data['name']!r} give {result}, not its axes {data['axes']}")


def _verify_constant(where: str, data: dict) -> None:
    params = dict(data["params"])
    members = params.get("factors", ())
    if not members or not all(isinstance(m, Factor) and m.is_constant for m in members):
        raise IRError(f"{where}: a precomputed constant needs one or more constant factors")
    if any(len(axis) != 1 for axis in data["axes"]):
        raise IRError(f"{where}: a precomputed constant must have single-index axes, got {data['axes']}")
    carried = {index for member in members for index in member.indices}
    missing = [axis[0] for axis in data["axes"] if axis[0] not in carried]
    if missing:
        raise IRError(f"{where}: a precomputed constant has index {missing[0]!r}, which none of its factors carries")
