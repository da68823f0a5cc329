"""Evaluation shared by training and ``emo validate``, so both report the same numbers for the same weights."""

from contextlib import nullcontext
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from timm.utils import accuracy

from .data import ReadableBatch, SkippedImages

__all__ = ['evaluate']


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader,
    device: torch.device,
    num_classes: int,
    autocast: Callable = nullcontext,
    skipped: Optional[SkippedImages] = None,
) -> Dict:
    """Top-1/top-5 accuracy (%), mean cross-entropy, and the confusion matrix (rows: true class) over ``loader``.

    ``loader`` yields ``(images, targets)`` or :class:`~emo.training.data.ReadableBatch`; the unreadable images of the
    latter are left out of every number (``count`` is the images really evaluated) and added to ``skipped``.
    """
    was_training = model.training
    model.eval()
    loss_sum, top1_sum, top5_sum, count = 0.0, 0.0, 0.0, 0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for batch in loader:
        if isinstance(batch, ReadableBatch):
            if skipped is not None:
                skipped.add(batch.skipped)
            if batch.images is None:
                continue
        images, targets = batch[0].to(device), batch[1].to(device)
        with autocast():
            logits = model(images)
        logits = logits.float()
        n = images.shape[0]
        top1, top5 = accuracy(logits, targets, topk=(1, min(5, num_classes)))
        loss_sum += F.cross_entropy(logits, targets, reduction='sum').item()
        top1_sum += top1.item() * n
        top5_sum += top5.item() * n
        count += n
        pairs = targets.cpu() * num_classes + logits.argmax(1).cpu()
        confusion += torch.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)
    model.train(was_training)
    if count == 0:
        raise ValueError('no image of the evaluation set could be read: there is nothing to report')
    per_class_count = confusion.sum(1).tolist()
    # a class with no image evaluated has no accuracy (None), not 0%
    per_class = [float(c) / n * 100 if n else None for c, n in zip(confusion.diag().tolist(), per_class_count)]
    return {
        'loss': loss_sum / count,
        'top1': top1_sum / count,
        'top5': top5_sum / count,
        'count': count,
        'confusion': confusion,
        'per_class_top1': per_class,
        'per_class_count': per_class_count,
    }
