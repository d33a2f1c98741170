"""Drawing networks as SVG and PNG, and the rewrite and draw commands."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

import tndiagram
from tndiagram.cli import main
from tndiagram.draw import render

EXAMPLES = sorted(Path(__file__).resolve().parent.parent.joinpath("examples").glob("*.tn"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_svg(path: Path) -> None:
    root = ElementTree.parse(path).getroot()
    assert root.tag.endswith("svg")


def check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_every_example_draws_as_svg_and_png(example, tmp_path):
    for name, network in tndiagram.load(str(example)).items():
        check_svg(render(network, tmp_path / f"{name}.svg"))
        check_png(render(network, tmp_path / f"{name}.png"))


def test_repr_svg_is_svg():
    network = tndiagram.load("examples/conv2d.tn")["conv2d"]
    assert ElementTree.fromstring(network._repr_svg_()).tag.endswith("svg")


def test_draw_command_writes_rewritten_png(tmp_path, capsys):
    out = tmp_path / "conv.png"
    status = main(
        ["draw", "examples/conv_nd.tn", "--rewritten", "--shape", "x=2,4,9", "--shape", "weight=6,4,3",
         "--set", "stride=2", "-o", str(out)]
    )
    assert status == 0
    check_png(out)


def test_draw_command_rejects_other_suffix(tmp_path, capsys):
    assert main(["draw", "examples/conv1d.tn", "-o", str(tmp_path / "out.pdf")]) == 1
    assert "must end in .svg or .png" in capsys.readouterr().err


def test_rewrite_command_prints_trace_and_network(capsys):
    status = main(
        ["rewrite", "examples/kfac_reduce.tn", "--shape", "x=8,64,56,56", "--set", "kernel_size=3",
         "--set", "padding=1", "--trace"]
    )
    output = capsys.readouterr().out
    assert status == 0
    assert "1. summed-pattern: " in output
    assert " FLOPs, largest intermediate " in output
    assert "network kfac_reduce(" in output


def test_rewrite_command_needs_shapes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["rewrite", "examples/conv1d.tn"])
    assert exit_info.value.code == 2
    assert "--shape" in capsys.readouterr().err
