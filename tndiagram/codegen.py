"""Emit Python source for a planned network: straight-line torch code that a
person can read, save and ship, with no import but torch.

The emitted module defines one function named after the network. Constants
(index patterns, deltas, all-ones vectors, and the precomputed constants of a
rewritten network) are built on the first call for each (dtype, device) and
cached in the module; the contraction follows the planned path, one
``torch.einsum`` per step. A view of a rewritten network becomes slicing,
``torch.nn.functional.pad``, ``Tensor.unfold`` and reshapes of the operand.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import replace
from math import prod
import sys
import types
from typing import Mapping, Sequence

import sympy

from . import __version__, native
from .bind import BoundNetwork
from .errors import CodegenError
from .ir import Factor, ViewStep
from .plan import ContractionPlan, ContractionStep, TermPlan
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


def _canonical_equation(equation: str) -> str:
    """Rename an einsum equation's letters in order of first appearance."""
    names: dict[str, str] = {}
    for character in equation:
        if character.isalpha() and character not in names:
            names[character] = string.ascii_letters[len(names)]
    return "".join(names.get(c, c) for c in equation)


def _number(value: float) -> str:
    """Return a coefficient as Python source: an integer where it is one and small
    enough for torch's 64-bit scalars, else a float."""
    number = float(value)
    if number.is_integer() and abs(number) < 2**53:
        return repr(int(number))
    return repr(number)


def _shape_text(shape: Sequence[int]) -> str:
    return ", ".join(str(s) for s in shape)


