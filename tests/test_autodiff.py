"""VJP and JVP networks, compiled and compared with torch.func in float64."""

import pytest
import torch
import torch.nn.functional as F

import tndiagram
from tndiagram import RewriteError
from tndiagram.autodiff import jvp, vjp
from tndiagram.functional import diagram, normalize_padding

CONV = diagram("conv")["conv"]

# (x shape, weight shape, stride, padding, dilation, groups)
CONV_CASES = {
    "1d-stride-above-kernel": ((2, 3, 7), (4, 3, 2), 3, 1, 1, 1),
    "1d-asymmetric-padding": ((2, 2, 6), (2, 2, 3), 2, ((2, 0),), 1, 1),
    "2d-even-kernel-same": ((1, 2, 6, 5), (3, 2, 4, 2), 1, "same", (1, 2), 1),
    "2d-dilation-padding-groups": ((2, 4, 9, 8), (6, 2, 3, 2), (2, 3), (1, 2), (2, 1), 2),
    "2d-depthwise": ((2, 3, 5, 5), (6, 1, 3, 3), 1, 1, 1, 3),
    "3d-batch-one": ((1, 2, 5, 4, 3), (2, 2, 2, 3, 1), (2, 1, 2), (0, 1, 0), 1, 1),
    "2d-size-one": ((1, 1, 1, 4), (1, 1, 1, 2), 1, 0, 1, 1),
}


def per_dimension(value, count):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * count


def conv_hyper(x_shape, stride, padding, dilation, groups):
    count = len(x_shape) - 2
    return dict(
        stride=per_dimension(stride, count),
        padding=normalize_padding(padding, count),
        dilation=per_dimension(dilation, count),
        groups=groups,
    )


def torch_conv(x, weight, bias, stride, padding, dilation, groups):
    """torch's convolution; (left, right) padding pairs go through F.pad."""
    count = x.dim() - 2
    convolution = (F.conv1d, F.conv2d, F.conv3d)[count - 1]
    padding = normalize_padding(padding, count)
    if not isinstance(padding, str) and any(isinstance(p, tuple) for p in padding):
        pairs = [p if isinstance(p, tuple) else (p, p) for p in padding]
        x = F.pad(x, [side for pair in reversed(pairs) for side in pair])
        padding = 0
    return convolution(x, weight, bias, stride, padding, dilation, groups)


def random_conv_operands(case, seed=0):
    x_shape, weight_shape, *_ = CONV_CASES[case]
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(x_shape, dtype=torch.float64, generator=generator)
    weight = torch.randn(weight_shape, dtype=torch.float64, generator=generator)
    bias = torch.randn(weight_shape[0], dtype=torch.float64, generator=generator)
    return x, weight, bias


@pytest.mark.parametrize("wrt", ["x", "weight", "bias"])
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_vjp_network_matches_torch(case, wrt):
    x_shape, _, stride, padding, dilation, groups = CONV_CASES[case]
    x, weight, bias = random_conv_operands(case)
    primals = {"x": x, "weight": weight, "bias": bias}
    output, pullback = torch.func.vjp(
        lambda x, weight, bias: torch_conv(x, weight, bias, stride, padding, dilation, groups), x, weight, bias
    )
    cotangent = torch.randn_like(output)
    expected = dict(zip(("x", "weight", "bias"), pullback(cotangent)))[wrt]

    sizes = {"x": {"i_size": x.shape[2:]}, "weight": {"j_size": weight.shape[2:]}, "bias": {}}[wrt]
    network = vjp(CONV, wrt)
    function = tndiagram.compile(network, **conv_hyper(x_shape, stride, padding, dilation, groups), **sizes)
    arguments = {name: primals[name] for name in network.operand_names if name in primals}
    result = function(**arguments, grad_y=cotangent)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("wrt", ["x", "weight", "bias"])
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_jvp_network_matches_torch(case, wrt):
    x_shape, _, stride, padding, dilation, groups = CONV_CASES[case]
    x, weight, bias = random_conv_operands(case)
    primals = {"x": x, "weight": weight, "bias": bias}
    tangent = torch.randn_like(primals[wrt])
    tangents = {name: tangent if name == wrt else torch.zeros_like(value) for name, value in primals.items()}
    output, expected = torch.func.jvp(
        lambda x, weight, bias: torch_conv(x, weight, bias, stride, padding, dilation, groups),
        (x, weight, bias),
        (tangents["x"], tangents["weight"], tangents["bias"]),
    )

    hyper = conv_hyper(x_shape, stride, padding, dilation, groups)
    if wrt == "bias":
        hyper["o_size"] = output.shape[2:]
    function = tndiagram.compile(jvp(CONV, wrt), **hyper)
    result = function(x, weight, bias, **{f"tangent_{wrt}": tangent})
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", sorted(c for c in CONV_CASES if "asymmetric" not in c and "same" not in c))
def test_conv_input_vjp_is_transpose_convolution(case):
    x_shape, weight_shape, stride, padding, dilation, groups = CONV_CASES[case]
    x, weight, _ = random_conv_operands(case)
    hyper = conv_hyper(x_shape, stride, padding, dilation, groups)
    count = x.dim() - 2
    output = torch_conv(x, weight, None, stride, padding, dilation, groups)
    cotangent = torch.randn_like(output)

    # Strided convolutions drop up to stride - 1 input elements at the end,
    # which conv_transpose restores through output_padding.
    output_padding = tuple(
        x.shape[2 + d]
        - ((output.shape[2 + d] - 1) * hyper["stride"][d] - 2 * hyper["padding"][d]
           + hyper["dilation"][d] * (weight.shape[2 + d] - 1) + 1)
        for d in range(count)
    )
    transpose = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[count - 1]
    expected = transpose(
        cotangent, weight, None, hyper["stride"], hyper["padding"], output_padding, groups, hyper["dilation"]
    )
    function = tndiagram.compile(vjp(CONV, "x"), **hyper, i_size=x.shape[2:])
    torch.testing.assert_close(function(weight=weight, grad_y=cotangent), expected, rtol=1e-10, atol=1e-10)


