"""The benchmark harness runs end to end in quick mode and its implementations agree.

These tests show that the harness works; they do not judge the timings.
"""

import json
import time

import pytest
import torch

from benchmarks.measure import Timer
from benchmarks.run import main

LAYERS = "resnet18_3x3_s2,wav2vec2_conv1d"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    threads = torch.get_num_threads()
    folder = tmp_path_factory.mktemp("benchmarks")
    paths = {"report": folder / "benchmarks.md", "plot": folder / "benchmarks.png", "json": folder / "results.json"}
    status = main(
        [
            "--quick",
            # Changed malloc settings would stay for the rest of the test session.
            "--system-malloc",
            "--device",
            "cpu",
            "--layers",
            LAYERS,
            "--repeats",
            "1",
            "--threads",
            "2",
            "--output",
            str(paths["report"]),
            "--json",
            str(paths["json"]),
        ]
    )
    torch.set_num_threads(threads)  # main() set it for the whole process
    return status, paths


def test_quick_run_exits_cleanly(quick_run):
    status, _ = quick_run
    assert status == 0


def test_quick_run_writes_report(quick_run):
    _, paths = quick_run
    report = paths["report"].read_text(encoding="utf-8")
    for heading in ("## Machine and command", "## Forward", "## Input VJP", "## KFAC-reduce", "## Compile time"):
        assert heading in report
    assert "| resnet18_3x3_s2 |" in report
    assert "| wav2vec2_conv1d |" in report
    assert report.rstrip().splitlines()[0] == "# Benchmarks"
    assert "## Targets" in report.split("## Compile time")[1]


def test_quick_run_writes_plot(quick_run):
    pytest.importorskip("matplotlib")
    _, paths = quick_run
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_implementations_agree_with_torch(quick_run):
    _, paths = quick_run
    measurements = json.loads(paths["json"].read_text(encoding="utf-8"))["measurements"]
    assert len({(m["layer"], m["operation"]) for m in measurements}) == 2 * 7
    for measurement in measurements:
        name = f"{measurement['implementation']} {measurement['operation']} on {measurement['layer']}"
        assert measurement["status"] != "failed", f"{name}: {measurement['reason']}"
        if measurement["status"] == "ok":
            assert measurement["agrees"], f"{name}: relative error {measurement['relative_error']}"
            assert measurement["seconds"] > 0, name


def test_torch_runs_every_operation(quick_run):
    _, paths = quick_run
    measurements = json.loads(paths["json"].read_text(encoding="utf-8"))["measurements"]
    torch_runs = [m for m in measurements if m["implementation"] == "torch"]
    assert len(torch_runs) == 2 * 7
    assert all(m["status"] == "ok" for m in torch_runs)


def test_cpu_peak_memory_counts_allocation():
    size = 1 << 20
    peak, seconds = Timer(torch.device("cpu")).peak_memory(lambda: torch.empty(size, dtype=torch.float32))
    assert peak == 4 * size
    assert seconds >= 0


def test_cpu_peak_memory_sees_freed_temporary():
    size = 1 << 20

    def temporary_then_small():
        temporary = torch.ones(size)
        return temporary[:4].clone()

    peak, _ = Timer(torch.device("cpu")).peak_memory(temporary_then_small)
    assert peak >= 4 * size


def test_slow_implementation_keeps_fast_repeats():
    """A slow implementation gets the minimum of repeats without cutting those
    of a fast one, and both agree with the reference."""
    from benchmarks.implementations import REFERENCE, Implementation
    from benchmarks.layers import LAYERS
    from benchmarks.problems import make_problem
    from benchmarks.run import Settings, benchmark_problem

    problem = make_problem(LAYERS[0], "forward", quick=True, device=torch.device("cpu"))
    value = torch.ones(3)

    def slow_call():
        time.sleep(0.02)
        return value

    implementations = [
        Implementation(REFERENCE, "torch", lambda problem: lambda: value),
        Implementation("slow", "slow", lambda problem: slow_call),
    ]
    settings = Settings(repeats=6, minimum_repeats=2, budget=0.1, minimum_sample=0.0)
    fast, slow = benchmark_problem(problem, implementations, Timer(torch.device("cpu")), settings, print)
    assert len(fast.samples) == 6
    assert len(slow.samples) == 2
    assert slow.agrees
    assert slow.result_bytes == value.untyped_storage().nbytes()


def test_relative_error_over_chunks():
    from benchmarks.measure import relative_error

    reference = torch.randn(3 * (1 << 22) + 5)
    result = reference + 1e-3 * torch.randn_like(reference)
    expected = ((result.double() - reference.double()).norm() / reference.double().norm()).item()
    assert relative_error(result, reference) == pytest.approx(expected, rel=1e-9)
    assert relative_error(torch.zeros(4), torch.zeros(4)) == 0.0


def test_memory_beyond_result_ratio():
    from benchmarks.report import _memory_ratio
    from benchmarks.results import Measurement

    def measured(name, memory, result):
        return Measurement("layer", "kfac_reduce", name, "ok", memory_bytes=memory, result_bytes=result)

    class Results:
        @staticmethod
        def find(layer, operation, implementation):
            return reference

    reference = measured("torch", 100, 20)
    mine = measured("tndiagram", 24, 20)
    assert _memory_ratio(Results, mine) == pytest.approx(0.24)
    assert _memory_ratio(Results, mine, beyond_result=True) == pytest.approx(4 / 80)


def test_keep_freed_memory_in_fresh_process():
    """The allocator setting takes effect in a process of its own (it would last
    for the whole test session here) and reports what it changed."""
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt exists on Linux only")
    script = "from benchmarks.run import keep_freed_memory; print(keep_freed_memory())"
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert "M_MMAP_THRESHOLD=32 MiB" in completed.stdout