class _Emitter:
    def __init__(self, bound: BoundNetwork, plan: ContractionPlan, origin: str | None, native: bool = True):
        self.native = native
        # Variables already computed, by what computes them, for reuse.
        self.reused: dict[tuple, str] = {}
        self.bound = bound
        self.plan = plan
        self.network = bound.network
        self.origin = origin
        self.lines: list[str] = []
        used = {i for term in bound.network.terms for f in term.factors for i in f.indices}
        used.update(i for axis in bound.network.output for i in axis)
        self.letters = _letters([index for index in bound.sizes if index in used])
        self.constant_names: dict[tuple, str] = {}
        self.constant_calls: list[str] = []
        self.uses_pattern = False
        self.uses_delta = False
        self.temporary = 0
        self.einsum_used = True
        # Names the function body binds: a temporary or constant must not take one.
        self.taken = set(self.network.operand_names) | set(RESERVED_NAMES)
        self.result_name = self.network.output_name
        if self.result_name in self.taken:
            self.result_name = self._free("result")
        self.taken.add(self.result_name)
        # The variable that a native kernel's result takes in terms after the first.
        self.convolution_name = self._free("convolution")
        self.taken.add(self.convolution_name)

    def einsum(self, inputs: Sequence[Sequence[str]], output: Sequence[str]) -> str:
        text = ",".join("".join(self.letters[i] for i in indices) for indices in inputs)
        return text + "->" + "".join(self.letters[i] for i in output)

    def constant(self, factor: Factor) -> str:
        """Return the variable name of a constant, registering how to build it."""
        key, prefix, call = self.constant_call(factor)
        if key not in self.constant_names:
            name = f"{prefix}_{sum(1 for k in self.constant_names if k[0] == key[0]) + 1}"
            self.constant_names[key] = self._free(name)
            self.constant_calls.append(call)
        return self.constant_names[key]

    def constant_call(self, factor: Factor) -> tuple[tuple, str, str]:
        """Return a constant's cache key, variable prefix and the expression that builds it."""
        sizes = self.bound.sizes
        if factor.kind == "constant":
            members = factor.param("factors")
            letters = _letters(list(dict.fromkeys(i for m in members for i in m.indices)))
            equation = ",".join("".join(letters[i] for i in m.indices) for m in members)
            equation += "->" + "".join(letters[i] for i in factor.indices)
            calls = ", ".join(self.constant_call(member)[2] for member in members)
            call = f'torch.einsum("{equation}", {calls})'
            # The call text fixes the value, so equal constants share one tensor.
            return ("constant", call), "constant", call
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
        return key, prefix, call

    def operand(self, factor: Factor, lines: list[str]) -> str:
        """Return the expression of an operand or view factor, adding the lines a view needs."""
        declared = self.network.operand(factor.name).axes
        sizes = self.bound.sizes
        if factor.kind == "operand":
            # A re-indexed use with the declared groups reads the same tensor.
            if [len(axis) for axis in factor.axes] == [len(axis) for axis in declared]:
                return factor.name
            shape = [sizes[i] for i in factor.indices]
            return f"{factor.name}.reshape({_shape_text(shape)})"
        source = factor.param("source")
        variable = self.new_temporary()
        start = factor.name
        dims = [i for axis in source for i in axis]
        if [len(axis) for axis in source] != [len(axis) for axis in declared]:
            start = f"{factor.name}.reshape({_shape_text([sizes[i] for i in dims])})"
        view_lines = [f"    {variable} = {start}"]
        view_lines.extend(f"    {variable} = {text}" for text in _view(variable, factor.param("steps"), dims, sizes))
        # A view built the same way before (such as the second copy of x in a
        # Kronecker factor) is the same tensor.
        key = ("view",) + tuple(line.replace(variable, "@") for line in view_lines)
        if key in self.reused:
            self.temporary -= 1
            return self.reused[key]
        self.reused[key] = variable
        lines.append(f"    # View of {factor.name}: {'; '.join(str(step) for step in factor.param('steps'))}")
        lines.extend(view_lines)
        return variable

    def new_temporary(self) -> str:
        self.temporary += 1
        return self._free(f"t{self.temporary}")

    def _free(self, name: str) -> str:
        """Return ``name``, with leading underscores while an operand, the result
        or a name of the module has it."""
        while name in self.taken:
            name = f"_{name}"
        return name

    def fold_biases(self) -> dict[int, int]:
        """Pair native convolution terms with a bias term that torch's kernel can add.

        A term that is one operand carrying exactly the convolution's output channels
        (groups first, as torch orders them) is passed as the kernel's ``bias``: the
        kernel adds it while it writes the output, which saves a pass over the result.
        Return the term number of each such bias by the number of its convolution.
        """
        biases: dict[int, int] = {}
        for number, match in self.matches.items():
            if match.kind != "forward" or self.plan.terms[number - 1].coefficient != 1:
                continue
            channels = list(match.group + match.output_channel)
            for other, term in enumerate(self.plan.terms, start=1):
                factor = term.factors[0] if len(term.factors) == 1 else None
                if (
                    factor is not None
                    and factor.kind == "operand"
                    and term.coefficient == 1
                    and list(factor.indices) == channels
                    and other not in self.matches
                    and other not in biases.values()
                ):
                    biases[number] = other
                    break
        return biases

    def emit_term(self, number: int, term: TermPlan, target: str) -> tuple[list[str], str]:
        """Return the lines that compute one term and the expression of its value;
        a native kernel assigns its result to ``target``."""
        description = " * ".join(
            f.name if f.kind == "operand" else f"{f.kind} of {f.name}{format_axes(f.axes)}" if f.kind == "view"
            else f"{f.kind}{format_axes(f.axes)}"
            for f in term.factors
        )
        lines = [
            f"    # Term {number}: {description}",
            f"    # {term.flops:.3g} FLOPs, largest intermediate {term.largest_intermediate:.3g} elements.",
        ]
        match = self.matches.get(number)
        if match is not None:
            variables = [f.name for f in term.factors]
            axes = [self.operand_axes(f) for f in term.factors]
            bias = None
            if number in self.biases:
                factor = self.plan.terms[self.biases[number] - 1].factors[0]
                sizes = self.bound.sizes
                channels = [prod(sizes[i] for i in factor.indices)]
                bias = native.arrange(factor.name, self.operand_axes(factor), factor.indices, channels, sizes)
                lines[0] += f" + {factor.name}"
            native_lines, expression = native.emit_convolution(
                match, variables, axes, term.output, self.bound.sizes, target, bias
            )
            lines[1] = f"    # Lowered to torch's native {native.DESCRIPTIONS[match.kind]}."
            if term.coefficient != 1:
                expression = f"{expression} * {_number(term.coefficient)}"
            return lines + native_lines, expression
        live = [self.constant(f) if f.is_constant else self.operand(f, lines) for f in term.factors]
        expression = live[0]
        scaled = False
        for position, step in enumerate(term.steps):
            operands = [live[p] for p in step.operands]
            for p in sorted(step.operands, reverse=True):
                live.pop(p)
            last = position == len(term.steps) - 1
            scale = term.coefficient if last and term.coefficient != 1 else None
            gram = self.gram(step, operands, scale)
            summed = _summed_dimensions(step)
            key = None
            if len(step.inputs) == 1 and tuple(step.inputs[0]) == tuple(step.output):
                expression = operands[0]
            elif summed is not None:
                expression = f"{operands[0]}.sum({_dimensions_text(summed)})"
                key = ("sum", operands[0], summed)
            elif gram is not None:
                gram_lines, expression = gram
                lines.extend(gram_lines)
                equation = ""
                if scale is not None:
                    scale = None
                    scaled = True
            else:
                equation = self.einsum(step.inputs, step.output)
                expression = f'torch.einsum("{equation}", {", ".join(operands)})'
                key = ("step", _canonical_equation(equation), tuple(operands))
            if position < len(term.steps) - 1:
                # The same contraction of the same tensors, up to index names, is computed once.
                if key is not None and key in self.reused:
                    live.append(self.reused[key])
                    continue
                target = self.new_temporary()
                lines.append(f"    {target} = {expression}")
                live.append(target)
                if key is not None:
                    self.reused[key] = target
        if term.coefficient != 1 and not scaled:
            expression = f"{expression} * {_number(term.coefficient)}"
        return lines, expression

    def gram(
        self, step: ContractionStep, operands: Sequence[str], scale: sympy.Expr | None = None
    ) -> tuple[list[str], str] | None:
        """Return code for a step that contracts a tensor with itself (a Gram matrix U Uᵀ).

        torch.einsum would copy the tensor twice into matrix layout, so here it
        is copied once and multiplied with its own transpose. Axes that carry the
        same index on both sides are batch axes if the output keeps them, and
        contracted otherwise. The other axes are the two free sides of the Gram
        matrix.
        """
        if len(operands) != 2 or operands[0] != operands[1]:
            return None
        left, right = step.inputs
        if len(set(left)) != len(left) or len(set(right)) != len(right):
            return None  # a diagonal: einsum takes it
        output = set(step.output)
        batch, free_left, free_right, contracted = [], [], [], []
        for a, b in zip(left, right):
            if a == b:
                (batch if a in output else contracted).append(a)
            elif a in output and b in output and a not in right and b not in left:
                free_left.append(a)
                free_right.append(b)
            else:
                return None
        if not contracted or not free_left or set(batch + free_left + free_right) != output:
            return None
        # The matrix copy may order its axes freely, so it takes the output's order,
        # which leaves the product without a permutation (and a second copy).
        output_order = list(step.output)
        batch.sort(key=output_order.index)
        pairs = sorted(zip(free_left, free_right), key=lambda pair: output_order.index(pair[0]))
        free_left = [left for left, _ in pairs]
        free_right = [right for _, right in pairs]
        sizes = self.bound.sizes
        size = lambda indices: prod(sizes[i] for i in indices)  # noqa: E731
        order = batch + free_left + contracted
        permutation = [list(left).index(i) for i in order]
        matrix = self.new_temporary()
        lines = [
            f"    # {operands[0]} contracted with itself: one copy in matrix layout, then U Uᵀ.",
            f"    {matrix} = {operands[0]}.permute({_shape_text(permutation)})"
            f".reshape({size(batch)}, {size(free_left)}, {size(contracted)})",
        ]
        result = f"torch.bmm({matrix}, {matrix}.transpose(1, 2))"
        if scale is not None:
            # The product is a new tensor that no one else reads, so scaling it in
            # place saves a second result-sized allocation.
            result += f".mul_({_number(scale)})"
        shape = [sizes[i] for i in batch + free_left + free_right]
        result += f".reshape({_shape_text(shape)})"
        current = batch + free_left + free_right
        if current != list(step.output):
            result += f".permute({_shape_text([current.index(i) for i in step.output])})"
        return lines, result

    def operand_axes(self, factor: Factor) -> tuple:
        """Return the axes an operand's variable has in the code: split into single indices or not."""
        if factor.kind == "operand" and factor.name in self.split_operands:
            return tuple((index,) for index in factor.indices)
        return factor.axes

    def source(self, function_name: str) -> str:
        network = self.network
        bound = self.bound
        output_indices = [i for axis in network.output for i in axis]
        output_shape = bound.shape_of(network.output)
        present = [o for o in network.operands if o.name in bound.shapes]

        body: list[str] = []
        self.matches = {}
        if self.native:
            for number, term in enumerate(self.plan.terms, start=1):
                match = native.match_convolution(term.factors, term.output, bound.sizes)
                if match is not None:
                    self.matches[number] = match
        self.biases = self.fold_biases()
        folded = set(self.biases.values())
        # Einsum steps and views need single-index axes; native kernels take grouped axes as they are.
        einsum_operands = {
            f.name
            for number, term in enumerate(self.plan.terms, start=1)
            if number not in self.matches and number not in folded
            for f in term.factors
            if f.kind in ("operand", "view")
        }
        split = [o for o in present if any(len(axis) > 1 for axis in o.axes) and o.name in einsum_operands]
        self.split_operands = {o.name for o in split}
        if split:
            body.append("    # Split grouped axes into their indices.")
            for operand in split:
                shape = [bound.sizes[i] for axis in operand.axes for i in axis]
                body.append(
                    f"    {operand.name} = {operand.name}.reshape({_shape_text(shape)})"
                    f"  # {format_axes(operand.axes)}"
                )
        result_name = self.result_name
        full_rank = len(output_indices)
        covers_all = False
        emitted = 0
        for number, term in enumerate(self.plan.terms, start=1):
            if number in folded:
                continue
            emitted += 1
            lines, expression = self.emit_term(number, term, result_name if emitted == 1 else self.convolution_name)
            body.extend(lines)
            if len(term.output) < full_rank:
                # Indices that this term lacks become size-one axes, so the sum broadcasts.
                broadcast = [bound.sizes[i] if i in term.output else 1 for i in output_indices]
                expression = f"({expression}).reshape({_shape_text(broadcast)})" if " " in expression else f"{expression}.reshape({_shape_text(broadcast)})"
            else:
                covers_all = True
            if emitted == 1:
                if expression != result_name:
                    body.append(f"    {result_name} = {expression}")
            else:
                body.append(f"    {result_name} = {result_name} + {expression}")
        final = list(output_shape)
        split_output = [bound.sizes[i] for i in output_indices]
        if not covers_all:
            body.append(f"    {result_name} = {result_name}.expand({_shape_text(split_output)})")
        if final != split_output:
            # Two reshapes in a row are one reshape.
            if body[-1].startswith(f"    {result_name} = {result_name}.reshape(") and body[-1].endswith(")") and body[-1].count("(") == 1:
                body.pop()
            body.append(f"    return {result_name}.reshape({_shape_text(final)})")
        else:
            body.append(f"    return {result_name}")

        # The letters explain the einsum equations; code without any needs no key.
        self.einsum_used = any("torch.einsum(" in line for line in body)
        header = self.header(function_name)
        parts = [header, "", "import torch", ""]
        if self.uses_pattern:
            parts.append(PATTERN_HELPER)
        if self.uses_delta:
            parts.append(DELTA_HELPER)
        arguments = ", ".join(o.name for o in present)
        if self.constant_calls:
            if self.uses_pattern or self.uses_delta:
                parts.append("")  # two blank lines after the helper functions
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
            if len(self.constant_names) == 1:
                names = f"({names},)"
            parts.append(f"    {names} = constants({first}.dtype, {first}.device)")
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
        if self.einsum_used:
            lines.append("Einsum letters: " + ", ".join(f"{i}={c}" for i, c in self.letters.items() if i != c))
        lines.append(
            f"Planned cost: {self.plan.flops:.3g} FLOPs, largest intermediate"
            f" {self.plan.largest_intermediate:.3g} elements."
        )
        lines.append('"""')
        if lines[-3].startswith("Einsum letters: ") and lines[-3] == "Einsum letters: ":
            del lines[-3]
        return "\n".join(lines)


