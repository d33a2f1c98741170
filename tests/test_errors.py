"""Errors: their class, position, caret line and wording.

Each case checks ``error.line`` and ``error.column``, that ``str(error)`` ends
with the source line and a caret line whose carets sit under the offending
text, and the words of the message.
"""

from pathlib import Path

import pytest
import torch

import tndiagram
from tndiagram import DiagramError, DiagramSyntaxError, ShapeError, TNError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DTYPE = torch.float64


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def randn(*shape, **options):
    return torch.randn(*shape, dtype=options.pop("dtype", DTYPE), **options)


def assert_points_at(error, line, column, underlined):
    """Check the position, and that the carets in str(error) sit exactly under ``underlined``."""
    assert (error.line, error.column) == (line, column)
    *_, source, carets = str(error).splitlines()
    assert source == "    " + error.span.source_line
    assert set(carets.strip()) == {"^"}
    start = carets.index("^")
    end = len(carets)
    assert start == 4 + column - 1, "the caret line is not aligned with the column"
    if underlined == "":
        # The end of the file: a single caret just past the last character.
        assert end - start == 1
        assert start == len(source)
    else:
        assert source[start:end] == underlined
    first_line = str(error).splitlines()[0]
    assert first_line.startswith(f"{error.file}:{line}:{column}: ")


def error_of(kind, action, *args, **kwargs):
    with pytest.raises(kind) as caught:
        action(*args, **kwargs)
    assert type(caught.value) is kind
    return caught.value


def parse_error(kind, text):
    return error_of(kind, tndiagram.parse, text)


# -- syntax errors -------------------------------------------------------------

SYNTAX = [
    pytest.param(
        "network f(x[i]) {\n    y[i = x\n}\n",
        (2, 9, "="),
        ["unexpected '='", "expected ',' or ']'", "(an index list is not closed with ']')"],
        id="missing-bracket",
    ),
    pytest.param(
        "network f(x[i]) {\n    y[i] = x[i\n}\n",
        (3, 1, "}"),
        ["unexpected '}'", "']'", "(an index list is not closed with ']')"],
        id="missing-bracket-before-brace",
    ),
    pytest.param(
        "network f(x[i]) {\n    y[i] = x\n",
        (2, 13, ""),
        ["unexpected end of the file", "'}'", "(a network body is not closed with '}')"],
        id="missing-brace-at-end-of-file",
    ),
    pytest.param(
        "network f(x[i]) {\n    y[i] = x\nnetwork g(x[i]) {\n    y[i] = x\n}\n",
        (3, 1, "network"),
        ["unexpected 'network'", "'}'", "(a network body is not closed with '}')"],
        id="missing-brace-before-next-network",
    ),
    pytest.param(
        "network f(x[i]) {\n    y[i] = x $ x\n}\n",
        (2, 14, "$"),
        ["unexpected character '$'", "'*'", "'}'"],
        id="stray-character",
    ),
    pytest.param(
        "network f(x[i]) {\n\ty[i] = x @ x\n}\n",
        (2, 11, "@"),
        ["unexpected character '@'"],
        id="stray-character-after-tab",
    ),
    pytest.param(
        "network f(x[i]) {\n    y[i] = x *",
        (2, 15, ""),
        ["unexpected end of the file: expected '(', '-', 'delta', 'ones', 'pattern', 'size', a name or a number"],
        id="end-of-file-in-expression",
    ),
    pytest.param(
        "network f(x[i]",
        (1, 15, ""),
        ["unexpected end of the file: expected ')', ',' or ';'", "(a bracket is not closed with ')')"],
        id="end-of-file-in-signature",
    ),
]


@pytest.mark.parametrize("text, position, words", SYNTAX)
def test_syntax_error(text, position, words):
    error = parse_error(DiagramSyntaxError, text)
    assert_points_at(error, *position)
    for word in words:
        assert word in error.message


def test_syntax_error_lists_only_followers():
    # Lark's LALR look-ahead set would also list '}' and 'size' here, as if a body were open.
    error = parse_error(DiagramSyntaxError, "network f(x[i]")
    assert "'}'" not in error.message
    assert "'size'" not in error.message
    error = parse_error(DiagramSyntaxError, "network f(x[i]) {\n    y[i] = x $ x\n}\n")
    assert "')'" not in error.message


