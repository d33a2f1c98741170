"""Lower Lark syntax trees to :class:`~tndiagram.ir.Network` objects.

Lowering resolves names (operands, hyper-parameters, other networks), expands
products of sums into a sum of terms, inlines calls of other networks with
fresh names for their inner indices, and checks what can be checked before any
size is known: every index has a source for its size, patterns have valid
literal hyper-parameters, and divisors are scalars.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass
from typing import Any, Callable

import lark
import sympy

from . import sizes as size_rules
from .autodiff import derive as derive_network
from .errors import DiagramError, Span
from .ir import (
    REQUIRED,
    Axis,
    Factor,
    HyperParameter,
    HyperReference,
    Network,
    Operand,
    SizeDeclaration,
    Term,
    hyper_symbol,
    is_family,
    size_symbol,
    verify,
)
from .parser import KEYWORDS, parse_tree, span_of

__all__ = ["Program", "lower_program", "parse", "load"]

MAX_EXPONENT = 1024
PATTERN_ARGUMENTS = ("stride", "padding", "dilation", "output_padding")

# A lowered expression: a sum of (coefficient, factors) products.
Expression = list[tuple[sympy.Expr, list[Factor]]]


class Program(dict):
    """The networks of one diagram file, by name, in file order."""

    def __init__(self, networks: dict[str, Network], file: str):
        super().__init__(networks)
        self.file = file

    def __str__(self) -> str:
        return "\n\n".join(str(network) for network in self.values()) + "\n"

    def __missing__(self, name: str) -> Network:
        known = ", ".join(self) or "none"
        raise KeyError(f"no network named {name!r} in {self.file}; the file defines: {known}")


def parse(text: str, file: str = "<string>", derive: Callable | None = derive_network) -> Program:
    """Parse diagram text and return its networks by name.

    ``derive(mode, source, wrt, name, span)`` builds the networks that
    ``network d = vjp(source, x)`` and ``jvp`` define.
    """
    return lower_program(parse_tree(text, file), text, file, derive)


def load(path: str, derive: Callable | None = derive_network) -> Program:
    """Read and parse a diagram file."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return parse(text, str(path), derive)


def lower_program(tree: lark.Tree, text: str, file: str, derive: Callable | None = None) -> Program:
    """Lower every network of a parsed file, resolving calls between networks."""
    return _ProgramLowerer(tree, text, file, derive).run()


class _ProgramLowerer:
    def __init__(self, tree: lark.Tree, text: str, file: str, derive: Callable | None):
        self.lines = text.splitlines()
        self.file = file
        self.derive = derive
        self.trees: dict[str, lark.Tree] = {}
        self.networks: dict[str, Network] = {}
        self.in_progress: list[str] = []
        for network_tree in tree.children:
            name_token = network_tree.children[0]
            if name_token in self.trees:
                raise DiagramError(
                    f"network {str(name_token)!r} is defined twice", self.span(name_token)
                )
            self.trees[str(name_token)] = network_tree

    def span(self, item: Any) -> Span:
        meta = item.meta if isinstance(item, lark.Tree) else item
        return span_of(meta, self.lines, self.file)

    def run(self) -> Program:
        for name in self.trees:
            self.network(name)
        return Program({name: self.networks[name] for name in self.trees}, self.file)

    def network(self, name: str, use: Any = None) -> Network:
        """Return the lowered network ``name``, lowering it (and what it calls) first."""
        if name in self.networks:
            return self.networks[name]
        if name not in self.trees:
            known = ", ".join(sorted(self.trees)) or "none"
            raise DiagramError(
                f"unknown network {name!r}: the file defines {known}", self.span(use) if use else None
            )
        if name in self.in_progress:
            cycle = " -> ".join(self.in_progress[self.in_progress.index(name):] + [name])
            raise DiagramError(f"networks call each other in a cycle: {cycle}", self.span(use))
        self.in_progress.append(name)
        tree = self.trees[name]
        if tree.data == "derived_network":
            network = self._derived(tree)
        else:
            network = _NetworkLowerer(self, tree).run()
        self.in_progress.pop()
        self.networks[name] = verify(network)
        return network

    def _derived(self, tree: lark.Tree) -> Network:
        name, mode, source_name, operand_name = tree.children
        source = self.network(str(source_name), source_name)
        if self.derive is None:
            raise NotImplementedError(
                f"derived networks ({mode}) need a derive function, which parse() passes unless derive=None"
            )
        if operand_name not in source.operand_names:
            raise DiagramError(
                f"network {str(source_name)!r} has no operand {str(operand_name)!r};"
                f" its operands are {', '.join(source.operand_names)}",
                self.span(operand_name),
            )
        return self.derive(str(mode), source, str(operand_name), str(name), self.span(tree))