def _summed_dimensions(step: ContractionStep) -> tuple[int, ...] | None:
    """Return the dimensions that a one-tensor step sums over, keeping the order of
    the others, or None when the step does more (a diagonal or a permutation)."""
    if len(step.inputs) != 1:
        return None
    (indices,) = step.inputs
    if len(set(indices)) != len(indices) or len(step.output) == len(indices):
        return None
    remaining = [i for i in indices if i in step.output]
    if remaining != list(step.output):
        return None
    return tuple(d for d, i in enumerate(indices) if i not in step.output)


def _dimensions_text(dimensions: Sequence[int]) -> str:
    return str(dimensions[0]) if len(dimensions) == 1 else f"({_shape_text(dimensions)})"


def _index_text(dimension: int, start: int, stop: int, step: int) -> str:
    """Return ``[:, :, start:stop:step]``, slicing dimension ``dimension``."""
    entry = f"{start if start else ''}:{stop}" + (f":{step}" if step != 1 else "")
    return "[" + ", ".join([":"] * dimension + [entry]) + "]"


def _pad_and_slice(
    variable: str, dimension: int, count: int, low: int, high: int, length: int, step: int = 1
) -> list[str]:
    """Return right-hand sides that read positions low, low + step, …, high of a
    dimension of size ``length``, zero-padding the part that falls outside."""
    left, right = max(0, -low), max(0, high - (length - 1))
    lines = []
    if left or right:
        pairs = (0, 0) * (count - 1 - dimension) + (left, right)
        lines.append(f"torch.nn.functional.pad({variable}, {pairs})")
    start, stop = low + left, high + left + 1
    if start != 0 or stop != length + left + right or step != 1:
        lines.append(f"{variable}{_index_text(dimension, start, stop, step)}")
    return lines


