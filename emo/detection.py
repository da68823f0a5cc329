"""EMO and EMOv2 backbones for torchvision's detection models (RetinaNet, Faster R-CNN, SSDLite).

The backbone is the raw stage outputs of an EMO or EMOv2 (before its final norm), at strides 4/8/16/32, exposed with
torchvision's ``layer1..layer4`` naming so that torchvision's own :class:`BackboneWithFPN`, frozen BatchNorm and
``trainable_layers`` conventions apply unchanged. The builders follow the paper's detectors (settings of the
official mmdetection configs): RetinaNet on strides 8/16/32 with P6/P7 from the stride-32 input, SSDLite on
strides 16/32 plus four depthwise extra levels at 320x320.
"""

from collections import OrderedDict
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from timm.layers import freeze_batch_norm_2d
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from .layers import explicit_attention
from .models import EMO
from .models.variants import get_variant
from .weights import create_with_weights

__all__ = [
    'emo_body',
    'prepare_body',
    'freeze_batch_norm',
    'fpn_backbone',
    'retinanet',
    'fasterrcnn',
    'ssdlite',
    'SSDLiteBackbone',
]

LAYER_NAMES = ('stem', 'layer1', 'layer2', 'layer3', 'layer4')
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _widths(model_name: str) -> Sequence[int]:
    return get_variant(model_name).widths


def _pretrained_model(model_name: str, pretrained_backbone: Union[bool, str], **model_kwargs) -> EMO:
    _widths(model_name)
    return create_with_weights(model_name, pretrained_backbone, **model_kwargs)


def emo_body(
    model_name: str = 'emo_2m', pretrained_backbone: Union[bool, str] = False, **model_kwargs
) -> nn.Sequential:
    """The EMO trunk as ``stem, layer1..layer4`` (strides 2, 4, 8, 16, 32), without final norm and classifier.

    ``pretrained_backbone``: False, True (the released ImageNet weights, see docs/weights.md) or a checkpoint path.
    ``model_kwargs`` go to ``timm.create_model`` (``window_size=10``: the window of the segmentation configs).
    """
    model = _pretrained_model(model_name, pretrained_backbone, **model_kwargs)
    layers = [model.stem, *model.stages]
    return nn.Sequential(OrderedDict(zip(LAYER_NAMES, layers)))


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm by a frozen one with the same statistics and eps (timm's ``freeze_batch_norm_2d``:
    ``FrozenBatchNorm2d``, and ``FrozenBatchNormAct2d`` for the depthwise convs' BatchNorm + SiLU)."""
    return freeze_batch_norm_2d(module)


def _freeze_layers(body: nn.Module, trainable_layers: int) -> None:
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f'trainable_layers must be in 0..5 (0: all frozen, 5: all trainable), got {trainable_layers}')
    layers_to_train = LAYER_NAMES[::-1][:trainable_layers]
    for name, parameter in body.named_parameters():
        if not name.startswith(layers_to_train):
            parameter.requires_grad_(False)


def prepare_body(
    model_name: str,
    pretrained_backbone: Union[bool, str],
    trainable_layers: Optional[int],
    frozen_bn: Optional[bool],
    **model_kwargs,
) -> nn.Sequential:
    """:func:`emo_body` with torchvision's backbone conventions: ``frozen_bn`` (default: when pretrained) and the
    top ``trainable_layers`` trainable (default 3 when pretrained, else all 5), as in ``resnet_fpn_backbone``."""
    body = emo_body(model_name, pretrained_backbone, **model_kwargs)
    is_trained = pretrained_backbone is not False and pretrained_backbone is not None
    if frozen_bn if frozen_bn is not None else is_trained:  # torchvision freezes BN under pretrained weights
        freeze_batch_norm(body)
    if trainable_layers is None:
        trainable_layers = 3 if is_trained else 5
    _freeze_layers(body, trainable_layers)
    return body


