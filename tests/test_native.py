"""Native lowering: terms that are exactly a convolution or one of its VJPs run
torch's kernels, and give the same values as the pure einsum lowering."""

import pytest
import torch

import tndiagram

F = torch.nn.functional

VJP_NETWORKS = tndiagram.parse(
    """
network input_vjp(grad[n, (g k), o...], weight[(g k), c, j...];
                  input_size, stride=1, padding=0, dilation=1, groups=1) {
    size g = groups
    size i... = input_size
    grad_x[n, (g c), i...] = grad * weight * pattern[j..., o..., i...](stride=stride, padding=padding, dilation=dilation)
}
network weight_vjp(x[n, (g c), i...], grad[n, (g k), o...];
                   kernel_size, stride=1, padding=0, dilation=1, groups=1) {
    size g = groups
    size j... = kernel_size
    grad_w[(g k), c, j...] = x * grad * pattern[j..., o..., i...](stride=stride, padding=padding, dilation=dilation)
}
# The weight VJP with its output axes in another order: the lowering permutes.
network weight_vjp_permuted(x[n, c, i...], grad[n, k, o...]; kernel_size, stride=1) {
    size j... = kernel_size
    grad_w[j..., c, k] = grad * x * pattern[j..., o..., i...](stride=stride)
}
"""
)

CASES = {
    "2d-asymmetric-padding-groups": dict(
        batch=2, channels=4, out_channels=6, size=(9, 8), kernel=(3, 2), stride=(2, 1),
        padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2,
    ),
    "2d-same-even-kernel-depthwise": dict(
        batch=1, channels=3, out_channels=3, size=(5, 5), kernel=(2, 2), stride=(1, 1),
        padding="same", dilation=(1, 1), groups=3,
    ),
    "1d-stride-above-kernel": dict(
        batch=2, channels=2, out_channels=4, size=(11,), kernel=(2,), stride=(3,),
        padding=(1,), dilation=(1,), groups=1,
    ),
    "3d-mixed": dict(
        batch=1, channels=2, out_channels=2, size=(4, 5, 3), kernel=(2, 1, 3), stride=(1, 2, 1),
        padding=(1, 0, 1), dilation=(1, 1, 1), groups=1,
    ),
    "2d-size-one": dict(
        batch=3, channels=1, out_channels=1, size=(1, 6), kernel=(1, 3), stride=(1, 2),
        padding=(0, 1), dilation=(1, 2), groups=1,
    ),
}


def reference_forward(x, weight, case):
    """Convolve with torch, padding asymmetric (left, right) pairs by hand."""
    dims = len(case["size"])
    padding = case["padding"]
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        flat = [amount for pair in reversed(padding) for amount in pair]
        x, padding = F.pad(x, flat), 0
    convolution = getattr(F, f"conv{dims}d")
    return convolution(x, weight, None, case["stride"], padding, case["dilation"], case["groups"])


def random_operands(case):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(case["batch"], case["channels"], *case["size"], dtype=torch.float64, generator=generator)
    weight = torch.randn(
        case["out_channels"], case["channels"] // case["groups"], *case["kernel"],
        dtype=torch.float64, generator=generator,
    )
    return x.requires_grad_(), weight.requires_grad_()


def hyper_parameters(case):
    return dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("native", [True, False], ids=["native", "einsum"])
def test_vjp_networks_match_autograd(case, native):
    x, weight = random_operands(case)
    y = reference_forward(x, weight, case)
    cotangent = torch.randn_like(y)
    grad_x, grad_weight = torch.autograd.grad(y, (x, weight), cotangent)

    input_vjp = tndiagram.compile(
        VJP_NETWORKS["input_vjp"], native=native, input_size=case["size"], **hyper_parameters(case)
    )
    weight_vjp = tndiagram.compile(
        VJP_NETWORKS["weight_vjp"], native=native, kernel_size=case["kernel"], **hyper_parameters(case)
    )
    torch.testing.assert_close(input_vjp(cotangent, weight.detach()), grad_x)
    torch.testing.assert_close(weight_vjp(x.detach(), cotangent), grad_weight)
    assert ("torch.nn.functional.conv_transpose" in input_vjp.source) == native
    assert ("torch.nn.grad.conv" in weight_vjp.source) == native


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_forward_lowered_to_native_kernel(case):
    x, weight = random_operands(case)
    result = tndiagram.functional.conv(x.detach(), weight.detach(), None, **hyper_parameters(case))
    torch.testing.assert_close(result, reference_forward(x.detach(), weight.detach(), case))
    compiled = tndiagram.compile(tndiagram.functional.diagram("conv")["conv"], **hyper_parameters(case))
    torch.testing.assert_close(compiled(x.detach(), weight.detach()), result)
    assert "torch.nn.functional.conv" in compiled.source
    assert "torch.einsum" not in compiled.source


