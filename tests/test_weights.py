"""pretrained=True from the release origin: download, blob-id check, conversion, cache, offline reuse, faults.

A local server stands in for the origin (EMO_ORIGIN_URL); it serves official-format files regenerated from the
reference rule, and the test's manifest carries their blob ids.
"""

import json

import pytest
import timm
import torch
from origin_server import OriginServer, closed_port_url
from reference import expected, reference_inputs

from emo import hub
from emo.hub import WeightsUnavailableError, git_blob_sha1

X = reference_inputs()['1x3x256x192']


@pytest.fixture()
def release(official_files, tmp_path, monkeypatch):
    """A manifest whose blob ids are those of the regenerated files, and an empty torch hub cache."""
    manifest = json.loads(hub.MANIFEST.read_text())
    files = {}
    for entry in manifest['weights'].values():
        path = official_files[entry['variant']]
        entry['git_blob_sha1'] = git_blob_sha1(path)
        files[entry['path']] = path.read_bytes()
    test_manifest = tmp_path / 'manifest.json'
    test_manifest.write_text(json.dumps(manifest))
    monkeypatch.setattr(hub, 'MANIFEST', test_manifest)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.delenv('EMO_HUB_ORG', raising=False)
    return files


def _logits(model):
    with torch.no_grad():
        return model.eval()(X)


def _cache_files(tmp_path):
    folder = tmp_path / 'torch' / 'hub' / 'checkpoints'
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verify_convert_cache_then_offline(release, tmp_path, monkeypatch):
    with OriginServer(release) as origin:
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        model = timm.create_model('emo_1m', pretrained=True)
        assert origin.requests == ['resources/EMO_1M/net.pth']
    torch.testing.assert_close(_logits(model), expected('emo_1m')['logits_1x3x256x192'], rtol=0, atol=1e-4)
    blob = hub.released_weights()['emo_1m.in1k'].git_blob_sha1
    assert _cache_files(tmp_path) == [f'emo_1m.in1k-{blob[:10]}.safetensors']  # converted, no scratch left
    assert model.pretrained_cfg['file'].endswith(f'emo_1m.in1k-{blob[:10]}.safetensors')

    monkeypatch.setenv('EMO_ORIGIN_URL', closed_port_url())  # the origin is gone: the cache serves
    torch.testing.assert_close(_logits(timm.create_model('emo_1m.in1k', pretrained=True)), _logits(model))
    features = timm.create_model('emo_1m', pretrained=True, features_only=True)
    assert len(features(X)) == 4


def test_tampered_file_is_refused_and_not_cached(release, tmp_path, monkeypatch):
    release['resources/EMO_1M/net.pth'] = release['resources/EMO_2M/net.pth']
    with OriginServer(release) as origin:
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        with pytest.raises(WeightsUnavailableError, match='git blob id .* not the released'):
            timm.create_model('emo_1m', pretrained=True)
    assert _cache_files(tmp_path) == []


def test_interrupted_download_leaves_nothing(release, tmp_path, monkeypatch):
    with OriginServer(release) as origin:
        origin.truncate = True
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        with pytest.raises(WeightsUnavailableError, match='interrupted'):
            timm.create_model('emo_2m', pretrained=True)
    assert _cache_files(tmp_path) == []


def test_no_network_and_missing_file_say_what_to_do(release, tmp_path, monkeypatch):
    monkeypatch.setenv('EMO_ORIGIN_URL', closed_port_url())
    with pytest.raises(WeightsUnavailableError) as info:
        timm.create_model('emo_5m', pretrained=True)
    assert 'could not reach' in str(info.value) and "pretrained_cfg_overlay=dict(file='net.pth')" in str(info.value)
    with OriginServer({}) as origin:
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        with pytest.raises(WeightsUnavailableError, match='HTTP 404'):
            timm.create_model('emo_5m', pretrained=True)
    assert _cache_files(tmp_path) == []


def test_cache_dir_and_url_override(release, tmp_path, monkeypatch):
    monkeypatch.setenv('EMO_ORIGIN_URL', closed_port_url())
    with OriginServer({'mirror/emo6.pth': release['resources/EMO_6M/net.pth']}) as mirror:
        model = timm.create_model(
            'emo_6m',
            pretrained=True,
            cache_dir=tmp_path / 'cache',
            pretrained_cfg_overlay=dict(url=f'{mirror.url}/mirror/emo6.pth'),
        )
    torch.testing.assert_close(_logits(model), expected('emo_6m')['logits_1x3x256x192'], rtol=0, atol=1e-4)
    assert [p.name for p in (tmp_path / 'cache').iterdir()] == [hub.cached_path('emo_6m').name]
    assert _cache_files(tmp_path) == []


def test_manifest_is_the_source_of_truth():
    entries = hub.released_weights()
    assert sorted(entries) == [f'{v}.in1k' for v in ('emo_1m', 'emo_2m', 'emo_5m', 'emo_6m')]
    for name, entry in entries.items():
        cfg = timm.create_model(name.split('.')[0]).pretrained_cfg
        assert cfg['url'] == entry.url and entry.url.endswith(entry.path)
        assert len(entry.git_blob_sha1) == 40 and 70 < entry.top1 < 80
    assert entries['emo_2m.in1k'].git_blob_sha1 == '9ec7138d292ca9b2d07923aec05762f547db8cf2'