def test_syntax_error_names_the_file():
    error = error_of(DiagramSyntaxError, tndiagram.parse, "network f(x[i]) {\n    y[i = x\n}\n", "model.tn")
    assert error.file == "model.tn"
    assert str(error).startswith("model.tn:2:9: unexpected '='")


# -- diagram errors found while parsing ----------------------------------------

TWO_NETWORKS = "network f(x[i]) {\n    y[i] = x\n}\n"

DIAGRAM = [
    pytest.param(
        "network f(x[i]) {\n    y[i, j] = x\n}\n",
        (2, 10, "j"),
        ["undeclared index 'j'", "no operand carries it", "no 'size' statement"],
        id="undeclared-index",
    ),
    pytest.param(
        "network f(x[i]) {\n    y[i] = x / size(j)\n}\n",
        (2, 16, "size(j)"),
        ["undeclared index 'j'"],
        id="undeclared-index-read-by-size",
    ),
    pytest.param(
        "network f(x[i]) {\n    y[i] = x * z\n}\n",
        (2, 16, "z"),
        ["unknown name 'z'", "neither an operand nor a hyper-parameter", "(known names: x)"],
        id="unknown-name",
    ),
    pytest.param(
        "network f(x[i]; a=1) {\n    y[i] = x * b[0]\n}\n",
        (2, 16, "b"),
        ["unknown name 'b'", "(known names: x, a)"],
        id="unknown-indexed-name",
    ),
    pytest.param(
        "network f(x[i]) {\n    y[i] = g(x)[i]\n}\n",
        (2, 12, "g"),
        ["unknown network 'g'", "the file defines f"],
        id="unknown-network-in-call",
    ),
    pytest.param(
        TWO_NETWORKS + "network g(x[i]) {\n    y[i] = f(x; s=1)[i]\n}\n",
        (5, 17, "s=1"),
        ["network 'f' has no hyper-parameter 's'", "(it has: none)"],
        id="unknown-hyper-parameter-in-call",
    ),
    pytest.param(
        TWO_NETWORKS + "network f(x[i]) {\n    y[i] = 2 * x\n}\n",
        (4, 9, "f"),
        ["network 'f' is defined twice"],
        id="network-defined-twice",
    ),
    pytest.param(
        "network f(x[i]) {\n    size i = 2\n    size i = 3\n    y[i] = x\n}\n",
        (3, 5, "size i = 3"),
        ["the size of index 'i' is declared twice"],
        id="size-declared-twice",
    ),
    pytest.param(
        "network f(x[i]) {\n    y[i] = g(x)[i]\n}\nnetwork g(x[i]) {\n    y[i] = f(x)[i]\n}\n",
        (5, 12, "f"),
        ["networks call each other in a cycle: f -> g -> f"],
        id="networks-call-each-other",
    ),
    pytest.param(
        "network f(x[i], w[j]) {\n    y[o] = x * w * pattern[j, o, i](stride=0)\n}\n",
        (2, 37, "stride=0"),
        ["invalid stride 0: stride must be a positive integer"],
        id="stride-0-literal",
    ),
    pytest.param(
        "network f(x[i], w[j]; stride=0) {\n    y[o] = x * w * pattern[j, o, i](stride=stride)\n}\n",
        (2, 37, "stride=stride"),
        ["invalid stride 0", "(the default of hyper-parameter 'stride')"],
        id="stride-0-default",
    ),
    pytest.param(
        "network f(x[i], w[j]) {\n    y[o] = x * w * pattern[j, o, i](padding='same', stride=2)\n}\n",
        (2, 20, "pattern[j, o, i](padding='same', stride=2)"),
        ["padding 'same' needs stride 1, got stride 2"],
        id="same-padding-stride-2-literal",
    ),
    pytest.param(
        "network f(x[i], w[j]) {\n    y[o] = x * w * pattern[j, o, i](padding='full')\n}\n",
        (2, 37, "padding='full'"),
        ["invalid padding 'full'", "expected 'same', 'valid', an integer or a pair"],
        id="invalid-padding-string-literal",
    ),
    pytest.param(
        "network f(x[i], w[j]) {\n    y[o] = x * w * pattern[j, o, i](strides=2)\n}\n",
        (2, 37, "strides=2"),
        ["unknown index pattern argument 'strides'", "expected one of stride, padding, dilation"],
        id="unknown-pattern-argument",
    ),
    pytest.param(
        "network f(x[i]) {\n    y[i] = x\n    z[i] = x\n}\n",
        (3, 5, "z[i] = x"),
        ["must have exactly one output statement", "found 2"],
        id="two-output-statements",
    ),
]


