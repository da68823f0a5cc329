"""EMO backbones (ICCV 2023) for timm: ``import emo`` registers emo_1m, emo_2m, emo_5m and emo_6m."""

from .checkpoint import CheckpointError, load_into, read_checkpoint
from .irmb import IRMB, GridAttention
from .model import EMO, checkpoint_filter_fn
from .variants import VARIANTS, EmoVariant

__version__ = '0.1.0'

__all__ = [
    'EMO',
    'IRMB',
    'GridAttention',
    'VARIANTS',
    'EmoVariant',
    'CheckpointError',
    'checkpoint_filter_fn',
    'load_into',
    'read_checkpoint',
    '__version__',
]
