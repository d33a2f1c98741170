"""Plan the contraction of each term of a bound network with opt_einsum, once,
at compile time.

Grouped axes are split into their indices first, so that every tensor of a
term is an einsum operand whose axes are single indices. Indices that only one
tensor carries are summed out of it in a step of its own before the path
search, whatever the strategy. The path search uses
opt_einsum's ``'optimal'`` strategy for up to five tensors and ``'dp'`` above:
torch.einsum's default ``'auto'`` misses the cheap path of the 7-tensor networks
that second-order methods produce by an order of magnitude in FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

from math import prod

import opt_einsum

from .bind import BoundNetwork
from .errors import CodegenError
from .ir import Factor

__all__ = ["ContractionStep", "TermPlan", "ContractionPlan", "plan", "choose_strategy"]


@dataclass(frozen=True)
class ContractionStep:
    """One pairwise (or single-tensor) einsum of a contraction path.

    ``operands`` are positions in the list of live tensors; they are removed
    and the result is appended, as in ``opt_einsum.contract_path``.
    """

    operands: tuple[int, ...]
    inputs: tuple[tuple[str, ...], ...]
    output: tuple[str, ...]


@dataclass(frozen=True)
class TermPlan:
    """The planned contraction of one term."""

    factors: tuple[Factor, ...]
    inputs: tuple[tuple[str, ...], ...]
    output: tuple[str, ...]
    steps: tuple[ContractionStep, ...]
    coefficient: float
    flops: int
    largest_intermediate: int
    strategy: str


@dataclass(frozen=True)
class ContractionPlan:
    """The plans of every term of a bound network."""

    terms: tuple[TermPlan, ...]
    sizes: dict[str, int]

    @property
    def flops(self) -> int:
        return sum(t.flops for t in self.terms)

    @property
    def largest_intermediate(self) -> int:
        return max((t.largest_intermediate for t in self.terms), default=0)


def choose_strategy(tensor_count: int) -> str:
    return "optimal" if tensor_count <= 5 else "dp"


def plan(bound: BoundNetwork, strategy: str | None = None) -> ContractionPlan:
    """Plan every term of ``bound``; ``strategy`` overrides the opt_einsum strategy."""
    output_indices = [index for axis in bound.network.output for index in axis]
    plans = []
    for term in bound.network.terms:
        factors = term.factors
        inputs = tuple(factor.indices for factor in factors)
        present = {index for indices in inputs for index in indices}
        # Output indices that no tensor of this term carries are broadcast later.
        output = tuple(index for index in output_indices if index in present)
        plans.append(_plan_term(factors, inputs, output, bound.sizes, float(term.coefficient), strategy))
    return ContractionPlan(tuple(plans), dict(bound.sizes))


def _plan_term(
    factors: tuple[Factor, ...],
    inputs: tuple[tuple[str, ...], ...],
    output: tuple[str, ...],
    sizes: dict[str, int],
    coefficient: float,
    strategy: str | None,
) -> TermPlan:
    if not factors:
        raise CodegenError("a term without tensors cannot be compiled; multiply it by an operand")
    strategy = strategy or choose_strategy(len(factors))
    symbols = {index: opt_einsum.get_symbol(number) for number, index in enumerate(sizes)}
    equation = ",".join("".join(symbols[i] for i in indices) for indices in inputs)
    equation += "->" + "".join(symbols[i] for i in output)
    shapes = [tuple(sizes[i] for i in indices) for indices in inputs]
    if len(factors) == 1:
        size = 1
        for index in output:
            size *= sizes[index]
        step = ContractionStep((0,), inputs, output)
        return TermPlan(factors, inputs, output, (step,), coefficient, _single_flops(inputs[0], sizes), size, "single")
    steps, live, intermediate = _private_sums(inputs, output)
    # A sum step's position points into the live list, so its cost comes from its own inputs.
    flops = sum(_single_flops(step.inputs[0], sizes) for step in steps)
    largest = max((prod(sizes[i] for i in step.output) for step in steps), default=0)
    if steps:
        equation = ",".join("".join(symbols[i] for i in indices) for indices in live)
        equation += "->" + "".join(symbols[i] for i in output)
        shapes = [tuple(sizes[i] for i in indices) for indices in live]
    path, info = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize=strategy)
    names = {symbol: index for index, symbol in symbols.items()}
    for contraction in info.contraction_list:
        # As a person writes it: the running intermediate first, then the
        # factors in the term's order (opt_einsum lists them in its own order).
        positions = tuple(sorted(contraction[0], key=lambda p: (not intermediate[p], p)))
        step_output_text = contraction[2].split("->")[1]
        step_inputs = tuple(live[p] for p in positions)
        step_output = tuple(names[s] for s in step_output_text)
        for position in sorted(positions, reverse=True):
            live.pop(position)
            intermediate.pop(position)
        live.append(step_output)
        intermediate.append(True)
        steps.append(ContractionStep(positions, step_inputs, step_output))
    return TermPlan(
        factors,
        inputs,
        output,
        tuple(steps),
        coefficient,
        flops + int(info.opt_cost),
        max(largest, int(info.largest_intermediate)),
        strategy,
    )


def _private_sums(
    inputs: tuple[tuple[str, ...], ...], output: tuple[str, ...]
) -> tuple[list[ContractionStep], list[tuple[str, ...]], list[bool]]:
    """Sum each tensor over the indices that only it carries, before the path.

    Such an index meets no other tensor, so summing it first shrinks every
    later step that reads the tensor. As a step of its own, the sum reads a strided view without copying it, and
    two copies of one tensor become one sum and a Gram product. Return the sum
    steps and the live tensors after them, with which ones are intermediates.
    """
    carried = [index for indices in inputs for index in set(indices)]
    steps = []
    live = list(inputs)
    intermediate = [False] * len(live)
    for number, indices in enumerate(inputs):
        # Each earlier sum moved its tensor to the end of the live list.
        position = number - len(steps)
        if len(set(indices)) != len(indices):
            continue  # a diagonal: the einsum of the path takes it with the sum
        private = {i for i in indices if carried.count(i) == 1 and i not in output}
        if not private:
            continue
        remaining = tuple(i for i in indices if i not in private)
        steps.append(ContractionStep((position,), (indices,), remaining))
        live.pop(position)
        intermediate.pop(position)
        live.append(remaining)
        intermediate.append(True)
    return steps, live, intermediate


def _single_flops(indices: tuple[str, ...], sizes: dict[str, int]) -> int:
    total = 1
    for index in set(indices):
        total *= sizes[index]
    return total