@pytest.mark.parametrize("text, position, words", DIAGRAM)
def test_diagram_error_when_parsing(text, position, words):
    error = parse_error(DiagramError, text)
    assert_points_at(error, *position)
    for word in words:
        assert word in error.message


def test_call_that_contradicts_a_size_statement():
    text = (EXAMPLES / "conv_nd.tn").read_text() + (
        "network caller(x[n, (g c), i...], w[(g k), c, j...]; groups=1) {\n"
        "    size g = 2\n"
        "    y[n, (g k), o...] = conv_nd(x, w; groups=groups)[n, (g k), o...]\n"
        "}\n"
    )
    error = parse_error(DiagramError, text)
    line = text.count("\n", 0, text.index("    y[n, (g k), o...] = conv_nd")) + 1
    assert_points_at(error, line, 25, "conv_nd(x, w; groups=groups)[n, (g k), o...]")
    assert "sets size(g) = groups, but size(g) is already 2 here" in error.message


# -- diagram errors found when compiling or binding ----------------------------


@pytest.fixture(scope="module")
def conv2d():
    return tndiagram.load(str(EXAMPLES / "conv2d.tn"))["conv2d"]


@pytest.fixture(scope="module")
def conv_nd():
    return tndiagram.load(str(EXAMPLES / "conv_nd.tn"))["conv_nd"]


FIRST_PATTERN = "pattern[j1, o1, i1](stride=stride[0], padding=padding[0], dilation=dilation[0])"
SECOND_PATTERN = "pattern[j2, o2, i2](stride=stride[1], padding=padding[1], dilation=dilation[1])"
AT_FIRST_PATTERN = (12, 13, FIRST_PATTERN)
AT_SECOND_PATTERN = (13, 13, SECOND_PATTERN)

COMPILE = [
    pytest.param(
        {"stride": 0}, AT_FIRST_PATTERN,
        ["invalid stride 0: stride must be a positive integer", "(from hyper-parameter stride = 0)"],
        id="stride-0",
    ),
    pytest.param(
        {"stride": (1, 0)}, AT_SECOND_PATTERN,
        ["invalid stride 0", "(from hyper-parameter stride = (1, 0))"],
        id="stride-0-in-second-dimension",
    ),
    pytest.param(
        {"dilation": -1}, AT_FIRST_PATTERN,
        ["invalid dilation -1: dilation must be a positive integer"],
        id="negative-dilation",
    ),
    pytest.param(
        {"padding": "same", "stride": 2}, AT_FIRST_PATTERN,
        ["padding 'same' needs stride 1, got stride 2 (torch rejects it too)"],
        id="same-padding-stride-2",
    ),
    pytest.param(
        {"padding": "full"}, AT_FIRST_PATTERN,
        ["invalid padding 'full': expected 'same', 'valid', an integer or a pair", "(from hyper-parameter padding = 'full')"],
        id="invalid-padding-string",
    ),
    pytest.param({"padding": -1}, AT_FIRST_PATTERN, ["invalid padding -1"], id="negative-padding"),
]


@pytest.mark.parametrize("hyper, position, words", COMPILE)
def test_invalid_hyper_parameter_fails_at_compile(conv2d, hyper, position, words):
    error = error_of(DiagramError, tndiagram.compile, conv2d, **hyper)
    assert error.file.endswith("conv2d.tn")
    assert_points_at(error, *position)
    for word in words:
        assert word in error.message


