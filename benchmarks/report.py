"""The Markdown report, its "Targets" section, and the plot of ratios to torch."""

from __future__ import annotations

import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from .implementations import IMPLEMENTATIONS, REFERENCE
from .layers import Layer
from .measure import TOLERANCE
from .overhead import COMPILE_PROBE
from .problems import OPERATION_TITLES
from .results import Measurement, RunResults

__all__ = ["write_markdown", "write_plot", "evaluate_targets", "Target"]

TNDIAGRAM = "tndiagram"
MEBIBYTE = 1024 * 1024


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if abs(seconds) < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if abs(seconds) < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def _ratio(results: RunResults, measurement: Measurement) -> float | None:
    """Return the measurement's time over torch's on the same problem."""
    reference = results.find(measurement.layer, measurement.operation, REFERENCE)
    if measurement.seconds is None or reference is None or not reference.seconds:
        return None
    return measurement.seconds / reference.seconds


def _beyond_result(measurement: Measurement) -> int | None:
    """Return the peak extra memory less the result's bytes: what the call
    needs besides the tensor it returns."""
    if measurement.memory_bytes is None or measurement.result_bytes is None:
        return None
    return max(0, measurement.memory_bytes - measurement.result_bytes)


def _memory_ratio(results: RunResults, measurement: Measurement, beyond_result: bool = False) -> float | None:
    """Return the measurement's peak extra memory over torch's, or with
    ``beyond_result`` the same less each one's result."""
    reference = results.find(measurement.layer, measurement.operation, REFERENCE)
    if reference is None:
        return None
    measure = _beyond_result if beyond_result else (lambda m: m.memory_bytes)
    mine, torch_bytes = measure(measurement), measure(reference)
    if mine is None or not torch_bytes:
        return None
    return mine / torch_bytes


def _implementations_in(results: RunResults) -> list[str]:
    present = {m.implementation for m in results.measurements}
    return [name for name in IMPLEMENTATIONS if name in present]


# -- targets --------------------------------------------------------------


@dataclass
class Target:
    """One performance target of tndiagram, judged from a run."""

    title: str
    requirement: str
    measured: str  # the measured values, or why there are none
    met: bool | None  # None when the run has no data for it


def _tndiagram_measurements(results: RunResults, operation: str, layers: list[Layer]) -> list[Measurement]:
    found = []
    for layer in layers:
        measurement = results.find(layer.name, operation, TNDIAGRAM)
        if measurement is not None:
            found.append(measurement)
    return found


def _unmeasured(measurements: list[Measurement], operation: str) -> str:
    """Return why a target has no data, as a clause after "because"."""
    reasons = sorted({m.reason for m in measurements if m.status == "not available"})
    if reasons:
        return "; ".join(reasons)
    if not measurements:
        return f"the run measured tndiagram's {operation} on none of these layers"
    return "tndiagram has no result that agrees with torch"


def _problems_text(measurements: list[Measurement]) -> str:
    """Describe failures and disagreements, which make a target missed."""
    failed = [m.layer for m in measurements if m.status == "failed"]
    disagreeing = [m.layer for m in measurements if m.agrees is False]
    parts = []
    if failed:
        parts.append(f"failed on {', '.join(failed)}")
    if disagreeing:
        parts.append(f"disagrees with torch on {', '.join(disagreeing)}")
    return "; ".join(parts)


