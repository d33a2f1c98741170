"""Timing, peak memory and numerical agreement of single calls.

Times are wall-clock seconds per call. On CUDA they come from CUDA events
around the calls, followed by a synchronization. Peak extra memory is the
maximum, over the call, of the bytes allocated since the call started:

* on CUDA, ``torch.cuda.max_memory_allocated`` after a reset, minus the
  memory allocated before the call;
* on the CPU, the allocation and free events that ``torch.profiler`` records
  with ``profile_memory=True``, replayed in time order while keeping the
  running total and its maximum.

Both count the result tensor, since it is allocated during the call, and
neither counts memory that an implementation cached on an earlier call.

NOTE: the CUDA branches have not run on a GPU yet; the recorded results in
docs/benchmarks.md come from the CPU branches.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import torch

__all__ = ["Timer", "relative_error", "TOLERANCE"]

# Largest relative error (Frobenius norm of the difference over the norm of
# torch's result) accepted as agreement in float32. Reordered float32 sums of
# the layers here differ from torch by about 1e-6.
TOLERANCE = 1e-4


class Timer:
    """Times calls and measures their peak extra memory on one device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.is_cuda = device.type == "cuda"

    def synchronize(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def seconds_per_call(self, call: Callable[[], object], number: int = 1) -> float:
        """Run ``call`` ``number`` times back to back and return the mean seconds per call."""
        if self.is_cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            self.synchronize()
            start.record()
            for _ in range(number):
                call()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000 / number
        begin = time.perf_counter()
        for _ in range(number):
            call()
        return (time.perf_counter() - begin) / number

    def peak_memory(self, call: Callable[[], object]) -> tuple[int | None, float]:
        """Run one call and return its peak extra bytes and its seconds.

        The bytes are None when this torch build reports no allocation events.
        The seconds include the cost of recording the allocations."""
        if self.is_cuda:
            self.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            begin = time.perf_counter()
            result = call()
            self.synchronize()
            seconds = time.perf_counter() - begin
            peak = torch.cuda.max_memory_allocated(self.device) - before
            del result
            return peak, seconds
        return _cpu_peak_memory(call)


def _cpu_peak_memory(call: Callable[[], object]) -> tuple[int | None, float]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        begin = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - begin
        del result
    try:
        events = profiler.profiler.kineto_results.events()
    except AttributeError:
        return None, seconds
    # "[memory]" events carry the size of one allocation (positive) or free
    # (negative). A stable sort keeps the recorded order of equal timestamps.
    allocations = [
        event
        for event in events
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    ]
    allocations.sort(key=lambda event: event.start_ns())
    current = peak = 0
    for event in allocations:
        current += event.nbytes()
        peak = max(peak, current)
    return peak, seconds


def relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    """Return ‖result − reference‖ / ‖reference‖ in float64, after reshaping
    ``result`` to the reference's shape (implementations may flatten axes
    differently). Raise ValueError when the element counts differ."""
    if result.numel() != reference.numel():
        raise ValueError(f"result has shape {tuple(result.shape)}, expected {tuple(reference.shape)}")
    # Float64 copies of a whole unfolded input can take gigabytes; chunks of it do not.
    result = result.detach().reshape(-1)
    reference = reference.detach().reshape(-1)
    error = scale = 0.0
    for start in range(0, reference.numel(), _CHUNK):
        expected = reference[start : start + _CHUNK].double()
        error += (result[start : start + _CHUNK].double() - expected).square().sum().item()
        scale += expected.square().sum().item()
    error, scale = math.sqrt(error), math.sqrt(scale)
    return error / scale if scale > 0 else error


_CHUNK = 1 << 22


def median(values: list[float]) -> float:
    return statistics.median(values)
