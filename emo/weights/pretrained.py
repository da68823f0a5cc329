"""What ``pretrained=True`` loads, and one clear error when it cannot: the bridge between timm's loader and emo's.

timm's own routes stay in charge of ``state_dict``, ``file``, ``hf-hub:``, ``local-dir:`` and ``hf_hub_id``. The
release origin (the default) goes through :func:`emo.weights.fetch_official` instead of timm's plain URL download,
to verify the blob id and cache converted weights; ``EMO_HUB_ORG`` switches the default to the Hugging Face Hub.
"""

import contextlib
import os
from typing import Iterator, Union

import torch.nn as nn
from huggingface_hub.errors import RepositoryNotFoundError
from safetensors import SafetensorError
from timm.models import resolve_pretrained_cfg

from .checkpoint import read_checkpoint, unwrap
from .download import fetch_official
from .errors import WeightsUnavailableError, hub_errors, hub_unavailable, unreadable_weights
from .manifest import HUB_WEIGHTS_FILE, hub_org, released_weights

__all__ = ['prepare_pretrained', 'load_errors_explained', 'create_with_weights']


def _pretrained_cfg(variant: str, kwargs: dict):
    return resolve_pretrained_cfg(
        variant,
        pretrained_cfg=kwargs.get('pretrained_cfg'),
        pretrained_cfg_overlay=kwargs.get('pretrained_cfg_overlay'),
    )


def _from_hub(cfg) -> bool:
    # timm's order (timm.models._builder): an hf-hub: name, else a state dict, a file, then an hf_hub_id
    return cfg.source == 'hf-hub' or (
        cfg.source != 'local-dir' and not cfg.state_dict and not cfg.file and bool(cfg.hf_hub_id)
    )


def prepare_pretrained(variant: str, kwargs: dict) -> None:
    """Prepare ``kwargs`` of a ``pretrained=True`` build for timm's loader: check a local file, or fetch the
    released weights and point ``pretrained_cfg_overlay`` at the cached file."""
    cfg = _pretrained_cfg(variant, kwargs)
    overlay = dict(kwargs.get('pretrained_cfg_overlay') or {})
    if cfg.source in ('hf-hub', 'local-dir') or cfg.state_dict:
        return
    if cfg.file:
        # fail early and clearly on a missing, truncated, unsafe or foreign file (a list, a dict of non-tensors), before
        # timm's loader meets it
        unwrap(read_checkpoint(cfg.file))
        return
    name = f'{cfg.architecture}.{cfg.tag}'
    if not cfg.hf_hub_id and name not in released_weights():
        raise WeightsUnavailableError(
            f'{cfg.architecture} has no released ImageNet weights (the official release has none): build it with '
            'pretrained=False and train it, or load a checkpoint of yours (pretrained_cfg_overlay=dict(file=...) in '
            'Python, --weights FILE in the emo commands)'
        )
    if not cfg.hf_hub_id and hub_org():
        overlay['hf_hub_id'] = f'{hub_org()}/{name}'
        # the file emo push uploads; named, timm asks for it alone instead of also trying pytorch_model.bin, which
        # offline doubled the time spent in huggingface_hub's retries before the error
        overlay.setdefault('hf_hub_filename', HUB_WEIGHTS_FILE)
    elif not cfg.hf_hub_id and cfg.url:
        default_url = released_weights()[name].url
        path = fetch_official(name, url=None if cfg.url == default_url else cfg.url, cache_dir=kwargs.get('cache_dir'))
        overlay['file'] = str(path)
    kwargs['pretrained_cfg_overlay'] = overlay


@contextlib.contextmanager
def load_errors_explained(variant: str, pretrained: bool, kwargs: dict) -> Iterator[None]:
    """Turn what huggingface_hub and safetensors raise while timm loads weights into one emo error each."""
    try:
        yield
    except RepositoryNotFoundError as e:
        hub_id = (kwargs.get('pretrained_cfg_overlay') or {}).get('hf_hub_id', 'the repository')
        raise WeightsUnavailableError(
            f'Hugging Face Hub repository {hub_id} was not found (or is private): check the name, EMO_HUB_ORG, '
            'and your login; unset EMO_HUB_ORG to download from the release origin'
        ) from e
    except SafetensorError as e:  # timm reads model.safetensors itself (local-dir:, the Hub) and names no file
        raise unreadable_weights(_pretrained_cfg(variant, kwargs), e) from e
    except hub_errors() as e:
        cfg = _pretrained_cfg(variant, kwargs)
        if not pretrained or not _from_hub(cfg):
            raise
        raise hub_unavailable(cfg.hf_hub_id, variant, e) from e


def create_with_weights(model_name: str, weights: Union[bool, str, os.PathLike] = False, **kwargs) -> nn.Module:
    """``timm.create_model`` for an EMO whose weights are False (random), True (the released weights, see
    docs/weights.md) or the path of a checkpoint file in any layout emo loads; ``kwargs`` go to timm."""
    import timm

    if isinstance(weights, (str, os.PathLike)):
        overlay = dict(kwargs.pop('pretrained_cfg_overlay', None) or {}, file=os.fspath(weights))
        if not os.fspath(weights).endswith('.safetensors'):
            from .checkpoint import check_classifier_checkpoint, read_checkpoint

            state = read_checkpoint(os.fspath(weights))
            check_classifier_checkpoint(state, os.fspath(weights))
            # a checkpoint of `emo train` names its classes: its head is built that wide (timm would otherwise drop
            # a head whose width differs from the released 1000 classes, or fail on it)
            if 'num_classes' not in kwargs and isinstance(state, dict) and state.get('class_names'):
                kwargs['num_classes'] = overlay['num_classes'] = len(state['class_names'])
        return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    return timm.create_model(model_name, pretrained=bool(weights), **kwargs)
