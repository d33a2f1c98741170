"""Compiled functions under autograd, torch.func and torch.compile, in float64."""

import pytest
import torch
import torch.nn.functional as F

import tndiagram
from tndiagram.functional import diagram

CONV = diagram("conv")["conv"]

NETWORKS = tndiagram.parse(
    """
    network chain(a[i, j], b[j, k], c[k, l]) {
        d[i, l] = a * b * c / size(j)
    }
    network outer(x[n, c], w[c]) {
        out[c, c2] = x * x[n, c2] * w + 2 * ones[c2] * w
    }
    network total(x[i, j]) {
        s[] = x
    }
    """
)


def randn(*shape, seed=0, requires_grad=True):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, dtype=torch.float64, generator=generator).requires_grad_(requires_grad)


# (x shape, weight shape, hyper-parameters) small enough for gradgradcheck.
GRADCHECK_CASES = {
    "1d-stride-above-kernel": ((1, 2, 7), (2, 2, 2), dict(stride=(3,), padding=(1,), dilation=(1,), groups=1)),
    "2d-groups-dilation": (
        (2, 4, 5, 4),
        (2, 2, 2, 2),
        dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
    ),
    "3d-depthwise": (
        (1, 2, 3, 3, 2),
        (2, 1, 2, 1, 2),
        dict(stride=(1, 2, 1), padding=((1, 0), 0, 1), dilation=(1, 1, 1), groups=2),
    ),
}


@pytest.mark.parametrize("case", sorted(GRADCHECK_CASES))
def test_conv_gradcheck_and_gradgradcheck(case):
    x_shape, weight_shape, hyper = GRADCHECK_CASES[case]
    function = tndiagram.compile(CONV, **hyper)
    operands = (randn(*x_shape, seed=1), randn(*weight_shape, seed=2), randn(weight_shape[0], seed=3))
    assert torch.autograd.gradcheck(function, operands)
    assert torch.autograd.gradgradcheck(function, operands)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_gradcheck_and_gradgradcheck(name):
    network = NETWORKS[name]
    shapes = {"chain": [(2, 3), (3, 4), (4, 2)], "outer": [(3, 2), (2,)], "total": [(2, 3)]}[name]
    operands = tuple(randn(*shape, seed=number) for number, shape in enumerate(shapes))
    function = tndiagram.compile(network)
    assert torch.autograd.gradcheck(function, operands)
    assert torch.autograd.gradgradcheck(function, operands)


def test_conv_gradients_match_torch_without_bias():
    x, weight = randn(2, 4, 9, 8, seed=1), randn(6, 2, 3, 2, seed=2)
    hyper = dict(stride=(2, 3), padding=(1, 0), dilation=(1, 2), groups=2)
    result = tndiagram.functional.conv(x, weight, None, **hyper)
    cotangent = torch.randn_like(result)
    gradients = torch.autograd.grad(result, (x, weight), cotangent)
    expected = torch.autograd.grad(F.conv2d(x, weight, None, **hyper), (x, weight), cotangent)
    for gradient, reference in zip(gradients, expected):
        torch.testing.assert_close(gradient, reference, rtol=1e-10, atol=1e-10)


def count_einsum_calls(monkeypatch):
    calls = []
    einsum = torch.einsum

    def counting(*args, **kwargs):
        calls.append(args[0])
        return einsum(*args, **kwargs)

    monkeypatch.setattr(torch, "einsum", counting)
    return calls


def test_backward_runs_generated_vjp_code(monkeypatch):
    # The pure einsum lowering, so that every contraction step is a counted einsum call.
    function = tndiagram.compile(
        CONV, stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1, native=False, simplify=False
    )
    x, weight = randn(2, 3, 7, 6, seed=1), randn(4, 3, 3, 3, seed=2, requires_grad=False)
    result = function(x, weight)
    assert type(result.grad_fn).__name__ == "NetworkFunctionBackward"

    calls = count_einsum_calls(monkeypatch)
    result.sum().backward()
    derivatives = function._last.derivatives
    input_vjp = derivatives.function("vjp", "x")
    # Only x requires grad, so no weight VJP is compiled.
    assert ("vjp", "weight") not in derivatives._functions
    assert "def conv_vjp_x(weight, grad_y):" in input_vjp.source
    steps = [s for term in input_vjp.plan.terms for s in term.steps if len(s.inputs) > 1]
    assert len(calls) == len(steps)
    torch.testing.assert_close(
        x.grad, torch.autograd.grad(F.conv2d(x, weight, None, 2, 1), x, torch.ones(2, 4, 4, 3, dtype=torch.float64))[0]
    )


def test_backward_runs_native_transpose_convolution(monkeypatch):
    function = tndiagram.compile(CONV, stride=(2, 2), padding=(1, 1), dilation=(1, 1), groups=1)
    x, weight = randn(2, 3, 7, 6, seed=1), randn(4, 3, 3, 3, seed=2, requires_grad=False)
    result = function(x, weight)
    calls = []
    transpose = F.conv_transpose2d

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return transpose(*args, **kwargs)

    monkeypatch.setattr(F, "conv_transpose2d", counting)
    result.sum().backward()
    assert calls == [torch.Size([2, 4, 4, 3])]
    expected = torch.autograd.grad(F.conv2d(x, weight, None, 2, 1), x, torch.ones(2, 4, 4, 3, dtype=torch.float64))[0]
    torch.testing.assert_close(x.grad, expected)


