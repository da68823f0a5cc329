"""The portable reference data and its weight rule: EMO's in tests/data (copied from shared/reference-portable),
EMOv2's in tests/data/emo2 (from shared/reference-v2-portable); both use the same rule and inputs."""

import json
import math
import os
import zlib
from pathlib import Path
from typing import Dict, Optional

import torch

DATA = Path(__file__).parent / 'data'
VARIANT_NAMES = ('emo_1m', 'emo_2m', 'emo_5m', 'emo_6m')
V2_VARIANT_NAMES = ('emo2_1m', 'emo2_2m', 'emo2_5m', 'emo2_5m_512', 'emo2_20m')
INPUT_KEYS = ('2x3x224x224', '1x3x256x192')
INPUT_KEYS_512 = ('1x3x512x512',)  # emo2_5m_512 only


def data_dir(variant: str) -> Path:
    return DATA / 'emo2' if variant.startswith('emo2_') else DATA


def input_keys(variant: str) -> tuple:
    return INPUT_KEYS_512 if variant.endswith('_512') else INPUT_KEYS


def official_state_dict(variant: str) -> Dict[str, torch.Tensor]:
    """Regenerate, bit for bit, the official-layout weights of tests/data/README.md for ``variant``."""
    keys = json.loads((data_dir(variant) / f'{variant}_official_keys.json').read_text())
    state_dict = {}
    for key, shape, dtype in keys:
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        if key.endswith('num_batches_tracked'):
            value = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith('running_var'):
            value = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith('running_mean'):
            value = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1 and key.endswith('weight'):
            value = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) == 1 and key.endswith('bias'):
            value = 0.1 * torch.randn(shape, generator=g)
        else:
            value = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        assert str(value.dtype) == f'torch.{dtype}', (key, value.dtype, dtype)
        state_dict[key] = value
    return state_dict


def reference_inputs() -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    a = torch.randn(2, 3, 224, 224, generator=g)
    b = torch.randn(1, 3, 256, 192, generator=g)
    c = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(512))
    return {'2x3x224x224': a, '1x3x256x192': b, '1x3x512x512': c}


def expected(variant: str) -> Dict[str, torch.Tensor]:
    return torch.load(data_dir(variant) / f'{variant}_expected.pt', weights_only=True)


def full_reference_dir() -> Optional[Path]:
    """The larger shared/reference set, when this checkout has one beside it (or EMO_REFERENCE_DIR says where)."""
    env = os.environ.get('EMO_REFERENCE_DIR')
    candidates = [Path(env)] if env else []
    root = Path(__file__).resolve().parents[1]
    candidates += [root.parent / 'shared' / 'reference', root / 'shared' / 'reference']
    for path in candidates:
        if (path / 'emo_1m_official_state_dict.pth').is_file():
            return path
    return None
