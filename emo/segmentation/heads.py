"""Segmentation heads with the layouts and widths of the papers' mmsegmentation configs.

The papers' parameter counts come from mmsegmentation's heads at 256 channels, not torchvision's: its
``DeepLabHead`` projects the ASPP branches with a 1x1 conv and adds a 3x3 conv (2.03 M parameters fewer at 256
channels), and its ``FCNHead`` is ``in_channels // 4`` wide. The heads here are written with torchvision's
``Conv2dNormActivation`` (conv without bias, norm, ReLU) and take the norm layer at construction.
"""

from typing import Callable, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import Conv2dNormActivation

__all__ = ['ASPPHead', 'FCNHead', 'FPNHead']

NormLayer = Callable[[int], nn.Module]


def _classifier(channels: int, num_classes: int, dropout: float) -> List[nn.Module]:
    # mmseg's ``cls_seg``: dropout, then a 1x1 conv with bias
    return [nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1)]


class ASPPHead(nn.Module):
    """DeepLabv3's atrous spatial pyramid pooling head, laid out as mmsegmentation's ``ASPPHead``.

    Branches: the image pooled to 1x1 (1x1 conv, upsampled back), a 1x1 conv, and one dilated 3x3 conv per rate in
    ``atrous_rates``; their concatenation goes through a 3x3 bottleneck conv, dropout and the 1x1 classifier.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        atrous_rates: Sequence[int] = (12, 24, 36),
        dropout: float = 0.1,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ):
        super().__init__()
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), Conv2dNormActivation(in_channels, channels, 1, norm_layer=norm_layer)
        )
        self.branches = nn.ModuleList(
            [Conv2dNormActivation(in_channels, channels, 1, norm_layer=norm_layer)]
            + [
                Conv2dNormActivation(in_channels, channels, 3, dilation=rate, norm_layer=norm_layer)
                for rate in atrous_rates
            ]
        )
        self.bottleneck = Conv2dNormActivation((len(atrous_rates) + 2) * channels, channels, 3, norm_layer=norm_layer)
        self.classifier = nn.Sequential(*_classifier(channels, num_classes, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.image_pool(x), size=x.shape[-2:], mode='bilinear', align_corners=False)
        x = torch.cat([pooled] + [branch(x) for branch in self.branches], dim=1)
        return self.classifier(self.bottleneck(x))


class FCNHead(nn.Sequential):
    """``num_convs`` 3x3 convs ``channels`` wide, dropout and a 1x1 classifier: mmsegmentation's ``FCNHead``
    (without ``concat_input``), the papers' auxiliary head on stage 3 at 256 channels."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        num_convs: int = 1,
        dropout: float = 0.1,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ):
        convs = [
            Conv2dNormActivation(in_channels if i == 0 else channels, channels, 3, norm_layer=norm_layer)
            for i in range(num_convs)
        ]
        super().__init__(*convs, *_classifier(channels, num_classes, dropout))


class FPNHead(nn.Module):
    """Semantic FPN's head (Kirillov et al. 2019; mmsegmentation's ``FPNHead``) over FPN levels at strides 4..32.

    Each level goes through 3x3 convs ``channels`` wide, one per halving of its stride down to 4 (at least one),
    each followed by a 2x bilinear upsampling; the levels are summed at stride 4 and classified.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feature_strides: Sequence[int] = (4, 8, 16, 32),
        channels: int = 128,
        dropout: float = 0.1,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ):
        super().__init__()
        base = feature_strides[0]
        self.scale_heads = nn.ModuleList()
        for stride in feature_strides:
            layers: List[nn.Module] = []
            steps = max(1, (stride // base).bit_length() - 1)
            for k in range(steps):
                layers.append(
                    Conv2dNormActivation(in_channels if k == 0 else channels, channels, 3, norm_layer=norm_layer)
                )
                if stride != base:
                    layers.append(nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self.classifier = nn.Sequential(*_classifier(channels, num_classes, dropout))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        out = self.scale_heads[0](features[0])
        for head, x in zip(self.scale_heads[1:], features[1:]):
            # the upsampled level can be a pixel larger or smaller when the input side is not a multiple of 32
            out = out + F.interpolate(head(x), size=out.shape[-2:], mode='bilinear', align_corners=False)
        return self.classifier(out)