def test_vjp_functions_are_cached_per_shape_signature():
    function = tndiagram.compile(NETWORKS["chain"])
    for shapes in ([(2, 3), (3, 4), (4, 2)], [(2, 3), (3, 4), (4, 2)], [(5, 3), (3, 4), (4, 2)]):
        operands = [randn(*shape) for shape in shapes]
        function(*operands).sum().backward()
    first, second = (s.derivatives for s in function._specializations.values())
    assert first.function("vjp", "a") is not second.function("vjp", "a")
    assert len(first.function("vjp", "a")._specializations) == 1


def test_no_autograd_without_requires_grad():
    function = tndiagram.compile(NETWORKS["chain"])
    result = function(*(randn(*s, requires_grad=False) for s in [(2, 3), (3, 4), (4, 2)]))
    assert result.grad_fn is None
    with torch.no_grad():
        assert function(*(randn(*s) for s in [(2, 3), (3, 4), (4, 2)])).grad_fn is None


def test_func_jvp_uses_jvp_networks(monkeypatch):
    x, weight, bias = randn(2, 4, 6, 5, seed=1), randn(6, 2, 3, 2, seed=2), randn(6, seed=3)
    hyper = dict(stride=(1, 2), padding=(1, 1), dilation=(2, 1), groups=2)
    tangents = (torch.randn_like(x), torch.randn_like(weight), torch.randn_like(bias))
    function = tndiagram.compile(CONV, **hyper)
    output, tangent = torch.func.jvp(function, (x, weight, bias), tangents)
    expected_output, expected = torch.func.jvp(lambda *a: F.conv2d(*a, **hyper), (x, weight, bias), tangents)
    torch.testing.assert_close(output, expected_output, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(tangent, expected, rtol=1e-10, atol=1e-10)
    derivatives = function._last.derivatives
    assert all(derivatives._functions[("jvp", name)] is not None for name in ("x", "weight", "bias"))


def test_forward_ad_dual_tensors():
    import torch.autograd.forward_ad as forward_ad

    x, weight = randn(1, 2, 5, seed=1), randn(3, 2, 2, seed=2)
    tangent = torch.randn_like(x)
    function = tndiagram.compile(CONV, stride=(2,), padding=(1,), dilation=(1,), groups=1)
    with forward_ad.dual_level():
        result = function(forward_ad.make_dual(x, tangent), weight)
        output_tangent = forward_ad.unpack_dual(result).tangent
    torch.testing.assert_close(output_tangent, F.conv1d(tangent, weight, None, 2, 1), rtol=1e-10, atol=1e-10)


def test_func_transforms_compose():
    x, weight = randn(2, 3, 5, seed=1), randn(2, 3, 2, seed=2)
    function = tndiagram.compile(CONV, stride=(1,), padding=(0,), dilation=(1,), groups=1)
    batched = torch.func.vmap(lambda x: function(x.unsqueeze(0), weight))(x)
    torch.testing.assert_close(batched.squeeze(1), F.conv1d(x, weight), rtol=1e-10, atol=1e-10)
    jacobian = torch.func.jacrev(lambda w: function(x, w))(weight)
    expected = torch.func.jacrev(lambda w: F.conv1d(x, w))(weight)
    torch.testing.assert_close(jacobian, expected, rtol=1e-10, atol=1e-10)
    small = x[:1, :, :3]
    hessian = torch.func.jacfwd(torch.func.jacrev(lambda x: function(x, x[:2, :, :2]).square().sum()))(small)
    expected = torch.func.jacfwd(torch.func.jacrev(lambda x: F.conv1d(x, x[:2, :, :2]).square().sum()))(small)
    torch.testing.assert_close(hessian, expected, rtol=1e-10, atol=1e-10)


def test_torch_compile_fullgraph_inference_and_training():
    hyper = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    function = tndiagram.compile(CONV, **hyper)
    x, weight, bias = randn(2, 4, 6, 5, seed=1), randn(6, 2, 3, 2, seed=2), randn(6, seed=3)

    def model(x, weight, bias):
        return function(x, weight, bias).sin()

    # torch.compile cannot trace binding and code generation, so the forward
    # specialization and the VJP networks are built once outside it.
    model(x, weight, bias).sum().backward()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, weight, bias), model(x, weight, bias), rtol=1e-10, atol=1e-10)
    gradients = torch.autograd.grad(compiled(x, weight, bias).sum(), (x, weight, bias))
    expected = torch.autograd.grad(F.conv2d(x, weight, bias, **hyper).sin().sum(), (x, weight, bias))
    for gradient, reference in zip(gradients, expected):
        torch.testing.assert_close(gradient, reference, rtol=1e-10, atol=1e-10)


def test_torch_compile_without_specialization_explains():
    function = tndiagram.compile(NETWORKS["chain"])
    compiled = torch.compile(lambda *operands: function(*operands), fullgraph=True, backend="eager")
    operands = [randn(*s, requires_grad=False) for s in [(2, 3), (3, 4), (4, 2)]]
    with pytest.raises(Exception, match="call the function once outside torch.compile"):
        compiled(*operands)
