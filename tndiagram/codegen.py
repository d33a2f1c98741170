"""Emit Python source for a planned network: straight-line torch code that a
person can read, save and ship, with no import but torch.

The emitted module defines one function named after the network. Constants
(index patterns, deltas, all-ones vectors) are built on the first call for
each (dtype, device) and cached in the module; the contraction follows the
planned path, one ``torch.einsum`` per step.
"""

from __future__ import annotations

import itertools
import string
import sys
import types
from typing import Sequence

from . import __version__
from .bind import BoundNetwork
from .errors import CodegenError
from .ir import Factor
from .plan import ContractionPlan, TermPlan
from .printer import format_axes, format_value

__all__ = ["emit", "function_name", "load_source"]

PATTERN_HELPER = '''
def index_pattern(kernel_size, output_size, input_size, stride, padding, dilation, dtype, device):
    """Return the index pattern Π[k, o, i] = 1 if i = stride·o + dilation·k − padding, else 0."""
    k = torch.arange(kernel_size, device=device).view(-1, 1, 1)
    o = torch.arange(output_size, device=device).view(1, -1, 1)
    i = torch.arange(input_size, device=device).view(1, 1, -1)
    return (i == stride * o + dilation * k - padding).to(dtype)
'''

DELTA_HELPER = '''
def kronecker_delta(size, order, dtype, device):
    """Return the order-`order` Kronecker delta: 1 where all indices are equal, else 0."""
    delta = torch.zeros((size,) * order, dtype=dtype, device=device)
    positions = torch.arange(size, device=device)
    delta[(positions,) * order] = 1
    return delta
'''


def _letters(indices: Sequence[str]) -> dict[str, str]:
    """Give each index an einsum letter: its own first letter when still free."""
    alphabet = string.ascii_lowercase + string.ascii_uppercase
    if len(indices) > len(alphabet):
        raise CodegenError(
            f"the network has {len(indices)} indices, more than torch.einsum's {len(alphabet)} letters"
        )
    letters: dict[str, str] = {}
    used: set[str] = set()
    for index in indices:
        first = index[0]
        if first in alphabet and first not in used:
            letters[index] = first
            used.add(first)
    free = iter(c for c in alphabet if c not in used)
    for index in indices:
        if index not in letters:
            letters[index] = next(free)
    return letters


def _number(value: float) -> str:
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def _shape_text(shape: Sequence[int]) -> str:
    return ", ".join(str(s) for s in shape)


