"""The ``tndiagram grad`` command."""

import pytest
import torch
import torch.nn.functional as F

import tndiagram
from tndiagram.autodiff import jvp, vjp
from tndiagram.cli import main
from tndiagram.codegen import load_source

CONV_FILE = "tndiagram/diagrams/conv.tn"


@pytest.fixture(autouse=True)
def repository_root(monkeypatch, request):
    monkeypatch.chdir(request.config.rootpath)


@pytest.mark.parametrize("mode, rule", [("vjp", vjp), ("jvp", jvp)])
def test_grad_prints_derived_diagram(capsys, mode, rule):
    assert main(["grad", CONV_FILE, "--wrt", "weight", "--mode", mode]) == 0
    printed = capsys.readouterr().out
    expected = rule(tndiagram.load(CONV_FILE)["conv"], "weight")
    assert tndiagram.parse(printed)[expected.name] == expected


def test_grad_compile_writes_working_module(tmp_path, capsys):
    output = tmp_path / "conv_vjp_x.py"
    status = main(
        [
            "grad", CONV_FILE, "--wrt", "x", "--compile", "-o", str(output),
            "--shape", "x=2,4,9,8", "--shape", "weight=6,2,3,2",
            "--set", "stride=2", "--set", "groups=2", "--set", "padding=1",
        ]
    )
    assert status == 0
    source = output.read_text()
    assert source.startswith("# network conv_vjp_x(")
    function = load_source(source, "conv_vjp_x")
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 2, 3, 2, dtype=torch.float64)
    result = F.conv2d(x, weight, stride=2, padding=1, groups=2)
    cotangent = torch.randn_like(result)
    (expected,) = torch.autograd.grad(result, x, cotangent)
    torch.testing.assert_close(function(weight, cotangent), expected, rtol=1e-10, atol=1e-10)


def test_grad_unknown_operand_fails(capsys):
    assert main(["grad", CONV_FILE, "--wrt", "z"]) == 1
    assert "has no operand 'z'" in capsys.readouterr().err


def test_grad_shape_without_compile_fails(capsys):
    assert main(["grad", CONV_FILE, "--wrt", "x", "--shape", "x=1,1,4"]) == 1
    assert "only with --compile" in capsys.readouterr().err


def test_grad_compile_without_shapes_fails(capsys):
    assert main(["grad", CONV_FILE, "--wrt", "x", "--compile"]) == 1
    assert "--shape NAME=SIZES" in capsys.readouterr().err