def test_unknown_hyper_parameter_at_compile(conv2d):
    error = error_of(DiagramError, tndiagram.compile, conv2d, strides=2)
    assert_points_at(error, 8, 9, "conv2d")
    assert "network 'conv2d' has no hyper-parameter 'strides' (it has: stride, padding, dilation)" in error.message


def test_invalid_stride_through_functional_conv():
    x, weight = randn(1, 2, 5, 5), randn(3, 2, 3, 3)
    error = error_of(DiagramError, tndiagram.functional.conv, x, weight, stride=0)
    assert error.file == "tndiagram/diagrams/conv.tn"
    assert error.line == 9
    assert "invalid stride 0" in error.message


def test_size_statements_that_contradict_a_pattern():
    # Kernel 3 over an input of 5 gives 3 outputs, not 7: no tensor is to blame.
    text = (
        "network f(w[j]) {\n"
        "    size j = 3\n"
        "    size i = 5\n"
        "    size o = 7\n"
        "    y[o] = w * pattern[j, o, i]()\n"
        "}\n"
    )
    function = tndiagram.compile(tndiagram.parse(text)["f"])
    error = error_of(DiagramError, function, randn(3))
    assert_points_at(error, 5, 16, "pattern[j, o, i]()")
    assert error.message == (
        "the index pattern [j, o, i] gives index 'o' size 3, expected 7 (the statement 'size o = 7')"
    )


# -- shape errors when calling -------------------------------------------------

X_DECLARATION = (8, 16, "x[n, c, i1, i2]")
WEIGHT_DECLARATION = (8, 33, "weight[k, c, j1, j2]")
BIAS_DECLARATION = (8, 55, "bias?[k]")


def conv2d_call(x_shape, weight_shape, bias_shape=None, **options):
    x = randn(*x_shape, **options.get("x", {}))
    weight = randn(*weight_shape, **options.get("weight", {}))
    bias = None if bias_shape is None else randn(*bias_shape)
    return x, weight, bias


SHAPE = [
    pytest.param(
        ((1, 3, 5), (2, 3, 3, 3)), X_DECLARATION,
        "operand 'x' has rank 3, expected 4 for axes [n, c, i1, i2]",
        id="wrong-rank",
    ),
    pytest.param(
        ((1, 3, 5, 5), (2, 4, 3, 3)), WEIGHT_DECLARATION,
        "operand 'weight' axis 1 gives index 'c' size 4, expected 3 (operand 'x' axis 1)",
        id="wrong-size",
    ),
    pytest.param(
        ((1, 3, 5, 5), (2, 3, 3, 3), (3,)), BIAS_DECLARATION,
        "operand 'bias' axis 0 gives index 'k' size 3, expected 2 (operand 'weight' axis 0)",
        id="wrong-size-of-optional-operand",
    ),
    pytest.param(
        ((1, 3, 5, 5), (2, 3, 7, 3)), AT_FIRST_PATTERN,
        "the index pattern [j1, o1, i1]: the kernel spans 7 elements (size 7, dilation 1),"
        " more than the padded input's 5 (size 5, padding 0+0)",
        id="kernel-larger-than-input",
    ),
]


@pytest.mark.parametrize("shapes, position, message", SHAPE)
def test_shape_error_when_calling(conv2d, shapes, position, message):
    function = tndiagram.compile(conv2d)
    error = error_of(ShapeError, function, *conv2d_call(*shapes))
    assert_points_at(error, *position)
    assert error.message == message
    assert isinstance(error, ValueError)


X_ND = (7, 17, "x[n, (g c), i...]")
WEIGHT_ND = (7, 36, "weight[(g k), c, j...]")

GROUPS = [
    pytest.param(
        (1, 3, 5, 5), (4, 1, 3, 3), X_ND,
        "operand 'x' axis 1 (g c) has size 3, expected size(g) * size(c) = 2 * 1 = 2"
        " (size(g) from the statement 'size g = groups', size(c) from operand 'weight' axis 1)",
        id="input-channels-not-groups-times-weight-channels",
    ),
    pytest.param(
        (1, 4, 5, 5), (3, 2, 3, 3), WEIGHT_ND,
        "operand 'weight' axis 0 (g k) has size 3, which is not divisible by size(g) = 2"
        " (size(g) from the statement 'size g = groups')",
        id="output-channels-not-divisible-by-groups",
    ),
]