def _view(variable: str, steps: Sequence[ViewStep], dims: list[str], sizes: Mapping[str, int]) -> list[str]:
    """Return the right-hand sides that apply the view ``steps`` to ``variable``.

    The slice and unfold steps on the tensor's own dimensions share one zero
    pad, placed before the first of them: padding each dimension in its own
    step would copy the growing, partly unfolded view once per dimension.
    """
    sizes = dict(sizes)
    amounts: dict[str, tuple[int, int]] = {}
    touched: set[str] = set()
    shifted: list[ViewStep] = []
    first = None
    for number, step in enumerate(steps):
        index = step.source[0] if step.source else None
        hoisted = step.kind in ("slice", "unfold") and index in dims and index not in touched
        touched.update(step.source)
        if not hoisted:
            shifted.append(step)
            continue
        length = sizes[index]
        if step.kind == "slice":
            high = step.start + step.step * (sizes[step.target[0]] - 1)
        else:
            output, kernel = (sizes[i] for i in step.target)
            high = step.start + step.step * (output - 1) + step.dilation * (kernel - 1)
        left, right = max(0, -step.start), max(0, high - (length - 1))
        if left or right:
            amounts[index] = (left, right)
            sizes[index] = length + left + right
            first = number if first is None else first
        shifted.append(replace(step, start=step.start + left))
    lines = []
    for number, step in enumerate(shifted):
        if number == first:
            # torch.nn.functional.pad lists the last dimension first.
            pairs = [amount for index in reversed(dims) for amount in amounts.get(index, (0, 0))]
            while pairs[-2:] == [0, 0]:
                del pairs[-2:]
            lines.append(f"torch.nn.functional.pad({variable}, ({_shape_text(pairs)}))")
        lines.extend(_view_step(variable, step, dims, sizes))
    return lines


