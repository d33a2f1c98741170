"""Hostile inputs: each test states the behaviour a user should get, such as a
TNError subclass instead of a Python traceback, a result that matches torch,
or a prompt error instead of a hang."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tndiagram
import tndiagram.nn as tnn
from tndiagram import TNError

ROOT = Path(__file__).resolve().parents[1]
CONV2D = ROOT / "examples" / "conv2d.tn"


def _compile(text, name="f", **hyper_parameters):
    return tndiagram.compile(tndiagram.parse(text)[name], **hyper_parameters)


def _run_cli(*arguments, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "tndiagram", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


# -- parser and lowering ----------------------------------------------------


def test_long_sum_parses():
    terms = " + ".join(["x"] * 1000)
    program = tndiagram.parse(f"network f(x[i]) {{ y[i] = {terms} }}")
    assert len(program["f"].terms) == 1000


def test_power_tower_fails_fast():
    # 10 ** 10 ** 10 has ten billion digits, so lowering must not evaluate it.
    code = (
        "import tndiagram\n"
        "try:\n"
        "    tndiagram.parse('network f(x[i]) { y[i] = 10 ** 10 ** 10 * x }')\n"
        "except tndiagram.TNError:\n"
        "    pass\n"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=20,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
    except subprocess.TimeoutExpired:
        pytest.fail("parsing '10 ** 10 ** 10 * x' did not finish within 20 s")
    assert result.returncode == 0, result.stderr


def test_zero_hyper_divisor_raises_tnerror():
    function = _compile("network f(x[i]; a=0) { y[i] = x / a }")
    with pytest.raises(TNError):
        function(torch.ones(3, dtype=torch.float64))


def test_zero_negative_power_raises_tnerror():
    function = _compile("network f(x[i]; a=0) { y[i] = a ** -1 * x }")
    with pytest.raises(TNError):
        function(torch.ones(3, dtype=torch.float64))


def test_huge_coefficient_handled():
    function = _compile("network f(x[i]) { y[i] = 99999999999999999999999999999999999 * x }")
    x = torch.ones(3, dtype=torch.float64)
    try:
        y = function(x)
    except TNError:
        return
    assert torch.allclose(y, x * 1e35)


def test_huge_size_raises_tnerror():
    function = _compile("network f(x[i]) { size j = 10**30\n y[i, j] = x * ones[j] }")
    with pytest.raises(TNError):
        function(torch.ones(3, dtype=torch.float64))


def test_stride_none_raises_tnerror():
    with pytest.raises(TNError) as error:
        tndiagram.compile(tndiagram.load(CONV2D)["conv2d"], stride=None)
    assert "stride must be set" in str(error.value)


# -- index families in delta and ones ----------------------------------------


def test_ones_over_family_sums():
    function = _compile("network f(x[n, i...]) { y[n] = x * ones[i...] }")
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    assert torch.allclose(function(x), x.sum((1, 2)))


def test_family_delta_pairs_dimensions():
    # Like pattern[j..., o..., i...], delta[i..., j...] should pair i_d with
    # j_d, so summing j leaves x unchanged in any number of dimensions.
    function = _compile("network f(x[i...]) { y[i...] = x * delta[i..., j...] }")
    x = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(3, 3)
    assert torch.equal(function(x), x)


# -- torch.nn drop-in modules --------------------------------------------------


def test_unfold_module_unbatched_shape():
    x = torch.randn(4, 7, 6, dtype=torch.float64)
    expected = torch.nn.Unfold(2)(x)
    assert tnn.Unfold(2)(x).shape == expected.shape


def test_fold_module_unbatched_input():
    columns = F.unfold(torch.randn(1, 4, 7, 6, dtype=torch.float64), 2)[0]
    expected = torch.nn.Fold((7, 6), 2)(columns)
    assert torch.allclose(tnn.Fold((7, 6), 2)(columns), expected)


@pytest.mark.xfail(reason="index sizes must be positive, so a batch of zero samples is rejected", strict=True)
def test_conv2d_module_empty_batch():
    module = tnn.Conv2d(4, 6, 3).double()
    x = torch.randn(0, 4, 7, 6, dtype=torch.float64)
    assert module(x).shape == (0, 6, 5, 4)


# -- command line ---------------------------------------------------------------


def test_cli_check_non_utf8_file(tmp_path):
    path = tmp_path / "binary.tn"
    path.write_bytes(b"\xff\xfe network")
    result = _run_cli("check", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_cli_show_unknown_operand():
    result = _run_cli("show", str(CONV2D), "--shape", "x=1,1,8,8", "--shape", "nope=1,2")
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr


def test_cli_compile_unknown_operand():
    result = _run_cli(
        "compile", str(CONV2D), "--shape", "x=1,1,8,8", "--shape", "weight=1,1,3,3", "--shape", "nope=1"
    )
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr


def test_cli_grad_absent_operand():
    result = _run_cli(
        "grad", str(CONV2D), "--network", "conv2d", "--wrt", "bias", "--compile",
        "--shape", "x=1,1,8,8", "--shape", "weight=1,1,3,3",
    )
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr


def test_cli_set_stride_none():
    result = _run_cli(
        "show", str(CONV2D), "--shape", "x=1,1,8,8", "--shape", "weight=1,1,3,3", "--set", "stride=None"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