class _Emitter:
    def __init__(self, bound: BoundNetwork, plan: ContractionPlan, origin: str | None):
        self.bound = bound
        self.plan = plan
        self.network = bound.network
        self.origin = origin
        self.lines: list[str] = []
        self.letters = _letters(list(bound.sizes))
        self.constant_names: dict[tuple, str] = {}
        self.constant_calls: list[str] = []
        self.uses_pattern = False
        self.uses_delta = False
        self.temporary = 0

    def einsum(self, inputs: Sequence[Sequence[str]], output: Sequence[str]) -> str:
        text = ",".join("".join(self.letters[i] for i in indices) for indices in inputs)
        return text + "->" + "".join(self.letters[i] for i in output)

    def constant(self, factor: Factor) -> str:
        """Return the variable name of a constant, registering how to build it."""
        sizes = self.bound.sizes
        if factor.kind == "pattern":
            kernel, output, input = (sizes[axis[0]] for axis in factor.axes)
            params = dict(factor.params)
            left, right = params["padding"]
            key = ("pattern", kernel, output, input, params["stride"], left, params["dilation"])
            call = (
                f"index_pattern({kernel}, {output}, {input}, stride={params['stride']},"
                f" padding={left}, dilation={params['dilation']}, dtype=dtype, device=device)"
            )
            prefix = "pattern"
            self.uses_pattern = True
        elif factor.kind == "delta":
            size, order = sizes[factor.axes[0][0]], len(factor.axes)
            key = ("delta", size, order)
            if order == 2:
                call = f"torch.eye({size}, dtype=dtype, device=device)"
            else:
                call = f"kronecker_delta({size}, {order}, dtype=dtype, device=device)"
                self.uses_delta = True
            prefix = "delta"
        elif factor.kind == "ones":
            size = sizes[factor.axes[0][0]]
            key = ("ones", size)
            call = f"torch.ones({size}, dtype=dtype, device=device)"
            prefix = "ones"
        else:
            raise CodegenError(f"unknown constant kind {factor.kind!r}")
        if key not in self.constant_names:
            self.constant_names[key] = f"{prefix}_{sum(1 for k in self.constant_names if k[0] == key[0]) + 1}"
            self.constant_calls.append(call)
        return self.constant_names[key]

    def new_temporary(self) -> str:
        self.temporary += 1
        name = f"t{self.temporary}"
        # An operand may already be called t1; the underscore keeps them apart.
        return f"_{name}" if name in self.network.operand_names else name

    def emit_term(self, number: int, term: TermPlan) -> tuple[list[str], str]:
        """Return the lines that compute one term and the expression of its value."""
        description = " * ".join(
            f.name if f.kind == "operand" else f"{f.kind}{format_axes(f.axes)}" for f in term.factors
        )
        lines = [
            f"    # Term {number}: {description}",
            f"    # {term.flops:.3g} FLOPs, largest intermediate {term.largest_intermediate:.3g} elements.",
        ]
        live = [self.constant(f) if f.is_constant else f.name for f in term.factors]
        expression = live[0]
        for position, step in enumerate(term.steps):
            operands = [live[p] for p in step.operands]
            for p in sorted(step.operands, reverse=True):
                live.pop(p)
            if len(step.inputs) == 1 and tuple(step.inputs[0]) == tuple(step.output):
                expression = operands[0]
            else:
                expression = f'torch.einsum("{self.einsum(step.inputs, step.output)}", {", ".join(operands)})'
            if position < len(term.steps) - 1:
                target = self.new_temporary()
                lines.append(f"    {target} = {expression}")
                live.append(target)
        if term.coefficient != 1:
            expression = f"{expression} * {_number(term.coefficient)}"
        return lines, expression

    def source(self, function_name: str) -> str:
        network = self.network
        bound = self.bound
        output_indices = [i for axis in network.output for i in axis]
        output_shape = bound.shape_of(network.output)
        present = [o for o in network.operands if o.name in bound.shapes]

        body: list[str] = []
        split = [o for o in present if any(len(axis) > 1 for axis in o.axes)]
        if split:
            body.append("    # Split grouped axes into their indices.")
            for operand in split:
                shape = [bound.sizes[i] for axis in operand.axes for i in axis]
                body.append(
                    f"    {operand.name} = {operand.name}.reshape({_shape_text(shape)})"
                    f"  # {format_axes(operand.axes)}"
                )
        result_name = network.output_name if network.output_name not in bound.shapes else "result"
        full_rank = len(output_indices)
        covers_all = False
        for number, term in enumerate(self.plan.terms, start=1):
            lines, expression = self.emit_term(number, term)
            body.extend(lines)
            if len(term.output) < full_rank:
                # Indices that this term lacks become size-one axes, so the sum broadcasts.
                broadcast = [bound.sizes[i] if i in term.output else 1 for i in output_indices]
                expression = f"({expression}).reshape({_shape_text(broadcast)})" if " " in expression else f"{expression}.reshape({_shape_text(broadcast)})"
            else:
                covers_all = True
            if number == 1:
                body.append(f"    {result_name} = {expression}")
            else:
                body.append(f"    {result_name} = {result_name} + {expression}")
        final = list(output_shape)
        split_output = [bound.sizes[i] for i in output_indices]
        if not covers_all:
            body.append(f"    {result_name} = {result_name}.expand({_shape_text(split_output)})")
        if final != split_output:
            body.append(f"    return {result_name}.reshape({_shape_text(final)})")
        else:
            body.append(f"    return {result_name}")

        header = self.header(function_name)
        parts = [header, "import torch", ""]
        if self.uses_pattern:
            parts.append(PATTERN_HELPER)
        if self.uses_delta:
            parts.append(DELTA_HELPER)
        arguments = ", ".join(o.name for o in present)
        if self.constant_calls:
            parts.append("_constants = {}")
            parts.append("")
            parts.append("")
            parts.append("def constants(dtype, device):")
            parts.append('    """Build the constant tensors once per dtype and device."""')
            parts.append("    key = (dtype, device)")
            parts.append("    if key not in _constants:")
            parts.append("        _constants[key] = (")
            for call in self.constant_calls:
                parts.append(f"            {call},")
            parts.append("        )")
            parts.append("    return _constants[key]")
            parts.append("")
        parts.append("")
        parts.append(f"def {function_name}({arguments}):")
        parts.append(f'    """Compute {network.output_name}{format_axes(network.output)}, shape ({_shape_text(output_shape)}{"," if len(output_shape) == 1 else ""})."""')
        if self.constant_calls:
            first = present[0].name
            names = ", ".join(self.constant_names.values())
            trailing = "," if len(self.constant_names) == 1 else ""
            parts.append(f"    {names}{trailing} = constants({first}.dtype, {first}.device)")
        parts.extend(body)
        return "\n".join(parts) + "\n"

    def header(self, function_name: str) -> str:
        bound = self.bound
        lines = [f'"""{function_name}: generated by tndiagram {__version__}' + (f" from {self.origin}." if self.origin else ".")]
        lines.append("")
        for operand in self.network.operands:
            if operand.name in bound.shapes:
                lines.append(
                    f"{operand.name}{format_axes(operand.axes)}: shape ({_shape_text(bound.shapes[operand.name])}"
                    f"{',' if len(bound.shapes[operand.name]) == 1 else ''})"
                )
        if bound.hyper:
            lines.append(
                "Hyper-parameters: " + ", ".join(f"{k}={format_value(v)}" for k, v in bound.hyper.items())
            )
        lines.append("Index sizes: " + ", ".join(f"{i}={s}" for i, s in bound.sizes.items()))
        lines.append("Einsum letters: " + ", ".join(f"{i}={c}" for i, c in self.letters.items() if i != c))
        lines.append(
            f"Planned cost: {self.plan.flops:.3g} FLOPs, largest intermediate"
            f" {self.plan.largest_intermediate:.3g} elements."
        )
        lines.append('"""')
        if lines[-3].startswith("Einsum letters: ") and lines[-3] == "Einsum letters: ":
            del lines[-3]
        return "\n".join(lines)


