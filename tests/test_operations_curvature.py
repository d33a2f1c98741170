"""KFC and KFAC-reduce factors, the GGN diagonal and the randomized weight VJP
of tndiagram.functional against unfold- and vmap-based references, in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tndiagram import functional
from test_operations_reference import (
    CASES,
    DTYPE,
    Case,
    TRANSPOSED_CASES,
    case_ids,
    reference_conv,
    reference_unfold,
    torch_conv,
    transposed_unfold,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


def hyper(case):
    return dict(stride=case.stride, padding=case.padding, dilation=case.dilation, groups=case.groups)


def grouped(unfolded, groups):
    """Split the rows of U of shape [N, C·∏K, P] into groups: [N, G, C/G·∏K, P]."""
    batch, rows, columns = unfolded.shape
    return unfolded.reshape(batch, groups, rows // groups, columns)


def reference_kfc(unfolded, groups):
    u = grouped(unfolded, groups)
    return torch.einsum("ngap,ngbp->gab", u, u) / u.shape[0]


def reference_kfac_reduce(unfolded, groups):
    u = grouped(unfolded, groups).sum(-1)
    return torch.einsum("nga,ngb->gab", u, u) / (u.shape[0] * unfolded.shape[-1] ** 2)


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_kfc_factors_match_unfold(case):
    x = case.random_input(torch.Generator().manual_seed(20))
    unfolded = reference_unfold(x, case)
    torch.testing.assert_close(functional.kfc(x, case.kernel_size, **hyper(case)), reference_kfc(unfolded, case.groups))
    torch.testing.assert_close(
        functional.kfac_reduce(x, case.kernel_size, **hyper(case)), reference_kfac_reduce(unfolded, case.groups)
    )


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=case_ids(TRANSPOSED_CASES))
def test_transposed_kfc_factors_match_unfold(case):
    x = case.random_input(torch.Generator().manual_seed(21))
    unfolded = transposed_unfold(x, case)
    options = dict(hyper(case), transposed=True, output_padding=case.output_padding)
    torch.testing.assert_close(functional.kfc(x, case.kernel_size, **options), reference_kfc(unfolded, case.groups))
    torch.testing.assert_close(
        functional.kfac_reduce(x, case.kernel_size, **options), reference_kfac_reduce(unfolded, case.groups)
    )


def test_kfc_rejects_output_padding_without_transposed():
    x = torch.randn(1, 2, 5, dtype=DTYPE)
    with pytest.raises(ValueError, match="output_padding=1 applies only to transpose convolutions"):
        functional.kfc(x, 3, stride=2, output_padding=1)


def reference_ggn_diagonal(x, weight_size, sqrt_hessian, case):
    """Square and sum the per-sample weight VJPs, vectorized with torch.func.vmap."""
    weight = torch.zeros(weight_size, dtype=DTYPE)

    def convolve(sample, w):
        if case.torch_supports:
            return torch_conv(sample, w, case)
        return reference_conv(sample, w, case)

    def per_sample_vjp(sample, vector):
        _, vjp = torch.func.vjp(lambda w: convolve(sample[None], w), weight)
        return vjp(vector[None])[0]

    over_samples = torch.func.vmap(per_sample_vjp, in_dims=(0, 0))
    over_vectors = torch.func.vmap(over_samples, in_dims=(None, 0))
    gradients = over_vectors(x, sqrt_hessian)  # [M, N, *weight_size]
    return (gradients**2).sum((0, 1))


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_ggn_diagonal_matches_per_sample_gradients(case):
    generator = torch.Generator().manual_seed(22)
    x = case.random_input(generator)
    sqrt_hessian = torch.randn(3, case.batch, case.out_channels, *case.output_size, dtype=DTYPE, generator=generator)
    weight_size = case.weight_size()
    result = functional.conv_weight_ggn_diagonal(x, weight_size, sqrt_hessian, **hyper(case))
    torch.testing.assert_close(result, reference_ggn_diagonal(x, weight_size, sqrt_hessian, case))


def test_ggn_diagonal_rejects_wrong_rank():
    x = torch.randn(2, 3, 6, dtype=DTYPE)
    with pytest.raises(ValueError, match=r"sqrt_hessian must be a tensor of shape \[M, N, C_out, \*output\] with rank 4"):
        functional.conv_weight_ggn_diagonal(x, (2, 3, 3), torch.randn(2, 2, 4, dtype=DTYPE))


# -- randomized weight VJP ----------------------------------------------------

# Small inputs: each new number of kept slices compiles the network once more.
DROPOUT_CASES = [
    Case("1d-groups", 2, 4, 6, (7,), (3,), stride=2, padding=1, groups=2),
    Case("2d-dilation", 2, 3, 4, (4, 5), (2, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    Case("3d-size-one", 1, 2, 3, (1, 3, 4), (1, 2, 3), stride=(1, 2, 3), padding=(0, 1, 1)),
]


def dropout_operands(case, seed):
    generator = torch.Generator().manual_seed(seed)
    x = case.random_input(generator)
    grad_output = torch.randn(case.batch, case.out_channels, *case.output_size, dtype=DTYPE, generator=generator)
    return x, grad_output


def draws(case, dim, keep_prob, count, seed):
    x, grad_output = dropout_operands(case, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    estimates = [
        functional.conv_weight_vjp_dropout(
            x, case.weight_size(), grad_output, **hyper(case), keep_prob=keep_prob, dim=dim, generator=generator
        )
        for _ in range(count)
    ]
    exact = functional.conv_weight_vjp(x, case.weight_size(), grad_output, **hyper(case))
    return torch.stack(estimates), exact


def within_standard_errors(estimates, exact, errors=5.0):
    """Tell whether the mean of the draws lies within ``errors`` standard errors of ``exact`` everywhere."""
    standard_error = estimates.std(0) / math.sqrt(estimates.shape[0])
    return bool(((estimates.mean(0) - exact).abs() <= errors * standard_error + 1e-10).all())


@pytest.mark.parametrize("dim", ["spatial", "channel"])
@pytest.mark.parametrize("case", DROPOUT_CASES, ids=case_ids(DROPOUT_CASES))
def test_dropout_weight_vjp_is_unbiased(case, dim):
    estimates, exact = draws(case, dim, keep_prob=0.7, count=150, seed=23)
    assert within_standard_errors(estimates, exact)
    # The bound is tight enough to see the bias of an estimate without rescaling.
    assert not within_standard_errors(estimates * 0.7, exact)


def test_dropout_weight_vjp_keeps_everything_at_probability_one():
    case = DROPOUT_CASES[1]
    x, grad_output = dropout_operands(case, 24)
    exact = functional.conv_weight_vjp(x, case.weight_size(), grad_output, **hyper(case))
    for dim in ("spatial", "channel"):
        result = functional.conv_weight_vjp_dropout(
            x, case.weight_size(), grad_output, **hyper(case), keep_prob=1.0, dim=dim
        )
        torch.testing.assert_close(result, exact)


def test_dropout_weight_vjp_contracts_smaller_tensors():
    case = DROPOUT_CASES[1]  # 2-d
    x, grad_output = dropout_operands(case, 25)
    options = dict(stride=case.strides, padding=functional.normalize_padding(case.padding, 2), dilation=case.dilations, groups=1)

    spatial = functional._sample_weight_vjp(
        x, case.weight_size(), grad_output, dict(options), 0.5, "spatial", torch.Generator().manual_seed(0)
    )
    kept = [indices.numel() for indices in spatial.kept]
    assert all(0 < count < size for count, size in zip(kept, case.input_size))
    assert spatial.operands["x"].shape == (case.batch, case.in_channels, *kept)
    for d in range(2):
        assert spatial.operands[f"pattern{d + 1}"].shape == (case.kernel_size[d], case.output_size[d], kept[d])

    channel = functional._sample_weight_vjp(
        x, case.weight_size(), grad_output, dict(options), 0.5, "channel", torch.Generator().manual_seed(1)
    )
    (kept_channels,) = channel.kept
    assert 0 < kept_channels.numel() < case.in_channels
    assert channel.operands["x"].shape == (case.batch, kept_channels.numel(), *case.input_size)


def test_dropout_weight_vjp_rejects_invalid_arguments():
    case = DROPOUT_CASES[0]
    x, grad_output = dropout_operands(case, 26)
    with pytest.raises(ValueError, match="keep_prob must be a probability in \\(0, 1\\], got 0"):
        functional.conv_weight_vjp_dropout(x, case.weight_size(), grad_output, keep_prob=0, groups=2)
    with pytest.raises(ValueError, match="invalid dim 'batch'"):
        functional.conv_weight_vjp_dropout(x, case.weight_size(), grad_output, keep_prob=0.5, dim="batch", groups=2)