@dataclass
class _Scope:
    operands: dict[str, Operand]
    hyper: dict[str, HyperParameter]


class _NetworkLowerer:
    def __init__(self, program: _ProgramLowerer, tree: lark.Tree):
        self.program = program
        self.tree = tree
        self.span = program.span
        self.call_count = 0
        self.index_spans: dict[str, Span] = {}
        # Size declarations that inlined networks bring for their inner indices.
        self.inlined_sizes: list[SizeDeclaration] = []

    # -- signature -------------------------------------------------------

    def run(self) -> Network:
        name_token, signature, body = self.tree.children
        operands, hyper = self._signature(signature)
        self.scope = _Scope({o.name: o for o in operands}, {h.name: h for h in hyper})

        size_declarations: list[SizeDeclaration] = []
        outputs = [s for s in body.children if s.data == "output_statement"]
        for statement in body.children:
            if statement.data == "size_statement":
                size_declarations.append(self._size_statement(statement, size_declarations))
        self.own_sizes = {d.index: d for d in size_declarations}
        if len(outputs) != 1:
            where = outputs[1] if outputs else body
            raise DiagramError(
                f"network {str(name_token)!r} must have exactly one output statement"
                f" such as 'y[i] = ...', found {len(outputs)}",
                self.span(where),
            )
        output_name, output_list, expression = outputs[0].children
        output = self._index_list(output_list, allow_groups=True)
        self._check_distinct(output, output_list, "the output")

        products = self._expression(expression)
        terms = [
            Term.from_factors(sympy.nsimplify(coefficient), factors, output)
            for coefficient, factors in products
            if coefficient != 0
        ]
        if not terms:
            raise DiagramError("the network's expression is zero", self.span(expression))
        network = Network(
            name=str(name_token),
            operands=tuple(operands),
            hyper_parameters=tuple(hyper),
            sizes=tuple(size_declarations + self.inlined_sizes),
            output_name=str(output_name),
            output=output,
            terms=tuple(terms),
            span=self.span(name_token),
        )
        self._check_sizes_have_sources(network, outputs[0])
        return network

    def _signature(self, signature: lark.Tree) -> tuple[list[Operand], list[HyperParameter]]:
        operand_trees, hyper_trees = [], []
        for child in signature.children:
            if isinstance(child, lark.Tree) and child.data == "operand":
                operand_trees.append(child)
            elif isinstance(child, lark.Tree) and child.data == "hyper":
                hyper_trees.append(child)
        operands: list[Operand] = []
        names: set[str] = set()
        for tree in operand_trees:
            name, optional, index_list = tree.children
            if name in names:
                raise DiagramError(f"operand {str(name)!r} is declared twice", self.span(name))
            names.add(str(name))
            axes = self._index_list(index_list, allow_groups=True)
            self._check_distinct(axes, index_list, f"operand {str(name)!r}")
            operands.append(Operand(str(name), axes, optional is not None, self.span(tree)))
        hyper: list[HyperParameter] = []
        for tree in hyper_trees:
            name, value = tree.children
            if name in names:
                raise DiagramError(
                    f"hyper-parameter {str(name)!r} has the name of an operand or another"
                    " hyper-parameter",
                    self.span(name),
                )
            names.add(str(name))
            default = REQUIRED if value is None else self._literal(value)
            hyper.append(HyperParameter(str(name), default, self.span(tree)))
        return operands, hyper

    def _size_statement(self, statement: lark.Tree, earlier: list[SizeDeclaration]) -> SizeDeclaration:
        index_tree, expression = statement.children
        index = self._index(index_tree)
        if any(d.index == index for d in earlier):
            raise DiagramError(f"the size of index {index!r} is declared twice", self.span(statement))
        value = self._scalar(expression, "a size")
        self.index_spans.setdefault(index, self.span(index_tree))
        return SizeDeclaration(index, value, self.span(statement))

    # -- indices ---------------------------------------------------------

    def _index(self, tree: lark.Tree) -> str:
        name, family = tree.children
        return str(name) + ("..." if family else "")

    def _index_list(self, tree: lark.Tree, allow_groups: bool) -> tuple[Axis, ...]:
        axes: list[Axis] = []
        for axis in tree.children:
            if axis is None:
                continue
            if axis.data == "element":
                raise DiagramError(
                    "an integer is not an index: only hyper-parameters take an element"
                    " number such as stride[0]",
                    self.span(axis),
                )
            if axis.data == "group":
                if not allow_groups:
                    raise DiagramError("a grouped axis is not allowed here", self.span(axis))
                members = tuple(self._index(child) for child in axis.children)
            else:
                members = (self._index(axis.children[0]),)
            for member in members:
                self.index_spans.setdefault(member, self.span(axis))
            axes.append(members)
        return tuple(axes)

    def _check_distinct(self, axes: tuple[Axis, ...], tree: lark.Tree, what: str) -> None:
        flat = [index for axis in axes for index in axis]
        for index in flat:
            if flat.count(index) > 1:
                raise DiagramError(f"index {index!r} occurs twice in {what}", self.span(tree))

    # -- expressions -----------------------------------------------------

    def _scalar(self, tree: Any, what: str) -> sympy.Expr:
        products = self._expression(tree)
        if any(factors for _, factors in products):
            raise DiagramError(f"{what} must be a scalar expression, not a tensor", self.span(tree))
        return sympy.nsimplify(sum((c for c, _ in products), sympy.Integer(0)))

    def _expression(self, tree: Any) -> Expression:
        handler = getattr(self, f"_expression_{tree.data}", None)
        if handler is None:
            raise DiagramError(f"unsupported expression {tree.data!r}", self.span(tree))
        return handler(tree)

    def _expression_number(self, tree: lark.Tree) -> Expression:
        return [(sympy.nsimplify(str(tree.children[0])), [])]

    def _expression_add(self, tree: lark.Tree) -> Expression:
        # A long sum is a deep left-leaning tree: walk it in a loop, not by recursion.
        right_operands: list[tuple[int, lark.Tree]] = []
        node = tree
        while isinstance(node, lark.Tree) and node.data in ("add", "subtract"):
            right_operands.append((1 if node.data == "add" else -1, node.children[1]))
            node = node.children[0]
        result = self._expression(node)
        for sign, operand in reversed(right_operands):
            result += [(sign * c, f) for c, f in self._expression(operand)]
        return result

    _expression_subtract = _expression_add

    def _expression_negate(self, tree: lark.Tree) -> Expression:
        return [(-c, f) for c, f in self._expression(tree.children[0])]

    def _expression_multiply(self, tree: lark.Tree) -> Expression:
        left = self._expression(tree.children[0])
        right = self._expression(tree.children[1])
        return [(c1 * c2, f1 + f2) for (c1, f1), (c2, f2) in itertools.product(left, right)]

    def _expression_divide(self, tree: lark.Tree) -> Expression:
        divisor = self._scalar(tree.children[1], "a divisor")
        if divisor == 0:
            raise DiagramError("division by zero", self.span(tree.children[1]))
        return [(c / divisor, f) for c, f in self._expression(tree.children[0])]

    def _expression_power(self, tree: lark.Tree) -> Expression:
        base = self._scalar(tree.children[0], "the base of a power")
        exponent = self._scalar(tree.children[1], "an exponent")
        # sympy evaluates numeric powers exactly, so a huge exponent would not finish.
        if exponent.is_Number and base.is_Number and abs(base) != 1 and abs(exponent) > MAX_EXPONENT:
            raise DiagramError(
                f"the exponent {exponent} is too large: at most {MAX_EXPONENT} for a numeric base",
                self.span(tree),
            )
        return [(base**exponent, [])]

    def _expression_size_of(self, tree: lark.Tree) -> Expression:
        index = self._index(tree.children[0])
        self.index_spans.setdefault(index, self.span(tree))
        return [(size_symbol(index), [])]

    def _expression_name(self, tree: lark.Tree) -> Expression:
        name = str(tree.children[0])
        if name in self.scope.operands:
            operand = self.scope.operands[name]
            return [(sympy.Integer(1), [Factor("operand", name, operand.axes, (), self.span(tree))])]
        if name in self.scope.hyper:
            return [(hyper_symbol(name), [])]
        raise DiagramError(self._unknown_name(name), self.span(tree))

    def _unknown_name(self, name: str) -> str:
        known = sorted(self.scope.operands) + sorted(self.scope.hyper)
        message = (
            f"unknown name {name!r}: it is neither an operand nor a hyper-parameter"
            f" (known names: {', '.join(known) or 'none'})"
        )
        # A misspelled name or keyword ('dleta[i, j]') parses as an unknown operand.
        matches = difflib.get_close_matches(name, known + list(KEYWORDS), n=1, cutoff=0.75)
        if matches:
            message += f"; did you mean {matches[0]!r}?"
        return message

    def _expression_indexed(self, tree: lark.Tree) -> Expression:
        name_token, index_list = tree.children
        name = str(name_token)
        if name in self.scope.hyper:
            children = [c for c in index_list.children if c is not None]
            if len(children) != 1 or children[0].data != "element":
                raise DiagramError(
                    f"hyper-parameter {name!r} takes one element number, such as {name}[0]",
                    self.span(index_list),
                )
            return [(hyper_symbol(name, int(children[0].children[0])), [])]
        if name not in self.scope.operands:
            raise DiagramError(self._unknown_name(name), self.span(name_token))
        operand = self.scope.operands[name]
        axes = self._index_list(index_list, allow_groups=True)
        self._check_same_structure(operand, axes, index_list)
        return [(sympy.Integer(1), [Factor("operand", name, axes, (), self.span(tree))])]

    def _check_same_structure(self, operand: Operand, axes: tuple[Axis, ...], tree: lark.Tree) -> None:
        declared = _describe_axes(operand.axes)
        if len(axes) != len(operand.axes):
            raise DiagramError(
                f"operand {operand.name!r} has {len(operand.axes)} axes {declared},"
                f" but is used with {len(axes)}",
                self.span(tree),
            )
        for number, (used, declared_axis) in enumerate(zip(axes, operand.axes)):
            shape_used = [is_family(i) for i in used]
            shape_declared = [is_family(i) for i in declared_axis]
            if shape_used != shape_declared:
                raise DiagramError(
                    f"axis {number} of operand {operand.name!r} is declared as"
                    f" {_describe_axes((declared_axis,))[1:-1]} but used as"
                    f" {_describe_axes((used,))[1:-1]}: groups and index families must match"
                    " the declaration",
                    self.span(tree),
                )

    def _expression_pattern(self, tree: lark.Tree) -> Expression:
        index_list, *arguments = tree.children
        axes = self._index_list(index_list, allow_groups=False)
        if len(axes) != 3:
            raise DiagramError(
                f"an index pattern takes 3 indices [kernel, output, input], got {len(axes)}",
                self.span(index_list),
            )
        families = {is_family(axis[0]) for axis in axes}
        if len(families) != 1:
            raise DiagramError(
                "the indices of an index pattern must be all families (k..., o..., i...)"
                " or all single indices",
                self.span(index_list),
            )
        params: dict[str, Any] = {}
        for argument in arguments:
            if argument is None:
                continue
            key, value_tree = argument.children
            key = str(key)
            if key not in PATTERN_ARGUMENTS:
                raise DiagramError(
                    f"unknown index pattern argument {key!r}: expected one of"
                    f" {', '.join(PATTERN_ARGUMENTS)}",
                    self.span(argument),
                )
            if key in params:
                raise DiagramError(f"argument {key!r} is given twice", self.span(argument))
            value = self._parameter(value_tree)
            family = families == {True}
            try:
                size_rules.check_pattern_argument(key, self._default_value(value), family=family)
            except ValueError as error:
                note = f" (the default of hyper-parameter {value.name!r})" if isinstance(value, HyperReference) else ""
                raise DiagramError(f"{error}{note}", self.span(argument)) from None
            params[key] = value
        self._check_same_padding(params, tree)
        factor = Factor("pattern", "pattern", axes, tuple(sorted(params.items())), self.span(tree))
        return [(sympy.Integer(1), [factor])]

    def _default_value(self, value: Any) -> Any:
        """Return a pattern argument's value if it is known before binding, else None.

        A hyper-parameter reference is known through its default; the checks
        run again on the values that binding passes.
        """
        if not isinstance(value, HyperReference):
            return value
        default = self.scope.hyper[value.name].default
        if default is REQUIRED:
            return None
        if value.element is not None and isinstance(default, tuple):
            return default[value.element] if value.element < len(default) else None
        return default

    def _check_same_padding(self, params: dict[str, Any], tree: lark.Tree) -> None:
        padding = self._default_value(params.get("padding", 0))
        stride = self._default_value(params.get("stride", 1))
        strides = stride if isinstance(stride, tuple) else (stride,)
        if padding == "same" and any(s not in (None, 1) for s in strides):
            raise DiagramError(
                f"padding 'same' needs stride 1, got stride {stride!r} (torch rejects it too)",
                self.span(tree),
            )

    def _expression_delta(self, tree: lark.Tree) -> Expression:
        axes = self._index_list(tree.children[0], allow_groups=False)
        if len(axes) < 2:
            raise DiagramError("a Kronecker delta takes at least 2 indices", self.span(tree))
        if len({is_family(axis[0]) for axis in axes}) != 1:
            raise DiagramError(
                "the indices of a Kronecker delta must be all families (i..., j...) or all single indices",
                self.span(tree),
            )
        return [(sympy.Integer(1), [Factor("delta", "delta", axes, (), self.span(tree))])]

    def _expression_ones(self, tree: lark.Tree) -> Expression:
        axes = self._index_list(tree.children[0], allow_groups=False)
        if len(axes) != 1:
            raise DiagramError("an all-ones vector takes exactly 1 index", self.span(tree))
        return [(sympy.Integer(1), [Factor("ones", "ones", axes, (), self.span(tree))])]

    def _parameter(self, tree: Any) -> Any:
        if isinstance(tree, lark.Tree) and tree.data == "hyper_reference":
            name = str(tree.children[0])
            self._require_hyper(name, tree)
            return HyperReference(name)
        if isinstance(tree, lark.Tree) and tree.data == "hyper_element":
            name = str(tree.children[0])
            self._require_hyper(name, tree)
            return HyperReference(name, int(tree.children[1]))
        return self._literal(tree)

    def _require_hyper(self, name: str, tree: lark.Tree) -> None:
        if name not in self.scope.hyper:
            known = ", ".join(sorted(self.scope.hyper)) or "none"
            raise DiagramError(
                f"unknown hyper-parameter {name!r} (hyper-parameters of this network: {known})",
                self.span(tree),
            )

    def _literal(self, tree: lark.Tree) -> Any:
        if tree.data == "integer":
            return int(tree.children[0])
        if tree.data == "negative_integer":
            return -int(tree.children[0])
        if tree.data == "string":
            return str(tree.children[0])[1:-1]
        if tree.data == "none":
            return None
        if tree.data == "sequence":
            return tuple(self._literal(child) for child in tree.children if child is not None)
        raise DiagramError(f"unsupported value {tree.data!r}", self.span(tree))

    # -- calls of other networks ----------------------------------------

    def _expression_call(self, tree: lark.Tree) -> Expression:
        name_token, operand_trees, *rest = tree.children
        index_list = rest[-1]
        arguments = [a for a in rest[:-1] if a is not None]
        callee = self.program.network(str(name_token), name_token)
        given = [] if operand_trees is None else operand_trees.children
        if len(given) > len(callee.operands):
            raise DiagramError(
                f"network {callee.name!r} takes {len(callee.operands)} operands"
                f" ({', '.join(callee.operand_names)}), got {len(given)}",
                self.span(tree),
            )
        missing = [o.name for o in callee.operands[len(given):] if not o.optional]
        if missing:
            raise DiagramError(
                f"call of network {callee.name!r} is missing operand(s) {', '.join(missing)}",
                self.span(tree),
            )
        self.call_count += 1
        renaming: dict[str, Axis] = {}

        def unify(callee_axes: tuple[Axis, ...], caller_axes: tuple[Axis, ...], what: str, where: Any) -> None:
            if len(callee_axes) != len(caller_axes):
                raise DiagramError(
                    f"{what} has {len(caller_axes)} axes here, but network {callee.name!r}"
                    f" declares {len(callee_axes)}",
                    self.span(where),
                )
            for inner, outer in zip(callee_axes, caller_axes):
                if len(inner) == len(outer):
                    pairs = [(i, (o,)) for i, o in zip(inner, outer)]
                elif len(inner) == 1 and not is_family(inner[0]):
                    pairs = [(inner[0], outer)]
                else:
                    raise DiagramError(
                        f"{what}: the grouped axis {_describe_axes((inner,))[1:-1]} of network"
                        f" {callee.name!r} cannot take the axis {_describe_axes((outer,))[1:-1]};"
                        " write the same group at the call",
                        self.span(where),
                    )
                for inner_index, outer_indices in pairs:
                    if any(is_family(i) != is_family(inner_index) for i in outer_indices):
                        raise DiagramError(
                            f"{what}: index family and single index do not match"
                            f" ({inner_index} against {' '.join(outer_indices)})",
                            self.span(where),
                        )
                    if renaming.setdefault(inner_index, outer_indices) != outer_indices:
                        raise DiagramError(
                            f"{what}: index {inner_index!r} of network {callee.name!r} would stand"
                            f" for both {' '.join(renaming[inner_index])} and {' '.join(outer_indices)}",
                            self.span(where),
                        )

        for callee_operand, operand_tree in zip(callee.operands, given):
            operand_name, operand_indices = operand_tree.children
            if str(operand_name) not in self.scope.operands:
                raise DiagramError(
                    f"{str(operand_name)!r} is not an operand of this network", self.span(operand_tree)
                )
            own = self.scope.operands[str(operand_name)]
            axes = own.axes
            if operand_indices is not None:
                axes = self._index_list(operand_indices, allow_groups=True)
                self._check_same_structure(own, axes, operand_indices)
            unify(callee_operand.axes, axes, f"operand {str(operand_name)!r}", operand_tree)
        output = self._index_list(index_list, allow_groups=True)
        unify(callee.output, output, f"the result of {callee.name!r}", index_list)

        # Inner indices get fresh names, so that they cannot meet the caller's.
        taken = set(self.index_spans) | set(renaming_target for axis in renaming.values() for renaming_target in axis)
        for index in callee.all_indices():
            if index not in renaming:
                base = index[:-3] if is_family(index) else index
                suffix = "..." if is_family(index) else ""
                number = self.call_count
                while f"{base}_{number}{suffix}" in taken:
                    number += 1
                fresh = f"{base}_{number}{suffix}"
                taken.add(fresh)
                renaming[index] = (fresh,)

        values = self._call_arguments(callee, arguments, tree)
        present = {o.name for o in callee.operands[: len(given)]}
        operand_names = {o.name: str(t.children[0]) for o, t in zip(callee.operands, given)}
        result: Expression = []
        for term in callee.terms:
            if any(f.kind == "operand" and f.name not in present for f in term.factors):
                continue
            factors = [
                _rename_factor(f, renaming, values, operand_names, self.span(tree)) for f in term.factors
            ]
            coefficient = _substitute_coefficient(term.coefficient, renaming, values)
            result.append((coefficient, factors))
        # The callee's size statements stay constraints, also on the caller's own
        # indices: conv(x, w; groups=2) must still split channels into 2 groups.
        for declaration in callee.sizes:
            target = renaming[declaration.index]
            expression = _substitute_coefficient(declaration.expression, renaming, values)
            if len(target) != 1:
                raise DiagramError(
                    f"network {callee.name!r} sets the size of index {declaration.index!r}"
                    f" ({sympy.sstr(declaration.expression)}), which this call maps to the grouped"
                    f" axis ({' '.join(target)}): pass a single index for it",
                    self.span(tree),
                )
            earlier = self.own_sizes.get(target[0]) or next(
                (d for d in self.inlined_sizes if d.index == target[0]), None
            )
            if earlier is None:
                self.inlined_sizes.append(SizeDeclaration(target[0], expression, declaration.span))
            elif earlier.expression != expression:
                raise DiagramError(
                    f"this call of network {callee.name!r} sets size({target[0]}) ="
                    f" {sympy.sstr(expression)}, but size({target[0]}) is already"
                    f" {sympy.sstr(earlier.expression)} here",
                    self.span(tree),
                )
        return result

    def _call_arguments(self, callee: Network, arguments: list, tree: lark.Tree) -> dict[str, Any]:
        values: dict[str, Any] = {}
        callee_hyper = {h.name: h for h in callee.hyper_parameters}
        for argument in arguments:
            key, value_tree = argument.children
            if str(key) not in callee_hyper:
                raise DiagramError(
                    f"network {callee.name!r} has no hyper-parameter {str(key)!r}"
                    f" (it has: {', '.join(callee_hyper) or 'none'})",
                    self.span(argument),
                )
            values[str(key)] = self._parameter(value_tree)
        for name, hyper in callee_hyper.items():
            if name not in values:
                if hyper.default is REQUIRED:
                    raise DiagramError(
                        f"call of network {callee.name!r} does not set hyper-parameter {name!r},"
                        " which has no default",
                        self.span(tree),
                    )
                values[name] = hyper.default
        return values

    # -- checks ----------------------------------------------------------

    def _check_sizes_have_sources(self, network: Network, output_statement: lark.Tree) -> None:
        """Raise for an index whose size neither an operand, a ``size`` statement
        nor an index pattern or delta can determine."""
        known: set[str] = {d.index for d in network.sizes}
        for operand in network.operands:
            for axis in operand.axes:
                if len(axis) == 1:
                    known.add(axis[0])
        constraints: list[tuple[str, tuple[Axis, ...]]] = []
        for term in network.terms:
            for factor in term.factors:
                if factor.kind == "operand":
                    known.update(axis[0] for axis in factor.axes if len(axis) == 1)
                    constraints.extend(("group", (axis,)) for axis in factor.axes if len(axis) > 1)
                else:
                    constraints.append((factor.kind, factor.axes))
        for operand in network.operands:
            constraints.extend(("group", (axis,)) for axis in operand.axes if len(axis) > 1)
        changed = True
        while changed:
            changed = False
            for kind, axes in constraints:
                flat = [axis[0] for axis in axes] if kind != "group" else list(axes[0])
                unknown = [i for i in flat if i not in known]
                if not unknown:
                    continue
                resolvable = (
                    (kind == "group" and len(unknown) == 1)
                    or (kind == "delta" and len(unknown) < len(flat))
                    or (kind == "pattern" and flat[0] in known and len(unknown) == 1)
                )
                if resolvable:
                    known.update(unknown)
                    changed = True
        # An index that only a scalar such as 1/size(j) reads needs a size too.
        indices = network.all_indices()
        scalars = [t.coefficient for t in network.terms] + [d.expression for d in network.sizes]
        read = {
            symbol.name[5:-1]
            for scalar in scalars
            for symbol in scalar.free_symbols
            if symbol.name.startswith("size(")
        }
        indices += [i for i in self.index_spans if i in read and i not in indices]
        missing = [i for i in indices if i not in known]
        if missing:
            index = missing[0]
            raise DiagramError(
                f"undeclared index {index!r}: no operand carries it, no 'size' statement sets"
                " its size, and no index pattern or delta determines it",
                self.index_spans.get(index, self.span(output_statement)),
            )


