"""The examples in README.md and docs/language.md parse, compute what the text
states they compute, and raise the errors they are shown to raise.

A fenced block marked ```tn must parse with tndiagram.parse. A block marked
```tn-error NAME must raise the tndiagram exception class NAME.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
import torch

import tndiagram

REPOSITORY = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPOSITORY / "README.md", REPOSITORY / "docs" / "language.md"]

FENCE = re.compile(r"^```(tn(?:-error)?)(?:[ \t]+(\w+))?[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(kind: str) -> list:
    """Return pytest parameters (text, error class name) for every block of ``kind``."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group(1) != kind:
                continue
            line = text.count("\n", 0, match.start()) + 1
            found.append(pytest.param(match.group(3), match.group(2), id=f"{document.name}:{line}"))
    return found


def language_programs() -> dict[str, tndiagram.Network]:
    """Return every network of docs/language.md by name (the last one wins)."""
    networks = {}
    for parameter in blocks("tn"):
        text = parameter.values[0]
        if parameter.id.startswith("language.md:"):
            networks.update(tndiagram.parse(text))
    return networks


def test_documents_have_examples():
    counts = {}
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        counts[document.name] = sum(1 for m in FENCE.finditer(text) if m.group(1) == "tn")

    assert counts["README.md"] >= 1
    assert counts["language.md"] >= 12
    assert len(blocks("tn-error")) >= 3


@pytest.mark.parametrize("text, _", blocks("tn"))
def test_example_parses(text, _):
    program = tndiagram.parse(text, "example.tn")

    assert len(program) >= 1


@pytest.mark.parametrize("text, error_name", blocks("tn-error"))
def test_error_example_raises(text, error_name):
    assert error_name is not None, "a tn-error block must name the error class, as in ```tn-error DiagramError"
    error_class = getattr(tndiagram, error_name)
    assert issubclass(error_class, tndiagram.TNError)

    with pytest.raises(error_class) as raised:
        tndiagram.parse(text, "example.tn")

    assert raised.value.line is not None
    assert raised.value.column is not None


# The reference results are what the text around each example states.
def reference_cases():
    F = torch.nn.functional
    generator = torch.Generator().manual_seed(0)

    def random(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=generator)

    x2, w2 = random(2, 3, 8, 9), random(4, 3, 3, 2)
    a, b = random(3, 4), random(3, 5)
    linear_weight = random(6, 4)
    u, v = random(3), random(4)
    s1, s2 = random(5, 5), random(3)
    sequence, kernel = random(2, 3, 9), random(4, 3, 4)
    transpose_input, transpose_weight = random(2, 3, 5), random(3, 4, 3)
    return [
        ("gram", (a,), {}, a @ a.T),
        # The optional bias is left out, so only x·weightᵀ remains.
        ("linear", (a, linear_weight), {}, a @ linear_weight.T),
        ("weighted", (u,), {"alpha": 3}, 3 * u + u / 2),
        ("conv2d", (x2, w2), {"stride": (2, 1), "padding": 1}, F.conv2d(x2, w2, stride=(2, 1), padding=1)),
        ("batch_mean", (a,), {}, a.mean(0)),
        ("avg_pool", (x2,), {"kernel_size": (2, 3)}, F.avg_pool2d(x2, (2, 3))),
        # 'same' with a kernel of 4 pads 1 position on the left and 2 on the right.
        ("conv1d", (sequence, kernel), {}, F.conv1d(F.pad(sequence, (1, 2)), kernel)),
        (
            "conv_transpose1d",
            (transpose_input, transpose_weight),
            {"stride": 2, "padding": 1, "output_padding": 1},
            F.conv_transpose1d(transpose_input, transpose_weight, stride=2, padding=1, output_padding=1),
        ),
        ("diagonal", (s1,), {}, s1.diagonal()),
        ("row_sums", (a,), {}, a.sum(1)),
        ("outer_minus", (u, v), {}, 2 * torch.outer(u, v) - u[:, None]),
        ("difference_of_squares", (s2, s2.flip(0)), {}, (s2 * s2 - s2.flip(0) ** 2).sum()),
        ("square", (s1,), {}, s1 @ s1),
    ]


@pytest.mark.parametrize("name, operands, hyper, expected", reference_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_language_example_computes(name, operands, hyper, expected):
    network = language_programs()[name]
    function = tndiagram.compile(network, **hyper)

    result = function(*operands)

    torch.testing.assert_close(result, expected)


def test_digits_example_matches_readme(capsys):
    pytest.importorskip("sklearn", reason="examples/digits_conv2d.py needs scikit-learn")
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")

    runpy.run_path(str(REPOSITORY / "examples" / "digits_conv2d.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()

    # The README shows the script's output; the text before each difference does not depend on rounding.
    assert lines[0] in readme
    for line in lines[1:3]:
        text, difference = line.rsplit("=", 1)
        assert text in readme
        assert float(difference) < 1e-12
