"""Convolution passes: agreement with torch.nn.functional over awkward
hyper-parameters, preconditions that fire exactly, and KFAC-reduce."""

from __future__ import annotations

import random

import opt_einsum
import pytest
import torch
import torch.nn.functional as F

import tndiagram
from tndiagram.bind import bind
from tndiagram.errors import RewriteError
from tndiagram.rewrites import dense, downsample, kernel_one, simplify, strided

from test_rewrites import CONV, check_equivalent

TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

AWKWARD = [
    # (input sizes, kernel sizes, stride, padding, dilation, groups, batch)
    ((9,), (3,), 4, 0, 1, 1, 1),  # stride > kernel, remainder
    ((8,), (2,), 1, "same", 1, 1, 2),  # even kernel with 'same'
    ((10, 7), (3, 2), (1, 2), (2, 1), (2, 1), 2, 1),  # dilation with padding, groups
    ((12, 9), (1, 7), 1, 0, 1, 1, 2),  # 1x7: kernel one in one dimension only
    ((6, 6, 6), (2, 2, 2), 2, 0, 1, 1, 1),  # dense in 3-d
    ((7, 5, 1), (3, 2, 1), (3, 2, 1), 0, 1, 3, 2),  # down-sampling, size-one dimension
    ((5,), (1,), 3, 1, 1, 1, 1),  # kernel one with padding
    ((1, 4), (1, 4), 1, 0, 1, 1, 1),  # size-one input and kernel
]


def _random_case(rng: random.Random):
    dims = rng.choice([1, 2, 3])
    kernel = tuple(rng.choice([1, 2, 3]) for _ in range(dims))
    stride = tuple(rng.choice([1, 2, 3, 4]) for _ in range(dims))
    dilation = tuple(rng.choice([1, 2]) for _ in range(dims))
    padding = tuple(rng.choice([0, 0, 1, 2]) for _ in range(dims))
    sizes = tuple(dilation[d] * (kernel[d] - 1) + 1 + rng.randint(0, 5) for d in range(dims))
    return sizes, kernel, stride, padding, dilation, rng.choice([1, 2]), rng.choice([1, 2])


CASES = AWKWARD + [_random_case(random.Random(seed)) for seed in range(12)]


@pytest.mark.parametrize("case", CASES, ids=[f"case{n}" for n in range(len(CASES))])
def test_conv_matches_torch_with_and_without_rewrites(case):
    sizes, kernel, stride, padding, dilation, groups, batch = case
    generator = torch.Generator().manual_seed(len(sizes))
    x = torch.randn(batch, 2 * groups, *sizes, dtype=torch.float64, generator=generator)
    weight = torch.randn(3 * groups, 2, *kernel, dtype=torch.float64, generator=generator)
    bias = torch.randn(3 * groups, dtype=torch.float64, generator=generator)
    expected = TORCH_CONV[len(sizes)](x, weight, bias, stride, padding, dilation, groups)
    for simplify_flag in (True, False):
        function = tndiagram.compile(
            CONV, simplify=simplify_flag, stride=stride, padding=padding, dilation=dilation, groups=groups
        )
        torch.testing.assert_close(function(x, weight, bias), expected)


def _bound_conv(sizes, kernel, stride=1, padding=0, dilation=1):
    shapes = {"x": (2, 3, *sizes), "weight": (4, 3, *kernel)}
    return bind(CONV, {"stride": stride, "padding": padding, "dilation": dilation}, shapes)


def _fires(function, bound) -> bool:
    result = function(bound)
    if result is not bound:
        check_equivalent(bound, result)
    return result is not bound


@pytest.mark.parametrize(
    "size, kernel, stride, padding, dilation, expected",
    [
        (12, 3, 3, 0, 1, True),
        (12, 4, 4, 0, 1, True),
        (13, 3, 3, 0, 1, False),  # input not a multiple of the kernel
        (12, 3, 3, 1, 1, False),  # padding
        (12, 3, 2, 0, 1, False),  # stride differs from the kernel
        (12, 2, 2, 0, 2, False),  # dilation
    ],
)
def test_dense_fires_exactly_when_precondition_holds(size, kernel, stride, padding, dilation, expected):
    assert _fires(dense.rewrite_dense, _bound_conv((size,), (kernel,), stride, padding, dilation)) is expected


@pytest.mark.parametrize(
    "size, kernel, stride, padding, dilation, expected",
    [
        (12, 2, 3, 0, 1, True),  # no remainder
        (13, 2, 3, 0, 1, True),  # remainder sliced off
        (11, 2, 5, 0, 1, True),  # O·S = 15 > I: the last block is zero-padded
        (12, 2, 3, 0, 2, True),  # S = 3 > D·(K−1) = 2
        (12, 2, 2, 0, 2, False),  # S = D·(K−1): windows touch
        (12, 3, 3, 1, 1, False),  # padding
        (12, 3, 1, 0, 1, False),  # overlapping windows
    ],
)
def test_downsample_fires_exactly_when_precondition_holds(size, kernel, stride, padding, dilation, expected):
    bound = _bound_conv((size,), (kernel,), stride, padding, dilation)
    assert _fires(downsample.rewrite_downsample, bound) is expected


