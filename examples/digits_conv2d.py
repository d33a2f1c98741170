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
    conv2d = tndiagram.compile(program["conv2d"], padding=1)

    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 1, 3, 3, dtype=torch.float64, generator=generator)
    bias = torch.randn(4, dtype=torch.float64, generator=generator)

    result = conv2d(images, weight, bias)
    expected = torch.nn.functional.conv2d(images, weight, bias, padding=1)

    print(f"output: {tuple(result.shape)}")
    print(f"max |tndiagram - torch.nn.functional.conv2d|: {(result - expected).abs().max().item():.3g}")


if __name__ == "__main__":
    main()
