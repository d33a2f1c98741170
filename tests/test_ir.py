"""The intermediate representation: printing and parsing back, the invariants
that ``verify`` checks after every stage, renaming, composition and index
families."""

import re
from pathlib import Path

import pytest
import sympy
import torch

import tndiagram
from tndiagram import IRError, verify
from tndiagram.bind import bind, expand_families
from tndiagram.ir import Term

ROOT = Path(__file__).resolve().parent.parent
DIAGRAM_FILES = sorted((ROOT / "examples").glob("*.tn")) + sorted((ROOT / "tndiagram" / "diagrams").glob("*.tn"))
DTYPE = torch.float64


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def randn(*shape):
    return torch.randn(*shape, dtype=DTYPE)


def file_networks():
    for path in DIAGRAM_FILES:
        for name in tndiagram.load(str(path)):
            yield pytest.param(path, name, id=f"{path.parent.name}/{path.name}:{name}")


# Networks that exercise every construct of the language.
CONSTRUCTS = {
    "coefficients": """
        network coefficients(a[i, j], b[j, k]; alpha=2, beta=(1, 3)) {
            c[i, k] = 2.5 * a * b - a * b / 3 + alpha * beta[1] * a * b / size(j) + size(i) ** 2 * a * b
        }
    """,
    "deltas-and-ones": """
        network deltas_and_ones(a[i, j], v[k]) {
            t[k] = a * delta[i, j] * v + ones[k] * a * delta[i, j, l] * ones[l] / size(i)
        }
    """,
    "optional-operands": """
        network affine(x[n, c], w[k, c], b?[k], s?[k]) {
            y[n, k] = x * w + b - 2 * s
        }
    """,
    "groups": """
        network split(x[(a b c), d]) {
            size a = 2
            size b = 3
            y[c, a, b, d] = x
        }
    """,
    "families": """
        network pool(x[n, c, i...]; kernel=2, stride=2) {
            size j... = kernel
            y[n, c, o...] = x * pattern[j..., o..., i...](stride=stride) / size(j...)
        }
    """,
    "hyper-parameter-defaults": """
        network defaults(x[i], w[j]; mode='same', nothing=none, shift=-1, single=(4,), pair=(1, 2), required) {
            y[o] = required * x * w * pattern[j, o, i](padding=mode)
        }
    """,
    "scalar-output": """
        network trace(a[i, j], b[j, i]) {
            t[] = a * b
        }
    """,
    "calls": """
        network gram(a[i, j]) {
            g[j, k] = a * a[i, k]
        }
        network gram_plus(a[i, j], b[j, k]; scale=3) {
            h[j, k] = gram(a)[j, k] + scale * b
        }
        network calls(a[i, j], b[j, k], c[k, l]) {
            y[j, l] = gram_plus(a, b; scale=5)[j, k] * c - c[j, l]
        }
    """,
    "call-with-families-and-groups": open(ROOT / "examples" / "conv_nd.tn").read()
    + """
        network conv_twice(x[n, (g c), i...], w[(g k), c, j...], b?[(g k)]; stride=1, groups=1) {
            y[n, (g k), o...] = 2 * conv_nd(x, w, b; stride=stride, padding=1, groups=groups)[n, (g k), o...]
        }
    """,
}


def construct_networks():
    for key, text in CONSTRUCTS.items():
        program = tndiagram.parse(text)
        for name in program:
            yield pytest.param(key, name, id=f"{key}:{name}")


# -- printing and parsing back -------------------------------------------------


@pytest.mark.parametrize("path, name", file_networks())
def test_file_networks_print_and_parse_back(path, name):
    network = tndiagram.load(str(path))[name]
    text = str(network)
    again = tndiagram.parse(text)[name]
    assert again == network
    assert str(again) == text


@pytest.mark.parametrize("key, name", construct_networks())
def test_constructs_print_and_parse_back(key, name):
    network = tndiagram.parse(CONSTRUCTS[key])[name]
    text = str(network)
    again = tndiagram.parse(text)[name]
    assert again == network
    assert str(again) == text


