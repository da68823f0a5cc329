"""ImageNet top-k prediction for image files, with timm's preprocessing for the model."""

import os
from typing import List, Optional, Sequence, Tuple

import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform, resolve_data_config

from ..weights import create_with_weights, read_checkpoint

__all__ = ['load_classifier', 'open_rgb', 'predict_images']

DEFAULT_MODEL = 'emo_2m'


def load_classifier(model_name: Optional[str], weights: Optional[str] = None) -> torch.nn.Module:
    """A pretrained EMO in eval mode: from ``weights`` (any accepted checkpoint file) or the default source.

    ``model_name`` None: the architecture an ``emo train`` checkpoint records, else ``emo_2m``. The class names such
    a checkpoint records are kept on the model as ``class_names`` (what :func:`predict_images` prints).
    """
    arch, class_names = _recorded(weights)
    model = create_with_weights(model_name or arch or DEFAULT_MODEL, weights if weights is not None else True).eval()
    model.class_names = class_names
    return model


def _recorded(weights: Optional[str]) -> Tuple[Optional[str], Optional[List[str]]]:
    """The architecture and class names an ``emo train`` checkpoint records (None for other files)."""
    if weights is None or str(weights).endswith('.safetensors') or not os.path.isfile(weights):
        return None, None
    state = read_checkpoint(weights)
    if not isinstance(state, dict):
        return None, None
    arch = state.get('arch') if isinstance(state.get('arch'), str) else None
    names = state.get('class_names')
    return arch, ([str(c) for c in names] if isinstance(names, (list, tuple)) else None)


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
    """For each image, the ``top_k`` (label, probability) pairs: the class names of an ``emo train`` checkpoint
    (``model.class_names``), ImageNet descriptions for other 1000-class models, else ``class N``."""
    transform = create_transform(**resolve_data_config(model=model))
    batch = torch.stack([transform(open_rgb(p)) for p in paths])
    probs = model(batch).softmax(dim=-1)
    top_k = min(top_k, probs.shape[-1])
    values, indices = probs.topk(top_k, dim=-1)
    names = getattr(model, 'class_names', None)
    if names is not None and len(names) != probs.shape[-1]:
        names = None
    info = ImageNetInfo() if names is None and probs.shape[-1] == 1000 else None

    def label(i: int) -> str:
        return names[i] if names is not None else info.index_to_description(i) if info else f'class {i}'

    results = []
    for vals, idxs in zip(values.tolist(), indices.tolist()):
        results.append([(label(i), v) for v, i in zip(vals, idxs)])
    return results