def _ratio_target(
    results: RunResults,
    layers: list[Layer],
    operation: str,
    title: str,
    median_limit: float | None = None,
    max_limit: float | None = None,
    layer_words: str = "",
) -> Target:
    """Judge the ratio of tndiagram's time to torch's over the layers: its
    median against ``median_limit`` and its maximum against ``max_limit``."""
    requirement_parts = []
    if median_limit is not None:
        requirement_parts.append(f"median ratio ≤ {median_limit}{layer_words}")
    if max_limit is not None:
        requirement_parts.append(f"ratio ≤ {max_limit} on every layer")
    requirement = ", ".join(requirement_parts)

    measurements = _tndiagram_measurements(results, operation, layers)
    ratios = [(ratio, m.layer) for m in measurements if m.agrees and (ratio := _ratio(results, m)) is not None]
    problems = _problems_text(measurements)
    if not ratios:
        if problems:
            return Target(title, requirement, problems, False)
        return Target(title, requirement, _unmeasured(measurements, operation), None)

    middle = statistics.median(ratio for ratio, _ in ratios)
    worst, worst_layer = max(ratios)
    measured = []
    met = not problems
    if median_limit is not None:
        measured.append(f"median {middle:.2f}")
        met = met and middle <= median_limit
    if max_limit is not None:
        measured.append(f"max {worst:.2f} ({worst_layer})")
        met = met and worst <= max_limit
    measured.append(f"over {len(ratios)} layer(s)")
    if problems:
        measured.append(problems)
    return Target(title, requirement, ", ".join(measured), met)


def _kfac_reduce_memory_target(results: RunResults, layers: list[Layer]) -> Target:
    title = "KFAC-reduce memory"
    requirement = (
        "peak extra memory less the result ≤ 10% of that of torch's unfold-based KFAC-reduce on every layer"
    )
    measurements = _tndiagram_measurements(results, "kfac_reduce", layers)
    fractions = [
        (f, m.layer) for m in measurements if m.agrees and (f := _memory_ratio(results, m, beyond_result=True)) is not None
    ]
    problems = _problems_text(measurements)
    if not fractions:
        if problems:
            return Target(title, requirement, problems, False)
        return Target(title, requirement, _unmeasured(measurements, "kfac_reduce"), None)
    worst, worst_layer = max(fractions)
    measured = f"max {worst:.1%} ({worst_layer}) over {len(fractions)} layer(s)"
    counted = [(f, m.layer) for m in measurements if m.agrees and (f := _memory_ratio(results, m)) is not None]
    if counted:
        worst_counted, counted_layer = max(counted)
        measured += f"; with the result counted, max {worst_counted:.1%} ({counted_layer})"
    if problems:
        measured += f", {problems}"
    return Target(title, requirement, measured, worst <= 0.10 and not problems)


def evaluate_targets(results: RunResults, layers: list[Layer]) -> list[Target]:
    """Judge tndiagram (rewrites on) against the project's performance targets."""
    targets = [
        _ratio_target(results, layers, "forward", "Forward time", median_limit=1.1, max_limit=1.5),
        _ratio_target(results, layers, "input_vjp", "Input VJP time", median_limit=1.1, max_limit=1.5),
        _ratio_target(results, layers, "weight_vjp", "Weight VJP time", median_limit=1.1, max_limit=1.5),
        _ratio_target(results, layers, "unfold", "Unfold time", max_limit=1.0),
        _ratio_target(
            results,
            [layer for layer in layers if layer.is_stride_one],
            "kfac_reduce",
            "KFAC-reduce time, stride-1 layers",
            median_limit=0.2,
            layer_words=" over the stride-1 layers",
        ),
        _ratio_target(results, layers, "kfac_reduce", "KFAC-reduce time, every layer", max_limit=1.0),
        _kfac_reduce_memory_target(results, layers),
        _ratio_target(results, layers, "kfc", "KFC time", max_limit=1.0),
    ]

    requirement = "≤ 50 ms per network"
    compiled = [c for c in results.compile_times if c.seconds is not None]
    failed = [c for c in results.compile_times if c.status == "failed"]
    if compiled:
        worst = max(compiled, key=lambda c: c.seconds)
        measured = f"max {format_seconds(worst.seconds)} ({worst.operation}) over {len(compiled)} network(s)"
        if failed:
            measured += f"; compiling failed for {', '.join(c.operation for c in failed)}"
        targets.append(Target("Compile time", requirement, measured, worst.seconds <= 0.050 and not failed))
    else:
        reasons = sorted({c.reason for c in results.compile_times if c.status == "not available"})
        measured = "; ".join(reasons) if reasons else "the run skipped it"
        if failed:
            measured = f"compiling failed for {', '.join(c.operation for c in failed)}"
        targets.append(Target("Compile time", requirement, measured, False if failed else None))

    requirement = "a cached call adds ≤ 30 µs over its torch operations"
    overhead = results.overhead.compiled_overhead if results.overhead else None
    if overhead is None:
        reason = results.overhead.error if results.overhead and results.overhead.error else "the run skipped it"
        targets.append(Target("Cached-call overhead", requirement, reason, None))
    else:
        targets.append(
            Target("Cached-call overhead", requirement, f"{format_seconds(overhead)} per call", overhead <= 30e-6)
        )
    return targets


