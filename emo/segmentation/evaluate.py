"""Evaluate a segmentation model on a loader of (image, mask) batches: whole-image inference, metrics at mask size."""

from contextlib import nullcontext
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..training.data import SkippedImages
from .metrics import SegmentationMetrics
from .models import SegmentationLogits

__all__ = ['evaluate']


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    num_classes: int,
    ignore_index: int = 255,
    autocast: Callable = nullcontext,
    skipped: Optional[SkippedImages] = None,
    progress: bool = False,
) -> Dict[str, object]:
    """mIoU, aAcc, mAcc, per-class IoU (:class:`SegmentationMetrics`), and ``images``: how many were evaluated.

    Logits are upsampled from the model's input to the mask's size (the papers' ``mode='whole'`` test); unreadable
    samples are left out of every count and added to ``skipped``.
    """
    logits_of = SegmentationLogits(model).eval()
    metrics = SegmentationMetrics(num_classes, ignore_index, device)
    images_seen = 0
    for batch in tqdm(loader, desc='validate', disable=not progress, leave=False, dynamic_ncols=True):
        if skipped is not None:
            skipped.add(batch.skipped)
        if batch.images is None:
            continue
        images, masks = batch.images.to(device), batch.targets.to(device)
        with autocast():
            logits = logits_of(images)
        logits = F.interpolate(logits.float(), size=masks.shape[-2:], mode='bilinear', align_corners=False)
        metrics.update(logits.argmax(1), masks)
        images_seen += images.shape[0]
    if images_seen == 0:
        raise ValueError('no validation image could be read: there is nothing to report')
    return {**metrics.compute(), 'images': images_seen}
