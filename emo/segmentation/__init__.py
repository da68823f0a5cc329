"""EMO and EMOv2 backbones in torchvision's segmentation models (DeepLabv3, FCN) and a Semantic FPN, with
``emo segment train / validate / export`` and ``emo predict --task segment``: docs/segmentation.md."""

from .heads import ASPPHead, FCNHead, FPNHead
from .metrics import SegmentationMetrics
from .models import (
    HEADS,
    PAPER_WINDOW_SIZE,
    SEGMENTERS,
    SegmentationLogits,
    SemanticFPN,
    deeplabv3,
    fcn,
    segmentation_gflops,
    semantic_fpn,
)

__all__ = [
    'ASPPHead',
    'FCNHead',
    'FPNHead',
    'HEADS',
    'PAPER_WINDOW_SIZE',
    'SEGMENTERS',
    'SegmentationLogits',
    'SegmentationMetrics',
    'SemanticFPN',
    'deeplabv3',
    'fcn',
    'segmentation_gflops',
    'semantic_fpn',
]
