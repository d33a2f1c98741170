"""Tests of the ``tndiagram`` command line.

Each command runs once through the installed console script in a subprocess.
Because every start of the script imports torch (seconds of CPU time), the
variants of a command run in-process through :func:`tndiagram.cli.main`,
which is the function the script calls.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch

import tndiagram
from tndiagram.cli import build_parser, main

REPOSITORY = Path(__file__).resolve().parent.parent
EXAMPLES = REPOSITORY / "examples"
CONV2D = EXAMPLES / "conv2d.tn"
MATRIX_CHAIN = EXAMPLES / "matrix_chain.tn"

# Prefer the script installed beside the running interpreter, so that a virtual
# environment that is not activated still tests its own script.
SCRIPT = shutil.which(
    "tndiagram", path=os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
)

needs_script = pytest.mark.skipif(
    SCRIPT is None,
    reason="the tndiagram console script is not installed: run 'pip install -e .' first",
)


def run_script(*arguments: str | Path) -> subprocess.CompletedProcess:
    # The script imports the package of this checkout first, so the tests check
    # this source tree even where the installed script belongs to another checkout.
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY)] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    return subprocess.run(
        [SCRIPT, *map(str, arguments)], capture_output=True, text=True, env=environment, timeout=300
    )


def run_main(capsys, *arguments: str | Path) -> tuple[int, str, str]:
    """Run the command line in-process; return the exit status, stdout and stderr."""
    try:
        status = main([str(a) for a in arguments])
    except SystemExit as exit:
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return dict(actions[0].choices)


def load_module(path: Path):
    specification = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    return module


# -- the console script ----------------------------------------------------


@needs_script
@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.tn")), ids=lambda p: p.name)
def test_script_check_accepts_example(example):
    result = run_script("check", example)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"{example}: ")
    assert "valid" in result.stdout
    for name in tndiagram.load(str(example)):
        assert name in result.stdout


@needs_script
def test_script_check_syntax_error(tmp_path):
    broken = tmp_path / "broken.tn"
    broken.write_text("network f(a[i]) {\n    y[i] = a * \n}\n", encoding="utf-8")

    result = run_script("check", broken)

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    # A factor is missing after '*', so the '}' on line 3, column 1 is unexpected.
    assert lines[0].startswith(f"error: {broken}:3:1: unexpected '}}'")
    assert lines[1] == "    }"
    assert lines[2] == "    ^"


@needs_script
def test_script_show_symbolic_sizes():
    result = run_script("show", CONV2D)

    assert result.returncode == 0, result.stderr
    assert "network conv2d" in result.stdout
    assert re.search(r"^\s+n\s+index\s+size size\(n\)$", result.stdout, re.MULTILINE)
    output_size = re.search(r"^\s+o1\s+index\s+size (.+)$", result.stdout, re.MULTILINE)
    assert output_size is not None
    for symbol in ("size(i1)", "size(j1)", "stride[0]", "padding[0]", "dilation[0]", "floor"):
        assert symbol in output_size.group(1)
    assert "FLOPs" not in result.stdout
    assert "give operand shapes" in result.stdout


@needs_script
def test_script_show_shape_and_settings():
    result = run_script(
        "show", CONV2D,
        "--shape", "x=8,1,9,9",
        "--shape", "weight=4,1,3,3",
        "--set", "stride=2",
        "--set", "padding=(1,2)",
    )

    assert result.returncode == 0, result.stderr
    # o1 = (9 + 1 + 1 - 3) // 2 + 1 and o2 = (9 + 2 + 2 - 3) // 2 + 1.
    assert "bound sizes: n=8, c=1, i1=9, i2=9, k=4, j1=3, j2=3, o1=5, o2=6" in result.stdout
    total = re.search(r"total: ([\d,]+) FLOPs, largest intermediate ([\d,]+) elements", result.stdout)
    assert total is not None
    assert int(total.group(1).replace(",", "")) > 0
    # No intermediate can be smaller than the output y, which has 8·4·5·6 elements.
    assert int(total.group(2).replace(",", "")) >= 8 * 4 * 5 * 6


@needs_script
# torch warns that 'same' padding with an even kernel may copy the input, which does not change the result.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_script_compile_matches_conv2d(tmp_path):
    module_path = tmp_path / "conv2d_module.py"

    result = run_script(
        "compile", CONV2D,
        "--shape", "x=2,3,9,7",
        "--shape", "weight=4,3,4,2",
        "--shape", "bias=4",
        "--set", "padding=same",
        "--set", "dilation=(1,2)",
        "-o", module_path,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert f"wrote {module_path}: function conv2d" in result.stderr
    source = module_path.read_text(encoding="utf-8")
    imports = [line.strip() for line in source.splitlines() if re.match(r"\s*(import|from)\s", line)]
    assert imports == ["import torch"]

    module = load_module(module_path)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64, generator=generator)
    weight = torch.randn(4, 3, 4, 2, dtype=torch.float64, generator=generator)
    bias = torch.randn(4, dtype=torch.float64, generator=generator)
    # The even kernel height 4 pads one row more at the bottom than at the top.
    expected = torch.nn.functional.conv2d(x, weight, bias, padding="same", dilation=(1, 2))

    torch.testing.assert_close(module.conv2d(x, weight, bias), expected)


@needs_script
def test_script_bad_shape_is_usage_error():
    result = run_script("show", CONV2D, "--shape", "x=8,3,a,32")

    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: tndiagram show" in result.stderr
    assert "invalid --shape 'x=8,3,a,32': sizes must be integers" in result.stderr


@needs_script
def test_script_unknown_network_lists_networks():
    result = run_script("compile", MATRIX_CHAIN, "--network", "matmull", "--shape", "a=2,3")

    assert result.returncode == 1
    assert "no network named 'matmull'" in result.stderr
    assert "matmul, chain, trace_of_product" in result.stderr


@needs_script
def test_script_help_lists_commands():
    result = run_script("--help")

    assert result.returncode == 0, result.stderr
    for name in subcommand_parsers():
        assert name in result.stdout


@needs_script
@pytest.mark.parametrize("command", sorted(subcommand_parsers()))
def test_script_help_mentions_every_option(command):
    parser = subcommand_parsers()[command]

    result = run_script(command, "--help")

    assert result.returncode == 0, result.stderr
    for action in parser._actions:
        for option in action.option_strings:
            assert option in result.stdout, f"'tndiagram {command} --help' does not mention {option}"
        if not action.option_strings:
            assert action.metavar in result.stdout
        assert action.help, f"{action.option_strings or action.dest} of {command} has no help text"


def test_commands_have_expected_options():
    parsers = subcommand_parsers()
    options = {name: {o for a in p._actions for o in a.option_strings} for name, p in parsers.items()}

    assert {"check", "show", "compile"} <= set(parsers)
    assert {"--network", "--shape", "--set"} <= options["show"]
    assert {"--network", "--shape", "--set", "-o", "--output"} <= options["compile"]


# -- variants, in-process --------------------------------------------------


def test_version(capsys):
    status, out, _ = run_main(capsys, "--version")

    assert status == 0
    assert out.strip() == f"tndiagram {tndiagram.__version__}"


def test_check_unknown_name_points_at_it(tmp_path, capsys):
    broken = tmp_path / "unknown_name.tn"
    broken.write_text("network f(a[i]) {\n    y[i] = a * b\n}\n", encoding="utf-8")

    status, out, err = run_main(capsys, "check", broken)

    assert status == 1
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith(f"error: {broken}:2:16: unknown name 'b'")
    assert lines[1] == "        y[i] = a * b"
    # The caret sits under column 16, the 'b'.
    assert lines[2] == "    " + " " * 15 + "^"


def test_check_missing_file(tmp_path, capsys):
    missing = tmp_path / "missing.tn"

    status, _, err = run_main(capsys, "check", missing)

    assert status == 1
    assert err.strip() == f"error: {missing}: No such file or directory"


def test_show_every_network_by_default(capsys):
    status, out, _ = run_main(capsys, "show", MATRIX_CHAIN)

    assert status == 0
    for name in ("matmul", "chain", "trace_of_product"):
        assert f"network {name}\n" in out


def test_show_with_shape_needs_network(capsys):
    status, _, err = run_main(capsys, "show", MATRIX_CHAIN, "--shape", "a=2,3")

    assert status == 1
    assert "choose one with --network" in err
    assert "matmul, chain, trace_of_product" in err


def test_show_selects_network(capsys):
    status, out, _ = run_main(capsys, "show", MATRIX_CHAIN, "--network", "matmul", "--shape", "a=2,3", "--shape", "b=3,4")

    assert status == 0
    assert "network matmul" in out
    assert "network chain" not in out
    assert "bound sizes: i=2, j=3, k=4" in out


def test_show_unknown_network(capsys):
    status, _, err = run_main(capsys, "show", CONV2D, "--network", "conv3d")

    assert status == 1
    assert "no network named 'conv3d'" in err
    assert "it defines: conv2d" in err


@pytest.mark.parametrize(
    "setting, sizes",
    [
        # A 9×9 input and a 3×3 kernel: each setting gives other output sizes.
        ("stride=2", "o1=4, o2=4"),
        ("stride=(2,1)", "o1=4, o2=7"),
        ("padding=(1,2)", "o1=9, o2=11"),
        ("padding=same", "o1=9, o2=9"),
        ("padding='same'", "o1=9, o2=9"),
        ("padding=valid", "o1=7, o2=7"),
        ("padding=((1,0),(0,2))", "o1=8, o2=9"),
        ("dilation=[2,1]", "o1=5, o2=7"),
    ],
)
def test_set_value_forms(capsys, setting, sizes):
    status, out, err = run_main(capsys, "show", CONV2D, "--shape", "x=1,1,9,9", "--shape", "weight=1,1,3,3", "--set", setting)

    assert status == 0, err
    assert sizes in out


def test_set_invalid_value(capsys):
    status, _, err = run_main(capsys, "show", CONV2D, "--shape", "x=1,1,9,9", "--shape", "weight=1,1,3,3", "--set", "padding=full")

    assert status == 1
    assert "invalid padding 'full'" in err


def test_set_unknown_hyper_parameter(capsys):
    status, _, err = run_main(capsys, "show", CONV2D, "--set", "strides=2")

    assert status == 1
    assert "no hyper-parameter 'strides'" in err
    assert "stride, padding, dilation" in err


@pytest.mark.parametrize("setting", ["stride", "=2", "2x=1"])
def test_set_malformed_is_usage_error(capsys, setting):
    status, _, err = run_main(capsys, "show", CONV2D, "--set", setting)

    assert status == 2
    assert "usage:" in err
    assert f"invalid --set {setting!r}: expected NAME=VALUE" in err


@pytest.mark.parametrize(
    "shape, reason",
    [
        ("x", "expected NAME=SIZES"),
        ("=8,3", "expected NAME=SIZES"),
        ("x=8,3.5", "sizes must be integers"),
        ("x=8,-3", "sizes must not be negative"),
    ],
)
def test_bad_shape_is_usage_error(capsys, shape, reason):
    status, out, err = run_main(capsys, "show", CONV2D, "--shape", shape)

    assert status == 2
    assert out == ""
    assert f"invalid --shape {shape!r}: {reason}" in err


def test_shape_of_wrong_rank(capsys):
    status, _, err = run_main(capsys, "show", CONV2D, "--shape", "x=8,3,32", "--shape", "weight=4,3,3,3")

    assert status == 1
    assert "operand 'x' has rank 3, expected 4" in err


def test_compile_to_standard_output(capsys):
    status, out, _ = run_main(capsys, "compile", CONV2D, "--shape", "x=1,1,5,5", "--shape", "weight=1,1,3,3")

    assert status == 0
    assert "import torch" in out
    # Without --shape for bias, the optional operand is left out of the signature.
    assert "def conv2d(x, weight):" in out


def test_compile_needs_shape(capsys):
    status, _, err = run_main(capsys, "compile", CONV2D)

    assert status == 2
    assert "usage: tndiagram compile" in err
    assert "the following arguments are required: --shape" in err


def test_compile_unwritable_output(tmp_path, capsys):
    target = tmp_path / "missing_folder" / "module.py"

    status, _, err = run_main(capsys, "compile", CONV2D, "--shape", "x=1,1,5,5", "--shape", "weight=1,1,3,3", "-o", target)

    assert status == 1
    assert err.strip() == f"error: {target}: No such file or directory"


def test_unknown_command_is_usage_error(capsys):
    status, _, err = run_main(capsys, "run", CONV2D)

    assert status == 2
    assert "invalid choice: 'run'" in err