def _view_step(variable: str, step: ViewStep, dims: list[str], sizes: dict[str, int]) -> list[str]:
    """Return the right-hand sides that apply one view step to ``variable``, updating ``dims``."""
    dimension = dims.index(step.source[0])
    count = len(dims)
    dims[dimension : dimension + len(step.source)] = list(step.target)
    length = sizes[step.source[0]]
    if step.kind == "slice":
        size = sizes[step.target[0]]
        high = step.start + step.step * (size - 1)
        return _pad_and_slice(variable, dimension, count, step.start, high, length, step.step)
    if step.kind == "unfold":
        output, kernel = (sizes[i] for i in step.target)
        span = step.dilation * (kernel - 1) + 1
        high = step.start + step.step * (output - 1) + span - 1
        lines = _pad_and_slice(variable, dimension, count, step.start, high, length)
        lines.append(f"{variable}.unfold({dimension}, {span}, {step.step})")
        if step.dilation != 1:
            lines.append(f"{variable}[..., ::{step.dilation}]")
        if dimension + 1 != count:
            lines.append(f"{variable}.movedim(-1, {dimension + 1})")
        return lines
    if step.kind == "split":
        return [f"{variable}.unflatten({dimension}, ({_shape_text(sizes[i] for i in step.target)}))"]
    if step.kind == "merge":
        return [f"{variable}.flatten({dimension}, {dimension + 1})"]
    return [f"{variable}.select({dimension}, {step.start})"]


RESERVED_NAMES = ("torch", "constants", "index_pattern", "kronecker_delta")


def function_name(bound: BoundNetwork, requested: str | None = None) -> str:
    """Return the name of the emitted function: the network's, unless an operand takes it."""
    name = requested or bound.network.name
    if not name.isidentifier():
        raise CodegenError(f"{name!r} is not a valid Python function name")
    if name in bound.network.operand_names or name in RESERVED_NAMES:
        name = f"{name}_network"
    return name


def emit(
    bound: BoundNetwork,
    plan: ContractionPlan,
    name: str | None = None,
    origin: str | None = None,
    native: bool = True,
) -> str:
    """Return the Python source of a module whose function computes ``bound``.

    With ``native``, terms that are exactly a convolution or one of its VJPs
    call torch's convolution kernels instead of the planned einsum path.
    """
    return _Emitter(bound, plan, origin, native).source(function_name(bound, name))


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
