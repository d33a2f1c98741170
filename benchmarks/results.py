"""Records of one benchmark run, and how to save them as JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from .overhead import CallOverhead, CompileTime

__all__ = ["Measurement", "Machine", "RunResults", "describe_machine"]


@dataclass
class Measurement:
    """One implementation on one layer under one operation."""

    layer: str
    operation: str
    implementation: str
    status: str  # "ok", "not available" or "failed"
    reason: str = ""  # why it is not available, or the error it raised
    seconds: float | None = None  # median seconds per call
    samples: list[float] = field(default_factory=list)  # seconds per call, one per repeat
    calls_per_sample: int = 0
    memory_bytes: int | None = None  # peak extra memory of one call
    result_bytes: int | None = None  # bytes of the result's storage
    relative_error: float | None = None  # against torch's result in the same run
    agrees: bool | None = None


@dataclass
class Machine:
    cpu: str
    cores: int
    threads: int
    device: str
    torch_version: str
    python_version: str
    einconv_version: str
    tndiagram_commit: str


@dataclass
class RunResults:
    command: str
    quick: bool
    machine: Machine
    repeats: int
    note: str = ""  # printed at the top of the report, e.g. that the machine was shared
    max_batch_size: int | None = None  # the cap on full-mode batch sizes, if any
    allocator: str = ""  # the CPU memory allocator and its settings, where the run changed them
    measurements: list[Measurement] = field(default_factory=list)
    overhead: CallOverhead | None = None
    compile_times: list[CompileTime] = field(default_factory=list)

    def find(self, layer: str, operation: str, implementation: str) -> Measurement | None:
        for measurement in self.measurements:
            if (measurement.layer, measurement.operation, measurement.implementation) == (
                layer,
                operation,
                implementation,
            ):
                return measurement
        return None

    def save_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load_json(cls, path: Path) -> "RunResults":
        """Read results that :meth:`save_json` wrote."""
        data = json.loads(path.read_text(encoding="utf-8"))
        data["machine"] = Machine(**data["machine"])
        data["measurements"] = [Measurement(**entry) for entry in data["measurements"]]
        if data.get("overhead") is not None:
            data["overhead"] = CallOverhead(**data["overhead"])
        data["compile_times"] = [CompileTime(**entry) for entry in data.get("compile_times", [])]
        return cls(**data)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    """Return the commit of the tndiagram checkout in the working directory, or 'unknown'."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return completed.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def describe_machine(device: torch.device, threads: int) -> Machine:
    if device.type == "cuda":
        device_text = f"CUDA: {torch.cuda.get_device_name(device)}"
    else:
        device_text = "CPU"
    try:
        einconv_version = version("einconv")
    except PackageNotFoundError:
        einconv_version = "not installed"
    return Machine(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 0,
        threads=threads,
        device=device_text,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        einconv_version=einconv_version,
        tndiagram_commit=_git_commit(),
    )
