"""Time convolution operations of tndiagram, torch and einconv on real layers.

    python -m benchmarks.run [--quick] [--output docs/benchmarks.md] [--threads 2] [--device cpu|cuda]

For each layer and operation, every implementation runs on the same float32
tensors. After a warm-up, the repeats go round-robin over the implementations,
each repeat starting one implementation later, so that drift of the machine
affects all of them alike. The report gives the median time per call, the
ratio to torch, the peak extra memory and the relative error against torch's
result. The exit status is 1 when any implementation disagreed with torch,
or when torch or tndiagram failed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Callable

import torch

from .implementations import IMPLEMENTATIONS, REFERENCE, Implementation, NotAvailable, select_implementations
from .layers import LAYERS, Layer, select_layers
from .measure import TOLERANCE, Timer, median, relative_error
from .overhead import CallOverhead, measure_call_overhead, measure_compile_times
from .problems import OPERATIONS, Problem, make_problem, select_operations
from .report import write_markdown, write_plot
from .results import Measurement, RunResults, describe_machine

__all__ = ["main", "Settings"]


@dataclasses.dataclass(frozen=True)
class Settings:
    repeats: int  # timed samples per implementation, at most
    minimum_repeats: int  # samples kept even when a problem exceeds its budget
    budget: float  # seconds of timed calls per problem, over all implementations
    minimum_sample: float  # seconds; fast calls are repeated within a sample to reach it


FULL = Settings(repeats=5, minimum_repeats=3, budget=4.0, minimum_sample=0.01)
QUICK = Settings(repeats=3, minimum_repeats=3, budget=0.5, minimum_sample=0.005)


class _PlainProgress:
    """A progress display for terminals without tqdm: one line per problem."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0

    def set_description(self, text: str) -> None:
        print(f"[{self.done + 1}/{self.total}] {text}", file=sys.stderr, flush=True)

    def update(self, count: int = 1) -> None:
        self.done += count

    def write(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def _progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress(total)
    return tqdm(total=total, unit="problem", file=sys.stderr, dynamic_ncols=True)


def _describe_error(error: BaseException) -> str:
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}"


def benchmark_problem(
    problem: Problem,
    implementations: list[Implementation],
    timer: Timer,
    settings: Settings,
    report: Callable[[str], None],
) -> list[Measurement]:
    """Measure every implementation on one problem; ``report`` receives loud warnings."""
    layer, operation = problem.layer.name, problem.operation
    measurements = {}
    calls = {}
    for implementation in implementations:
        measurement = Measurement(layer, operation, implementation.name, status="ok")
        measurements[implementation.name] = measurement
        try:
            calls[implementation.name] = implementation.build(problem)
        except NotAvailable as reason:
            measurement.status = "not available"
            measurement.reason = str(reason)
        except Exception as error:
            measurement.status = "failed"
            measurement.reason = _describe_error(error)

    # Warm-up. The first call's result is compared with torch's. The second
    # call measures the peak memory (after the first call built any cached
    # constants) and estimates the time per call.
    reference = None
    estimates: dict[str, float] = {}
    for name, call in list(calls.items()):
        measurement = measurements[name]
        try:
            result = call()
            timer.synchronize()
        except Exception as error:
            measurement.status = "failed"
            measurement.reason = _describe_error(error)
            del calls[name]
            continue
        measurement.result_bytes = result.untyped_storage().nbytes()
        if name == REFERENCE:
            reference = result
            measurement.relative_error = 0.0
            measurement.agrees = True
        elif reference is not None:
            try:
                measurement.relative_error = relative_error(result, reference)
                measurement.agrees = measurement.relative_error <= TOLERANCE
            except ValueError as error:
                measurement.reason = str(error)
                measurement.agrees = False
        del result
        try:
            measurement.memory_bytes, estimates[name] = timer.peak_memory(call)
        except Exception as error:
            measurement.status = "failed"
            measurement.reason = _describe_error(error)
            del calls[name]
    del reference
    for name, measurement in measurements.items():
        if measurement.agrees is False:
            detail = measurement.reason or f"relative error {measurement.relative_error:.1e} > {TOLERANCE:.0e}"
            report(f"DISAGREEMENT: {name} {operation} on {layer} differs from torch: {detail}")
        if measurement.status == "failed":
            report(f"FAILED: {name} {operation} on {layer}: {measurement.reason}")
    if not calls:
        return list(measurements.values())

    # Fast calls run several times per sample, so that each sample is long
    # enough for the clock, and get one more untimed sample as a warm-up.
    # Each implementation gets the repeats that fit its share of the budget, so
    # a slow one keeps the minimum and does not cut the repeats of a fast one.
    numbers = {}
    repeats = {}
    share = settings.budget / len(calls)
    for name, call in calls.items():
        numbers[name] = max(1, min(1000, math.ceil(settings.minimum_sample / max(estimates[name], 1e-9))))
        if numbers[name] > 1:
            estimates[name] = timer.seconds_per_call(call, numbers[name])
        fitting = int(share / max(estimates[name] * numbers[name], 1e-9))
        repeats[name] = min(settings.repeats, max(settings.minimum_repeats, fitting))

    names = list(calls)
    for repeat in range(max(repeats.values())):
        active = [name for name in names if repeats[name] > repeat and measurements[name].status == "ok"]
        if not active:
            break
        shift = repeat % len(active)
        for name in active[shift:] + active[:shift]:
            try:
                measurements[name].samples.append(timer.seconds_per_call(calls[name], numbers[name]))
            except Exception as error:
                # A call that failed once may fail again when memory runs short.
                measurements[name].status = "failed"
                measurements[name].reason = _describe_error(error)
                report(f"FAILED: {name} {operation} on {layer} while timing: {measurements[name].reason}")
    for name in names:
        measurement = measurements[name]
        measurement.calls_per_sample = numbers[name]
        if measurement.status == "ok":
            measurement.seconds = median(measurement.samples)
    return list(measurements.values())


