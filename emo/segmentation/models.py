"""EMO and EMOv2 backbones in torchvision's segmentation models: DeepLabv3, FCN and Semantic FPN.

The backbone is the raw stage outputs of an EMO or EMOv2 (before its final norm, :func:`emo.detection.emo_body`),
at output stride 32 (EMO has no dilation), read with torchvision's ``IntermediateLayerGetter``: stage 4 is
``'out'``, stage 3 ``'aux'``. Logits are upsampled to the input size, and models return torchvision's
``OrderedDict`` with ``'out'`` (and ``'aux'`` when built with ``aux_loss``).

The papers (settings of the official mmsegmentation configs, docs/segmentation.md) train every layer with live
BatchNorm, decode at 256 channels, add a 256-channel FCN head on stage 3 with loss weight 0.4, and run the
backbone with attention windows of 10 (EMOv2) or 16 (EMO-5M) at 512x512 crops; the builders default to those.
``head='torchvision'`` puts torchvision's own ``DeepLabHead`` / ``FCNHead`` on the same backbone instead.
"""

from collections import OrderedDict
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation import FCN as TorchvisionFCN
from torchvision.models.segmentation import DeepLabV3
from torchvision.models.segmentation._utils import _SimpleSegmentationModel
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead as TorchvisionFCNHead
from torchvision.ops import FeaturePyramidNetwork

from ..detection import prepare_body
from ..layers import explicit_attention
from ..models.variants import get_variant
from .heads import ASPPHead, FCNHead, FPNHead

__all__ = [
    'SEGMENTERS',
    'resolve_window_size',
    'HEADS',
    'PAPER_WINDOW_SIZE',
    'deeplabv3',
    'fcn',
    'semantic_fpn',
    'SemanticFPN',
    'SegmentationLogits',
    'segmentation_gflops',
]

HEADS = ('paper', 'torchvision')
# the attention window of the official segmentation configs (EMOv2: all of them; EMO: the 5M one), at 512x512 crops;
# other variants keep their registered window. It changes FLOPs, not parameters.
PAPER_WINDOW_SIZE = {'emo2_1m': 10, 'emo2_2m': 10, 'emo2_5m': 10, 'emo2_5m_512': 10, 'emo2_20m': 10, 'emo_5m': 16}
AUX_LOSS_WEIGHT = 0.4  # the papers' auxiliary FCN loss weight


def resolve_window_size(model_name: str, window_size: Optional[int] = None) -> int:
    """``window_size``, or by default the papers' segmentation window for ``model_name`` (else its registered one)."""
    variant = get_variant(model_name)
    if window_size is None:
        return PAPER_WINDOW_SIZE.get(variant.name, variant.window_size)
    if window_size < 1:
        raise ValueError(f'window_size must be at least 1, got {window_size}')
    return window_size


def _backbone(
    model_name: str,
    pretrained_backbone: Union[bool, str],
    window_size: Optional[int],
    trainable_layers: Optional[int],
    frozen_bn: bool,
    return_layers: Dict[str, str],
) -> IntermediateLayerGetter:
    body = prepare_body(
        model_name,
        pretrained_backbone,
        5 if trainable_layers is None else trainable_layers,
        frozen_bn,
        window_size=resolve_window_size(model_name, window_size),
    )
    return IntermediateLayerGetter(body, return_layers)


def _stage_backbone(
    model_name: str,
    head: str,
    aux_loss: bool,
    pretrained_backbone: Union[bool, str],
    window_size: Optional[int],
    trainable_layers: Optional[int],
    frozen_bn: bool,
) -> Tuple[Sequence[int], IntermediateLayerGetter]:
    """The stage widths and the backbone of DeepLabv3 and FCN: stage 4 as 'out', with ``aux_loss`` stage 3 as 'aux'."""
    if head not in HEADS:
        raise ValueError(f'head must be one of {HEADS}, got {head!r}')
    layers = {'layer4': 'out', **({'layer3': 'aux'} if aux_loss else {})}
    backbone = _backbone(model_name, pretrained_backbone, window_size, trainable_layers, frozen_bn, layers)
    return get_variant(model_name).widths, backbone


def deeplabv3(
    model_name: str = 'emo2_1m',
    num_classes: int = 21,
    pretrained_backbone: Union[bool, str] = False,
    aux_loss: bool = True,
    head: str = 'paper',
    window_size: Optional[int] = None,
    trainable_backbone_layers: Optional[int] = None,
    frozen_bn: bool = False,
) -> DeepLabV3:
    """torchvision's DeepLabV3 on an EMO or EMOv2: the ASPP head on stage 4, an FCN auxiliary head on stage 3.

    Args:
        model_name: 'emo_1m' ... 'emo_6m', 'emo2_1m' ... 'emo2_20m', or a pretrained tag.
        num_classes: classes of the segmentation (ADE20K 150, Pascal VOC 21).
        pretrained_backbone: False, True (the released ImageNet weights, docs/weights.md) or a checkpoint path.
        aux_loss: add the auxiliary head (output ``'aux'``; training only: drop it with ``model.aux_classifier =
            None`` for inference and export).
        head: 'paper' (mmsegmentation's ASPPHead and FCNHead at 256 channels, the papers' sizes) or
            'torchvision' (torchvision's ``DeepLabHead`` and ``FCNHead``).
        window_size: attention window of the backbone; default that of the papers' configs (10 for EMOv2).
        trainable_backbone_layers: trainable backbone layers counted from the top (layer4 ... stem), default all 5.
        frozen_bn: use FrozenBatchNorm2d in the backbone (the papers train BatchNorm).
    """
    widths, backbone = _stage_backbone(
        model_name, head, aux_loss, pretrained_backbone, window_size, trainable_backbone_layers, frozen_bn
    )
    if head == 'paper':
        classifier, aux = ASPPHead(widths[3], num_classes), FCNHead(widths[2], num_classes)
    else:
        classifier, aux = DeepLabHead(widths[3], num_classes), TorchvisionFCNHead(widths[2], num_classes)
    return DeepLabV3(backbone, classifier, aux if aux_loss else None)