def fpn_backbone(
    model_name: str = 'emo_2m',
    pretrained_backbone: Union[bool, str] = False,
    trainable_layers: Optional[int] = None,
    returned_layers: Optional[Sequence[int]] = None,
    extra_blocks: Optional[ExtraFPNBlock] = None,
    out_channels: int = 256,
    frozen_bn: Optional[bool] = None,
    norm_layer: Optional[Callable[..., nn.Module]] = None,
) -> BackboneWithFPN:
    """An EMO or EMOv2 with a feature pyramid, as torchvision's ``resnet_fpn_backbone`` builds one for a ResNet.

    Args:
        model_name: a variant of either family, 'emo_1m' ... 'emo_6m', 'emo2_1m' ... 'emo2_20m', or a tag.
        pretrained_backbone: False, True (released ImageNet weights) or a checkpoint path.
        trainable_layers: trainable layers counted from the top (layer4, layer3, layer2, layer1, stem);
            default 3 with pretrained weights, else 5 (all).
        returned_layers: stages fed to the FPN, 1..4 (strides 4/8/16/32); default all four.
        extra_blocks: FPN extra levels; default a max-pooled level ('pool').
        out_channels: FPN width.
        frozen_bn: use FrozenBatchNorm2d in the backbone; default: when pretrained (as torchvision does).
        norm_layer: norm inside the FPN (torchvision's argument), default none.
    """
    returned_layers = list(returned_layers or [1, 2, 3, 4])
    if not returned_layers or min(returned_layers) < 1 or max(returned_layers) > 4:
        raise ValueError(f'returned_layers must be stages in 1..4 (strides 4/8/16/32), got {returned_layers}')
    widths = _widths(model_name)
    body = prepare_body(model_name, pretrained_backbone, trainable_layers, frozen_bn)
    return BackboneWithFPN(
        body,
        return_layers={f'layer{k}': str(i) for i, k in enumerate(returned_layers)},
        in_channels_list=[widths[k - 1] for k in returned_layers],
        out_channels=out_channels,
        extra_blocks=extra_blocks or LastLevelMaxPool(),
        norm_layer=norm_layer,
    )


def retinanet(
    model_name: str = 'emo_2m',
    num_classes: int = 91,
    pretrained_backbone: Union[bool, str] = False,
    trainable_backbone_layers: Optional[int] = None,
    **kwargs,
) -> RetinaNet:
    """torchvision's RetinaNet on an EMO: FPN over strides 8/16/32, P6/P7 computed from the stride-32 stage
    (mmdetection's ``add_extra_convs='on_input'``), five levels at strides 8..128. ``kwargs`` go to RetinaNet."""
    backbone = fpn_backbone(
        model_name, pretrained_backbone, trainable_backbone_layers, returned_layers=[2, 3, 4],
        extra_blocks=LastLevelP6P7(_widths(model_name)[-1], 256),
    )  # fmt: skip
    return RetinaNet(backbone, num_classes, **kwargs)


def fasterrcnn(
    model_name: str = 'emo_2m',
    num_classes: int = 91,
    pretrained_backbone: Union[bool, str] = False,
    trainable_backbone_layers: Optional[int] = None,
    **kwargs,
) -> FasterRCNN:
    """torchvision's Faster R-CNN on an EMO with an FPN over strides 4/8/16/32 plus a pooled level (as for
    ResNet-50-FPN). ``kwargs`` go to FasterRCNN (min_size, max_size, anchor generator, ...)."""
    backbone = fpn_backbone(model_name, pretrained_backbone, trainable_backbone_layers)
    return FasterRCNN(backbone, num_classes, **kwargs)


class _ExtraLevel(nn.Sequential):
    """1x1 conv to half width, stride-2 depthwise 3x3, 1x1 conv to ``out_chs``; BN + ReLU6 after each."""

    def __init__(self, in_chs: int, out_chs: int, norm_layer: Callable[..., nn.Module]):
        mid = out_chs // 2
        super().__init__(
            nn.Conv2d(in_chs, mid, 1, bias=False), norm_layer(mid), nn.ReLU6(inplace=True),
            nn.Conv2d(mid, mid, 3, stride=2, padding=1, groups=mid, bias=False), norm_layer(mid),
            nn.ReLU6(inplace=True),
            nn.Conv2d(mid, out_chs, 1, bias=False), norm_layer(out_chs), nn.ReLU6(inplace=True),
        )  # fmt: skip


