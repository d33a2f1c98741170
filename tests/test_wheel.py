"""Build the wheel, install it into a fresh virtual environment and use it from
outside the repository.

The build runs without build isolation, so it needs setuptools in the running
environment (the test extra installs it). The fresh environment reaches torch
and the other dependencies through a .pth file that lists the site-packages
folders that hold them, so nothing is downloaded. A .pth file in a folder that
such a line adds is not executed, so an editable tndiagram of the running
environment stays invisible.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent

# Left out of the copy that the wheel is built from: setuptools writes build/
# and *.egg-info into the source folder, and the rest is not part of a build.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"
)

SNIPPET = textwrap.dedent(
    """
    import json
    import sys

    import torch
    import tndiagram
    from tndiagram import functional

    program = tndiagram.parse(
        "network matmul(a[i, j], b[j, k]) {\\n    c[i, k] = a * b\\n}\\n", "snippet.tn"
    )
    a = torch.randn(3, 4, dtype=torch.float64)
    b = torch.randn(4, 5, dtype=torch.float64)
    matmul_error = (tndiagram.compile(program["matmul"])(a, b) - a @ b).abs().max().item()

    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    weight = torch.randn(6, 2, 3, 2, dtype=torch.float64)
    result = functional.conv(x, weight, stride=(2, 1), padding=1, groups=2)
    expected = torch.nn.functional.conv2d(x, weight, stride=(2, 1), padding=1, groups=2)
    conv_error = (result - expected).abs().max().item()

    json.dump(
        {
            "file": tndiagram.__file__,
            "prefix": sys.prefix,
            "shape": list(result.shape),
            "matmul_error": matmul_error,
            "conv_error": conv_error,
        },
        sys.stdout,
    )
    """
)


def requirement_names(wheel: Path) -> list[str]:
    """Return the distribution names of the wheel's Requires-Dist, without extras."""
    with zipfile.ZipFile(wheel) as archive:
        metadata_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode("utf-8"))
    names = []
    for requirement in metadata.get_all("Requires-Dist") or []:
        if "extra ==" in requirement:
            continue
        names.append(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
    return names


def dependency_folders(names: list[str]) -> list[str]:
    """Return the folders that hold the installed distributions ``names`` and
    everything they require, in a stable order."""
    folders: list[str] = []
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            # An optional or platform-specific requirement that is not installed.
            continue
        folder = str(Path(distribution.locate_file("")).resolve())
        if folder not in folders:
            folders.append(folder)
        for requirement in distribution.requires or []:
            if "extra ==" not in requirement:
                pending.append(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
    return folders


def run(command: list[str | Path], cwd: Path, environment: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.wheel
def test_wheel_installs_and_runs(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel without isolation needs setuptools")
    # Nothing of the outer environment may leak in: no PYTHONPATH, no user site-packages.
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    environment["PYTHONNOUSERSITE"] = "1"

    source = tmp_path / "source"
    shutil.copytree(REPOSITORY, source, ignore=NOT_COPIED)
    wheels = tmp_path / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, source],
        tmp_path,
        environment,
    )
    [wheel] = wheels.glob("tndiagram-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        contents = set(archive.namelist())
    assert "tndiagram/grammar/tndiagram.lark" in contents
    assert "tndiagram/diagrams/conv.tn" in contents
    assert not any(name.startswith(("tests/", "examples/", "grammar/")) for name in contents)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, environment)
    binaries = venv / ("Scripts" if os.name == "nt" else "bin")
    python = binaries / ("python.exe" if os.name == "nt" else "python")
    # The outer pip installs into the new environment, before the .pth file
    # below shows it the outer packages.
    run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel],
        tmp_path,
        environment,
    )
    site_packages = run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path, environment
    ).stdout.strip()
    folders = dependency_folders(requirement_names(wheel))
    assert folders, "none of the wheel's requirements is installed in the running environment"
    (Path(site_packages) / "outer_dependencies.pth").write_text("\n".join(folders) + "\n", encoding="utf-8")

    outside = tmp_path / "outside"
    outside.mkdir()
    result = run([python, "-c", SNIPPET], outside, environment)
    report = json.loads(result.stdout)

    assert Path(report["file"]).resolve().is_relative_to(Path(site_packages).resolve())
    assert Path(report["prefix"]).resolve() == venv.resolve()
    assert report["shape"] == [2, 6, 4, 7]
    assert report["matmul_error"] < 1e-12
    assert report["conv_error"] < 1e-12

    diagram = outside / "scale.tn"
    diagram.write_text("network scale(a[i]; factor=2) {\n    b[i] = factor * a\n}\n", encoding="utf-8")
    script = binaries / ("tndiagram.exe" if os.name == "nt" else "tndiagram")
    checked = run([script, "check", diagram], outside, environment)
    assert checked.stdout.strip() == f"{diagram}: 1 network(s) valid: scale"