def test_equality_notices_a_changed_coefficient():
    network = tndiagram.parse(CONSTRUCTS["coefficients"])["coefficients"]
    changed = tndiagram.parse(CONSTRUCTS["coefficients"].replace("2.5", "2.25"))["coefficients"]
    assert changed != network


# -- verify after every stage ---------------------------------------------------


@pytest.mark.parametrize("path, name", file_networks())
def test_verify_after_lowering(path, name):
    assert verify(tndiagram.load(str(path))[name]) is not None


@pytest.mark.parametrize("key, name", construct_networks())
def test_verify_after_lowering_constructs(key, name):
    network = tndiagram.parse(CONSTRUCTS[key])[name]
    verify(network)
    if network.has_families():
        for count in (1, 2, 3):
            expanded = verify(expand_families(network, count))
            assert not expanded.has_families()


BINDINGS = [
    pytest.param(ROOT / "examples" / "conv2d.tn", "conv2d", {"padding": 1}, {"x": (2, 3, 6, 5), "weight": (4, 3, 3, 3), "bias": (4,)}, id="conv2d"),
    pytest.param(ROOT / "examples" / "conv2d.tn", "conv2d", {}, {"x": (2, 3, 6, 5), "weight": (4, 3, 3, 3)}, id="conv2d-no-bias"),
    pytest.param(ROOT / "examples" / "conv_nd.tn", "conv_nd", {"groups": 2}, {"x": (2, 4, 7), "weight": (6, 2, 3)}, id="conv_nd-1d"),
    pytest.param(ROOT / "examples" / "conv_nd.tn", "conv_nd", {"stride": (1, 2, 1)}, {"x": (1, 2, 4, 5, 6), "weight": (3, 2, 2, 2, 2), "bias": (3,)}, id="conv_nd-3d"),
    pytest.param(ROOT / "examples" / "matrix_chain.tn", "chain", {}, {"a": (2, 3), "b": (3, 4), "c": (4, 5), "d": (5, 6)}, id="chain"),
    pytest.param("families", "pool", {"kernel": (2, 3)}, {"x": (1, 2, 6, 6)}, id="pool-2d"),
    pytest.param("deltas-and-ones", "deltas_and_ones", {}, {"a": (3, 3), "v": (4,)}, id="deltas-and-ones"),
    pytest.param("groups", "split", {}, {"x": (24, 5)}, id="groups"),
    pytest.param("calls", "calls", {}, {"a": (2, 3), "b": (3, 3), "c": (3, 3)}, id="calls"),
]


def _network(source, name):
    if isinstance(source, Path):
        return tndiagram.load(str(source))[name]
    return tndiagram.parse(CONSTRUCTS[source])[name]


@pytest.mark.parametrize("source, name, hyper, shapes", BINDINGS)
def test_verify_after_every_stage(source, name, hyper, shapes):
    network = verify(_network(source, name))
    bound = bind(network, hyper, shapes)
    verify(bound.network)
    assert not bound.network.has_families()
    assert all(isinstance(size, int) and size > 0 for size in bound.sizes.values())
    assert set(bound.sizes) == set(bound.network.all_indices())


# -- a broken graph fails verify --------------------------------------------------


def _conv2d():
    return tndiagram.load(str(ROOT / "examples" / "conv2d.tn"))["conv2d"]


def _node(graph, name):
    return next(node for node, data in graph.nodes(data=True) if data.get("name") == name and data["kind"] != "index")


def _remove_edge(graph):
    graph.remove_edge(_node(graph, "x"), ("index", "n"))


def _other_output(graph):
    graph.nodes["output"]["axes"] = graph.nodes["output"]["axes"][:-1]


def _lonely_index(graph):
    graph.add_node(("index", "z"), kind="index", name="z", family=False)


def _tensor_to_tensor(graph):
    graph.add_edge(_node(graph, "x"), _node(graph, "weight"), positions=[])


