"""Random networks and an evaluator for the rewrite tests."""

from __future__ import annotations

import random

import torch

import tndiagram
from tndiagram import codegen
from tndiagram.bind import BoundNetwork, bind
from tndiagram.plan import plan


def evaluate(bound: BoundNetwork, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Plan, emit and run a bound network on tensors given by operand name."""
    name = codegen.function_name(bound)
    source = codegen.emit(bound, plan(bound), name)
    function = codegen.load_source(source, name)
    present = [o.name for o in bound.network.operands if o.name in bound.shapes]
    return function(*[tensors[n] for n in present])


def random_tensors(bound: BoundNetwork, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        name: torch.randn(shape, dtype=torch.float64, generator=generator) for name, shape in bound.shapes.items()
    }


def random_pattern_arguments(rng: random.Random, kernel: int) -> tuple[str, int, int]:
    """Return (padding text, stride, dilation), awkward cases included."""
    stride = rng.choice([1, 1, 2, 3, 4])
    dilation = rng.choice([1, 1, 2, 3])
    choice = rng.random()
    if choice < 0.15 and stride == 1:
        padding = "'same'"
    elif choice < 0.3:
        padding = f"({rng.randint(0, 2)}, {rng.randint(0, 2)})"
    elif choice < 0.65:
        padding = "0"
    else:
        padding = str(rng.randint(0, 2))
    return padding, stride, dilation


def random_network(seed: int) -> tuple[tndiagram.Network, dict[str, tuple[int, ...]]]:
    """Build a random network around one or two index patterns, with deltas,
    all-ones vectors, groups and size-one indices, and shapes for its operands."""
    rng = random.Random(seed)
    dimensions = rng.choice([1, 1, 2])
    sizes = {"n": rng.choice([1, 2, 3]), "c": rng.choice([1, 2, 3]), "m": rng.choice([1, 2])}
    factors = []
    operands = []
    shapes = {}
    size_statements = []
    free = ["n"]
    x_axes = ["n", "c"]
    w_axes = ["m", "c"]
    groups = rng.random() < 0.25
    for d in range(1, dimensions + 1):
        kernel = rng.choice([1, 1, 2, 3, 4])
        padding, stride, dilation = random_pattern_arguments(rng, kernel)
        span = dilation * (kernel - 1) + 1
        size = rng.choice([1, 2, 3, 5, 6, 8, 9, 12]) + (span if rng.random() < 0.8 else 0)
        sizes[f"j{d}"] = kernel
        sizes[f"h{d}"] = size
        if rng.random() < 0.2:
            # A dense case: kernel = stride, no padding, input a multiple of it.
            stride, padding, dilation = kernel, "0", 1
            sizes[f"h{d}"] = kernel * rng.choice([1, 2, 3])
        x_axes.append(f"h{d}")
        factors.append(f"pattern[j{d}, o{d}, h{d}](stride={stride}, padding={padding}, dilation={dilation})")
        if rng.random() < 0.7:
            w_axes.append(f"j{d}")
        else:
            size_statements.append(f"size j{d} = {kernel}")
            free.append(f"j{d}")
        if rng.random() < 0.3:
            factors.append(f"ones[o{d}]")
        else:
            free.append(f"o{d}")
    if groups:
        sizes["g"] = rng.choice([1, 2])
        x_axes[1] = "(g c)"
        w_axes[0] = "(g m)"
        free.append("g")
        shapes["x"] = (sizes["n"], sizes["g"] * sizes["c"], *(sizes[f"h{d}"] for d in range(1, dimensions + 1)))
        shapes["w"] = (sizes["g"] * sizes["m"], sizes["c"], *(sizes[a] for a in w_axes[2:]))
    else:
        shapes["x"] = (sizes["n"], sizes["c"], *(sizes[f"h{d}"] for d in range(1, dimensions + 1)))
        shapes["w"] = (sizes["m"], sizes["c"], *(sizes[a] for a in w_axes[2:]))
    free.append("m")
    operands.append(f"x[{', '.join(x_axes)}]")
    operands.append(f"w[{', '.join(w_axes)}]")
    if rng.random() < 0.4:
        factors.append("delta[n, n2]")
        free.remove("n")
        free.append("n2")
        if rng.random() < 0.5:
            operands.append("z[n2, u]")
            shapes["z"] = (sizes["n"], 1)
            free.append("u") if rng.random() < 0.5 else None
    if rng.random() < 0.3:
        operands.append("v[c]")
        shapes["v"] = (sizes["c"],)
    rng.shuffle(free)
    output = free[: rng.randint(0, len(free))]
    if len(output) >= 2 and rng.random() < 0.4:
        output_text = f"({output[0]} {output[1]})" + "".join(f", {i}" for i in output[2:])
    else:
        output_text = ", ".join(output)
    names = [o.split("[")[0] for o in operands]
    body = " * ".join(names + factors)
    statements = "\n    ".join(size_statements)
    text = (
        f"network random({', '.join(operands)}) {{\n    {statements}\n"
        f"    out[{output_text}] = {rng.choice(['', '2 * ', '(1/3) * '])}{body}\n}}\n"
    )
    return tndiagram.parse(text, f"<random {seed}>")["random"], shapes


def random_bound(seed: int) -> BoundNetwork:
    """Bind the first random network from ``seed`` whose kernels fit their inputs."""
    for attempt in range(100):
        network, shapes = random_network(seed * 100 + attempt)
        try:
            return bind(network, {}, shapes)
        except tndiagram.ShapeError:
            continue
    raise AssertionError(f"no random network from seed {seed} binds")
