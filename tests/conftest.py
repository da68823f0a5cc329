import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
# huggingface_hub reads this at import: no telemetry calls from the tests
os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')

from reference import VARIANT_NAMES, official_state_dict  # noqa: E402

import emo  # noqa: E402,F401  (registers the models)


@pytest.fixture(scope='session')
def official_files(tmp_path_factory):
    """Official-layout 'net.pth' files regenerated from the portable reference rule, one per variant."""
    folder = tmp_path_factory.mktemp('official')
    files = {}
    for name in VARIANT_NAMES:
        files[name] = folder / f'{name}_net.pth'
        torch.save(official_state_dict(name), files[name])
    return files


def pytest_report_header(config):
    try:
        import ultralytics
    except ImportError:
        return 'ultralytics: not installed (tests/test_ultralytics.py skips)'
    return f'ultralytics {ultralytics.__version__} ({Path(ultralytics.__file__).parent})'
