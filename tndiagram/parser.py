"""Parse diagram text into a Lark syntax tree, turning Lark's errors into
:class:`DiagramSyntaxError` with the file, line, column, a caret and the
expected tokens in plain words."""

from __future__ import annotations

import difflib
import functools
import importlib.resources
from pathlib import Path

import lark
from lark.lexer import PatternStr

from .errors import DiagramSyntaxError, Span

__all__ = ["parse_tree", "grammar_text", "span_of"]

GRAMMAR_FILE = "tndiagram.lark"

# Plain words for the grammar's named terminals; literal ones print as quoted text.
TERMINAL_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "NUMBER": "a number",
    "STRING": "a quoted string",
    "FAMILY": "'...'",
    "OPTIONAL": "'?'",
    "DERIVATIVE": "'vjp' or 'jvp'",
    "$END": "the end of the file",
}


def grammar_text() -> str:
    """Return the Lark grammar, from the source tree or the installed package.

    A source checkout reads the top-level ``grammar/`` folder beside the
    package; a wheel ships that folder as the package ``tndiagram.grammar``.
    """
    source_tree = Path(__file__).resolve().parent.parent / "grammar" / GRAMMAR_FILE
    if source_tree.is_file():
        return source_tree.read_text(encoding="utf-8")
    return (importlib.resources.files("tndiagram.grammar") / GRAMMAR_FILE).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    return lark.Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True)


def span_of(meta_or_token, lines: list[str], file: str) -> Span:
    """Return the span of a Lark tree node's ``meta`` or of a token."""
    line = meta_or_token.line
    column = meta_or_token.column
    end_line = getattr(meta_or_token, "end_line", line)
    end_column = getattr(meta_or_token, "end_column", column + 1)
    source_line = lines[line - 1] if 0 < line <= len(lines) else ""
    if end_line != line:
        end_column = len(source_line) + 1
    return Span(file, line, column, end_column, source_line)


def _describe(terminal: str) -> str:
    if terminal in TERMINAL_WORDS:
        return TERMINAL_WORDS[terminal]
    try:
        pattern = _parser().get_terminal(terminal).pattern
    except KeyError:
        return terminal
    if isinstance(pattern, PatternStr):
        return repr(pattern.value)
    return terminal.lower()


def _expected_words(expected: set[str]) -> str:
    words = sorted({_describe(t) for t in expected if not t.startswith("__IGNORE")})
    if not words:
        return "nothing more"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _token_words(token: lark.Token) -> str:
    if token.type == "$END":
        return "end of the file"
    return repr(str(token))


def _accepted(error: lark.exceptions.UnexpectedToken) -> set[str]:
    """Return the terminals that may really follow where the parser stopped.

    ``error.expected`` is the LALR look-ahead set of the state, which merges
    the contexts that share it: after ``network f(x[i]`` it lists '}' and
    'size' as if a body were open. The interactive parser tries each terminal.
    """
    try:
        accepted = error.interactive_parser.accepts()
    except Exception:  # a Lark without the interactive parser: keep its guess
        return set(error.expected)
    return set(accepted) or set(error.expected)


def _accepted_before(text: str, position: int, fallback: set[str]) -> set[str]:
    """Return the terminals that may follow ``text[:position]``."""
    try:
        parser = _parser().parse_interactive(text[:position])
        parser.exhaust_lexer()
        return set(parser.accepts()) or fallback
    except Exception:
        return fallback


def _hint(token: lark.Token, expected: set[str]) -> str:
    """Name the likely slip behind a syntax error, for the common cases."""
    words = {_describe(t) for t in expected}
    if token.type in ("$END", "NETWORK") and "'}'" in words:
        return " (a network body is not closed with '}')"
    if "']'" in words and token.type != "RSQB":
        return " (an index list is not closed with ']')"
    if "')'" in words and token.type != "RPAR" and len(words) <= 3:
        return " (a bracket is not closed with ')')"
    return ""


KEYWORDS = ("network", "size", "pattern", "delta", "ones")


def _keyword_hint(text: str, token: lark.Token) -> str:
    """Suggest a keyword when a misspelling of one likely caused the error.

    The misspelled word lexes as a name, so the parser stops later: at the word
    itself (``netwrok f``), at the token after it (``szie k = 3``), or at the
    ``(`` after an index list (``patern[k, o, i](stride=2)``).
    """
    try:
        tokens = [t for t in _parser().lex(text[: token.start_pos]) if t.type != "$END"]
    except (lark.exceptions.LarkError, TypeError):
        return ""
    candidates = [token]
    if tokens:
        candidates.append(tokens[-1])
    if token.type == "LPAR" and tokens and tokens[-1].type == "RSQB":
        # Walk back over the index list to the word before its '['.
        depth = 0
        for position in range(len(tokens) - 1, 0, -1):
            depth += {"RSQB": 1, "LSQB": -1}.get(tokens[position].type, 0)
            if depth == 0:
                candidates.append(tokens[position - 1])
                break
    for candidate in candidates:
        word = str(candidate)
        if candidate.type != "NAME" or word in KEYWORDS:
            continue
        if sum(str(t) == word for t in tokens + [token]) > 1:
            continue  # a name used twice is a name, not a slip
        matches = difflib.get_close_matches(word, KEYWORDS, n=1, cutoff=0.75)
        if matches:
            return f" ('{word}' is not a keyword: did you mean '{matches[0]}'?)"
    return ""


def parse_tree(text: str, file: str = "<string>") -> lark.Tree:
    """Parse diagram text and return its Lark syntax tree."""
    lines = text.splitlines()
    try:
        return _parser().parse(text)
    except lark.exceptions.UnexpectedToken as error:
        token = error.token
        if token.type == "$END" or token.line is None:
            line = max(1, len(lines))
            column = len(lines[-1]) + 1 if lines else 1
            span = Span(file, line, column, column + 1, lines[-1] if lines else "")
        else:
            span = span_of(token, lines, file)
        expected = _accepted(error)
        hint = _hint(token, expected) or _keyword_hint(text, token)
        message = f"unexpected {_token_words(token)}: expected {_expected_words(expected)}{hint}"
        raise DiagramSyntaxError(message, span) from None
    except lark.exceptions.UnexpectedCharacters as error:
        line_text = lines[error.line - 1] if 0 < error.line <= len(lines) else ""
        span = Span(file, error.line, error.column, error.column + 1, line_text)
        character = text[error.pos_in_stream] if error.pos_in_stream < len(text) else ""
        if error.allowed:
            allowed = _accepted_before(text, error.pos_in_stream, set(error.allowed))
            expected = f": expected {_expected_words(allowed)}"
        else:
            expected = ""
        raise DiagramSyntaxError(f"unexpected character {character!r}{expected}", span) from None
    except lark.exceptions.UnexpectedEOF as error:
        line = max(1, len(lines))
        column = len(lines[-1]) + 1 if lines else 1
        span = Span(file, line, column, column + 1, lines[-1] if lines else "")
        raise DiagramSyntaxError(
            f"unexpected end of the file: expected {_expected_words(set(error.expected))}", span
        ) from None
