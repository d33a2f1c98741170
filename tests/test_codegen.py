"""Generated code: golden copies, its imports, the module that ``tndiagram
compile`` writes, the constant cache, the planned path and specializations.

To accept a deliberate change of the generated code, rewrite the golden files
and read the diff before committing them:

    TNDIAGRAM_UPDATE_GOLDEN=1 python -m pytest tests/test_codegen.py -k golden
"""

import ast
import importlib.util
import os
from pathlib import Path

import opt_einsum
import pytest
import torch

import tndiagram
import tndiagram.runtime
from tndiagram import cli

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
DTYPE = torch.float64
F = torch.nn.functional


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def randn(*shape, dtype=DTYPE):
    return torch.randn(*shape, dtype=dtype)


def load_example(name, network=None):
    # The file name as given here ends up in the generated docstring.
    text = (ROOT / "examples" / f"{name}.tn").read_text()
    return tndiagram.parse(text, f"examples/{name}.tn")[network or name]


CONV2D_SHAPES = {"x": (8, 3, 32, 32), "weight": (16, 3, 3, 3), "bias": (16,)}


def import_path(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- golden source ---------------------------------------------------------------

GOLDEN_FILES = [
    # What tndiagram compile writes: the convolution runs on torch's kernel.
    pytest.param("conv2d.py", {}, id="default"),
    # The einsum lowering itself: index patterns, constants and the planned path.
    pytest.param("conv2d_einsum.py", {"native": False, "simplify": False}, id="einsum"),
]


@pytest.mark.parametrize("file, options", GOLDEN_FILES)
def test_conv2d_source_matches_golden(file, options):
    function = tndiagram.compile(load_example("conv2d"), shapes=CONV2D_SHAPES, padding=1, **options)
    if os.environ.get("TNDIAGRAM_UPDATE_GOLDEN"):
        (GOLDEN / file).write_text(function.source, encoding="utf-8")
        pytest.skip(f"rewrote tests/golden/{file}")
    assert function.source == (GOLDEN / file).read_text(encoding="utf-8")


@pytest.mark.parametrize("file, options", GOLDEN_FILES)
def test_golden_module_computes_conv2d(file, options):
    module = import_path(GOLDEN / file, f"golden_{file[:-3]}")
    x, weight, bias = randn(8, 3, 32, 32), randn(16, 3, 3, 3), randn(16)
    torch.testing.assert_close(module.conv2d(x, weight, bias), F.conv2d(x, weight, bias, padding=1))


def test_cli_writes_the_default_golden_source(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    output = tmp_path / "conv2d.py"
    arguments = ["compile", "examples/conv2d.tn", "--shape", "x=8,3,32,32", "--shape", "weight=16,3,3,3"]
    arguments += ["--shape", "bias=16", "--set", "padding=1", "-o", str(output)]
    assert cli.main(arguments) == 0
    assert output.read_text(encoding="utf-8") == (GOLDEN / "conv2d.py").read_text(encoding="utf-8")


# -- imports ------------------------------------------------------------------------


def imported_modules(source):
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("__import__", "exec", "eval"):
            modules.add(node.func.id)
    return modules


SOURCES = [
    pytest.param("conv2d.tn", "conv2d", {"padding": 1}, CONV2D_SHAPES, id="conv2d-pattern"),
    pytest.param("conv_nd.tn", "conv_nd", {"groups": 2, "stride": 2}, {"x": (2, 4, 9, 8), "weight": (6, 2, 3, 3)}, id="conv_nd-groups"),
    pytest.param("matrix_chain.tn", "chain", {}, {"a": (2, 3), "b": (3, 4), "c": (4, 5), "d": (5, 6)}, id="chain-call"),
    pytest.param("matrix_chain.tn", "trace_of_product", {}, {"a": (3, 4), "b": (4, 3)}, id="scalar-output"),
    pytest.param(
        """
        network constants(a[i, j], v[k]) {
            t[k, j] = a * delta[i, j] * v + ones[k] * a * delta[i, j, l] * ones[l]
        }
        """,
        "constants", {}, {"a": (3, 3), "v": (4,)},
        id="deltas-and-ones",
    ),
]


@pytest.mark.parametrize("file, name, hyper, shapes", SOURCES)
def test_generated_source_imports_only_torch(file, name, hyper, shapes):
    if file.endswith(".tn"):
        network = load_example(file[:-3], name)
    else:
        network = tndiagram.parse(file)[name]
    source = tndiagram.compile(network, shapes=shapes, **hyper).source
    assert imported_modules(source) == {"torch"}
    # Nothing refers to tndiagram at run time either.
    names = {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}
    assert "tndiagram" not in names


# -- the module that `tndiagram compile` writes ------------------------------------


@pytest.mark.parametrize(
    "arguments, module_name, torch_options, shapes",
    [
        pytest.param(
            ["examples/conv2d.tn", "--shape", "x=2,3,9,8", "--shape", "weight=4,3,3,2", "--shape", "bias=4",
             "--set", "padding=1", "--set", "stride=(2,1)"],
            "conv2d", {"padding": 1, "stride": (2, 1)}, [(2, 3, 9, 8), (4, 3, 3, 2), (4,)],
            id="conv2d",
        ),
        pytest.param(
            ["examples/conv_nd.tn", "--shape", "x=2,4,7,6,5", "--shape", "weight=6,2,3,2,2",
             "--set", "groups=2", "--set", "padding=same"],
            "conv_nd", {"groups": 2, "padding": "same"}, [(2, 4, 7, 6, 5), (6, 2, 3, 2, 2)],
            id="conv_nd-3d-same",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_cli_module_runs_standalone(tmp_path, monkeypatch, capsys, arguments, module_name, torch_options, shapes):
    monkeypatch.chdir(ROOT)
    output = tmp_path / f"{module_name}_generated.py"
    assert cli.main(["compile", *arguments, "-o", str(output)]) == 0
    assert f"wrote {output}: function {module_name}" in capsys.readouterr().err
    source = output.read_text(encoding="utf-8")
    assert imported_modules(source) == {"torch"}
    module = import_path(output, f"{module_name}_generated")
    tensors = [randn(*shape) for shape in shapes]
    expected = getattr(F, f"conv{len(shapes[0]) - 2}d")(*tensors, **torch_options)
    torch.testing.assert_close(getattr(module, module_name)(*tensors), expected)


# -- names in the generated function -----------------------------------------------


@pytest.mark.parametrize("output", ["t1", "t2", "pattern_1", "ones_1", "torch", "constants", "a", "result"])
def test_output_name_does_not_clash_with_generated_names(output):
    text = f"""
        network f(a[i, j], b[j, k], c[k, l], result?[i]) {{
            {output}[i, l] = a * b * c + 4 * a * b * c * ones[l] * delta[i, m] * ones[m] / size(m) + result * ones[l]
        }}
    """
    function = tndiagram.compile(tndiagram.parse(text)["f"])
    a, b, c, result = randn(2, 3), randn(3, 4), randn(4, 5), randn(2)
    torch.testing.assert_close(function(a, b, c), 3 * a @ b @ c)
    torch.testing.assert_close(function(a, b, c, result), 3 * a @ b @ c + result[:, None])


# -- the constant cache ---------------------------------------------------------------


def test_constants_are_built_once_per_dtype_and_device():
    # The einsum lowering builds index patterns (a native convolution needs none).
    function = tndiagram.compile(load_example("conv2d"), padding=1, stride=(1, 2), native=False, simplify=False)
    namespace = function.specialize(x=(2, 3, 8, 8), weight=(4, 3, 3, 3)).function.__globals__
    built = []
    index_pattern = namespace["index_pattern"]

    def counting_index_pattern(*args, **kwargs):
        pattern = index_pattern(*args, **kwargs)
        built.append(pattern)
        return pattern

    namespace["index_pattern"] = counting_index_pattern
    x, weight = randn(2, 3, 8, 8), randn(4, 3, 3, 3)
    first = function(x, weight)
    after_first = list(built)
    second = function(x, weight)
    # Two patterns (the strides differ per dimension), built on the first call only.
    assert len(after_first) == 2
    assert len(built) == 2
    torch.testing.assert_close(first, second)
    cached = namespace["constants"](DTYPE, x.device)
    assert namespace["constants"](DTYPE, x.device) is cached
    assert all(a is b for a, b in zip(cached, after_first))
    assert list(namespace["_constants"]) == [(DTYPE, x.device)]

    # Another dtype builds its own patterns once.
    function(x.float(), weight.float())
    function(x.float(), weight.float())
    assert len(built) == 4
    assert all(pattern.dtype == torch.float32 for pattern in built[2:])
    assert set(namespace["_constants"]) == {(DTYPE, x.device), (torch.float32, x.device)}


# -- the planned path -----------------------------------------------------------------

SEVEN_OPERANDS = {
    "chain": (
        """
        network chain(a[i, j], b[j, k], c[k, l], d[l, m], e[m, p], f[p, q], g[q, r]) {
            y[i, r] = a * b * c * d * e * f * g
        }
        """,
        {"a": (200, 2), "b": (2, 300), "c": (300, 3), "d": (3, 250), "e": (250, 2), "f": (2, 400), "g": (400, 5)},
    ),
    "kfc": (
        """
        network kfc(x[n, c, i1, i2], s[n]) {
            size j1 = 3
            size j2 = 3
            size l1 = 3
            size l2 = 3
            a[c, j1, j2, d, l1, l2] = s * x * x[n, d, h1, h2]
                * pattern[j1, o1, i1](padding=1) * pattern[j2, o2, i2](padding=1)
                * pattern[l1, o1, h1](padding=1) * pattern[l2, o2, h2](padding=1)
        }
        """,
        {"x": (4, 3, 8, 8), "s": (4,)},
    ),
}


def _reference(name, tensors):
    if name == "chain":
        return torch.linalg.multi_dot(tensors)
    x, s = tensors
    columns = F.unfold(x, 3, padding=1)  # [n, c·3·3, positions]
    return torch.einsum("n,nap,nbp->ab", s, columns, columns).reshape(3, 3, 3, 3, 3, 3)


@pytest.mark.parametrize("name", list(SEVEN_OPERANDS))
def test_seven_operand_path_is_optimal(name):
    text, shapes = SEVEN_OPERANDS[name]
    # Without the rewrites, which would merge the KFC patterns into views of x.
    function = tndiagram.compile(tndiagram.parse(text)[name], shapes=shapes, simplify=False)
    (term,) = function.plan.terms
    assert len(term.factors) == 7

    symbols = {index: opt_einsum.get_symbol(number) for number, index in enumerate(function.bound.sizes)}
    equation = ",".join("".join(symbols[i] for i in indices) for indices in term.inputs)
    equation += "->" + "".join(symbols[i] for i in term.output)
    operand_shapes = [tuple(function.bound.sizes[i] for i in indices) for indices in term.inputs]

    def cost(optimize):
        return opt_einsum.contract_path(equation, *operand_shapes, shapes=True, optimize=optimize)[1].opt_cost

    naive = cost([(0, 1)] * 6)  # left to right, as written
    assert term.flops <= cost("optimal")
    assert term.flops <= cost("dp")
    assert term.flops * 10 < naive
    assert function.plan.flops == term.flops

    tensors = [randn(*shape) for shape in shapes.values()]
    torch.testing.assert_close(function(*tensors), _reference(name, tensors))


@pytest.mark.parametrize("name", list(SEVEN_OPERANDS))
def test_rewrites_do_not_raise_the_cost(name):
    text, shapes = SEVEN_OPERANDS[name]
    network = tndiagram.parse(text)[name]
    plain = tndiagram.compile(network, shapes=shapes, simplify=False)
    simplified = tndiagram.compile(network, shapes=shapes)
    assert simplified.plan.flops <= plain.plan.flops
    tensors = [randn(*shape) for shape in shapes.values()]
    torch.testing.assert_close(simplified(*tensors), plain(*tensors))


def test_plan_follows_the_planned_steps_in_the_source():
    text, shapes = SEVEN_OPERANDS["chain"]
    function = tndiagram.compile(tndiagram.parse(text)["chain"], shapes=shapes, simplify=False)
    body = function.source.split("def chain(")[1]
    assert body.count("torch.einsum(") == len(function.plan.terms[0].steps) == 6


# -- specializations --------------------------------------------------------------------


def test_same_shapes_do_not_replan(monkeypatch):
    plans = []
    original = tndiagram.runtime.plan

    def counting_plan(*args, **kwargs):
        plans.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(tndiagram.runtime, "plan", counting_plan)
    function = tndiagram.compile(load_example("conv2d"), padding=1)
    x, weight, bias = randn(2, 3, 6, 5), randn(4, 3, 3, 3), randn(4)

    for _ in range(3):
        function(x, weight, bias)
    function(x=x.clone(), weight=weight.clone(), bias=bias.clone())  # new tensors, same shapes
    assert len(plans) == 1
    assert len(function._specializations) == 1

    function(randn(1, 3, 6, 5), weight, bias)  # another batch size
    assert len(plans) == 2
    function(x, weight)  # bias absent: another signature
    assert len(plans) == 3
    function(x.float(), weight.float(), bias.float())  # a dtype does not change the code
    assert len(plans) == 3
    assert len(function._specializations) == 3
    assert "3 specialization(s)" in repr(function)


def test_specialize_reuses_a_called_signature():
    function = tndiagram.compile(load_example("conv2d"))
    x, weight = randn(2, 3, 6, 5), randn(4, 3, 3, 3)
    function(x, weight)
    called = function._last
    assert function.specialize(x=(2, 3, 6, 5), weight=(4, 3, 3, 3)) is called
    assert len(function._specializations) == 1


@pytest.mark.parametrize(
    "size, hyper",
    [
        ((7, 6), dict(kernel_size=(3, 2), stride=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2))),
        ((5, 4, 6), dict(kernel_size=(3, 3, 2), stride=(1, 2, 3), padding=(1, 1, 2), dilation=(2, 1, 1))),
        ((9,), dict(kernel_size=(4,), stride=(5,), padding=((3, 0),), dilation=(1,))),
    ],
    ids=["2d-asymmetric", "3d-dilated", "1d-stride-above-kernel"],
)
def test_view_pads_the_input_once(size, hyper):
    """The padding of every dimension comes in one pad of the input, and the
    view computes what the index-pattern einsum computes."""
    network = tndiagram.functional.diagram("unfold")["unfold"]
    x = randn(2, 3, *size)
    viewed = tndiagram.compile(network, **hyper)
    einsum = tndiagram.compile(network, simplify=False, **hyper)
    torch.testing.assert_close(viewed(x), einsum(x))
    assert viewed.source.count("torch.nn.functional.pad(") == 1
    assert "torch.einsum" in einsum.source
    assert "index_pattern(" in einsum.source


def test_private_indices_summed_first():
    """An index that one tensor alone carries is summed out of it first, as
    ``.sum``, and the other steps work on the smaller tensor."""
    network = tndiagram.parse("network p(a[i, j, l], b[j, k]) { c[k] = a * b }")["p"]
    a, b = randn(5, 4, 3), randn(4, 6)
    compiled = tndiagram.compile(network)
    torch.testing.assert_close(compiled(a, b), torch.einsum("ijl,jk->k", a, b))
    first = compiled.plan.terms[0].steps[0]
    assert first.inputs == (("i", "j", "l"),)
    assert first.output == ("j",)
    assert "a.sum((0, 2))" in compiled.source
    # A diagonal is not a plain sum: einsum takes it.
    diagonal = tndiagram.parse("network d(a[i, l, j], b[j]) { c[] = a[i, i, j] * b }")["d"]
    compiled = tndiagram.compile(diagonal)
    square, weights = randn(3, 3, 4), randn(4)
    torch.testing.assert_close(compiled(square, weights), torch.einsum("iij,j->", square, weights))
    assert ".sum(" not in compiled.source


@pytest.mark.parametrize(
    "kernel, stride, spatial",
    [((1, 1), 2, (9, 8)), ((4, 4), 4, (8, 12)), ((2,), 3, (11,))],
    ids=["1x1-stride-2", "patchify", "1d-stride-above-kernel"],
)
def test_kfac_reduce_sums_each_view_once(kernel, stride, spatial):
    """KFAC-reduce on down-sampling layers sums the strided or reshaped input
    over the output positions without copying it, once for both copies of x,
    then multiplies the sum with its transpose."""
    x = randn(3, 4, *spatial)
    result = tndiagram.functional.kfac_reduce(x, kernel, stride=stride)
    unfolded = tndiagram.functional.lowering(simplify=False, native=False)
    with unfolded:
        expected = tndiagram.functional.kfac_reduce(x, kernel, stride=stride)
    if len(spatial) == 2:
        patches = F.unfold(x, kernel, stride=stride)
        summed = patches.sum(-1)
        expected_unfold = summed.T @ summed / (x.shape[0] * patches.shape[-1] ** 2)
        torch.testing.assert_close(result[0], expected_unfold)
    torch.testing.assert_close(result, expected)
    hyper = tndiagram.functional._convolution_hyper(
        len(spatial), stride, 0, 1, 1, kernel_size=kernel
    )
    source = tndiagram.functional._compiled("kfac_reduce", "kfac_reduce", hyper).source
    assert source.count(".sum(") == 1
    assert ".flatten(" not in source
    assert "torch.einsum" not in source
    assert source.count("torch.bmm(") == 1


@pytest.mark.parametrize(
    "text, equation",
    [
        ("network f(a[p, q, r], b[p]) { y[i] = a[i, i, j] * b[i] }", "iij,i->i"),
        ("network f(a[p, q, r], b[p]) { y[] = a[i, i, j] * b[i] }", "iij,i->"),
    ],
    ids=["vector", "scalar"],
)
def test_diagonal_beside_private_index(text, equation):
    a, b = randn(3, 3, 4), randn(3)
    network = tndiagram.parse(text)["f"]
    for options in ({}, {"simplify": False}, {"strategy": "greedy"}):
        compiled = tndiagram.compile(network, **options)
        torch.testing.assert_close(compiled(a, b), torch.einsum(equation, a, b))


def test_gram_of_diagonals_stays_einsum():
    A = randn(3, 2, 2)
    network = tndiagram.parse("network f(A[a0, a1, a2]) { y[q, i] = A[l, i, i] * A[l, q, q] }")["f"]
    compiled = tndiagram.compile(network)
    torch.testing.assert_close(compiled(A), torch.einsum("lii,lqq->qi", A, A))
    assert "torch.bmm" not in compiled.source


def test_operand_named_convolution_keeps_its_value():
    """A second native convolution term needs a variable of its own; an operand
    called ``convolution`` keeps that name."""
    text = """
    network f(x[n, c, i], w[k, c, j], convolution[k, c, j], b[k]) {
        y[n, k, o] = x * w * pattern[j, o, i](padding=1)
                   + x * convolution * pattern[j, o, i](padding=1)
                   + b
                   + x[n, c, o] * convolution[k, c, j]
    }
    """
    x, w, other, b = randn(2, 3, 5), randn(4, 3, 3), randn(4, 3, 3), randn(4)
    compiled = tndiagram.compile(tndiagram.parse(text)["f"])
    expected = (
        F.conv1d(x, w, b, padding=1)
        + F.conv1d(x, other, padding=1)
        + torch.einsum("nco,kcj->nko", x, other)
    )
    torch.testing.assert_close(compiled(x, w, other, b), expected)
    assert "_convolution = torch.nn.functional.conv1d(" in compiled.source


def test_private_sum_costs_count_each_tensor():
    """Each sum step costs the elements of the tensor it sums, whichever
    position that tensor has in the live list by then."""
    network = tndiagram.parse("network p(a[i, j], b[j, k, l]) { c[k] = a * b }")["p"]
    compiled = tndiagram.compile(network, shapes={"a": (2, 3), "b": (3, 5, 7)})
    _, info = opt_einsum.contract_path("j,jk->k", (3,), (3, 5), shapes=True, optimize="optimal")
    assert compiled.plan.flops == 2 * 3 + 3 * 5 * 7 + info.opt_cost