def _describe_axes(axes: tuple[Axis, ...]) -> str:
    return "[" + ", ".join(a[0] if len(a) == 1 else "(" + " ".join(a) + ")" for a in axes) + "]"


def _rename_axes(axes: tuple[Axis, ...], renaming: dict[str, Axis]) -> tuple[Axis, ...]:
    return tuple(tuple(new for index in axis for new in renaming.get(index, (index,))) for axis in axes)


def _rename_factor(
    factor: Factor,
    renaming: dict[str, Axis],
    values: dict[str, Any],
    operand_names: dict[str, str],
    span: Span,
) -> Factor:
    axes = _rename_axes(factor.axes, renaming)
    if factor.kind == "operand":
        return Factor("operand", operand_names[factor.name], axes, (), span)
    if factor.kind != "operand" and any(len(axis) != 1 for axis in axes):
        raise DiagramError(f"an index of a {factor.kind} cannot stand for a grouped axis", span)
    params = tuple((key, _substitute_parameter(value, values)) for key, value in factor.params)
    return Factor(factor.kind, factor.name, axes, params, span)


def _substitute_parameter(value: Any, values: dict[str, Any]) -> Any:
    """Replace a callee's hyper-parameter reference by what the call passes."""
    if not isinstance(value, HyperReference):
        return value
    passed = values[value.name]
    if value.element is None:
        return passed
    if isinstance(passed, HyperReference):
        if passed.element is not None:
            raise DiagramError(
                f"cannot take element {value.element} of {passed}, which is already one element"
            )
        return HyperReference(passed.name, value.element)
    if isinstance(passed, tuple):
        if value.element >= len(passed):
            raise DiagramError(f"{value} reads element {value.element} of {passed!r}, which has none")
        return passed[value.element]
    return passed


def _substitute_coefficient(expression: sympy.Expr, renaming: dict[str, Axis], values: dict[str, Any]) -> sympy.Expr:
    substitutions: dict[sympy.Symbol, sympy.Expr] = {}
    for symbol in expression.free_symbols:
        name = symbol.name
        if name.startswith("size(") and name.endswith(")"):
            index = name[5:-1]
            target = renaming.get(index, (index,))
            product = sympy.Integer(1)
            for new in target:
                product *= size_symbol(new)
            substitutions[symbol] = product
            continue
        base, _, rest = name.partition("[")
        element = int(rest[:-1]) if rest else None
        if base in values:
            replacement = _substitute_parameter(HyperReference(base, element), values)
            if isinstance(replacement, HyperReference):
                substitutions[symbol] = hyper_symbol(replacement.name, replacement.element)
            elif isinstance(replacement, (int, float)):
                substitutions[symbol] = sympy.nsimplify(replacement)
            else:
                raise DiagramError(
                    f"hyper-parameter {name!r} is used as a number, but the call passes {replacement!r}"
                )
    return expression.xreplace(substitutions)
