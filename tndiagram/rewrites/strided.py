"""Strided lowering: an index pattern read as a padded, strided window view.

Identity: ``Π[k, o, i] = [i = S·o + D·k − P]`` has at most one i for each
(k, o), so ``Σ_i Π[k, o, i] T[…i…] = T[…S·o + D·k − P…]`` with zero where the
position falls outside [0, I). Every tensor that carries i becomes the view
``pad(T)`` unfolded along i into windows (o, k), which torch builds with
``torch.nn.functional.pad`` and ``Tensor.unfold`` instead of a multiplication
by the mostly-zero pattern.

Precondition: the pattern's three indices are distinct, i is not on the
output, at least one other factor carries i, and each such factor is an
operand or a view that carries i once and carries neither k nor o. Any
kernel, stride, padding and dilation qualify; the pipeline runs the cheaper
dense, kernel-one and down-sampling passes first.
"""

from __future__ import annotations

from ..bind import BoundNetwork
from ..ir import ViewStep
from .common import as_view, pattern_parameters, replace_term, viewable_input

NAME = "strided"


def lower_strided(bound: BoundNetwork) -> BoundNetwork:
    """Turn the first pattern contracted only with operands into window views of them."""
    for number, term in enumerate(bound.network.terms):
        for position, pattern in enumerate(term.factors):
            if pattern.kind != "pattern":
                continue
            found = viewable_input(bound, number, position)
            if found is None:
                continue
            kernel, output, input = pattern.indices
            stride, (left, _), dilation = pattern_parameters(pattern)
            step = ViewStep("unfold", (input,), (output, kernel), start=-left, step=stride, dilation=dilation)
            factors = [
                as_view(f, step) if n in found else f for n, f in enumerate(term.factors) if n != position
            ]
            return replace_term(bound, number, factors)
    return bound