RESERVED_NAMES = ("torch", "constants", "index_pattern", "kronecker_delta")


def function_name(bound: BoundNetwork, requested: str | None = None) -> str:
    """Return the name of the emitted function: the network's, unless an operand takes it."""
    name = requested or bound.network.name
    if not name.isidentifier():
        raise CodegenError(f"{name!r} is not a valid Python function name")
    if name in bound.network.operand_names or name in RESERVED_NAMES:
        name = f"{name}_network"
    return name


def emit(bound: BoundNetwork, plan: ContractionPlan, name: str | None = None, origin: str | None = None) -> str:
    """Return the Python source of a module whose function computes ``bound``."""
    return _Emitter(bound, plan, origin).source(function_name(bound, name))


def load_source(source: str, function_name: str, module_name: str | None = None):
    """Execute generated source as a module and return its function.

    The module is registered in ``sys.modules`` under a unique name (by
    default ``tndiagram_generated_<number>``), because torch.compile imports
    the module of a function it inlines to read the function's globals.
    """
    if module_name is None:
        module_name = f"tndiagram_generated_{next(_module_numbers)}"
    module = types.ModuleType(module_name)
    exec(compile(source, f"<{module_name}>", "exec"), module.__dict__)
    sys.modules[module_name] = module
    return getattr(module, function_name)


_module_numbers = itertools.count(1)
