"""tndiagram: a compiler from tensor-network diagrams to PyTorch functions.

Write a network in a ``.tn`` diagram file, :func:`load` or :func:`parse` it,
and :func:`compile` it to a callable that runs on torch tensors. :func:`vjp`
and :func:`jvp` derive the networks of its derivatives.
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    CodegenError,
    DiagramError,
    DiagramSyntaxError,
    RewriteError,
    ShapeError,
    Span,
    TNError,
)
from .ir import IRError, Network, verify  # noqa: E402
from .autodiff import jvp, vjp  # noqa: E402
from .lower import Program, load, parse  # noqa: E402
from .runtime import CompiledFunction, compile  # noqa: E402
from . import functional  # noqa: E402

__all__ = [
    "__version__",
    "parse",
    "load",
    "compile",
    "vjp",
    "jvp",
    "verify",
    "Network",
    "Program",
    "CompiledFunction",
    "functional",
    "TNError",
    "DiagramSyntaxError",
    "DiagramError",
    "ShapeError",
    "RewriteError",
    "CodegenError",
    "IRError",
    "Span",
]
