"""Evaluation shared by training and ``emo validate``, so both report the same numbers for the same weights."""

from contextlib import nullcontext
from typing import Callable, Dict

import torch
import torch.nn.functional as F
from timm.utils import accuracy

__all__ = ['evaluate']


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, loader, device: torch.device, num_classes: int, autocast: Callable = nullcontext
) -> Dict:
    """Top-1/top-5 accuracy (%), mean cross-entropy, and the confusion matrix (rows: true class) over ``loader``."""
    was_training = model.training
    model.eval()
    loss_sum, top1_sum, top5_sum, count = 0.0, 0.0, 0.0, 0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for images, targets in loader:
        images, targets = images.to(device), targets.to(device)
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
    per_class = confusion.diag().float() / confusion.sum(1).clamp(min=1).float() * 100
    return {
        'loss': loss_sum / count,
        'top1': top1_sum / count,
        'top5': top5_sum / count,
        'count': count,
        'confusion': confusion,
        'per_class_top1': per_class.tolist(),
        'per_class_count': confusion.sum(1).tolist(),
    }