def _unknown_kind(graph):
    graph.nodes[_node(graph, "weight")]["kind"] = "mystery"


def _undeclared_operand(graph):
    graph.nodes[_node(graph, "weight")]["name"] = "kernel"


def _two_axis_pattern(graph):
    node = _node(graph, "pattern")
    kernel, output, _ = graph.nodes[node]["axes"]
    graph.nodes[node]["axes"] = (kernel, output)
    graph.remove_edge(node, ("index", "i1"))


def _wrong_positions(graph):
    graph.edges[_node(graph, "x"), ("index", "c")]["positions"] = [(0, 0)]


BROKEN = [
    pytest.param(_remove_edge, "the edges of tensor 'x' do not match its axes", id="edge-removed"),
    pytest.param(_wrong_positions, "the edges of tensor 'x' do not match its axes", id="edge-on-wrong-axis"),
    pytest.param(_other_output, "the output node is missing or has other axes than the network", id="output-axes-changed"),
    pytest.param(_lonely_index, "index 'z' touches no tensor", id="index-without-tensor"),
    pytest.param(_tensor_to_tensor, "the graph is not bipartite", id="edge-between-tensors"),
    pytest.param(_unknown_kind, "unknown tensor kind 'mystery'", id="unknown-kind"),
    pytest.param(_undeclared_operand, "tensor 'kernel' is not an operand of the network", id="undeclared-operand"),
    pytest.param(_two_axis_pattern, "an index pattern needs 3 axes", id="pattern-with-two-axes"),
]


@pytest.mark.parametrize("mutate, message", BROKEN)
def test_verify_rejects_a_broken_graph(mutate, message):
    network = _conv2d()
    term = network.terms[0]
    graph = term.graph.copy()
    mutate(graph)
    broken = network.replace(terms=(Term(term.coefficient, graph),) + network.terms[1:])
    with pytest.raises(IRError) as caught:
        verify(broken)
    assert message in caught.value.message
    assert "network 'conv2d', term 0" in caught.value.message
    # The original network is untouched.
    verify(network)


def test_verify_rejects_a_coefficient_that_is_not_sympy():
    network = _conv2d()
    term = Term(sympy.Integer(1), network.terms[0].graph.copy())
    term.coefficient = 1.0
    with pytest.raises(IRError, match="the coefficient 1.0 is not a sympy expression"):
        verify(network.replace(terms=(term,)))


def test_verify_rejects_a_network_without_terms():
    with pytest.raises(IRError, match="has no terms"):
        verify(_conv2d().replace(terms=()))


# -- renaming indices changes nothing --------------------------------------------


def rename_indices(text, renaming):
    """Rename whole-word index names in diagram text (families keep their '...')."""
    text = re.sub(r"#[^\n]*", "", text)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, renaming)) + r")\b")
    return pattern.sub(lambda match: renaming[match.group(1)], text)


RENAMINGS = [
    pytest.param(
        "conv2d.tn", "conv2d",
        {"n": "batch", "c": "cin", "k": "cout", "i1": "h", "i2": "w", "j1": "kh", "j2": "kw", "o1": "oh", "o2": "ow"},
        {"stride": (2, 1), "padding": (1, 2), "dilation": (1, 2)},
        [(2, 3, 9, 8), (4, 3, 3, 2), (4,)],
        id="conv2d",
    ),
    pytest.param(
        "conv2d.tn", "conv2d",
        {"i1": "i2", "i2": "i1", "j1": "j2", "j2": "j1", "o1": "o2", "o2": "o1"},
        {"stride": (2, 1), "padding": 1},
        [(2, 3, 9, 8), (4, 3, 3, 2), (4,)],
        id="conv2d-swapped-dimensions",
    ),
    pytest.param(
        "conv_nd.tn", "conv_nd",
        {"n": "b", "g": "groupindex", "c": "channel", "k": "filter", "i": "x", "j": "kernel", "o": "out"},
        {"groups": 2, "stride": 2, "padding": 1},
        [(2, 4, 7, 6), (6, 2, 3, 2), (6,)],
        id="conv_nd",
    ),
    pytest.param(
        "matrix_chain.tn", "chain",
        {"i": "p", "j": "q", "k": "r", "l": "s", "m": "t"},
        {},
        [(2, 3), (3, 4), (4, 5), (5, 6)],
        id="chain-with-call",
    ),
]