def _existing_reasons(path: Path) -> dict[str, str]:
    """Read the filled-in "Why" lines of an earlier report, by target title, so
    that regenerating the report keeps them."""
    if not path.exists():
        return {}
    reasons = {}
    title = None
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^- \*\*(.+?)\*\*", line)
        if heading:
            title = heading.group(1)
            continue
        why = re.match(r"^\s+Why: (.+)$", line)
        if why and title and why.group(1) != _WHY_PLACEHOLDER:
            reasons[title] = why.group(1)
    return reasons


_WHY_PLACEHOLDER = "_to be filled in by the lead engineer._"


# -- Markdown -------------------------------------------------------------


def _cell(results: RunResults, measurement: Measurement | None) -> str:
    if measurement is None:
        return "–"
    if measurement.status == "not available":
        return "n/a"
    if measurement.status == "failed":
        return "**FAILED**"
    text = format_seconds(measurement.seconds)
    ratio = _ratio(results, measurement)
    if ratio is not None and measurement.implementation != REFERENCE:
        text += f" ×{ratio:.2f}"
    if measurement.agrees is False:
        text = f"**DISAGREES** {text}"
    return text


def _detail_cell(measurement: Measurement | None) -> str:
    if measurement is None or measurement.status != "ok":
        return "–"
    memory = "–" if measurement.memory_bytes is None else f"{measurement.memory_bytes / MEBIBYTE:.1f}"
    beyond = _beyond_result(measurement)
    if beyond is not None:
        memory += f" ({beyond / MEBIBYTE:.1f})"
    if measurement.implementation == REFERENCE:
        return memory
    error = "–" if measurement.relative_error is None else f"{measurement.relative_error:.0e}"
    if measurement.agrees is False:
        error = f"**{error}**"
    return f"{memory} / {error}"


