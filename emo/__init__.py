"""EMO backbones (ICCV 2023) for timm: ``import emo`` registers emo_1m, emo_2m, emo_5m and emo_6m."""

__version__ = '0.1.0'  # before the imports: emo.hub writes it into model cards

from .checkpoint import CheckpointError, load_into, read_checkpoint  # noqa: E402
from .hub import WeightsUnavailableError, convert_official, fetch_official  # noqa: E402
from .irmb import IRMB, GridAttention  # noqa: E402
from .model import EMO, checkpoint_filter_fn  # noqa: E402
from .variants import VARIANTS, EmoVariant  # noqa: E402

__all__ = [
    'EMO',
    'IRMB',
    'GridAttention',
    'VARIANTS',
    'EmoVariant',
    'CheckpointError',
    'WeightsUnavailableError',
    'checkpoint_filter_fn',
    'load_into',
    'read_checkpoint',
    'fetch_official',
    'convert_official',
    '__version__',
]