@pytest.mark.parametrize("x_shape, weight_shape, position, message", GROUPS)
def test_channels_that_do_not_fit_the_groups(conv_nd, x_shape, weight_shape, position, message):
    function = tndiagram.compile(conv_nd, groups=2)
    error = error_of(ShapeError, function, randn(*x_shape), randn(*weight_shape))
    assert_points_at(error, *position)
    assert error.message == message


def test_size_statement_that_contradicts_an_operand():
    text = "network f(x[i], w[j]) {\n    size o = 3\n    y[o] = x * w * pattern[j, o, i]()\n}\n"
    function = tndiagram.compile(tndiagram.parse(text)["f"])
    assert function(randn(4), randn(2)).shape == (3,)
    error = error_of(ShapeError, function, randn(5), randn(2))
    assert_points_at(error, 3, 20, "pattern[j, o, i]()")
    # One message, one caret line: the pattern's error is not wrapped twice.
    assert error.message == "the index pattern [j, o, i] gives index 'o' size 4, expected 3 (the statement 'size o = 3')"
    assert str(error).count("^") == len("pattern[j, o, i]()")


DTYPE_AND_DEVICE = [
    pytest.param(
        {"weight": {"dtype": torch.float32}}, WEIGHT_DECLARATION,
        "operand 'weight' has dtype torch.float32, expected torch.float64 (the dtype of 'x')",
        id="dtype-mismatch",
    ),
    pytest.param(
        {"x": {"dtype": torch.float32}}, WEIGHT_DECLARATION,
        "operand 'weight' has dtype torch.float64, expected torch.float32 (the dtype of 'x')",
        id="dtype-mismatch-first-operand",
    ),
    pytest.param(
        {"weight": {"device": "meta"}}, WEIGHT_DECLARATION,
        "operand 'weight' is on device meta, expected cpu (the device of 'x')",
        id="device-mismatch",
    ),
]


@pytest.mark.parametrize("options, position, message", DTYPE_AND_DEVICE)
def test_dtype_and_device_mismatch(conv2d, options, position, message):
    # torch allows tensors on the 'meta' device everywhere, so a device mismatch needs no GPU.
    function = tndiagram.compile(conv2d)
    error = error_of(ShapeError, function, *conv2d_call((1, 3, 5, 5), (2, 3, 3, 3), **options))
    assert_points_at(error, *position)
    assert error.message == message


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_operands(conv2d):
    function = tndiagram.compile(conv2d, padding=1)
    x, weight = randn(1, 3, 5, 5, device="cuda"), randn(2, 3, 3, 3, device="cuda")
    torch.testing.assert_close(function(x, weight), torch.nn.functional.conv2d(x, weight, padding=1))
    error = error_of(ShapeError, function, x, weight.cpu())
    assert_points_at(error, *WEIGHT_DECLARATION)
    assert error.message == "operand 'weight' is on device cpu, expected cuda:0 (the device of 'x')"


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool], ids=str)
def test_integer_dtype(conv2d, dtype):
    function = tndiagram.compile(conv2d)
    x = torch.zeros(1, 3, 5, 5, dtype=dtype)
    weight = torch.zeros(2, 3, 3, 3, dtype=dtype)
    error = error_of(ShapeError, function, x, weight)
    assert_points_at(error, *X_DECLARATION)
    assert error.message == f"operand 'x' has dtype {dtype}, expected a floating-point or complex dtype"


BAD_CALLS = [
    pytest.param(((1, 3, 5), (2, 3, 3, 3)), {}, id="wrong-rank"),
    pytest.param(((1, 3, 5, 5), (2, 4, 3, 3)), {}, id="wrong-size"),
    pytest.param(((1, 3, 5, 5), (2, 3, 8, 3)), {}, id="kernel-larger-than-padded-input"),
    pytest.param(((1, 3, 5, 5), (2, 3, 3, 3)), {"weight": {"dtype": torch.float32}}, id="dtype-mismatch"),
    pytest.param(((1, 3, 5, 5), (2, 3, 3, 3)), {"weight": {"device": "meta"}}, id="device-mismatch"),
]