def test_permuted_weight_vjp_output():
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    weight = torch.randn(4, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x, weight, stride=2)
    cotangent = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, weight, cotangent)
    compiled = tndiagram.compile(VJP_NETWORKS["weight_vjp_permuted"], kernel_size=(2, 3), stride=2)
    result = compiled(x, cotangent)
    assert "torch.nn.grad.conv2d_weight" in compiled.source
    torch.testing.assert_close(result, expected.permute(2, 3, 1, 0))


def test_four_dimensional_convolution_stays_einsum():
    x = torch.randn(1, 2, 3, 3, 3, 3, dtype=torch.float64)
    weight = torch.randn(2, 2, 2, 2, 2, 2, dtype=torch.float64)
    compiled = tndiagram.compile(tndiagram.functional.diagram("conv")["conv"], stride=1, padding=0, dilation=1)
    compiled(x, weight)
    assert "torch.einsum" in compiled.source
    assert "torch.nn.functional.conv" not in compiled.source


def test_twice_occurring_operand_is_not_a_convolution():
    network = tndiagram.parse(
        "network gram(x[n, c, i]; stride=1) { size k = 2\n"
        " y[c, k, o] = x * x[n, c, i] * pattern[k, o, i](stride=stride) }"
    )["gram"]
    compiled = tndiagram.compile(network)
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    result = compiled(x)
    expected = torch.einsum("nci,koi->cko", x * x, pattern_tensor(2, 4, 5))
    torch.testing.assert_close(result, expected)
    assert "torch.nn.functional.conv" not in compiled.source


def pattern_tensor(kernel, output, input, stride=1):
    """Build the index pattern with plain loops, as an independent reference."""
    result = torch.zeros(kernel, output, input, dtype=torch.float64)
    for k in range(kernel):
        for o in range(output):
            i = stride * o + k
            if i < input:
                result[k, o, i] = 1
    return result


BIAS_NETWORKS = tndiagram.parse(
    """
# The bias over (g k) split into two axes: the kernel takes it flattened.
network split_bias(x[n, (g c), i...], weight[(g k), c, j...], bias[g, k]; padding=0, groups=1) {
    size g = groups
    y[n, (g k), o...] = x * weight * pattern[j..., o..., i...](padding=padding) + bias
}
# A scaled convolution: torch's kernel cannot scale before adding the bias.
network scaled(x[n, c, i...], weight[k, c, j...], bias[k]) {
    y[n, k, o...] = 2 * x * weight * pattern[j..., o..., i...](stride=1) + bias
}
# The bias first: the convolution's term still takes it.
network bias_first(x[n, c, i...], weight[k, c, j...], bias[k]; stride=1) {
    y[n, k, o...] = bias + x * weight * pattern[j..., o..., i...](stride=stride)
}
# A bias over the output positions is not a bias torch's kernel adds.
network spatial_bias(x[n, c, i], weight[k, c, j], bias[o]) {
    y[n, k, o] = x * weight * pattern[j, o, i](stride=1) + bias
}
"""
)


def takes_bias(source: str) -> bool:
    """Whether a native convolution call in ``source`` takes ``bias``, across wrapped lines."""
    return "weight, bias," in " ".join(source.split())


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bias_passed_to_native_convolution(case):
    x, weight = random_operands(case)
    bias = torch.randn(case["out_channels"], dtype=torch.float64)
    compiled = tndiagram.compile(tndiagram.functional.diagram("conv")["conv"], **hyper_parameters(case))
    result = compiled(x.detach(), weight.detach(), bias)
    expected = reference_forward(x.detach(), weight.detach(), case) + bias.reshape(-1, *[1] * len(case["size"]))
    torch.testing.assert_close(result, expected)
    assert takes_bias(compiled.source)
    assert "y = y + " not in compiled.source


def test_split_bias_axes_flattened():
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    weight = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    bias = torch.randn(2, 3, dtype=torch.float64)
    compiled = tndiagram.compile(BIAS_NETWORKS["split_bias"], padding=1, groups=2)
    expected = F.conv2d(x, weight, bias.reshape(-1), padding=1, groups=2)
    torch.testing.assert_close(compiled(x, weight, bias), expected)
    assert "bias.reshape(6,)" in compiled.source


@pytest.mark.parametrize("name", ["scaled", "bias_first", "spatial_bias"])
def test_bias_folding_cases(name):
    x = torch.randn(3, 2, 9, dtype=torch.float64)
    weight = torch.randn(4, 2, 3, dtype=torch.float64)
    network = BIAS_NETWORKS[name]
    hyper = {"stride": 2} if name == "bias_first" else {}
    convolution = F.conv1d(x, weight, **hyper)
    bias = torch.randn(convolution.shape[2] if name == "spatial_bias" else 4, dtype=torch.float64)
    compiled = tndiagram.compile(network, **hyper)
    result = compiled(x, weight, bias)
    if name == "scaled":
        expected, folded = 2 * convolution + bias.reshape(4, 1), False
    elif name == "spatial_bias":
        expected, folded = convolution + bias, False
    else:
        expected, folded = F.conv1d(x, weight, bias, **hyper), True
    torch.testing.assert_close(result, expected)
    assert takes_bias(compiled.source) == folded
    assert "torch.nn.functional.conv1d" in compiled.source