def keep_freed_memory() -> str:
    """Fix glibc's malloc settings so that each allocation size is served the
    same way on every call. Return a description for the report, or "" where
    glibc is missing.

    By default glibc moves its threshold for mapping an allocation afresh as
    blocks are freed, and it trims the heap. So an allocation of some MiB
    sometimes reuses heap memory and sometimes gets fresh pages, which the
    kernel zeroes, depending on what ran before it. The times of memory-bound
    operations then split into two clusters. With these settings, allocations
    up to 32 MiB always come from the heap, which keeps freed memory. Larger
    ones, up to the gigabytes of an unfolded input, are always mapped afresh and
    returned on free, so the heap does not hold them.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return ""
    trim_threshold, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD and M_MMAP_THRESHOLD in malloc.h
    if mallopt(mmap_threshold, 32 << 20) != 1 or mallopt(trim_threshold, 2**31 - 1) != 1:
        return ""
    return (
        "glibc malloc with fixed thresholds: up to 32 MiB from the heap, which keeps freed memory, larger"
        " blocks mapped afresh (mallopt M_MMAP_THRESHOLD=32 MiB, M_TRIM_THRESHOLD=2³¹−1)"
    )


@contextlib.contextmanager
def _memory_limit(fraction: float = 0.4):
    """Cap this process's address space, inside the block, at its current size
    plus ``fraction`` of the memory available now; yield the cap in bytes.

    An implementation whose intermediate does not fit then fails with an
    allocation error, which is reported, instead of pushing the machine into
    swapping. Only for CPU runs, because CUDA reserves far more address space
    than it uses. Yields None where /proc or setrlimit is missing.
    """
    try:
        import resource

        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        available = int(fields["MemAvailable"].split()[0]) * 1024
        with open("/proc/self/statm", encoding="utf-8") as statm:
            current = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        previous = resource.getrlimit(resource.RLIMIT_AS)
        limit = current + int(fraction * available)
        resource.setrlimit(resource.RLIMIT_AS, (limit, previous[1]))
    except (ImportError, OSError, KeyError, ValueError):
        yield None
        return
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_AS, previous)


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return torch.get_num_threads()


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Time tndiagram, torch and einconv on convolution layers of well-known networks.",
    )
    parser.add_argument("--quick", action="store_true", help="small inputs and few repeats (about 2 minutes on 2 cores)")
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"), help="Markdown report to write")
    parser.add_argument("--plot", type=Path, help="PNG plot to write (default: the report's path with .png)")
    parser.add_argument("--json", type=Path, help="also write all measurements to this JSON file")
    parser.add_argument("--threads", type=int, default=_default_threads(), help="torch threads (default: usable cores)")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="device to run on (default: cuda when available)",
    )

    parser.add_argument("--layers", help="comma-separated layer names (default: all, see benchmarks/layers.py)")
    parser.add_argument("--operations", help=f"comma-separated operations (default: all of {', '.join(OPERATIONS)})")
    parser.add_argument(
        "--implementations",
        help=f"comma-separated implementations (default: all of {', '.join(IMPLEMENTATIONS)}); torch always runs",
    )

    parser.add_argument(
        "--max-batch-size",
        type=int,
        help="cap the full-mode batch size of every layer (default: the batch sizes of benchmarks/layers.py),"
        " to fit a slow machine",
    )
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc settings alone on the CPU (default: keep freed memory for reuse, so that"
        " times do not include the kernel zeroing fresh pages)",
    )
    parser.add_argument("--repeats", type=int, help="timed samples per implementation (default: 5, quick: 3)")
    parser.add_argument(
        "--budget",
        type=float,
        help=f"seconds of timed calls per layer and operation, shared equally by the implementations, before"
        f" repeats are cut (default: {FULL.budget:g},"
        f" quick: {QUICK.budget:g})",
    )

    parser.add_argument("--note", default="", help="a sentence to print at the top of the report")
    parser.add_argument(
        "--from-json", type=Path, help="measure nothing: rewrite the report and plot from a file that --json wrote"
    )
    parser.add_argument("--skip-overhead", action="store_true", help="do not measure compile time and call overhead")

    arguments = parser.parse_args(argv)
    if arguments.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested, but torch finds no CUDA device")
    if arguments.threads < 1:
        parser.error(f"--threads must be at least 1, got {arguments.threads}")
    if arguments.max_batch_size is not None and arguments.max_batch_size < 1:
        parser.error(f"--max-batch-size must be at least 1, got {arguments.max_batch_size}")
    if arguments.repeats is not None and arguments.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {arguments.repeats}")
    return arguments


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    arguments = parse_arguments(argv)
    try:
        layers = select_layers(_names(arguments.layers))
        operations = select_operations(_names(arguments.operations))
        implementations = select_implementations(_names(arguments.implementations))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if arguments.from_json is not None:
        results = RunResults.load_json(arguments.from_json)
        measured_layers = {m.layer for m in results.measurements}
        measured_operations = {m.operation for m in results.measurements}
        layers = _cap_batch_size([layer for layer in LAYERS if layer.name in measured_layers], results.max_batch_size)
        operations = [operation for operation in OPERATIONS if operation in measured_operations]
        return _write_outputs(results, operations, layers, arguments)

    layers = _cap_batch_size(layers, arguments.max_batch_size)
    settings = QUICK if arguments.quick else FULL
    if arguments.repeats is not None:
        settings = dataclasses.replace(
            settings, repeats=arguments.repeats, minimum_repeats=min(settings.minimum_repeats, arguments.repeats)
        )
    if arguments.budget is not None:
        settings = dataclasses.replace(settings, budget=arguments.budget)

    torch.set_num_threads(arguments.threads)
    device = torch.device(arguments.device)

    if device.type == "cuda":
        # TF32 would make torch's cuDNN convolutions less exact than the einsum
        # implementations, which would then seem to disagree.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    allocator = "the system's malloc, unchanged"
    if device.type == "cpu" and not arguments.system_malloc:
        allocator = keep_freed_memory() or allocator

    results = RunResults(
        command=shlex.join(["python", "-m", "benchmarks.run", *argv]),
        quick=arguments.quick,
        machine=describe_machine(device, arguments.threads),
        repeats=settings.repeats,
        note=arguments.note,
        max_batch_size=arguments.max_batch_size,
        allocator=allocator,
    )
    if not arguments.skip_overhead:
        print("measuring tndiagram's compile time and call overhead", file=sys.stderr)
        results.compile_times = measure_compile_times(operations)
        try:
            results.overhead = measure_call_overhead()
        except Exception as error:
            print(f"FAILED: measuring the call overhead: {_describe_error(error)}", file=sys.stderr)
            results.overhead = CallOverhead(error=_describe_error(error))

    timer = Timer(device)
    memory_limit = _memory_limit() if device.type == "cpu" else contextlib.nullcontext()
    with memory_limit as cap:
        if cap is not None:
            print(f"address space capped at {cap / 2**30:.1f} GiB while measuring", file=sys.stderr)
        progress = _progress(len(layers) * len(operations))
        try:
            for layer in layers:
                for operation in operations:
                    progress.set_description(f"{layer.name} {operation}")
                    problem = make_problem(layer, operation, arguments.quick, device)
                    measured = benchmark_problem(problem, implementations, timer, settings, progress.write)
                    results.measurements.extend(measured)
                    del problem
                    progress.update(1)
        finally:
            progress.close()

    if arguments.json is not None:
        results.save_json(arguments.json)
    return _write_outputs(results, operations, layers, arguments)


def _cap_batch_size(layers: list[Layer], max_batch_size: int | None) -> list[Layer]:
    """Return the layers with their full-mode batch size at most ``max_batch_size``."""
    if max_batch_size is None:
        return layers
    return [dataclasses.replace(layer, batch_size=min(layer.batch_size, max_batch_size)) for layer in layers]


def _write_outputs(results: RunResults, operations: list[str], layers: list[Layer], arguments) -> int:
    """Write the report and the plot. Return 1 when an implementation disagreed
    with torch, or when torch or tndiagram failed. A failure of einconv (for
    example out of memory) is reported, but it is not an error of this project."""
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    plot_path = arguments.plot or arguments.output.with_suffix(".png")
    plot_written = write_plot(results, operations, layers, plot_path)
    write_markdown(results, operations, layers, arguments.output, plot_path if plot_written else None)
    print(f"wrote {arguments.output}" + (f" and {plot_path}" if plot_written else ""), file=sys.stderr)

    problems = [
        m
        for m in results.measurements
        if m.agrees is False or (m.status == "failed" and m.implementation != "einconv")
    ]
    if problems:
        print(f"{len(problems)} measurement(s) failed or disagree with torch; see the report", file=sys.stderr)
        return 1
    if any(m.status == "failed" for m in results.measurements):
        print("einconv failed on some problems; see the report", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
