"""Rewrite passes and the pipeline: values preserved on random networks,
preconditions that fire exactly, no mutation, and a check that a broken pass
is caught."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import tndiagram
from tndiagram.bind import bind
from tndiagram.errors import RewriteError
from tndiagram.rewrites import PASS_NAMES, PASSES, pipeline, simplify
from tndiagram.rewrites.common import rename_factor

from rewrite_helpers import evaluate, random_bound, random_tensors

SEEDS = range(25)

CONV = tndiagram.parse(
    """
network conv(x[n, (g c), i...], weight[(g k), c, j...], bias?[(g k)];
             stride=1, padding=0, dilation=1, groups=1) {
    size g = groups
    y[n, (g k), o...] =
        x * weight * pattern[j..., o..., i...](stride=stride, padding=padding, dilation=dilation) + bias
}
""",
    "<conv>",
)["conv"]


def check_equivalent(before, after, seed: int = 0) -> None:
    """Assert that two bound networks compute the same values on random operands."""
    tensors = random_tensors(before, torch.Generator().manual_seed(seed))
    expected = evaluate(before, tensors)
    actual = evaluate(after, tensors)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def check_random_suite(seeds=SEEDS) -> None:
    """Run every pass alone and the pipeline on random networks and compare values."""
    for seed in seeds:
        bound = random_bound(seed)
        for name, function in pipeline.PASSES:
            result = function(bound)
            if result is not bound:
                check_equivalent(bound, result, seed)
        check_equivalent(bound, simplify(bound).final, seed)


def test_random_networks_keep_values():
    check_random_suite()


def test_random_suite_exercises_every_pass():
    fired = set()
    for seed in SEEDS:
        bound = random_bound(seed)
        fired.update(name for name, function in PASSES if function(bound) is not bound)
        fired.update(simplify(bound).fired)
    assert fired >= set(PASS_NAMES) - {"merge"}


def test_broken_pass_is_caught(monkeypatch):
    def drop_factor(function):
        def broken(bound):
            result = function(bound)
            if result is bound:
                return bound
            for number, term in enumerate(result.network.terms):
                if len(term.factors) > 1:
                    terms = list(result.network.terms)
                    terms[number] = term.with_factors(term.factors[:-1])
                    return dataclasses.replace(result, network=result.network.replace(terms=tuple(terms)))
            return result

        return broken

    broken = tuple((name, drop_factor(f) if name == "strided" else f) for name, f in pipeline.PASSES)
    monkeypatch.setattr(pipeline, "PASSES", broken)
    with pytest.raises(AssertionError):
        check_random_suite()


def _snapshot(bound):
    return (
        str(bound.network),
        [copy.deepcopy(dict(term.graph.nodes(data=True))) for term in bound.network.terms],
        [sorted(term.graph.edges(data=True), key=repr) for term in bound.network.terms],
        dict(bound.sizes),
    )


@pytest.mark.parametrize("seed", range(0, 25, 5))
def test_passes_do_not_mutate_input(seed):
    bound = random_bound(seed)
    before = _snapshot(bound)
    for _, function in PASSES:
        function(bound)
    simplify(bound)
    assert _snapshot(bound) == before


def _renamed(bound, mapping):
    network = bound.network
    output = tuple(tuple(mapping.get(i, i) for i in axis) for axis in network.output)
    operands = tuple(
        dataclasses.replace(o, axes=tuple(tuple(mapping.get(i, i) for i in axis) for axis in o.axes))
        for o in network.operands
    )
    terms = tuple(
        tndiagram.ir.Term.from_factors(t.coefficient, [rename_factor(f, mapping) for f in t.factors], output)
        for t in network.terms
    )
    sizes = {mapping.get(i, i): s for i, s in bound.sizes.items()}
    return dataclasses.replace(
        bound, network=network.replace(output=output, operands=operands, terms=terms), sizes=sizes
    )


@pytest.mark.parametrize("seed", range(1, 25, 6))
def test_renaming_indices_changes_nothing(seed):
    bound = random_bound(seed)
    mapping = {index: f"q{number}_{index}" for number, index in enumerate(reversed(list(bound.sizes)))}
    renamed = _renamed(bound, mapping)
    original, other = simplify(bound), simplify(renamed)
    assert original.fired == other.fired
    tensors = random_tensors(bound, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(evaluate(other.final, tensors), evaluate(original.final, tensors))


MERGE = tndiagram.parse(
    """
network summed(a[n, h, w], b[h, w]) {
    c[n] = a * b
}
network grouped(a[n, h, w], b[n, h, w]) {
    c[(h w)] = a * b
}
network apart(a[n, h, w], b[w, h]) {
    c[n] = a * b
}
""",
    "<merge>",
)


@pytest.mark.parametrize("name, expected", [("summed", True), ("grouped", True), ("apart", False)])
def test_merge_fires_when_indices_travel_together(name, expected):
    network = MERGE[name]
    shapes = {"a": (2, 3, 4), "b": (4, 3) if name == "apart" else ((2, 3, 4) if name == "grouped" else (3, 4))}
    bound = bind(network, {}, shapes)
    result = pipeline.merge.merge_indices(bound)
    assert (result is not bound) is expected
    check_equivalent(bound, result)
    check_equivalent(bound, simplify(bound).final)


def test_rewritten_network_prints_views_and_constants():
    kfac = tndiagram.load("examples/kfac_reduce.tn")["kfac_reduce"]
    text = str(simplify(bind(kfac, {"kernel_size": 2}, {"x": (1, 2, 5)})).final.network)
    assert text.startswith("# Rewritten network")
    assert "constant{pattern[j1, o1, i1](" in text
    conv = str(simplify(bind(CONV, {"stride": 2}, {"x": (1, 2, 7), "weight": (3, 2, 3)})).final.network)
    assert "x[n, (g c), i1]{i1 = 2*o1 + j1}[n, g, c, o1, j1]" in conv
