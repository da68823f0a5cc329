"""EMO (ICCV 2023) and EMOv2 (TPAMI 2025) backbones for timm: ``import emo`` registers emo_1m, emo_2m, emo_5m,
emo_6m and emo2_1m, emo2_2m, emo2_5m, emo2_5m_512, emo2_20m.

The package, by concern (docs/design.md explains the layout): :mod:`emo.layers` (layers the model families share),
:mod:`emo.models` (one file per family, registered with timm), :mod:`emo.weights` (checkpoints, the manifest,
downloads, Hub folders), :mod:`emo.training`, :mod:`emo.deploy`, :mod:`emo.benchmark`, :mod:`emo.cli`, and the
dense-prediction integrations :mod:`emo.detection` and :mod:`emo.ultralytics`.
"""

__version__ = '0.1.0'  # before the imports: emo.weights writes it into model cards

from . import legacy  # noqa: E402
from .layers import GridAttention, HybridWindowAttention  # noqa: E402
from .models import EMO, EMO2, IRMB, VARIANTS, EmoVariant, checkpoint_filter_fn  # noqa: E402
from .weights import (  # noqa: E402
    CheckpointError,
    WeightsUnavailableError,
    convert_official,
    fetch_official,
    load_into,
    read_checkpoint,
)

legacy.install()

__all__ = [
    'EMO',
    'EMO2',
    'IRMB',
    'GridAttention',
    'HybridWindowAttention',
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