@pytest.mark.parametrize("kernel, expected", [(1, True), (2, False), (3, False)])
def test_kernel_one_fires_exactly_for_kernel_one(kernel, expected):
    assert _fires(kernel_one.slice_kernel_one, _bound_conv((9,), (kernel,), 2, 1)) is expected


def test_strided_fires_for_any_pattern_on_an_operand():
    assert _fires(strided.lower_strided, _bound_conv((9,), (3,), 2, ((2, 1),), 2))


def test_strided_skips_open_input_index():
    transpose = tndiagram.parse(
        """
network transpose(y[n, k, o], weight[k, c, j]; stride=1) {
    size i = (size(o) - 1) * stride + size(j)
    x[n, c, i] = y * weight * pattern[j, o, i](stride=stride)
}
""",
        "<transpose>",
    )["transpose"]
    bound = bind(transpose, {"stride": 2}, {"y": (1, 2, 5), "weight": (2, 3, 3)})
    assert strided.lower_strided(bound) is bound


def test_pipeline_picks_a_pass_per_dimension():
    trace = simplify(_bound_conv((12, 9, 8), (1, 7, 2), (2, 1, 2)))
    assert sorted(trace.fired) == ["dense", "kernel-one", "squeeze", "strided"]
    check_equivalent(trace.initial, trace.final)


def test_pipeline_downsamples_with_remainder():
    trace = simplify(_bound_conv((13,), (2,), 3))
    assert "downsample" in trace.fired
    assert "strided" not in trace.fired
    check_equivalent(trace.initial, trace.final)


def test_disable_turns_a_pass_off():
    bound = _bound_conv((12,), (3,), 3)
    assert "dense" in simplify(bound).fired
    trace = simplify(bound, disable={"dense"})
    assert "dense" not in trace.fired
    assert "downsample" in trace.fired


def test_disable_rejects_unknown_pass():
    with pytest.raises(RewriteError, match="unknown rewrite pass 'densest'"):
        simplify(_bound_conv((12,), (3,), 3), disable={"densest"})


def test_cycle_raises_rewrite_error():
    bound = _bound_conv((12,), (3,), 3)
    flipped = dense.rewrite_dense(bound)

    def flip(network):
        return flipped if network is not flipped and network.network is bound.network else bound

    with pytest.raises(RewriteError, match="cycle"):
        simplify(bound, passes=(("flip", flip),))


KFAC = tndiagram.load("examples/kfac_reduce.tn")["kfac_reduce"]


@pytest.mark.parametrize(
    "x_shape, kernel, stride, padding, dilation",
    [((2, 3, 7, 6), (3, 2), (2, 1), 1, (1, 2)), ((1, 2, 9), (3,), 3, 0, 1), ((2, 1, 5, 4, 3), 2, 1, 0, 1)],
)
def test_kfac_reduce_matches_unfold(x_shape, kernel, stride, padding, dilation):
    x = torch.randn(x_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    function = tndiagram.compile(KFAC, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)
    unsimplified = tndiagram.compile(
        KFAC, simplify=False, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation
    )
    if len(x_shape) == 4:
        patches = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
        summed = patches.sum(-1)
        expected = summed.T @ summed / (x_shape[0] * patches.shape[-1] ** 2)
        torch.testing.assert_close(function(x), expected)
    torch.testing.assert_close(function(x), unsimplified(x))


def test_kfac_reduce_trace_for_resnet18_layer():
    # torch.einsum's default 'auto' strategy plans like opt_einsum's 'greedy' on
    # the whole term; tndiagram's planner sums private indices first by itself,
    # see docs/rewrites.md.
    shapes = {"x": (8, 64, 56, 56)}
    simplified = tndiagram.compile(KFAC, shapes=shapes, strategy="greedy", kernel_size=3, padding=1)
    unsimplified = tndiagram.compile(
        KFAC, shapes=shapes, strategy="greedy", simplify=False, kernel_size=3, padding=1
    )
    assert "summed-pattern" in simplified.trace.fired
    (term,) = unsimplified.plan.terms
    letters = {index: opt_einsum.get_symbol(n) for n, index in enumerate(unsimplified.plan.sizes)}
    equation = ",".join("".join(letters[i] for i in indices) for indices in term.inputs)
    equation += "->" + "".join(letters[i] for i in term.output)
    shapes = [tuple(unsimplified.plan.sizes[i] for i in indices) for indices in term.inputs]
    _, greedy = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize="greedy")
    assert greedy.opt_cost >= 10 * simplified.plan.flops
    # The planner's own sums of each pattern's output index come close to the rewrite.
    assert unsimplified.plan.flops <= 1.01 * simplified.plan.flops
    assert simplified.trace.firings[0].flops_before == unsimplified.plan.flops
    assert simplified.trace.firings[-1].flops_after == simplified.plan.flops
