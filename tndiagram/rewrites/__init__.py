"""Rewrites of bound networks that make them cheaper to contract.

Each pass is a pure function from a :class:`~tndiagram.bind.BoundNetwork` to
another, in its own module, that returns its input object unchanged when
nothing applies. :func:`simplify` runs them in the order of :data:`PASSES` to
a fixed point and returns a :class:`Trace`. ``docs/rewrites.md`` states each
identity and precondition with pictures.
"""

from .pipeline import PASS_NAMES, PASSES, Firing, Trace, resolve_disabled, simplify

__all__ = ["PASSES", "PASS_NAMES", "Firing", "Trace", "resolve_disabled", "simplify"]
