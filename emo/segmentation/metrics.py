"""Segmentation metrics from one confusion matrix (torchmetrics' ``MulticlassConfusionMatrix``): mIoU, per-class IoU,
pixel accuracy (mmsegmentation's aAcc) and mean class accuracy (mAcc), computed the way mmsegmentation's IoUMetric
computes them.

A class that is neither in the targets nor in the predictions has no IoU (NaN, written as empty) and is left out
of mIoU; one absent from the targets has no accuracy and is left out of mAcc. torchmetrics' own ``JaccardIndex``
and ``Accuracy(average='macro')`` score such classes 0 instead, which would report numbers for pixels that were
not there.
"""

import csv
import io
import math
from pathlib import Path
from typing import Dict, List, Union

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from ..files import atomic_write_text

__all__ = ['SegmentationMetrics', 'write_per_class_iou']


class SegmentationMetrics:
    """Accumulates (N, H, W) predicted and target labels; pixels at ``ignore_index`` in the target are not counted."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: Union[str, torch.device] = 'cpu'):
        self.num_classes = num_classes
        # one process evaluates (emo segment train/validate): nothing to gather from the others
        self.confusion = MulticlassConfusionMatrix(
            num_classes, ignore_index=ignore_index, validate_args=False, sync_on_compute=False
        ).to(device)

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        self.confusion.update(preds, targets)

    @property
    def pixels(self) -> int:
        """Target pixels counted so far (ignored ones left out)."""
        return int(self.confusion.confmat.sum())

    def compute(self) -> Dict[str, object]:
        """``mIoU``, ``aAcc``, ``mAcc`` (percent) and ``per_class_iou`` (percent, NaN for a class without pixels)."""
        confmat = self.confusion.confmat.double().cpu()  # rows: target class, columns: predicted class
        if confmat.sum() == 0:
            raise ValueError('no labelled pixel was evaluated: every target pixel was the ignore index, or no image')
        hits = confmat.diag()
        target_pixels, predicted_pixels = confmat.sum(1), confmat.sum(0)
        union = target_pixels + predicted_pixels - hits
        iou = torch.where(union > 0, hits / union, torch.nan) * 100
        accuracy = torch.where(target_pixels > 0, hits / target_pixels, torch.nan) * 100
        per_class: List[float] = iou.tolist()
        return {
            'mIoU': float(iou.nanmean()),
            'aAcc': float(hits.sum() / confmat.sum() * 100),
            'mAcc': float(accuracy.nanmean()),
            'per_class_iou': per_class,
            'classes_present': sum(not math.isnan(v) for v in per_class),
        }


def write_per_class_iou(path: Path, per_class_iou: List[float]) -> None:
    """``class,iou`` rows (percent; empty for a class with no pixel in targets or predictions), written atomically."""
    text = io.StringIO(newline='')
    writer = csv.writer(text)
    writer.writerow(['class', 'iou'])
    writer.writerows([i, '' if math.isnan(v) else round(v, 4)] for i, v in enumerate(per_class_iou))
    atomic_write_text(path, text.getvalue())