def _operation_section(results: RunResults, operation: str, layers: list[Layer], names: list[str]) -> list[str]:
    labels = [IMPLEMENTATIONS[name].label for name in names]
    lines = [f"## {OPERATION_TITLES[operation]}", ""]
    lines.append("Median time per call, and its ratio to torch (below 1 is faster).")
    lines.append("")
    lines.append("| Layer | Shape | " + " | ".join(labels) + " |")
    lines.append("|---|---|" + "---:|" * len(names))
    for layer in layers:
        cells = [_cell(results, results.find(layer.name, operation, name)) for name in names]
        lines.append(f"| {layer.name} | {layer.describe(results.quick)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Peak extra memory in MiB, in parentheses less the result's size, and the relative error against"
        " torch's result."
    )
    lines.append("")
    lines.append("| Layer | " + " | ".join(labels) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for layer in layers:
        cells = [_detail_cell(results.find(layer.name, operation, name)) for name in names]
        lines.append(f"| {layer.name} | " + " | ".join(cells) + " |")
    lines.append("")

    notes = []
    for name in names:
        measurements = [m for m in results.measurements if m.operation == operation and m.implementation == name]
        unavailable = sorted({m.reason for m in measurements if m.status == "not available"})
        for reason in unavailable:
            notes.append(f"- {IMPLEMENTATIONS[name].label} not available: {reason}.")
        for measurement in measurements:
            if measurement.status == "failed":
                notes.append(f"- {IMPLEMENTATIONS[name].label} **failed** on {measurement.layer}: {measurement.reason}")
    if notes:
        lines.extend(notes)
        lines.append("")
    return lines


def _summary_section(results: RunResults, operations: list[str], names: list[str]) -> list[str]:
    others = [name for name in names if name != REFERENCE]
    lines = ["## Summary", "", "Median (and maximum) ratio to torch over the layers where both ran and agree.", ""]
    lines.append("| Operation | " + " | ".join(IMPLEMENTATIONS[name].label for name in others) + " |")
    lines.append("|---|" + "---:|" * len(others))
    for operation in operations:
        cells = []
        for name in others:
            ratios = [
                ratio
                for m in results.measurements
                if m.operation == operation and m.implementation == name and m.agrees
                if (ratio := _ratio(results, m)) is not None
            ]
            cells.append(f"{statistics.median(ratios):.2f} ({max(ratios):.2f})" if ratios else "n/a")
        lines.append(f"| {OPERATION_TITLES[operation]} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _overhead_section(results: RunResults) -> list[str]:
    lines = ["## Per-call overhead", ""]
    overhead = results.overhead
    if overhead is None:
        return lines + ["Not measured in this run.", ""]
    if overhead.error:
        return lines + [f"**FAILED**: {overhead.error}", ""]
    lines.append(
        "A 1×1×6×6 input and a 1×1×3×3 weight, so that the arithmetic costs little, on one torch thread. The"
        " generated function is what a cached call of the compiled network runs after its dtype and device checks;"
        " the differences are the overhead of each entry point. Each time is the minimum over 101 interleaved"
        " rounds, because load from other processes only adds time."
    )
    lines.append("")
    lines.append("| Call | Time per call |")
    lines.append("|---|---:|")
    for name, seconds in overhead.seconds.items():
        lines.append(f"| {name} | {format_seconds(seconds)} |")
    lines.append("")
    if overhead.compiled_overhead is not None:
        lines.append(f"- CompiledFunction call over the generated function: {format_seconds(overhead.compiled_overhead)}")
    if overhead.functional_overhead is not None:
        lines.append(
            f"- tndiagram.functional.conv over the generated function: {format_seconds(overhead.functional_overhead)}"
        )
    lines.append("")
    return lines


def _compile_section(results: RunResults) -> list[str]:
    lines = ["## Compile time", ""]
    if not results.compile_times:
        return lines + ["Not measured in this run.", ""]
    lines.append(
        "Median over 3 trials of the first call of each operation after tndiagram.functional's caches were"
        " emptied, minus a cached call: parsing the diagram file, rewriting, binding sizes, planning, generating"
        f" and loading the code. The layer is small: {COMPILE_PROBE.describe(quick=True)}."
    )
    lines.append("")
    lines.append("| Operation | Compile time |")
    lines.append("|---|---:|")
    for compiled in results.compile_times:
        if compiled.status == "ok":
            value = format_seconds(compiled.seconds)
        elif compiled.status == "failed":
            value = f"**FAILED**: {compiled.reason}"
        else:
            value = f"n/a ({compiled.reason})"
        lines.append(f"| {OPERATION_TITLES[compiled.operation]} | {value} |")
    lines.append("")
    return lines


def _targets_section(results: RunResults, layers: list[Layer], reasons: dict[str, str]) -> list[str]:
    lines = ["## Targets", ""]
    lines.append(
        "tndiagram with rewrites on, judged from the data above. Ratios are tndiagram's time over torch's; layers"
        " where tndiagram failed or disagrees with torch count as missed."
    )
    lines.append("")
    for target in evaluate_targets(results, layers):
        heading = f"- **{target.title}** ({target.requirement})"
        if target.met is None:
            lines.append(f"{heading}: not measured, because {target.measured}.")
        elif target.met:
            lines.append(f"{heading}: {target.measured}. Met.")
        else:
            lines.append(f"{heading}: {target.measured}. **Missed.**")
            lines.append(f"  Why: {reasons.get(target.title, _WHY_PLACEHOLDER)}")
    lines.append("")
    return lines


def write_markdown(
    results: RunResults, operations: list[str], layers: list[Layer], path: Path, plot: Path | None
) -> None:
    """Write the report: machine, command, method, one section per operation,
    the fixed costs, and the targets."""
    reasons = _existing_reasons(path)
    machine = results.machine
    names = _implementations_in(results)
    lines = ["# Benchmarks", ""]
    lines.append(
        "Convolution operations of tndiagram, torch and einconv on layers of well-known networks, in float32."
        " This file is generated by the command below; rerun it instead of editing the tables. A rerun keeps the"
        " filled-in \"Why\" lines under Targets."
    )
    lines.append("")
    if results.note:
        lines.extend([f"**Note:** {results.note}", ""])
    lines.extend(["## Machine and command", ""])
    lines.append("| | |")
    lines.append("|---|---|")
    lines.append(f"| CPU | {machine.cpu} |")
    lines.append(f"| Cores | {machine.cores} |")
    lines.append(f"| torch threads | {machine.threads} |")
    lines.append(f"| Device | {machine.device} |")
    lines.append(f"| torch | {machine.torch_version} |")
    lines.append(f"| Python | {machine.python_version} |")
    lines.append(f"| einconv | {machine.einconv_version} |")
    lines.append(f"| tndiagram commit | {machine.tndiagram_commit} |")
    mode = "quick" if results.quick else "full"
    if results.max_batch_size is not None and not results.quick:
        mode += f", batch sizes capped at {results.max_batch_size}"
    lines.append(f"| Mode | {mode}, up to {results.repeats} timed repeats |")
    if results.allocator:
        lines.append(f"| Allocator | {results.allocator} |")
    lines.extend(["", "```", results.command, "```", ""])

    lines.extend(_method_section(results))
    lines.extend(_summary_section(results, operations, names))
    if plot is not None:
        lines.extend([f"![Ratio of each implementation's time to torch's]({_relative(plot, path)})", ""])
    for operation in operations:
        lines.extend(_operation_section(results, operation, layers, names))
    lines.extend(_overhead_section(results))
    lines.extend(_compile_section(results))
    lines.extend(_targets_section(results, layers, reasons))
    path.write_text("\n".join(lines), encoding="utf-8")


def _method_section(results: RunResults) -> list[str]:
    on_cuda = results.machine.device.startswith("CUDA")
    timing = (
        "CUDA events around the calls, then a synchronization"
        if on_cuda
        else "time.perf_counter around the calls"
    )
    memory = (
        "torch.cuda.max_memory_allocated after torch.cuda.reset_peak_memory_stats, minus the memory allocated"
        " before the call"
        if on_cuda
        else "torch.profiler with profile_memory=True records every allocation and free of the call; replaying"
        " them in time order gives the running total, whose maximum is the peak. Memory that a library allocates"
        " without torch's allocator is not seen"
    )
    return [
        "## How it is measured",
        "",
        "- Every implementation runs on the same random tensors. Its first call is compared with torch's result:"
        f" the relative error ‖result − torch‖ / ‖torch‖ (Frobenius norm, float64) must be at most {TOLERANCE:.0e},"
        " else the table marks it **DISAGREES** and the command exits with status 1.",
        f"- Time: the median of the repeats; {timing}. The first call checks the result and the second measures"
        " the memory, so neither is timed. Within each repeat the implementations run round-robin, and each repeat"
        " starts one implementation later, so drift of the machine affects all alike. Fast calls run several times"
        " within one repeat, after one such untimed group. Each implementation gets the repeats that fit its equal"
        " share of a time budget per layer and operation: at least 3 (unless --repeats asks for fewer), at most"
        " --repeats.",
        f"- Peak extra memory: the second call; {memory}. The result tensor counts; constants that an"
        " implementation built on its first call and keeps do not. In parentheses, and for the KFAC-reduce"
        " memory target, the same less the bytes of the result's storage: the memory a call needs besides"
        " the tensor it returns, which every implementation must allocate. As the result may not be alive at"
        " the peak, this is a lower bound of the memory beyond the result.",
        "- Memory allocation on the CPU: unless --system-malloc is given, glibc's malloc gets fixed thresholds"
        " (the Allocator row above), so each allocation size is served the same way on every call. With its"
        " moving defaults, an allocation of a few MiB sometimes reuses freed memory and sometimes gets fresh"
        " pages, which the kernel zeroes, depending on what ran before it, and the time of a memory-bound call"
        " varies with that. The setting applies to every implementation alike.",
        "- torch: torch.nn.functional.convNd and conv_transposeNd; torch.nn.grad.convNd_input and convNd_weight for"
        " the VJPs; torch.nn.functional.unfold for 2-d inputs, and a grouped convolution with a one-hot weight for"
        " 1-d and 3-d; KFC and KFAC-reduce from that unfolded input with torch.einsum.",
        "- einconv: einconv.functionals.convNd and unfoldNd, which build their einsum expression on every call;"
        " for the VJPs, KFC and KFAC-reduce, the expression from einconv.expressions is built once per layer and"
        " only torch.einsum is timed.",
        "- tndiagram: the functions of tndiagram.functional, called as a user calls them; compiled code is cached"
        " per shape after the warm-up call.",
        "",
    ]


def _relative(target: Path, document: Path) -> str:
    try:
        return str(target.resolve().relative_to(document.resolve().parent))
    except ValueError:
        return str(target.resolve())


# -- plot -----------------------------------------------------------------

# One marker and color per implementation, the same in every panel.
_STYLES = {
    "tndiagram": {"marker": "o", "color": "tab:blue"},
    "tndiagram_no_rewrites": {"marker": "s", "color": "tab:green"},
    "tndiagram_einsum": {"marker": "D", "color": "tab:purple"},
    "einconv": {"marker": "^", "color": "tab:orange"},
}


def write_plot(results: RunResults, operations: list[str], layers: list[Layer], path: Path) -> bool:
    """Plot each implementation's ratio to torch per layer, one panel per
    operation on a log scale. Return False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter
    except ImportError:
        print("matplotlib is not installed, so no plot is written (pip install tndiagram[bench])", file=sys.stderr)
        return False

    names = [name for name in _implementations_in(results) if name != REFERENCE]
    columns = 2 if len(operations) > 1 else 1
    rows = -(-len(operations) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(6.5 * columns, 0.25 * len(layers) + 3.2 * rows), squeeze=False, sharey=False
    )
    positions = list(range(len(layers)))
    for panel, operation in zip(axes.flat, operations):
        panel.set_title(OPERATION_TITLES[operation])
        panel.axhline(1.0, color="grey", linewidth=0.8)
        plotted = False
        for name in names:
            points = []
            for position, layer in zip(positions, layers):
                measurement = results.find(layer.name, operation, name)
                ratio = None if measurement is None else _ratio(results, measurement)
                if ratio is not None:
                    points.append((position, ratio, measurement.agrees is not False))
            if not points:
                continue
            plotted = True
            agreeing = [(x, y) for x, y, agrees in points if agrees]
            disagreeing = [(x, y) for x, y, agrees in points if not agrees]
            if agreeing:
                style = _STYLES.get(name, {"marker": "D", "color": "tab:purple"})
                panel.scatter(*zip(*agreeing), label=IMPLEMENTATIONS[name].label, **style)
            if disagreeing:
                panel.scatter(*zip(*disagreeing), marker="x", color="red", label=f"{IMPLEMENTATIONS[name].label}, disagrees")
        if plotted:
            panel.set_yscale("log")
            panel.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            panel.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            panel.yaxis.set_minor_formatter(NullFormatter())
            panel.legend(fontsize="small")
        else:
            panel.text(0.5, 0.5, "no implementation besides torch", ha="center", va="center", transform=panel.transAxes)
        panel.set_xticks(positions)
        panel.set_xticklabels([layer.name for layer in layers], rotation=60, ha="right", fontsize="small")
        panel.set_ylabel("time / torch's time")
    for panel in list(axes.flat)[len(operations):]:
        panel.set_visible(False)
    figure.suptitle(f"Ratio to torch ({'quick' if results.quick else 'full'} mode, {results.machine.device})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