@pytest.mark.parametrize("file, name, renaming, hyper, shapes", RENAMINGS)
def test_renaming_indices_keeps_results(file, name, renaming, hyper, shapes):
    text = (ROOT / "examples" / file).read_text()
    original = tndiagram.parse(text)[name]
    renamed = tndiagram.parse(rename_indices(text, renaming))[name]
    assert renamed != original
    tensors = [randn(*shape) for shape in shapes]
    expected = tndiagram.compile(original, **hyper)(*tensors)
    torch.testing.assert_close(tndiagram.compile(renamed, **hyper)(*tensors), expected)


# -- composition ------------------------------------------------------------------


COMPOSITIONS = [
    pytest.param(
        (ROOT / "examples" / "matrix_chain.tn").read_text(),
        "chain",
        """
        network chain(a[i, j], b[j, k], c[k, l], d[l, m]) {
            e[i, m] = a * b * c * d / size(i)
        }
        """,
        {},
        [(2, 3), (3, 4), (4, 5), (5, 6)],
        id="matrix-chain",
    ),
    pytest.param(
        CONSTRUCTS["calls"],
        "calls",
        """
        network calls(a[i, j], b[j, k], c[k, l]) {
            y[j, l] = a * a[i, k] * c + 5 * b * c - c[j, l]
        }
        """,
        {},
        [(2, 3), (3, 3), (3, 3)],
        id="nested-calls",
    ),
    pytest.param(
        CONSTRUCTS["call-with-families-and-groups"],
        "conv_twice",
        """
        network conv_twice(x[n, (g c), i...], w[(g k), c, j...], b?[(g k)]; stride=1, groups=1) {
            size g = groups
            y[n, (g k), o...] = 2 * x * w * pattern[j..., o..., i...](stride=stride, padding=1) + 2 * b
        }
        """,
        {"stride": 2, "groups": 2},
        [(2, 4, 6, 5), (6, 2, 3, 2), (6,)],
        id="conv-with-hyper-parameters",
    ),
]


@pytest.mark.parametrize("text, name, inlined, hyper, shapes", COMPOSITIONS)
def test_call_gives_the_values_of_the_inlined_text(text, name, inlined, hyper, shapes):
    calling = tndiagram.parse(text)[name]
    written = tndiagram.parse(inlined)[name]
    tensors = [randn(*shape) for shape in shapes]
    result = tndiagram.compile(calling, **hyper)(*tensors)
    torch.testing.assert_close(result, tndiagram.compile(written, **hyper)(*tensors))


def test_nested_calls_match_torch():
    a, b, c = randn(2, 3), randn(3, 3), randn(3, 3)
    function = tndiagram.compile(tndiagram.parse(CONSTRUCTS["calls"])["calls"])
    torch.testing.assert_close(function(a, b, c), (a.T @ a + 5 * b) @ c - c)


def test_operand_used_with_other_indices():
    # gram's output index k appears only on the second use of a, a[i, k].
    a = randn(4, 3)
    function = tndiagram.compile(tndiagram.parse(CONSTRUCTS["calls"])["gram"])
    torch.testing.assert_close(function(a), a.T @ a)
    assert function.bound.origins["k"] == "operand 'a' axis 1"