MATRICES = tndiagram.parse(
    """
    network chain(a[i, j], b[j, k], c[k, l], d[l, m]) {
        e[i, m] = a * b * c * d / size(i)
    }
    # x occurs twice, once re-indexed: the sum over n of outer products.
    network outer(x[n, c, i], w[c]) {
        out[c, i, c2, i2] = 3 * x * x[n, c2, i2] * w + w * x
    }
    # A diagonal use x[i, i] and an index j summed over x only.
    network diagonal(x[i, i2], y[i, j]) {
        s[i2] = x[i, i] * y * ones[i2] + y[i2, j]
    }
    """
)


def random_operands(network, sizes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        o.name: torch.randn([sizes[axis[0]] for axis in o.axes], dtype=torch.float64, generator=generator)
        for o in network.operands
    }


def reference(name):
    """Plain-torch versions of the networks above."""
    if name == "chain":
        return lambda a, b, c, d: (a @ b @ c @ d) / a.shape[0]
    if name == "outer":
        return lambda x, w: 3 * torch.einsum("nci,ndj,c->cidj", x, x, w) + torch.einsum(
            "c,nci->ci", w, x
        )[:, :, None, None]
    return lambda x, y: torch.diagonal(x).dot(y.sum(1)) * torch.ones(x.shape[1], dtype=x.dtype) + y.sum(1)


NETWORK_SIZES = {
    "chain": {"i": 2, "j": 3, "k": 4, "l": 1, "m": 5},
    "outer": {"n": 3, "c": 2, "i": 4},
    "diagonal": {"i": 3, "i2": 3, "j": 2},
}


@pytest.mark.parametrize("name", sorted(NETWORK_SIZES))
def test_network_vjp_and_jvp_match_torch(name):
    network = MATRICES[name]
    operands = random_operands(network, NETWORK_SIZES[name])
    names = list(operands)
    output, pullback = torch.func.vjp(reference(name), *operands.values())
    cotangent = torch.randn_like(output)
    gradients = dict(zip(names, pullback(cotangent)))
    for wrt in names:
        derived = vjp(network, wrt)
        sizes = {h.name: NETWORK_SIZES[name][h.name[:-5]] for h in derived.hyper_parameters}
        arguments = {n: operands[n] for n in derived.operand_names if n in operands}
        arguments[f"grad_{network.output_name}"] = cotangent
        result = tndiagram.compile(derived, **sizes)(**arguments)
        torch.testing.assert_close(result, gradients[wrt], rtol=1e-10, atol=1e-10, msg=f"VJP of {wrt}")

        tangent = torch.randn_like(operands[wrt])
        tangents = [tangent if n == wrt else torch.zeros_like(operands[n]) for n in names]
        _, expected = torch.func.jvp(reference(name), tuple(operands.values()), tuple(tangents))
        derived = jvp(network, wrt)
        result = tndiagram.compile(derived)(**operands, **{f"tangent_{wrt}": tangent})
        torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10, msg=f"JVP of {wrt}")


def test_vjp_of_repeated_operand_has_term_per_occurrence():
    derived = vjp(MATRICES["outer"], "x")
    assert len(derived.terms) == 3
    assert "x" in derived.operand_names


