"""VGG with BatchNorm for 32x32 CIFAR-10 images; returns logits.

The course notebook calls its network "VGG16" but its configuration has 8 conv layers (VGG
config A, i.e. VGG11). We keep it as `vgg11` to reproduce the course's figure and add the real
13-conv `vgg16` (config D).
"""

from __future__ import annotations

import torch
import torch.nn as nn

VGG11_CFG: list[int | str] = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
VGG16_CFG: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
]
VGG11_PARAMS = 9_231_114
VGG16_PARAMS = 14_728_266


class VGG(nn.Module):
    def __init__(self, cfg: list[int | str], num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(v, int)
                layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))


def vgg11_bn() -> VGG:
    return VGG(VGG11_CFG)


def vgg16_bn() -> VGG:
    return VGG(VGG16_CFG)
