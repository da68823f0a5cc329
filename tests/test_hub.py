"""The Hugging Face Hub route, through the real huggingface_hub client against a local stand-in server."""

import json
import os
import subprocess
import sys

import pytest
import timm
import torch
from hub_server import HubServer
from huggingface_hub import constants, hf_api
from huggingface_hub.errors import RepositoryNotFoundError
from reference import expected, reference_inputs

from emo.hub import WeightsUnavailableError, convert_official

X = reference_inputs()['1x3x256x192']
REF = expected('emo_1m')['logits_1x3x256x192']


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    """A stand-in Hub; huggingface_hub reads its endpoint at import, so the constants are patched."""
    with HubServer() as server:
        monkeypatch.setattr(constants, 'ENDPOINT', server.url)
        monkeypatch.setattr(
            constants, 'HUGGINGFACE_CO_URL_TEMPLATE', server.url + '/{repo_id}/resolve/{revision}/{filename}'
        )
        monkeypatch.setattr(hf_api.api, 'endpoint', server.url)
        monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'hf-cache'))
        monkeypatch.delenv('EMO_HUB_ORG', raising=False)
        yield server


def _logits(model):
    with torch.no_grad():
        return model.eval()(X)


def test_push_then_load_from_the_hub(hub, official_files, tmp_path, monkeypatch):
    folder = convert_official(official_files['emo_1m'], tmp_path / 'emo_1m.in1k', repo_id='org/emo_1m.in1k')
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_TOKEN='test-token', HF_HOME=str(tmp_path / 'hf-home'))
    pushed = subprocess.run(
        [sys.executable, '-m', 'emo.cli', 'push', str(folder), 'org/emo_1m.in1k'],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert pushed.returncode == 0, pushed.stderr
    assert sorted(hub.files('org/emo_1m.in1k')) == ['README.md', 'config.json', 'model.safetensors']
    for name, data in hub.files('org/emo_1m.in1k').items():
        assert data == (folder / name).read_bytes()

    model = timm.create_model('hf-hub:org/emo_1m.in1k', pretrained=True)
    assert model.pretrained_cfg['hf_hub_id'] == 'org/emo_1m.in1k'
    torch.testing.assert_close(_logits(model), REF, rtol=0, atol=1e-4)
    overlay = timm.create_model('emo_1m', pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id='org/emo_1m.in1k'))
    torch.testing.assert_close(_logits(overlay), REF, rtol=0, atol=1e-4)
    monkeypatch.setenv('EMO_HUB_ORG', 'org')  # the documented switch of the default source
    torch.testing.assert_close(_logits(timm.create_model('emo_1m', pretrained=True)), REF, rtol=0, atol=1e-4)

    downloads = [r for r in hub.requests if r[0] == 'GET' and '/resolve/' in r[1]]
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)  # second call: from the cache, no request
    torch.testing.assert_close(
        _logits(timm.create_model('hf-hub:org/emo_1m.in1k', pretrained=True)), REF, rtol=0, atol=1e-4
    )
    assert [r for r in hub.requests if r[0] == 'GET' and '/resolve/' in r[1]] == downloads


def test_missing_repo_and_unknown_architecture(hub, official_files, tmp_path, monkeypatch):
    with pytest.raises(RepositoryNotFoundError):
        timm.create_model('hf-hub:org/nothing-here', pretrained=True)
    monkeypatch.setenv('EMO_HUB_ORG', 'nobody')
    with pytest.raises(WeightsUnavailableError, match='nobody/emo_1m.in1k was not found'):
        timm.create_model('emo_1m', pretrained=True)
    folder = convert_official(official_files['emo_1m'], tmp_path / 'x')
    config = json.loads((folder / 'config.json').read_text())
    config['architecture'] = 'emo_9m'
    hub.add_file('org/odd', 'config.json', json.dumps(config).encode())
    hub.add_file('org/odd', 'model.safetensors', (folder / 'model.safetensors').read_bytes())
    with pytest.raises(RuntimeError, match='emo_9m'):
        timm.create_model('hf-hub:org/odd', pretrained=True)


def test_push_refuses_what_is_not_a_hub_folder(tmp_path, official_files):
    (tmp_path / 'empty').mkdir()
    result = subprocess.run(
        [sys.executable, '-m', 'emo.cli', 'push', str(tmp_path / 'empty'), 'org/x'],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "make one with 'emo convert'" in result.stderr
