"""ImageNet top-k prediction for image files, with timm's preprocessing for the model."""

import os
from typing import List, Optional, Sequence, Tuple

import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_data_config

from ..weights import create_with_weights

__all__ = ['load_classifier', 'open_rgb', 'predict_images']


def load_classifier(model_name: str, weights: Optional[str] = None) -> torch.nn.Module:
    """A pretrained EMO in eval mode: from ``weights`` (any accepted checkpoint file) or the default source."""
    return create_with_weights(model_name, weights if weights is not None else True).eval()


def open_rgb(path: str) -> Image.Image:
    """The image file at ``path``, decoded to RGB; one clear error for a missing or unreadable file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'image {path!r} does not exist')
    try:
        with Image.open(path) as img:
            return img.convert('RGB')
    except Exception as e:  # noqa: BLE001 - any decoder error, also where Ultralytics has patched Image.open to
        # try HEIF (then a file PIL cannot identify raises ModuleNotFoundError for pi_heif)
        raise ValueError(f'{path!r} is not a readable image ({type(e).__name__}: {e})') from e


@torch.inference_mode()
def predict_images(model: torch.nn.Module, paths: Sequence[str], top_k: int = 5) -> List[List[Tuple[str, float]]]:
    """For each image, the ``top_k`` (label, probability) pairs; ImageNet descriptions for 1000-class models."""
    transform = create_transform(**resolve_data_config(model=model))
    batch = torch.stack([transform(open_rgb(p)) for p in paths])
    probs = model(batch).softmax(dim=-1)
    top_k = min(top_k, probs.shape[-1])
    values, indices = probs.topk(top_k, dim=-1)
    info = ImageNetInfo() if probs.shape[-1] == 1000 else None
    results = []
    for vals, idxs in zip(values.tolist(), indices.tolist()):
        results.append([(info.index_to_description(i) if info else f'class {i}', v) for v, i in zip(vals, idxs)])
    return results
