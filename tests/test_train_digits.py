"""The training example: tndiagram and torch.nn convolutions learn alike."""

import importlib.util
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train_digits.py"


@pytest.fixture
def train_digits():
    specification = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
    module = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_losses_agree_with_torch_nn(train_digits, one_thread):
    lines = []
    diagram_losses, torch_losses = train_digits.main(steps=40, batch_size=32, report=lines.append)
    assert len(diagram_losses) == len(torch_losses) == 40
    for step, (loss, reference) in enumerate(zip(diagram_losses, torch_losses)):
        assert abs(loss - reference) <= 1e-5 * abs(reference), f"step {step}: {loss} != {reference}"
    assert torch_losses[-1] < torch_losses[0]
    assert lines[-1].startswith("final relative difference of the losses")
