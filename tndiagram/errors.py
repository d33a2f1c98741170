"""Exceptions of tndiagram: one base class and one subclass per compiler stage.

Errors about diagram text carry a :class:`Span` and render as
``file:line:column: message`` followed by the source line and a caret, so that
every stage after the parser can still point at the text that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Span",
    "TNError",
    "DiagramSyntaxError",
    "DiagramError",
    "ShapeError",
    "RewriteError",
    "CodegenError",
]


@dataclass(frozen=True)
class Span:
    """A place in diagram text: 1-based line and column, end column exclusive."""

    file: str
    line: int
    column: int
    end_column: int
    source_line: str

    def render(self) -> str:
        """Return the source line and a caret line under the spanned characters."""
        width = max(1, self.end_column - self.column)
        # Tabs keep their width in the caret line, so the caret stays aligned.
        prefix = "".join(c if c == "\t" else " " for c in self.source_line[: self.column - 1])
        return f"    {self.source_line}\n    {prefix}{'^' * width}"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class TNError(Exception):
    """Base class of every error that tndiagram raises on purpose."""

    def __init__(self, message: str, span: Span | None = None):
        self.message = message
        self.span = span
        super().__init__(self._render())

    @property
    def file(self) -> str | None:
        return self.span.file if self.span else None

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def column(self) -> int | None:
        return self.span.column if self.span else None

    def _render(self) -> str:
        if self.span is None:
            return self.message
        return f"{self.span}: {self.message}\n{self.span.render()}"


class DiagramSyntaxError(TNError):
    """Diagram text that does not follow the grammar."""


class DiagramError(TNError):
    """Diagram text that parses but means nothing valid: an undeclared index,
    an unknown network, conflicting sizes or an invalid hyper-parameter."""


class ShapeError(TNError, ValueError):
    """Tensors passed to a compiled network whose rank, sizes, dtype or device
    do not match the diagram."""


class RewriteError(TNError):
    """A rewrite pass or derivative that cannot be applied."""


class CodegenError(TNError):
    """A network that cannot be turned into PyTorch code."""
