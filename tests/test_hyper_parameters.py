"""Hyper-parameters of networks over index families, and how show reports them."""

import pytest
import torch

import tndiagram
from tndiagram.cli import main

CONV_ND = "examples/conv_nd.tn"


def test_tuple_longer_than_dimensions_is_rejected():
    network = tndiagram.load(CONV_ND)["conv_nd"]
    function = tndiagram.compile(network, padding=(1, 2))
    with pytest.raises(tndiagram.DiagramError) as error:
        function(torch.randn(1, 2, 5), torch.randn(3, 2, 3))
    assert "has 2 entries, but the network has 1 spatial dimension" in str(error.value)
    assert "((1, 2),)" in str(error.value)
    assert error.value.line == 11


def test_padding_pair_per_dimension_is_accepted():
    network = tndiagram.load(CONV_ND)["conv_nd"]
    x, weight = torch.randn(1, 2, 5, dtype=torch.float64), torch.randn(3, 2, 3, dtype=torch.float64)
    result = tndiagram.compile(network, padding=((1, 2),))(x, weight)
    expected = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (1, 2)), weight)
    torch.testing.assert_close(result, expected)


def test_show_reports_values_set(capsys):
    arguments = ["show", CONV_ND, "--shape", "x=1,2,5,5", "--shape", "weight=4,1,3,3", "--set", "groups=2"]
    assert main(arguments) == 0
    report = capsys.readouterr().out
    assert "groups=2" in report
    assert "groups=1" not in report


@pytest.mark.parametrize("hyper", [dict(stride=(1, 2, 3)), dict(padding=((1, 1), (0, 2), (3, 3)))], ids=["stride", "padding"])
def test_unread_tuple_entries_rejected(hyper):
    """conv2d.tn reads elements 0 and 1 of each tuple, so a third entry is an
    error, as it is for torch.nn.functional.conv2d."""
    network = tndiagram.load("examples/conv2d.tn")["conv2d"]
    function = tndiagram.compile(network, **hyper)
    with pytest.raises(tndiagram.DiagramError) as error:
        function(torch.randn(1, 1, 6, 6), torch.randn(1, 1, 3, 3))
    (name,) = hyper
    assert f"has 3 entries, but network 'conv2d' reads only {name}[0], {name}[1]" in str(error.value)
    assert error.value.line == 12


def test_read_tuple_entries_accepted():
    network = tndiagram.load("examples/conv2d.tn")["conv2d"]
    x, weight = torch.randn(1, 1, 6, 6, dtype=torch.float64), torch.randn(2, 1, 3, 3, dtype=torch.float64)
    result = tndiagram.compile(network, stride=(1, 2), padding=((1, 1), (0, 2)))(x, weight)
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 2, 1, 1)), weight, stride=(1, 2))
    torch.testing.assert_close(result, expected)