def test_vjp_of_vjp_is_second_derivative():
    network = MATRICES["outer"]
    operands = random_operands(network, NETWORK_SIZES["outer"])
    x = operands["x"].clone().requires_grad_()
    w = operands["w"]
    cotangent = torch.randn(2, 4, 2, 4, dtype=torch.float64)
    second_cotangent = torch.randn_like(x)
    (gradient,) = torch.autograd.grad(reference("outer")(x, w), x, cotangent, create_graph=True)
    (expected,) = torch.autograd.grad(gradient, x, second_cotangent)

    first = vjp(network, "x")
    second = vjp(first, "x")
    assert second.operand_names == ("w", "grad_out", "grad_grad_x")
    result = tndiagram.compile(second)(w=w, grad_out=cotangent, grad_grad_x=second_cotangent)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)


def test_conv_vjp_of_input_vjp_by_weight():
    case = "2d-dilation-padding-groups"
    x_shape, _, stride, padding, dilation, groups = CONV_CASES[case]
    x, weight, _ = random_conv_operands(case)
    hyper = conv_hyper(x_shape, stride, padding, dilation, groups)
    output = torch_conv(x, weight, None, stride, padding, dilation, groups)
    cotangent = torch.randn_like(output)
    second_cotangent = torch.randn_like(x)

    # The input VJP is linear in the weight, so its weight VJP is the weight
    # gradient of <input VJP, second cotangent>.
    weight_leaf = weight.clone().requires_grad_()
    _, pullback = torch.func.vjp(lambda w: torch_conv(x, w, None, stride, padding, dilation, groups), weight_leaf)
    _, input_pullback = torch.func.vjp(
        lambda w: torch.func.vjp(lambda x: torch_conv(x, w, None, stride, padding, dilation, groups), x)[1](
            cotangent
        )[0],
        weight,
    )
    (expected,) = input_pullback(second_cotangent)

    second = vjp(vjp(CONV, "x"), "weight")
    function = tndiagram.compile(second, **hyper, i_size=x.shape[2:], j_size=weight.shape[2:])
    result = function(grad_y=cotangent, grad_grad_x=second_cotangent)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)


def derived_networks():
    yield vjp(CONV, "x")
    yield vjp(CONV, "weight")
    yield jvp(CONV, "bias")
    yield vjp(vjp(CONV, "x"), "weight")
    for name, network in MATRICES.items():
        for operand in network.operand_names:
            yield vjp(network, operand)
            yield jvp(network, operand)
    yield vjp(vjp(MATRICES["outer"], "x"), "x")


@pytest.mark.parametrize("network", list(derived_networks()), ids=lambda n: n.name)
def test_derived_network_prints_and_parses_back(network):
    text = str(network)
    assert tndiagram.parse(text)[network.name] == network


def test_diagram_file_defines_derived_networks():
    text = str(CONV) + "\nnetwork conv_vjp_x = vjp(conv, x)\nnetwork conv_jvp_weight = jvp(conv, weight)\n"
    program = tndiagram.parse(text, "conv_derivatives.tn")
    assert program["conv_vjp_x"] == vjp(CONV, "x", "conv_vjp_x")
    assert program["conv_jvp_weight"] == jvp(CONV, "weight", "conv_jvp_weight")
    assert program["conv_vjp_x"].span.line == text[: text.index("network conv_vjp_x")].count("\n") + 1


def test_vjp_diagonal_gets_delta():
    derived = vjp(MATRICES["diagonal"], "x")
    kinds = sorted(f.kind for term in derived.terms for f in term.factors)
    assert kinds == ["delta", "ones", "operand", "operand"]


def test_vjp_unknown_operand_raises():
    with pytest.raises(RewriteError, match="has no operand 'z'"):
        vjp(CONV, "z")


def test_vjp_of_unused_operand_raises():
    network = tndiagram.parse("network unused(a[i], b[i]) { y[i] = a }")["unused"]
    with pytest.raises(RewriteError, match="occurs in no term"):
        vjp(network, "b")


def test_vjp_family_diagonal_raises():
    network = tndiagram.parse("network d(x[i..., j...]) { y[] = x[i..., i...] }")["d"]
    with pytest.raises(RewriteError, match="index family"):
        vjp(network, "x")


def test_derived_statement_unknown_operand_points_at_file():
    text = str(CONV) + "\nnetwork bad = vjp(conv, z)\n"
    with pytest.raises(tndiagram.DiagramError, match="has no operand 'z'") as error:
        tndiagram.parse(text, "bad.tn")
    assert error.value.line == text[: text.index("network bad")].count("\n") + 1
