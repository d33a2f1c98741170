"""tndiagram's fixed costs: compiling a network, and the Python work of a cached call.

Both are measured on tiny shapes, where the tensor arithmetic costs little,
and reported apart from the layer timings.
"""

from __future__ import annotations

import importlib.resources
import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .implementations import NotAvailable, tndiagram_call
from .layers import Layer
from .measure import Timer
from .problems import make_problem

__all__ = ["COMPILE_PROBE", "CallOverhead", "CompileTime", "measure_call_overhead", "measure_compile_times"]

# A small 2-d layer with stride and padding, so that its index patterns are
# not trivial.
COMPILE_PROBE = Layer("compile_probe", "a small 2-d layer", 4, 6, (3, 3), (9, 9), 2, (9, 9), 2, stride=2, padding=1)


@dataclass
class CallOverhead:
    """Seconds per call of each way to compute one tiny convolution (minimum over rounds)."""

    seconds: dict[str, float] = field(default_factory=dict)
    error: str = ""  # why the overhead could not be measured

    @property
    def compiled_overhead(self) -> float | None:
        """Seconds that CompiledFunction.__call__ adds over the generated function."""
        if "generated function" not in self.seconds:
            return None
        return self.seconds["CompiledFunction call"] - self.seconds["generated function"]

    @property
    def functional_overhead(self) -> float | None:
        """Seconds that tndiagram.functional.conv adds over the generated function."""
        if "generated function" not in self.seconds:
            return None
        return self.seconds["tndiagram.functional.conv"] - self.seconds["generated function"]


@dataclass
class CompileTime:
    """Median seconds from a fresh parse to loaded code, for one operation's network."""

    operation: str
    seconds: float | None = None
    status: str = "ok"  # "ok", "not available" or "failed"
    reason: str = ""


def measure_call_overhead(rounds: int = 101, sample_seconds: float = 0.002) -> CallOverhead:
    """Time cached calls of the compiled conv network against its generated function.

    The generated function is what a cached call runs after its dtype and device
    checks, so the difference of the two times is the overhead per call. Each
    sample repeats a call for about ``sample_seconds``, and the rounds
    interleave the candidates. The minimum over the rounds is kept, as timeit
    advises, because other load on the machine only ever adds time. torch runs
    on one thread here: tiny tensors gain nothing from more, and waking idle
    threads on a busy machine adds noise.
    """
    import tndiagram
    import tndiagram.functional

    text = (importlib.resources.files("tndiagram") / "diagrams" / "conv.tn").read_text(encoding="utf-8")
    compiled = tndiagram.compile(tndiagram.parse(text, "conv.tn")["conv"])
    x = torch.randn(1, 1, 6, 6)
    weight = torch.randn(1, 1, 3, 3)
    generated = compiled.specialize(x=tuple(x.shape), weight=tuple(weight.shape)).function

    candidates = {
        "CompiledFunction call": lambda: compiled(x, weight),
        "generated function": lambda: generated(x, weight),
        "tndiagram.functional.conv": lambda: tndiagram.functional.conv(x, weight),
        "torch.nn.functional.conv2d": lambda: F.conv2d(x, weight),
    }
    timer = Timer(torch.device("cpu"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        numbers = {}
        for name, call in candidates.items():
            call()  # specializes and builds the cached constants
            estimate = min(timer.seconds_per_call(call, 10) for _ in range(3))
            numbers[name] = max(2, int(sample_seconds / estimate))

        samples: dict[str, list[float]] = {name: [] for name in candidates}
        names = list(candidates)
        for round_number in range(rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(timer.seconds_per_call(candidates[name], numbers[name]))
    finally:
        torch.set_num_threads(threads)
    return CallOverhead({name: min(values) for name, values in samples.items()})


def _clear_tndiagram_caches() -> None:
    """Empty the lru caches of tndiagram.functional (parsed diagram files and
    compiled networks), so that the next call parses and compiles anew."""
    import tndiagram.functional

    for value in vars(tndiagram.functional).values():
        if callable(value) and hasattr(value, "cache_clear"):
            value.cache_clear()


def measure_compile_times(operations: list[str], trials: int = 3) -> list[CompileTime]:
    """Time the first call of each operation after its caches were emptied,
    minus a cached call: parsing, rewriting, binding, planning, code generation
    and loading of a fresh network.

    The grammar stays loaded between trials, because a process builds it once.
    """
    results = []
    for operation in operations:
        problem = make_problem(COMPILE_PROBE, operation, quick=True, device=torch.device("cpu"))
        try:
            call = tndiagram_call(problem)
        except NotAvailable as reason:
            results.append(CompileTime(operation, status="not available", reason=str(reason)))
            continue
        durations = []
        try:
            call()  # untimed: loads the grammar and warms torch, both once per process
            for _ in range(trials):
                _clear_tndiagram_caches()
                begin = time.perf_counter()
                call()
                first = time.perf_counter() - begin
                cached = min(_seconds(call) for _ in range(5))
                durations.append(first - cached)
        except Exception as error:  # a compile failure is reported, not raised
            results.append(CompileTime(operation, status="failed", reason=f"{type(error).__name__}: {error}"))
            continue
        # NOTE: only the lru caches of tndiagram.functional are emptied; a
        # cache kept elsewhere would make these times too small.
        results.append(CompileTime(operation, seconds=statistics.median(durations)))
    _clear_tndiagram_caches()
    return results


def _seconds(call) -> float:
    begin = time.perf_counter()
    call()
    return time.perf_counter() - begin
