"""What an ``emo segment train`` checkpoint holds about its model, and the model rebuilt from it."""

from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

import torch.nn as nn

from ..weights import CheckpointError, read_checkpoint
from .models import SEGMENTERS

__all__ = ['MODEL_KEYS', 'build_segmenter', 'load_segmenter', 'read_run_checkpoint']

# what a checkpoint must say to rebuild its model; emo segment train writes them all
MODEL_KEYS = ('arch', 'segmenter', 'num_classes', 'window_size', 'aux_loss', 'state_dict')


def build_segmenter(
    segmenter: str, arch: str, num_classes: int, window_size: int, aux_loss: bool, pretrained_backbone=False
) -> nn.Module:
    """The model of :data:`~emo.segmentation.models.SEGMENTERS` named ``segmenter`` on the variant ``arch``."""
    if segmenter not in SEGMENTERS:
        raise ValueError(f'unknown segmenter {segmenter!r}; choose one of {sorted(SEGMENTERS)}')
    kwargs: Dict[str, object] = dict(num_classes=num_classes, pretrained_backbone=pretrained_backbone)
    if segmenter != 'semantic_fpn':  # Semantic FPN has no auxiliary head
        kwargs['aux_loss'] = aux_loss
    return SEGMENTERS[segmenter](arch, window_size=window_size, **kwargs)


def read_run_checkpoint(path: Union[str, Path], keys: Sequence[str], role: str) -> dict:
    """The checkpoint at ``path``, which must hold ``keys``; ``role`` names it in the error (``--resume FILE``)."""
    state = read_checkpoint(path)
    missing = [key for key in keys if key not in state]
    if missing:
        raise CheckpointError(
            f'{role} is not a checkpoint of emo segment train (it has no {", ".join(missing)}): give the last.pth '
            'or best.pth of a run'
        )
    return state


def load_segmenter(path: Union[str, Path]) -> Tuple[nn.Module, dict]:
    """The model of an ``emo segment train`` checkpoint (``last.pth`` / ``best.pth``), in eval mode, and what else the
    checkpoint says of its run (crop size, ignore index, epoch, metrics, ...)."""
    state = read_run_checkpoint(path, MODEL_KEYS, str(path))
    model = build_segmenter(
        state['segmenter'], state['arch'], int(state['num_classes']), int(state['window_size']), bool(state['aux_loss'])
    )
    model.load_state_dict(state['state_dict'])
    info = {key: value for key, value in state.items() if key not in ('state_dict', 'optimizer', 'scheduler')}
    return model.eval(), info