class SSDLiteBackbone(nn.Module):
    """EMO stages 3 and 4 (strides 16/32) and four depthwise extra levels (strides 64..512), for torchvision's SSD."""

    def __init__(
        self,
        body: nn.Sequential,
        in_channels: Sequence[int],
        extra_channels: Sequence[int],
        norm_layer: Callable[..., nn.Module],
    ):
        super().__init__()
        self.body = body
        extras, prev = [], in_channels[-1]
        for chs in extra_channels:
            extras.append(_ExtraLevel(prev, chs, norm_layer))
            prev = chs
        self.extra = nn.ModuleList(extras)
        self.out_channels = [*in_channels, *extra_channels]

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.body.stem(x)
        x = self.body.layer1(x)
        x = self.body.layer2(x)
        c4 = self.body.layer3(x)
        c5 = self.body.layer4(c4)
        outputs: List[torch.Tensor] = [c4, c5]
        x = c5
        for level in self.extra:
            x = level(x)
            outputs.append(x)
        return OrderedDict((str(i), out) for i, out in enumerate(outputs))


def ssdlite(
    model_name: str = 'emo_2m',
    num_classes: int = 91,
    pretrained_backbone: Union[bool, str] = False,
    trainable_backbone_layers: Optional[int] = None,
    size: int = 320,
    extra_channels: Sequence[int] = (512, 256, 256, 128),
    **kwargs,
) -> SSD:
    """torchvision's SSD with an SSDLite head on an EMO, as in the paper: stages 3/4 (strides 16/32) plus four
    depthwise extra levels, 320x320, anchors of min size 48..304 px with aspect ratios 2 and 3 at every level.
    ``kwargs`` go to SSD (score_thresh, nms_thresh, detections_per_img, ...)."""
    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    body = prepare_body(model_name, pretrained_backbone, trainable_backbone_layers, frozen_bn=False)
    backbone = SSDLiteBackbone(body, _widths(model_name)[2:], extra_channels, norm_layer)
    # box scales (fractions of the image) of the paper's config: min sizes 48..304 px at 320, and 320 on top
    scales = [s / 320 for s in (48, 100, 150, 202, 253, 304, 320)]
    anchor_generator = DefaultBoxGenerator([[2, 3]] * 6, scales=scales)
    head = SSDLiteHead(backbone.out_channels, anchor_generator.num_anchors_per_location(), num_classes, norm_layer)
    defaults = dict(
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        score_thresh=0.02,
        nms_thresh=0.45,
        detections_per_img=200,
        topk_candidates=300,
    )
    return SSD(backbone, anchor_generator, (size, size), num_classes, head=head, **{**defaults, **kwargs})


class _BackboneAndHead(nn.Module):
    """The dense part of a one-stage detector (backbone + head on a fixed-size batch), for FLOP counting."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        features = list(self.detector.backbone(x).values())
        return list(self.detector.head(features).values())


def detector_gflops(detector: Union[RetinaNet, SSD], height: int, width: int) -> float:
    """fvcore GFLOPs (multiply-adds) of a RetinaNet's or SSD's backbone and head on one ``height x width`` image,
    what mmdetection's FLOP counts of the paper measure (no pre- or post-processing). Needs fvcore."""
    from fvcore.nn import FlopCountAnalysis

    with explicit_attention(_BackboneAndHead(detector).eval()) as model:
        counter = FlopCountAnalysis(model, torch.zeros(1, 3, height, width))
        counter.unsupported_ops_warnings(False)
        counter.uncalled_modules_warnings(False)
        return counter.total() / 1e9
