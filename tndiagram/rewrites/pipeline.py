"""The rewrite pipeline: the passes in order, a driver that runs them to a
fixed point, and a trace of every firing with the planned cost around it.

The driver tries the passes in the order of :data:`PASSES` and restarts from
the first after each firing. So cheap clean-ups (deltas, size-one indices) run
first. The specific convolution passes (dense, kernel size one, down-sampling)
come next, because a pattern they turn into a reshape or slice is cheaper than
any precomputed constant that summing or folding it would give. The general
strided lowering comes last. It stops when no pass fires. Every pass removes a factor or an
index, except merging, which removes an index too, so a repeated network
means a broken pass: the driver raises :class:`RewriteError` then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from ..bind import BoundNetwork
from ..errors import RewriteError
from ..ir import verify
from ..plan import plan
from ..printer import format_factor
from . import delta, dense, downsample, fold, kernel_one, merge, squeeze, strided, summed_pattern

Pass = Callable[[BoundNetwork], BoundNetwork]

PASSES: tuple[tuple[str, Pass], ...] = (
    (delta.NAME, delta.eliminate_delta),
    (squeeze.NAME, squeeze.squeeze_index),
    (dense.NAME, dense.rewrite_dense),
    (kernel_one.NAME, kernel_one.slice_kernel_one),
    (downsample.NAME, downsample.rewrite_downsample),
    (summed_pattern.NAME, summed_pattern.sum_pattern_index),
    (fold.NAME, fold.fold_constants),
    (strided.NAME, strided.lower_strided),
    (merge.NAME, merge.merge_indices),
)
PASS_NAMES = tuple(name for name, _ in PASSES)

MAX_FIRINGS = 10_000


@dataclass(frozen=True)
class Firing:
    """One application of a pass: what it changed and the planned cost around it."""

    pass_name: str
    removed: tuple[str, ...]
    added: tuple[str, ...]
    flops_before: int
    flops_after: int
    largest_before: int
    largest_after: int

    def __str__(self) -> str:
        lines = [
            f"{self.pass_name}: {self.flops_before:,} -> {self.flops_after:,} FLOPs,"
            f" largest intermediate {self.largest_before:,} -> {self.largest_after:,} elements"
        ]
        lines.extend(f"    - {text}" for text in self.removed)
        lines.extend(f"    + {text}" for text in self.added)
        return "\n".join(lines)


@dataclass(frozen=True)
class Trace:
    """The firings of one pipeline run, in order, and the networks it started and ended with."""

    initial: BoundNetwork
    final: BoundNetwork
    firings: tuple[Firing, ...]

    @property
    def fired(self) -> tuple[str, ...]:
        return tuple(firing.pass_name for firing in self.firings)

    def __str__(self) -> str:
        if not self.firings:
            return "no rewrite applies"
        return "\n".join(f"{number}. {firing}" for number, firing in enumerate(self.firings, start=1))


def _fingerprint(bound: BoundNetwork) -> tuple:
    network = bound.network
    return (network.output, tuple(sorted(term.canonical() for term in network.terms)))


def _changes(before: BoundNetwork, after: BoundNetwork) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return the factors (as text) that a firing removed and added, term by term."""
    removed, added = [], []
    prefix_terms = len(before.network.terms) > 1
    for number, (old, new) in enumerate(zip(before.network.terms, after.network.terms), start=1):
        prefix = f"term {number}: " if prefix_terms else ""
        old_texts = [format_factor(f) for f in old.factors]
        new_texts = [format_factor(f) for f in new.factors]
        removed.extend(prefix + t for t in old_texts if t not in new_texts)
        added.extend(prefix + t for t in new_texts if t not in old_texts)
        if old.coefficient != new.coefficient:
            removed.append(f"{prefix}coefficient {old.coefficient}")
            added.append(f"{prefix}coefficient {new.coefficient}")
    if before.network.output != after.network.output:
        removed.append(f"output {before.network.output}")
        added.append(f"output {after.network.output}")
    return tuple(removed), tuple(added)


def resolve_disabled(disable: Iterable[str]) -> frozenset[str]:
    """Check pass names to turn off and return them as a set."""
    disabled = frozenset(disable)
    unknown = sorted(disabled - set(PASS_NAMES))
    if unknown:
        raise RewriteError(f"unknown rewrite pass {unknown[0]!r}: the passes are {', '.join(PASS_NAMES)}")
    return disabled


def simplify(
    bound: BoundNetwork,
    disable: Iterable[str] = (),
    passes: tuple[tuple[str, Pass], ...] | None = None,
    strategy: str | None = None,
) -> Trace:
    """Run the pipeline on a bound network to a fixed point and return the trace.

    ``disable`` names passes to skip; ``passes`` replaces the pipeline (tests use
    it to run one pass alone). ``trace.final`` is the simplified network.
    """
    disabled = resolve_disabled(disable)
    active = [(name, function) for name, function in (passes or PASSES) if name not in disabled]
    current = bound
    cost = plan(current, strategy)
    seen = {_fingerprint(current)}
    firings: list[Firing] = []
    while True:
        for name, function in active:
            result = function(current)
            if result is current:
                continue
            try:
                verify(result.network)
            except Exception as error:
                raise RewriteError(f"rewrite pass {name!r} produced an invalid network: {error}") from error
            fingerprint = _fingerprint(result)
            if fingerprint in seen:
                raise RewriteError(
                    f"rewrite pass {name!r} produced a network seen before, so the pipeline would cycle;"
                    f" turn the pass off with disable={{{name!r}}} and report the network:\n{result.network}"
                )
            if len(firings) >= MAX_FIRINGS:
                raise RewriteError(f"the rewrite pipeline fired {MAX_FIRINGS} times without reaching a fixed point")
            seen.add(fingerprint)
            new_cost = plan(result, strategy)
            removed, added = _changes(current, result)
            firings.append(
                Firing(
                    name,
                    removed,
                    added,
                    cost.flops,
                    new_cost.flops,
                    cost.largest_intermediate,
                    new_cost.largest_intermediate,
                )
            )
            current, cost = result, new_cost
            break
        else:
            return Trace(bound, current, tuple(firings))