def fcn(
    model_name: str = 'emo2_1m',
    num_classes: int = 21,
    pretrained_backbone: Union[bool, str] = False,
    aux_loss: bool = True,
    head: str = 'paper',
    window_size: Optional[int] = None,
    trainable_backbone_layers: Optional[int] = None,
    frozen_bn: bool = False,
) -> TorchvisionFCN:
    """torchvision's FCN on an EMO or EMOv2: an FCN head on stage 4 (one 3x3 conv, 256 channels with
    ``head='paper'``, ``in_channels // 4`` with torchvision's), the same auxiliary head as :func:`deeplabv3`."""
    widths, backbone = _stage_backbone(
        model_name, head, aux_loss, pretrained_backbone, window_size, trainable_backbone_layers, frozen_bn
    )
    head_class = FCNHead if head == 'paper' else TorchvisionFCNHead
    classifier, aux = head_class(widths[3], num_classes), head_class(widths[2], num_classes)
    return TorchvisionFCN(backbone, classifier, aux if aux_loss else None)


class SemanticFPN(nn.Module):
    """Semantic FPN (Kirillov et al. 2019): an FPN over the four stages (strides 4..32) and :class:`FPNHead`.

    The neck is torchvision's ``FeaturePyramidNetwork`` (1x1 lateral and 3x3 output convs with bias, nearest
    top-down upsampling), which is mmsegmentation's ``FPN`` without extra levels. The output follows torchvision's
    segmentation models: ``OrderedDict(out=logits)`` at the input size.
    """

    def __init__(self, backbone: nn.Module, fpn: FeaturePyramidNetwork, head: FPNHead):
        super().__init__()
        self.backbone = backbone
        self.fpn = fpn
        self.head = head

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at stride 4."""
        return self.head(list(self.fpn(self.backbone(x)).values()))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        logits = F.interpolate(self.decode(x), size=x.shape[-2:], mode='bilinear', align_corners=False)
        return OrderedDict(out=logits)


def semantic_fpn(
    model_name: str = 'emo2_1m',
    num_classes: int = 21,
    pretrained_backbone: Union[bool, str] = False,
    fpn_channels: int = 256,
    head_channels: int = 128,
    window_size: Optional[int] = None,
    trainable_backbone_layers: Optional[int] = None,
    frozen_bn: bool = False,
) -> SemanticFPN:
    """Semantic FPN on an EMO or EMOv2 with the papers' widths (FPN 256, head 128, no auxiliary head)."""
    widths = get_variant(model_name).widths
    layers = {f'layer{k}': str(k - 1) for k in range(1, 5)}
    backbone = _backbone(model_name, pretrained_backbone, window_size, trainable_backbone_layers, frozen_bn, layers)
    fpn = FeaturePyramidNetwork(list(widths), fpn_channels)
    return SemanticFPN(backbone, fpn, FPNHead(fpn_channels, num_classes, channels=head_channels))


class SegmentationLogits(nn.Module):
    """A segmentation model as a module from images to its ``'out'`` logits, for export and FLOP counting; the
    auxiliary head, a training aid, is not run. Shares every weight with the model.

    ``upsample=False`` stops at the head's own resolution (stride 32 for DeepLabv3 and FCN, 4 for Semantic FPN),
    before the bilinear resize to the input size.
    """

    def __init__(self, model: nn.Module, upsample: bool = True):
        super().__init__()
        self.model = model
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self.model
        if isinstance(model, SemanticFPN):
            logits = model.decode(x)
        elif isinstance(model, _SimpleSegmentationModel):
            # torchvision's forward without the auxiliary branch, which it runs whenever aux_classifier is set
            logits = model.classifier(model.backbone(x)['out'])
        else:
            return model(x)['out']
        if not self.upsample:
            return logits
        return F.interpolate(logits, size=x.shape[-2:], mode='bilinear', align_corners=False)


def segmentation_gflops(model: nn.Module, height: int = 512, width: int = 512) -> float:
    """fvcore GFLOPs (multiply-adds) of a segmentation model on one ``height x width`` image up to its head's logits:
    what the papers' mmsegmentation FLOP counts measure (their model returns the logits before the resize to the
    input size, and the auxiliary head is dropped). Needs fvcore."""
    from fvcore.nn import FlopCountAnalysis

    with explicit_attention(SegmentationLogits(model, upsample=False).eval()) as counted:
        counter = FlopCountAnalysis(counted, torch.zeros(1, 3, height, width))
        counter.unsupported_ops_warnings(False)
        counter.uncalled_modules_warnings(False)
        return counter.total() / 1e9


# the builders by the name emo segment train takes (--segmenter) and its checkpoints record
SEGMENTERS: Dict[str, Callable[..., nn.Module]] = {'deeplabv3': deeplabv3, 'fcn': fcn, 'semantic_fpn': semantic_fpn}
