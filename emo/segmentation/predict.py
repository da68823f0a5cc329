"""``emo predict --task segment``: the class mask of each image, written as a colour overlay PNG next to it."""

from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..files import atomic_path
from .data import eval_transform
from .models import SegmentationLogits

__all__ = ['OVERLAY_SUFFIX', 'overlay_path', 'palette', 'predict_masks', 'write_overlay']

OVERLAY_SUFFIX = '_segment.png'
OVERLAY_ALPHA = 0.5  # weight of the class colour over the image


def overlay_path(image_path: Path) -> Path:
    """Where the overlay of ``image_path`` goes: ``NAME_segment.png`` in the image's folder."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.stem + OVERLAY_SUFFIX)


def palette(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours, Pascal VOC's (the bits of the class index spread over R, G and B)."""
    colours = np.zeros((num_classes, 3), dtype=np.uint8)
    for index in range(num_classes):
        c, shift = index, 7
        while c:
            for channel in range(3):
                colours[index, channel] |= ((c >> channel) & 1) << shift
            c, shift = c >> 3, shift - 1
    return colours


@torch.inference_mode()
def predict_masks(model: nn.Module, images: Sequence[Image.Image], size: int) -> List[np.ndarray]:
    """For each RGB image, its (H, W) class indices at the image's own size: the shorter side resized to ``size``
    for the model, as in validation, and the classes there resized back (nearest)."""
    transform, logits_of = eval_transform(size), SegmentationLogits(model).eval()
    masks = []
    for image in images:
        pixels = tv_tensors.Image(v2.functional.pil_to_tensor(image))
        x, _ = transform(pixels, tv_tensors.Mask(torch.zeros(1, 1, dtype=torch.int64)))
        # classes at the model's input size (its logits upsampled there), then the mask resized to the image's:
        # logits at the size of a 12-megapixel photo would take C x 48 MB
        labels = logits_of(x[None]).argmax(1, keepdim=True).float()
        labels = F.interpolate(labels, size=(image.height, image.width), mode='nearest')
        masks.append(labels[0, 0].long().numpy())
    return masks


def write_overlay(image: Image.Image, mask: np.ndarray, num_classes: int, path: Path) -> None:
    """The image with each pixel's class colour blended over it, written atomically to ``path``."""
    colours = palette(num_classes)[mask]
    blended = (1 - OVERLAY_ALPHA) * np.asarray(image, dtype=np.float32) + OVERLAY_ALPHA * colours
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(blended.round().astype(np.uint8)).save(tmp, format='PNG')
