"""Bind a network to hyper-parameter values and operand shapes.

Binding expands index families to one index per spatial dimension, resolves
each index pattern's hyper-parameters, and infers every index size from the
operand shapes, ``size`` statements, index patterns, deltas and grouped axes.
Mismatched tensors raise :class:`ShapeError` naming the operand and axis;
invalid hyper-parameters raise :class:`DiagramError` pointing at the pattern.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import sympy

from . import sizes as size_rules
from .errors import DiagramError, ShapeError, Span, TNError
from .ir import (
    REQUIRED,
    Axis,
    Factor,
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

__all__ = ["BoundNetwork", "bind", "expand_families", "resolve_hyper_parameters", "spatial_dimensions"]


@dataclass(frozen=True)
class BoundNetwork:
    """A family-free network whose index sizes and pattern parameters are integers.

    Pattern factors carry ``stride``, ``padding`` (a (left, right) pair),
    ``dilation`` and ``output_padding`` as integers in ``params``; coefficients
    are sympy numbers.
    """

    network: Network
    sizes: dict[str, int]
    hyper: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    spatial_dimensions: int | None = None
    origins: dict[str, str] = field(default_factory=dict, compare=False)

    def shape_of(self, axes: Sequence[Axis]) -> tuple[int, ...]:
        """Return the tensor shape of a list of axes (a group's size is the product)."""
        result = []
        for axis in axes:
            size = 1
            for index in axis:
                size *= self.sizes[index]
            result.append(size)
        return tuple(result)


def resolve_hyper_parameters(network: Network, values: Mapping[str, Any]) -> dict[str, Any]:
    """Merge given hyper-parameter values with the network's defaults."""
    declared = network.hyper_defaults
    unknown = [name for name in values if name not in declared]
    if unknown:
        raise DiagramError(
            f"network {network.name!r} has no hyper-parameter {unknown[0]!r}"
            f" (it has: {', '.join(declared) or 'none'})",
            network.span,
        )
    result = {}
    for name, default in declared.items():
        value = values.get(name, default)
        if value is REQUIRED:
            raise DiagramError(
                f"hyper-parameter {name!r} of network {network.name!r} has no default: set it", network.span
            )
        result[name] = tuple(value) if isinstance(value, list) else value
    # Check the values that index patterns read now, so that compile(stride=0)
    # fails at once and not at the first call.
    for term in network.terms:
        for factor in term.factors:
            if factor.kind == "pattern":
                _pattern_arguments(factor, result)
    return result


def _pattern_arguments(factor: Factor, hyper: Mapping[str, Any]) -> dict[str, Any]:
    """Return the values of a pattern's arguments, raising DiagramError at the
    pattern for an invalid one; a pattern over index families takes a tuple
    with one value per dimension."""
    family = is_family(factor.axes[0][0])
    raw = {key: _parameter_value(value, hyper, key, factor.span) for key, value in factor.params}

    def fail(message: str, key: str) -> DiagramError:
        source = dict(factor.params)[key]
        if isinstance(source, HyperReference):
            message += f" (from hyper-parameter {source.name} = {hyper[source.name]!r})"
        return DiagramError(message, factor.span)

    for key, value in raw.items():
        if value is None:
            # check_pattern_argument passes None as "not known yet"; here every value is known.
            raise fail(f"invalid {key} None: {key} must be set", key)
        try:
            size_rules.check_pattern_argument(key, value, family=family)
        except ValueError as error:
            raise fail(str(error), key) from None
    strides = raw.get("stride", 1)
    strides = strides if isinstance(strides, tuple) else (strides,)
    if raw.get("padding") == "same" and any(stride != 1 for stride in strides):
        stride = raw["stride"]
        raise DiagramError(f"padding 'same' needs stride 1, got stride {stride!r} (torch rejects it too)", factor.span)
    return raw


def spatial_dimensions(network: Network, shapes: Mapping[str, Sequence[int]]) -> int | None:
    """Infer the length of index families from operand ranks (None without families)."""
    if not network.has_families():
        return None
    for operand in network.operands:
        if operand.name not in shapes:
            continue
        family_axes = sum(1 for axis in operand.axes if len(axis) == 1 and is_family(axis[0]))
        if family_axes == 0:
            continue
        fixed = len(operand.axes) - family_axes
        rank = len(shapes[operand.name])
        if rank < fixed or (rank - fixed) % family_axes:
            raise ShapeError(
                f"operand {operand.name!r} has rank {rank}, but its axes {_describe(operand.axes)}"
                f" need {fixed} + {family_axes}·d axes for d spatial dimensions",
                operand.span,
            )
        return (rank - fixed) // family_axes
    raise ShapeError(
        f"network {network.name!r} has index families, but no operand passed carries one on its own"
        " axis, so the number of spatial dimensions is unknown",
        network.span,
    )


def _member(index: str, number: int) -> str:
    return f"{index[:-3]}{number}"


def _expand_axes(axes: tuple[Axis, ...], count: int) -> tuple[Axis, ...]:
    result: list[Axis] = []
    for axis in axes:
        if len(axis) == 1 and is_family(axis[0]):
            result.extend((_member(axis[0], d + 1),) for d in range(count))
        else:
            result.append(
                tuple(m for index in axis for m in ([_member(index, d + 1) for d in range(count)] if is_family(index) else [index]))
            )
    return tuple(result)


def _expand_scalar(expression: sympy.Expr, count: int, element: int | None) -> sympy.Expr:
    """Expand ``size(f...)`` to a product, or for one member to that member's size;
    inside a member's size declaration, a hyper-parameter ``h`` reads ``h[element]``."""
    substitutions = {}
    for symbol in expression.free_symbols:
        name = symbol.name
        if name.startswith("size(") and name.endswith("...)"):
            family = name[5:-1]
            if element is None:
                substitutions[symbol] = sympy.Mul(*(size_symbol(_member(family, d + 1)) for d in range(count)))
            else:
                substitutions[symbol] = size_symbol(_member(family, element + 1))
        elif element is not None and not name.startswith("size(") and "[" not in name:
            substitutions[symbol] = hyper_symbol(name, element)
    return expression.xreplace(substitutions)


def expand_families(network: Network, count: int) -> Network:
    """Replace every index family ``i...`` by ``i1 … i<count>``; a pattern over
    families becomes one pattern per dimension, reading element d of tuple-valued
    hyper-parameters."""
    existing = set(network.all_indices())
    for index in existing:
        if is_family(index):
            for d in range(count):
                if _member(index, d + 1) in existing:
                    raise DiagramError(
                        f"index family {index!r} expands to {_member(index, d + 1)!r}, which the"
                        " network also uses as an index: rename one of them",
                        network.span,
                    )
    operands = tuple(
        Operand(o.name, _expand_axes(o.axes, count), o.optional, o.span) for o in network.operands
    )
    sizes: list[SizeDeclaration] = []
    for declaration in network.sizes:
        if is_family(declaration.index):
            for d in range(count):
                sizes.append(
                    SizeDeclaration(
                        _member(declaration.index, d + 1),
                        _expand_scalar(declaration.expression, count, d),
                        declaration.span,
                    )
                )
        else:
            sizes.append(
                SizeDeclaration(declaration.index, _expand_scalar(declaration.expression, count, None), declaration.span)
            )
    output = _expand_axes(network.output, count)
    terms = []
    for term in network.terms:
        factors: list[Factor] = []
        for factor in term.factors:
            if factor.is_constant and is_family(factor.axes[0][0]):
                # A constant over families is one constant per dimension, pairing the d-th members.
                for d in range(count):
                    params = tuple(
                        (key, _element_reference(key, value, d, count, factor.span)) for key, value in factor.params
                    )
                    axes = tuple((_member(axis[0], d + 1),) for axis in factor.axes)
                    factors.append(Factor(factor.kind, factor.name, axes, params, factor.span))
            else:
                factors.append(Factor(factor.kind, factor.name, _expand_axes(factor.axes, count), factor.params, factor.span))
        terms.append(Term.from_factors(_expand_scalar(term.coefficient, count, None), factors, output))
    return verify(
        network.replace(operands=operands, sizes=tuple(sizes), output=output, terms=tuple(terms))
    )


def _element_reference(key: str, value: Any, element: int, count: int, span: Span | None) -> Any:
    if isinstance(value, HyperReference):
        if value.element is not None:
            return value
        return HyperReference(value.name, element)
    try:
        return size_rules.family_element(key, value, element, count)
    except ValueError as error:
        raise DiagramError(str(error), span) from None


def _parameter_value(value: Any, hyper: Mapping[str, Any], key: str, span: Span | None) -> Any:
    if not isinstance(value, HyperReference):
        return value
    full = hyper[value.name]
    if value.element is None:
        return full
    if isinstance(full, tuple):
        if value.element >= len(full):
            raise DiagramError(
                f"{key} reads element {value.element} of hyper-parameter {value.name!r} = {full!r},"
                f" which has {len(full)} entries",
                span,
            )
        return full[value.element]
    return full


# torch indexes tensors with signed 64-bit integers.
MAX_SIZE = 2**62


class _SizeSolver:
    """Infers index sizes by propagating constraints until nothing changes."""

    def __init__(self, network: Network, hyper: Mapping[str, Any], error: type[TNError]):
        self.network = network
        self.hyper = hyper
        # DiagramError while only the diagram's own sizes are known, ShapeError
        # once operand shapes take part: a conflict then involves the tensors.
        self.error = error
        self.sizes: dict[str, int] = {}
        self.origins: dict[str, str] = {}

    def set(self, index: str, size: int, origin: str, span: Span | None) -> bool:
        if size < 1:
            raise self.error(f"index {index!r} would have size {size} ({origin}); sizes must be positive", span)
        if size > MAX_SIZE:
            raise self.error(f"index {index!r} would have size {size} ({origin}), more than torch can index", span)
        known = self.sizes.get(index)
        if known is None:
            self.sizes[index] = int(size)
            self.origins[index] = origin
            return True
        if known != size:
            raise self.error(
                f"{origin} gives index {index!r} size {size}, expected {known} ({self.origins[index]})",
                span,
            )
        return False

    def scalar(self, expression: sympy.Expr, span: Span | None) -> sympy.Expr | None:
        """Evaluate a scalar expression, or return None while a size is unknown."""
        substitutions = {}
        for symbol in expression.free_symbols:
            name = symbol.name
            if name.startswith("size(") and name.endswith(")"):
                index = name[5:-1]
                if index not in self.sizes:
                    return None
                substitutions[symbol] = self.sizes[index]
                continue
            base, _, rest = name.partition("[")
            if base not in self.hyper:
                raise DiagramError(f"unknown name {name!r} in a scalar expression", span)
            value = _parameter_value(HyperReference(base, int(rest[:-1]) if rest else None), self.hyper, name, span)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise DiagramError(f"hyper-parameter {name!r} = {value!r} is used as a number", span)
            substitutions[symbol] = value
        value = sympy.sympify(sympy.sympify(expression).xreplace(substitutions))
        # Float hyper-parameters become rationals, so that coefficients stay exact.
        return sympy.nsimplify(value) if value.has(sympy.Float) else value


def bind(
    network: Network,
    hyper: Mapping[str, Any] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    spatial_dims: int | None = None,
) -> BoundNetwork:
    """Bind hyper-parameters and operand shapes; absent optional operands drop their terms.

    ``shapes`` maps operand names to shapes; an optional operand left out is
    absent. Required operands left out are allowed only when the sizes of their
    indices follow from the other operands (as ``show`` needs).
    """
    hyper = resolve_hyper_parameters(network, hyper or {})
    shapes = {name: tuple(int(s) for s in shape) for name, shape in (shapes or {}).items()}
    for name in shapes:
        if name not in network.operand_names:
            raise ShapeError(
                f"network {network.name!r} has no operand {name!r} (operands: {', '.join(network.operand_names)})",
                network.span,
            )
    _check_element_tuples(network, hyper)
    count = spatial_dims if spatial_dims is not None else spatial_dimensions(network, shapes)
    if count is not None:
        _check_family_tuples(network, hyper, count)
    expanded = expand_families(network, count) if count is not None else network

    absent = {o.name for o in expanded.operands if o.optional and o.name not in shapes}
    terms = tuple(
        t for t in expanded.terms if not any(f.kind == "operand" and f.name in absent for f in t.factors)
    )
    if not terms:
        raise DiagramError(f"every term of network {network.name!r} needs an operand that is absent", network.span)
    expanded = expanded.replace(terms=terms)

    # Patterns: resolve their hyper-parameters to integers before any size is known.
    patterns: list[tuple[Factor, dict[str, Any]]] = []
    for term in terms:
        for factor in term.factors:
            if factor.kind == "pattern":
                patterns.append((factor, _pattern_arguments(factor, hyper)))

    # First the diagram alone: a conflict among its own sizes is a DiagramError
    # whatever tensors come. Then with the operand shapes, where it is a ShapeError.
    _solve(expanded, patterns, [], _SizeSolver(expanded, hyper, DiagramError))
    solver = _SizeSolver(expanded, hyper, ShapeError)
    _bind_operand_shapes(expanded, shapes, solver)
    _solve(expanded, patterns, _group_constraints(expanded, shapes), solver)

    missing = [index for index in expanded.all_indices() if index not in solver.sizes]
    if missing:
        raise ShapeError(
            f"the size of index {missing[0]!r} cannot be inferred: pass the operand that carries it"
            " or declare it with a 'size' statement",
            network.span,
        )

    resolved_terms = []
    for term in terms:
        factors = []
        for factor in term.factors:
            if factor.kind == "pattern":
                raw = {key: _parameter_value(value, hyper, key, factor.span) for key, value in factor.params}
                parameters = _pattern_parameters(factor, raw, solver.sizes[factor.axes[0][0]])
                factor = Factor(
                    "pattern",
                    "pattern",
                    factor.axes,
                    (
                        ("dilation", parameters.dilation),
                        ("output_padding", parameters.output_padding),
                        ("padding", parameters.padding),
                        ("stride", parameters.stride),
                    ),
                    factor.span,
                )
            factors.append(factor)
        coefficient = solver.scalar(term.coefficient, None)
        if not coefficient.is_finite:
            raise DiagramError(
                f"the coefficient {term.coefficient} evaluates to {coefficient}: a division by zero"
                " or a zero to a negative power",
                term.factors[0].span if term.factors else network.span,
            )
        resolved_terms.append(Term.from_factors(coefficient, factors, term.output))
    bound = expanded.replace(terms=tuple(resolved_terms), hyper_parameters=())
    return BoundNetwork(verify(bound), dict(solver.sizes), dict(hyper), shapes, count, dict(solver.origins))


def _solve(
    network: Network,
    patterns: list[tuple[Factor, dict[str, Any]]],
    groups: list[tuple[Axis, int, str, Span | None]],
    solver: _SizeSolver,
) -> None:
    """Propagate sizes through size statements, patterns, deltas and grouped axes
    until nothing changes."""
    changed = True
    while changed:
        changed = False
        for declaration in network.sizes:
            value = solver.scalar(declaration.expression, declaration.span)
            if value is not None:
                if not value.is_integer:
                    raise solver.error(
                        f"size of index {declaration.index!r} evaluates to {value}, not an integer",
                        declaration.span,
                    )
                origin = f"the statement 'size {declaration.index} = {sympy.sstr(declaration.expression)}'"
                changed |= solver.set(declaration.index, int(value), origin, declaration.span)
        for factor, raw in patterns:
            changed |= _propagate_pattern(factor, raw, solver)
        for term in network.terms:
            for factor in term.factors:
                if factor.kind == "delta":
                    known = [solver.sizes[a[0]] for a in factor.axes if a[0] in solver.sizes]
                    if known:
                        for axis in factor.axes:
                            changed |= solver.set(axis[0], known[0], "a Kronecker delta", factor.span)
        for axis, size, origin, span in groups:
            unknown = [i for i in axis if i not in solver.sizes]
            product = 1
            for index in axis:
                product *= solver.sizes.get(index, 1)
            if len(unknown) == 1:
                if size % product:
                    raise ShapeError(
                        f"{origin} has size {size}, which is not divisible by"
                        f" {_known_product(axis, solver)}",
                        span,
                    )
                changed |= solver.set(unknown[0], size // product, origin, span)
            elif not unknown and product != size:
                raise ShapeError(f"{origin} has size {size}, expected {_known_product(axis, solver)}", span)


def _check_element_tuples(network: Network, hyper: Mapping[str, Any]) -> None:
    """Raise if a tuple hyper-parameter has more entries than the network reads.

    A network such as conv2d.tn reads ``stride[0]`` and ``stride[1]``; with
    ``stride=(1, 2, 3)`` the last entry would be dropped without a word, where
    torch rejects the tuple. Hyper-parameters that the network also reads whole
    are left to the other checks.
    """
    read: dict[str, set[int]] = {}
    whole: set[str] = set()
    spans: dict[str, Span | None] = {}

    def note(name: str, element: int | None, span: Span | None) -> None:
        if element is None:
            whole.add(name)
            return
        read.setdefault(name, set()).add(element)
        spans.setdefault(name, span)

    expressions = [(declaration.expression, declaration.span) for declaration in network.sizes]
    for term in network.terms:
        expressions.append((term.coefficient, None))
        for factor in term.factors:
            for _, value in factor.params:
                if isinstance(value, HyperReference):
                    note(value.name, value.element, factor.span)
    for expression, span in expressions:
        for symbol in sympy.sympify(expression).free_symbols:
            base, _, rest = symbol.name.partition("[")
            if base in hyper:
                note(base, int(rest[:-1]) if rest else None, span)
    for name, elements in read.items():
        value = hyper.get(name)
        if name in whole or not isinstance(value, tuple) or len(value) <= max(elements) + 1:
            continue
        listed = ", ".join(f"{name}[{element}]" for element in sorted(elements))
        raise DiagramError(
            f"hyper-parameter {name!r} = {value!r} has {len(value)} entries, but network"
            f" {network.name!r} reads only {listed}: give {max(elements) + 1} entries or a single value",
            spans[name] or network.span,
        )


def _check_family_tuples(network: Network, hyper: Mapping[str, Any], count: int) -> None:
    """Raise if a pattern over index families reads a tuple hyper-parameter whose
    length is not the number of spatial dimensions; a longer tuple would be cut."""
    for term in network.terms:
        for factor in term.factors:
            if factor.kind != "pattern" or not is_family(factor.axes[0][0]):
                continue
            for key, value in factor.params:
                if not isinstance(value, HyperReference) or value.element is not None:
                    continue
                full = hyper[value.name]
                if isinstance(full, tuple) and len(full) != count:
                    hint = f"; for a (left, right) padding pair write ({full!r},)" if count == 1 and key == "padding" else ""
                    raise DiagramError(
                        f"hyper-parameter {value.name!r} = {full!r} has {len(full)} entries, but the network"
                        f" has {count} spatial dimension(s): give one entry per dimension or a single value{hint}",
                        factor.span,
                    )


def _known_product(axis: Axis, solver: _SizeSolver) -> str:
    """Return ``size(g) * size(c) = 2 * 3 = 6 (size(g) from …, size(c) from …)``
    for the indices of a grouped axis whose sizes are known."""
    known = [index for index in axis if index in solver.sizes]
    product = 1
    for index in known:
        product *= solver.sizes[index]
    text = " * ".join(f"size({index})" for index in known)
    if len(known) > 1:
        text += " = " + " * ".join(str(solver.sizes[index]) for index in known)
    sources = ", ".join(f"size({index}) from {solver.origins[index]}" for index in known)
    return f"{text} = {product} ({sources})"


def _describe(axes: tuple[Axis, ...]) -> str:
    return "[" + ", ".join(a[0] if len(a) == 1 else "(" + " ".join(a) + ")" for a in axes) + "]"


def _operand_uses(network: Network) -> list[tuple[Operand, tuple[Axis, ...], Span | None]]:
    """Return each operand's declared axes, then every use of it with other indices
    (such as ``x[n, d, h]`` beside ``x[n, c, i]``), each with its span."""
    uses = [(operand, operand.axes, operand.span) for operand in network.operands]
    seen = {(operand.name, operand.axes) for operand in network.operands}
    for term in network.terms:
        for factor in term.factors:
            if factor.kind == "operand" and (factor.name, factor.axes) not in seen:
                seen.add((factor.name, factor.axes))
                uses.append((network.operand(factor.name), factor.axes, factor.span))
    return uses


def _bind_operand_shapes(network: Network, shapes: Mapping[str, tuple[int, ...]], solver: _SizeSolver) -> None:
    for operand, axes, span in _operand_uses(network):
        if operand.name not in shapes:
            continue
        shape = shapes[operand.name]
        if len(shape) != len(axes):
            raise ShapeError(
                f"operand {operand.name!r} has rank {len(shape)}, expected {len(axes)}"
                f" for axes {_describe(axes)}",
                span,
            )
        for number, (axis, size) in enumerate(zip(axes, shape)):
            if len(axis) == 1:
                solver.set(axis[0], size, f"operand {operand.name!r} axis {number}", span)


def _group_constraints(network: Network, shapes: Mapping[str, tuple[int, ...]]) -> list[tuple[Axis, int, str, Span | None]]:
    constraints = []
    for operand, axes, span in _operand_uses(network):
        if operand.name not in shapes:
            continue
        for number, axis in enumerate(axes):
            if len(axis) > 1:
                origin = f"operand {operand.name!r} axis {number} ({' '.join(axis)})"
                constraints.append((axis, shapes[operand.name][number], origin, span))
    return constraints


def _pattern_parameters(factor: Factor, raw: Mapping[str, Any], kernel: int) -> size_rules.PatternParameters:
    stride = raw.get("stride", 1)
    dilation = raw.get("dilation", 1)
    try:
        padding = size_rules.padding_pair(raw.get("padding", 0), kernel, dilation, stride)
    except ValueError as error:
        raise DiagramError(str(error), factor.span) from None
    return size_rules.PatternParameters(stride, padding, dilation, raw.get("output_padding", 0))


def _propagate_pattern(factor: Factor, raw: Mapping[str, Any], solver: _SizeSolver) -> bool:
    kernel_index, output_index, input_index = (axis[0] for axis in factor.axes)
    sizes = solver.sizes
    if kernel_index not in sizes:
        return False
    kernel = sizes[kernel_index]
    parameters = _pattern_parameters(factor, raw, kernel)
    where = f"the index pattern [{kernel_index}, {output_index}, {input_index}]"
    try:
        if input_index in sizes and output_index in sizes and parameters.output_padding:
            # A transpose convolution's output padding can exceed the stride (it
            # must stay below the dilation), so that a forward pass over its
            # input side would give more positions than its output side has.
            if size_rules.input_size(sizes[output_index], kernel, parameters) == sizes[input_index]:
                return False
        if input_index in sizes:
            index, size = output_index, size_rules.output_size(sizes[input_index], kernel, parameters)
        elif output_index in sizes:
            index, size = input_index, size_rules.input_size(sizes[output_index], kernel, parameters)
        else:
            return False
    except ValueError as error:
        raise solver.error(f"{where}: {error}", factor.span) from None
    return solver.set(index, size, where, factor.span)
