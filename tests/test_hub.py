"""The Hugging Face Hub route, through the real huggingface_hub client against a local stand-in server."""

import json
import os
import subprocess
import sys
import time

import pytest
import timm
import torch
from hub_server import HubServer
from huggingface_hub import constants, file_download, hf_api
from huggingface_hub.errors import RepositoryNotFoundError
from origin_server import closed_port_url
from reference import expected, reference_inputs

from emo.weights import WeightsUnavailableError, convert_official

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


@pytest.fixture()
def unreachable_hub(monkeypatch, tmp_path):
    """Hub endpoints on a closed port of 127.0.0.1 and an empty Hugging Face cache: a machine without network."""
    url = closed_port_url()
    monkeypatch.setattr(constants, 'ENDPOINT', url)
    monkeypatch.setattr(constants, 'HUGGINGFACE_CO_URL_TEMPLATE', url + '/{repo_id}/resolve/{revision}/{filename}')
    monkeypatch.setattr(hf_api.api, 'endpoint', url)
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'hf-cache'))
    # with nothing cached, huggingface_hub tries a refused connection again with backoff (about 23 s); that
    # second pass ends in the same error, so the test skips it
    monkeypatch.setattr(file_download, '_DEFAULT_RETRY_ON_EXCEPTIONS', ())
    return url


def _logits(model):
    with torch.no_grad():
        return model.eval()(X)


def _push(folder, repo_id: str, endpoint: str, tmp_path) -> subprocess.CompletedProcess:
    """``emo push FOLDER REPO_ID`` in a subprocess against ``endpoint``, with a token and its own HF_HOME."""
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_TOKEN='test-token', HF_HOME=str(tmp_path / 'hf-home'))
    return subprocess.run(
        [sys.executable, '-m', 'emo.cli', 'push', str(folder), repo_id],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_push_then_load_from_the_hub(hub, official_files, tmp_path, monkeypatch):
    folder = convert_official(official_files['emo_1m'], tmp_path / 'emo_1m.in1k', repo_id='org/emo_1m.in1k')
    pushed = _push(folder, 'org/emo_1m.in1k', hub.url, tmp_path)
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


def test_hub_org_without_network_is_one_clear_error(unreachable_hub, monkeypatch):
    monkeypatch.setenv('EMO_HUB_ORG', 'org')
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        timm.create_model('emo_1m', pretrained=True)
    assert time.monotonic() - start < 20
    message = str(info.value)
    assert (
        'Hugging Face Hub repository org/emo_1m.in1k' in message
        and f'{unreachable_hub} could not be reached' in message
    )
    assert (
        'unset EMO_HUB_ORG' in message
        and 'HF_HUB_OFFLINE=1' in message
        and 'pretrained_cfg_overlay=dict(file=' in message
    )
    assert '\n' not in message
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    with pytest.raises(WeightsUnavailableError, match='HF_HUB_OFFLINE is set and the Hugging Face cache has no copy'):
        timm.create_model('emo_1m', pretrained=True)


def test_hub_repo_without_weights_is_one_clear_error(hub, monkeypatch):
    hub.add_file('org/emo_1m.in1k', 'README.md', b'no weights here')
    monkeypatch.setenv('EMO_HUB_ORG', 'org')
    with pytest.raises(WeightsUnavailableError, match='org/emo_1m.in1k .the repository has no model.safetensors'):
        timm.create_model('emo_1m', pretrained=True)


def test_push_uploads_only_the_hub_files(hub, official_files, tmp_path):
    folder = convert_official(official_files['emo_1m'], tmp_path / 'emo_1m.in1k')
    (folder / 'pytorch_model.bin').write_bytes(b'a pickle that must not go up')
    (folder / 'notes.txt').write_text('mine')
    (folder / 'runs').mkdir()
    pushed = _push(folder, 'org/only', hub.url, tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    assert sorted(hub.files('org/only')) == ['README.md', 'config.json', 'model.safetensors']
    left_out = [line for line in pushed.stdout.splitlines() if line.startswith('left out')]
    assert len(left_out) == 1 and all(name in left_out[0] for name in ('notes.txt', 'pytorch_model.bin', 'runs/'))


def test_push_to_an_unreachable_hub_is_one_line(official_files, tmp_path):
    folder = convert_official(official_files['emo_1m'], tmp_path / 'emo_1m.in1k')
    url = closed_port_url()
    result = _push(folder, 'org/x', url, tmp_path)
    assert result.returncode == 1 and 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f'emo push: error: could not upload {folder} to org/x on {url}')


def test_an_emo2_distilled_folder_goes_up_and_comes_back_by_its_tag(hub, official_files, tmp_path, monkeypatch):
    """An EMOv2 folder through the same route: emo push, then EMO_HUB_ORG makes `emo2_1m.dist_in1k` load from
    org/emo2_1m.dist_in1k, as emo push names repos; the 512 model gets its 512 input size back from config.json."""
    ref = expected('emo2_1m')['logits_1x3x256x192']
    folder = convert_official(official_files['emo2_1m'], tmp_path / 'd', variant='emo2_1m')
    pushed = _push(folder, 'org/emo2_1m.dist_in1k', hub.url, tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    monkeypatch.setenv('EMO_HUB_ORG', 'org')
    model = timm.create_model('emo2_1m.dist_in1k', pretrained=True)
    assert model.pretrained_cfg['hf_hub_id'] == 'org/emo2_1m.dist_in1k'
    torch.testing.assert_close(_logits(model), ref, rtol=0, atol=1e-4)

    folder512 = convert_official(official_files['emo2_5m_512'], tmp_path / 'e', variant='emo2_5m_512')
    assert _push(folder512, 'org/emo2_5m_512.dist_in1k', hub.url, tmp_path).returncode == 0
    loaded = timm.create_model('hf-hub:org/emo2_5m_512.dist_in1k', pretrained=True)
    assert tuple(loaded.pretrained_cfg['input_size']) == (3, 512, 512) and loaded.window_size == 8
