"""Train a small CNN on scikit-learn's 8×8 digits with tndiagram convolutions,
side by side with the same model built from torch.nn.Conv2d.

Both models start from the same weights and see the same batches (SGD,
float64). The tndiagram model's convolutions run compiled networks forwards
and their compiled VJP networks backwards, so equal loss curves show that the
derived gradients match torch's. Run it with

    python examples/train_digits.py [--steps 200]
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits

import tndiagram


class TorchNet(torch.nn.Module):
    """conv 1→8 3×3 padding 1, ReLU, conv 8→16 3×3 stride 2, ReLU, linear to 10 classes."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2)
        self.linear = torch.nn.Linear(16 * 3 * 3, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.conv1(images))
        hidden = torch.relu(self.conv2(hidden))
        return self.linear(hidden.flatten(1))


class DiagramNet(TorchNet):
    """The same model, with both convolutions computed by tndiagram."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        conv = tndiagram.functional.conv
        hidden = torch.relu(conv(images, self.conv1.weight, self.conv1.bias, padding=1))
        hidden = torch.relu(conv(hidden, self.conv2.weight, self.conv2.bias, stride=2))
        return self.linear(hidden.flatten(1))


def main(steps: int = 200, batch_size: int = 64, learning_rate: float = 0.1, seed: int = 0, report=print):
    """Train both models and return their loss curves (one loss per step)."""
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float64).unsqueeze(1) / 16
    labels = torch.tensor(digits.target)

    torch.manual_seed(seed)
    reference = TorchNet().double()
    model = DiagramNet().double()
    model.load_state_dict(reference.state_dict())
    optimizers = [torch.optim.SGD(m.parameters(), lr=learning_rate) for m in (model, reference)]

    generator = torch.Generator().manual_seed(seed)
    curves: tuple[list[float], list[float]] = ([], [])
    report(f"{'step':>5} {'tndiagram loss':>16} {'torch.nn loss':>16}")
    for step in range(steps):
        batch = torch.randint(len(labels), (batch_size,), generator=generator)
        for network, optimizer, curve in zip((model, reference), optimizers, curves):
            loss = torch.nn.functional.cross_entropy(network(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            curve.append(loss.item())
        if step % 25 == 0 or step == steps - 1:
            report(f"{step:>5} {curves[0][-1]:>16.10f} {curves[1][-1]:>16.10f}")

    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).double().mean().item()
    difference = abs(curves[0][-1] - curves[1][-1]) / abs(curves[1][-1])
    report(f"final relative difference of the losses: {difference:.2e}; training accuracy {accuracy:.3f}")
    return curves


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="number of SGD steps (default 200)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--learning-rate", type=float, default=0.1, help="SGD learning rate (default 0.1)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the tensors are so small that more threads"
        " mostly add synchronization)",
    )
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    main(arguments.steps, arguments.batch_size, arguments.learning_rate)