def test_call_keeps_the_callee_size_statement():
    # conv_nd's 'size g = groups' must hold in the caller: with groups=2 these
    # channels do not fit, and torch raises an error too.
    network = tndiagram.parse(CONSTRUCTS["call-with-families-and-groups"])["conv_twice"]
    assert [str(d.index) for d in network.sizes] == ["g"]
    x, w = randn(2, 4, 6), randn(4, 4, 3)
    with pytest.raises(RuntimeError):
        torch.nn.functional.conv1d(x, w, groups=2)
    with pytest.raises(tndiagram.ShapeError, match="expected size\\(g\\) \\* size\\(c\\) = 2 \\* 4 = 8"):
        tndiagram.compile(network, groups=2)(x, w)


# -- index families ---------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 4], ids=lambda count: f"{count}d")
def test_families_expand_to_one_index_per_dimension(count):
    network = tndiagram.load(str(ROOT / "tndiagram" / "diagrams" / "conv.tn"))["conv"]
    expanded = verify(expand_families(network, count))
    members = lambda family: tuple((f"{family}{d}",) for d in range(1, count + 1))  # noqa: E731
    assert expanded.operand("x").axes == (("n",), ("g", "c")) + members("i")
    assert expanded.operand("weight").axes == (("g", "k"), ("c",)) + members("j")
    assert expanded.operand("bias").axes == (("g", "k"),)
    assert expanded.output == (("n",), ("g", "k")) + members("o")
    assert not expanded.has_families()
    main_term = next(t for t in expanded.terms if any(f.kind == "pattern" for f in t.factors))
    patterns = [f for f in main_term.factors if f.kind == "pattern"]
    assert [f.axes for f in patterns] == [((f"j{d}",), (f"o{d}",), (f"i{d}",)) for d in range(1, count + 1)]
    for d, factor in enumerate(patterns):
        assert {key: str(value) for key, value in factor.params} == {
            "dilation": f"dilation[{d}]",
            "padding": f"padding[{d}]",
            "stride": f"stride[{d}]",
        }
    # Printing and parsing back still works after expansion.
    assert tndiagram.parse(str(expanded))["conv"] == expanded


@pytest.mark.parametrize("count", [1, 2, 3, 4], ids=lambda count: f"{count}d")
def test_family_size_statement_expands_per_dimension(count):
    network = tndiagram.parse(CONSTRUCTS["families"])["pool"]
    expanded = verify(expand_families(network, count))
    assert [(d.index, str(d.expression)) for d in expanded.sizes] == [
        (f"j{d}", f"kernel[{d - 1}]") for d in range(1, count + 1)
    ]
    (term,) = expanded.terms
    assert term.coefficient == 1 / sympy.Mul(*(sympy.Symbol(f"size(j{d})", positive=True, integer=True) for d in range(1, count + 1)))


@pytest.mark.parametrize("count", [1, 2, 3, 4], ids=lambda count: f"{count}d")
def test_families_bind_for_each_dimension_count(count):
    network = tndiagram.load(str(ROOT / "tndiagram" / "diagrams" / "conv.tn"))["conv"]
    spatial = (5, 4, 3, 4)[:count]
    kernel = (2, 3, 1, 2)[:count]
    bound = bind(network, {"groups": 2, "padding": 1}, {"x": (1, 4, *spatial), "weight": (6, 2, *kernel)})
    verify(bound.network)
    assert bound.spatial_dimensions == count
    for d in range(count):
        assert bound.sizes[f"o{d + 1}"] == spatial[d] + 2 - kernel[d] + 1
    assert (bound.sizes["g"], bound.sizes["c"], bound.sizes["k"]) == (2, 2, 3)


@pytest.mark.parametrize("count", [1, 2, 3], ids=lambda count: f"{count}d")
def test_family_pool_matches_torch_average_pooling(count):
    network = tndiagram.parse(CONSTRUCTS["families"])["pool"]
    x = randn(2, 3, *(6, 4, 4)[:count])
    result = tndiagram.compile(network, kernel=2, stride=2)(x)
    expected = getattr(torch.nn.functional, f"avg_pool{count}d")(x, 2, 2)
    torch.testing.assert_close(result, expected)
