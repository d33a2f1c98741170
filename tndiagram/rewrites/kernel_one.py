"""Kernel size one: a strided slice.

Identity: with kernel size K = 1 the pattern is ``Π[0, o, i] = [i = S·o − P]``
(P the left padding; dilation has no effect), so
``Σ_i Π[0, o, i] T[…i…] = T[…S·o − P…]``, reading zero where S·o − P falls
outside [0, I). Every tensor that carries i becomes a strided slice of it
along i, with zero padding where needed, and the pattern disappears. The
kernel index of size one stays on the other factors, for the squeeze pass.

Precondition: K = 1, the pattern's three indices are distinct, i is not on
the output, at least one other factor carries i, and each such factor is an
operand or a view that carries i once and carries neither k nor o.
"""

from __future__ import annotations

from ..bind import BoundNetwork
from ..ir import ViewStep
from .common import as_view, pattern_parameters, replace_term, viewable_input

NAME = "kernel-one"


def slice_kernel_one(bound: BoundNetwork) -> BoundNetwork:
    """Turn the first pattern of kernel size one into strided slices of its input."""
    for number, term in enumerate(bound.network.terms):
        for position, pattern in enumerate(term.factors):
            if pattern.kind != "pattern" or bound.sizes[pattern.indices[0]] != 1:
                continue
            found = viewable_input(bound, number, position)
            if found is None:
                continue
            _, output, input = pattern.indices
            stride, (left, _), _ = pattern_parameters(pattern)
            step = ViewStep("slice", (input,), (output,), start=-left, step=stride)
            factors = [
                as_view(f, step) if n in found else f for n, f in enumerate(term.factors) if n != position
            ]
            return replace_term(bound, number, factors)
    return bound
