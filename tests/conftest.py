import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
# huggingface_hub reads this at import: no telemetry calls from the tests
os.environ.setdefault('HF_HUB_DISABLE_TELEMETRY', '1')

from reference import V2_VARIANT_NAMES, VARIANT_NAMES, official_state_dict  # noqa: E402

import emo  # noqa: E402,F401  (registers the models)
from emo.weights import git_blob_sha1, manifest  # noqa: E402


@pytest.fixture(scope='session')
def official_files(tmp_path_factory):
    """Official-layout checkpoint files regenerated from the portable reference rule, one per variant of both
    families (EMO's 'net.pth', EMOv2's 'EMOv2_*.pth')."""
    folder = tmp_path_factory.mktemp('official')
    files = {}
    for name in VARIANT_NAMES + V2_VARIANT_NAMES:
        files[name] = folder / f'{name}_net.pth'
        torch.save(official_state_dict(name), files[name])
    return files


@pytest.fixture()
def release(official_files, tmp_path, monkeypatch):
    """A manifest whose blob ids are those of the regenerated files, and an empty torch hub cache.

    Each released file gets bytes of its own, as at the origin: where a file with the same weights is already served
    (emo2_1m.in1k and .dist_in1k, emo2_5m and emo2_5m_512 share the rule's weights), the state dict is wrapped in
    ``{'state_dict': ..., 'entry': n}``, one of the containers the official EMOv2 files may use."""
    data = json.loads(manifest.MANIFEST.read_text())
    files, served = {}, set()
    for n, entry in enumerate(data['weights'].values()):
        path = official_files[entry['variant']]
        if path.read_bytes() in served:
            path = tmp_path / f'release-{n}.pth'
            torch.save({'state_dict': official_state_dict(entry['variant']), 'entry': torch.tensor(n)}, path)
        entry['git_blob_sha1'] = git_blob_sha1(path)
        files[entry['path']] = path.read_bytes()
        served.add(files[entry['path']])
    test_manifest = tmp_path / 'manifest.json'
    test_manifest.write_text(json.dumps(data))
    monkeypatch.setattr(manifest, 'MANIFEST', test_manifest)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.delenv('EMO_HUB_ORG', raising=False)
    return files


def pytest_report_header(config):
    try:
        import ultralytics
    except ImportError:
        return 'ultralytics: not installed (tests/test_ultralytics.py skips)'
    return f'ultralytics {ultralytics.__version__} ({Path(ultralytics.__file__).parent})'