@pytest.mark.parametrize("shapes, options", BAD_CALLS)
def test_bad_call_changes_nothing(conv2d, shapes, options):
    function = tndiagram.compile(conv2d, padding=1)
    x, weight, bias = randn(2, 3, 6, 5), randn(4, 3, 3, 3), randn(4)
    expected = torch.nn.functional.conv2d(x, weight, bias, padding=1)
    torch.testing.assert_close(function(x, weight, bias), expected)
    before = dict(function._specializations)
    source = function.source

    with pytest.raises(ShapeError):
        function(*conv2d_call(*shapes, **options))

    assert function._specializations == before, "the failed call left a cache entry"
    assert function.source == source
    torch.testing.assert_close(function(x, weight, bias), expected)
    # A first call that fails leaves an empty cache too.
    fresh = tndiagram.compile(conv2d, padding=1)
    with pytest.raises(ShapeError):
        fresh(*conv2d_call(*shapes, **options))
    assert fresh._specializations == {}
    torch.testing.assert_close(fresh(x, weight, bias), expected)


# -- one base class ------------------------------------------------------------


def _every_error():
    yield from (parse_error(DiagramSyntaxError, p.values[0]) for p in SYNTAX)
    yield from (parse_error(DiagramError, p.values[0]) for p in DIAGRAM)
    conv2d = tndiagram.load(str(EXAMPLES / "conv2d.tn"))["conv2d"]
    yield error_of(DiagramError, tndiagram.compile, conv2d, stride=0)
    function = tndiagram.compile(conv2d)
    for p in SHAPE:
        yield error_of(ShapeError, function, *conv2d_call(*p.values[0]))
    for p in DTYPE_AND_DEVICE:
        yield error_of(ShapeError, function, *conv2d_call((1, 3, 5, 5), (2, 3, 3, 3), **p.values[0]))


def test_tn_error_catches_every_error():
    errors = list(_every_error())
    assert {type(e) for e in errors} == {DiagramSyntaxError, DiagramError, ShapeError}
    for error in errors:
        assert isinstance(error, TNError)
        with pytest.raises(TNError):
            raise error
    assert issubclass(tndiagram.IRError, TNError)
    assert issubclass(tndiagram.CodegenError, TNError)
    assert issubclass(tndiagram.RewriteError, TNError)


@pytest.mark.parametrize(
    "text, line, column, underlined, words",
    [
        ("network f(x[i]) {\n    szie k = 3\n    y[i] = x\n}", 2, 10, "k", "did you mean 'size'?"),
        (
            "network f(x[i, j]) {\n    y[o] = x * patern[k, o, i](stride=1)\n}",
            2,
            31,
            "(",
            "did you mean 'pattern'?",
        ),
        ("netwrok f(x[i]) { y[i] = x }", 1, 1, "netwrok", "did you mean 'network'?"),
    ],
    ids=["size", "pattern", "network"],
)
def test_misspelled_keyword_suggested(text, line, column, underlined, words):
    with pytest.raises(DiagramSyntaxError) as caught:
        tndiagram.parse(text)
    assert_points_at(caught.value, line, column, underlined)
    assert words in str(caught.value)


def test_name_used_twice_gets_no_keyword_guess():
    with pytest.raises(DiagramSyntaxError) as caught:
        tndiagram.parse("network f(sizes[i]) {\n    y[i] = sizes[i] sizes\n}")
    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize(
    "body, guess",
    [("x * dleta[i, i]", "did you mean 'delta'?"), ("wieght", "did you mean 'weight'?"), ("x * zzz", None)],
    ids=["keyword", "operand", "nothing-close"],
)
def test_unknown_name_suggests_close_name(body, guess):
    with pytest.raises(DiagramError) as caught:
        tndiagram.parse(f"network f(x[i], weight[i]) {{\n    y[i] = {body}\n}}")
    if guess is None:
        assert "did you mean" not in str(caught.value)
    else:
        assert guess in str(caught.value)
