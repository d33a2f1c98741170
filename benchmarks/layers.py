"""The convolution layers that the benchmark times, taken from well-known networks.

Full mode uses each network's real input size and a batch size that people
train with. Quick mode shrinks the spatial size and the batch, so that every
layer runs in a fraction of a second on two CPU cores. Channel counts and
hyper-parameters stay the same in both modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = ["Layer", "LAYERS", "select_layers"]


def _per_dimension(value: int | Sequence[int], count: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * count
    if len(value) != count:
        raise ValueError(f"expected an integer or {count} integers, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class Layer:
    """One convolution layer: its hyper-parameters and its input size in both modes."""

    name: str
    source: str  # the network and the place in it, for the report
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    input_size: tuple[int, ...]  # spatial size in full mode
    batch_size: int  # batch size in full mode
    quick_input_size: tuple[int, ...]
    quick_batch_size: int
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1

    def __post_init__(self) -> None:
        count = len(self.kernel_size)
        # Empty tuples stand for the defaults stride 1, padding 0, dilation 1.
        object.__setattr__(self, "stride", _per_dimension(self.stride or 1, count))
        object.__setattr__(self, "padding", _per_dimension(self.padding or 0, count))
        object.__setattr__(self, "dilation", _per_dimension(self.dilation or 1, count))
        for name in ("input_size", "quick_input_size"):
            if len(getattr(self, name)) != count:
                raise ValueError(f"layer {self.name}: {name} needs {count} entries")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"layer {self.name}: channels are not divisible by groups={self.groups}")

    @property
    def spatial_dimensions(self) -> int:
        return len(self.kernel_size)

    @property
    def is_stride_one(self) -> bool:
        return all(s == 1 for s in self.stride)

    def batch(self, quick: bool) -> int:
        return self.quick_batch_size if quick else self.batch_size

    def spatial(self, quick: bool) -> tuple[int, ...]:
        return self.quick_input_size if quick else self.input_size

    def output_spatial(self, quick: bool) -> tuple[int, ...]:
        """Return the output's spatial size, by the formula of torch.nn.Conv2d."""
        return tuple(
            (size + 2 * pad - dil * (kernel - 1) - 1) // step + 1
            for size, kernel, step, pad, dil in zip(
                self.spatial(quick), self.kernel_size, self.stride, self.padding, self.dilation
            )
        )

    def describe(self, quick: bool) -> str:
        """Return a one-line summary such as '3→64, 7×7 s2 p3, input 32×3×224×224'."""
        parts = ["×".join(map(str, self.kernel_size))]
        if not self.is_stride_one:
            parts.append("s" + _compact(self.stride))
        if any(self.padding):
            parts.append("p" + _compact(self.padding))
        if any(d != 1 for d in self.dilation):
            parts.append("d" + _compact(self.dilation))
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        shape = "×".join(map(str, (self.batch(quick), self.in_channels, *self.spatial(quick))))
        return f"{self.in_channels}→{self.out_channels}, {' '.join(parts)}, input {shape}"


def _compact(values: tuple[int, ...]) -> str:
    """Write one number when all dimensions agree, else the comma-separated tuple."""
    return str(values[0]) if len(set(values)) == 1 else ",".join(map(str, values))


# Batch sizes: 32 is the default images per GPU of torchvision's ImageNet
# training script (references/classification/train.py). The dilated, 1-d and
# 3-d layers come from segmentation, speech and medical imaging models, which
# train with a few large samples per device: nnU-Net's Generic_UNet sets a
# default 3-d batch size of 2.
LAYERS: tuple[Layer, ...] = (
    Layer("resnet18_stem", "ResNet-18 conv1", 3, 64, (7, 7), (224, 224), 32, (32, 32), 2,
          stride=2, padding=3),
    Layer("resnet18_3x3", "ResNet-18 layer1 3×3", 64, 64, (3, 3), (56, 56), 32, (14, 14), 2,
          padding=1),
    Layer("resnet18_3x3_s2", "ResNet-18 layer3 first 3×3", 128, 256, (3, 3), (28, 28), 32, (8, 8), 2,
          stride=2, padding=1),
    Layer("resnet18_shortcut", "ResNet-18 layer3 1×1 downsample", 128, 256, (1, 1), (28, 28), 32, (8, 8), 2,
          stride=2),
    Layer("resnext50_grouped", "ResNeXt-50 32×4d layer1 grouped 3×3", 128, 128, (3, 3), (56, 56), 32, (14, 14), 2,
          padding=1, groups=32),
    Layer("mobilenetv2_depthwise", "MobileNetV2 block 2 depthwise 3×3", 144, 144, (3, 3), (56, 56), 32, (14, 14), 2,
          padding=1, groups=144),
    Layer("mobilenetv2_pointwise", "MobileNetV2 block 2 1×1 projection", 144, 24, (1, 1), (56, 56), 32, (14, 14), 2),
    Layer("convnext_patchify", "ConvNeXt-T stem 4×4 s4", 3, 96, (4, 4), (224, 224), 32, (32, 32), 2,
          stride=4),
    Layer("convnext_depthwise", "ConvNeXt-T stage 1 depthwise 7×7", 96, 96, (7, 7), (56, 56), 32, (14, 14), 2,
          padding=3, groups=96),
    Layer("inceptionv3_1x7", "InceptionV3 Mixed_6b 1×7", 128, 128, (1, 7), (17, 17), 32, (8, 8), 2,
          padding=(0, 3)),
    Layer("alexnet_conv1", "AlexNet conv1 11×11 s4", 3, 64, (11, 11), (224, 224), 32, (35, 35), 2,
          stride=4, padding=2),
    Layer("deeplab_dilated", "DeepLabv3 ResNet-50 layer3 3×3, dilation 2", 256, 256, (3, 3), (33, 33), 4, (9, 9), 2,
          padding=2, dilation=2),
    Layer("wav2vec2_conv1d", "wav2vec 2.0 feature encoder layer 2 (1 s of audio)", 512, 512, (3,), (3199,), 4,
          (64,), 2, stride=2),
    Layer("unet3d_conv3d", "3-d U-Net first 3×3×3 (one CT channel, 64³ patch)", 1, 32, (3, 3, 3),
          (64, 64, 64), 2, (16, 16, 16), 1, padding=1),
)


def select_layers(names: Sequence[str] | None) -> list[Layer]:
    """Return the layers with the given names in table order, or all of them for None."""
    if not names:
        return list(LAYERS)
    known = {layer.name: layer for layer in LAYERS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown layer(s) {', '.join(unknown)}; valid names: {', '.join(known)}")
    return [layer for layer in LAYERS if layer.name in names]
