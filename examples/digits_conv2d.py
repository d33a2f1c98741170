"""Run the 2-d convolution diagram on real images and compare it with torch.

The images are scikit-learn's handwritten digits: 1797 grey-scale images of
8×8 pixels with values 0 to 16, shipped inside scikit-learn, so nothing is
downloaded. Run from the repository root:

    python examples/digits_conv2d.py
"""

from pathlib import Path

import torch
from sklearn.datasets import load_digits

import tndiagram

DIAGRAM = Path(__file__).resolve().parent / "conv2d.tn"


def main() -> None:
    digits = load_digits()
    # [N, C, H, W] with one channel; pixel values scaled from 0..16 to 0..1.
    images = torch.from_numpy(digits.images).to(torch.float64).unsqueeze(1) / 16.0
    print(f"images: {tuple(images.shape)} {images.dtype}")

    program = tndiagram.load(str(DIAGRAM))
    # By default the compiler recognizes the convolution and calls torch's kernel;
    # native=False contracts the diagram's index patterns with einsum instead.
    lowerings = {
        "native": tndiagram.compile(program["conv2d"], padding=1),
        "einsum": tndiagram.compile(program["conv2d"], padding=1, native=False),
    }

    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 1, 3, 3, dtype=torch.float64, generator=generator)
    bias = torch.randn(4, dtype=torch.float64, generator=generator)
    expected = torch.nn.functional.conv2d(images, weight, bias, padding=1)

    for name, conv2d in lowerings.items():
        result = conv2d(images, weight, bias)
        difference = (result - expected).abs().max().item()
        print(f"{name} lowering: output {tuple(result.shape)},"
              f" max |tndiagram - torch.nn.functional.conv2d| = {difference:.3g}")


if __name__ == "__main__":
    main()
