"""emo convert: official net.pth -> a timm-style hub folder, deterministic, loadable with local-dir:."""

import json
import subprocess
import sys

import pytest
import timm
import torch
from reference import expected, reference_inputs
from safetensors.torch import load_file

from emo import hub
from emo.checkpoint import CheckpointError
from emo.hub import convert_official, git_blob_sha1

X = reference_inputs()['2x3x224x224']


def _logits(model):
    with torch.no_grad():
        return model.eval()(X)


def test_convert_is_deterministic_and_complete(official_files, tmp_path):
    a = convert_official(official_files['emo_2m'], tmp_path / 'a', variant='emo_2m')
    names = sorted(p.name for p in a.iterdir())
    assert names == ['README.md', 'config.json', 'model.safetensors']
    for i in range(4):  # several runs: safetensors' metadata map once made the bytes differ at random
        b = convert_official(official_files['emo_2m'], tmp_path / f'b{i}')  # variant inferred from the checkpoint
        for name in names:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    config = json.loads((a / 'config.json').read_text())
    assert config['architecture'] == 'emo_2m' and config['num_classes'] == 1000 and config['num_features'] == 200
    cfg = config['pretrained_cfg']
    assert cfg['input_size'] == [3, 224, 224] and cfg['crop_pct'] == 0.875 and cfg['interpolation'] == 'bicubic'
    assert cfg['first_conv'] == 'stem.conv' and cfg['classifier'] == 'head' and cfg['tag'] == 'in1k'
    assert len(config['label_names']) == 1000
    card = (a / 'README.md').read_text()
    blob = git_blob_sha1(official_files['emo_2m'])
    assert blob in card and 'not the official release file' in card  # regenerated weights, not the release
    assert "timm.create_model('hf-hub:ORG/emo_2m.in1k', pretrained=True)" in card
    weights = load_file(a / 'model.safetensors')
    assert 'stages.2.blocks.1.attn.qk.weight' in weights and len(weights) == 258


def test_card_of_the_official_release_has_its_metrics(official_files, tmp_path, monkeypatch):
    manifest = json.loads(hub.MANIFEST.read_text())
    manifest['weights']['emo_1m.in1k']['git_blob_sha1'] = git_blob_sha1(official_files['emo_1m'])
    (tmp_path / 'manifest.json').write_text(json.dumps(manifest))
    monkeypatch.setattr(hub, 'MANIFEST', tmp_path / 'manifest.json')
    folder = convert_official(official_files['emo_1m'], tmp_path / 'out', repo_id='someorg/emo_1m.in1k')
    card = (folder / 'README.md').read_text()
    assert '(verified)' in card and '71.498 / 90.368' in card and 'resources/EMO_1M/net.pth' in card
    assert 'hf-hub:someorg/emo_1m.in1k' in card


def test_local_dir_loads_the_folder(official_files, tmp_path):
    folder = convert_official(official_files['emo_5m'], tmp_path / 'emo_5m.in1k')
    model = timm.create_model(f'local-dir:{folder}', pretrained=True)
    assert model.pretrained_cfg['architecture'] == 'emo_5m'
    torch.testing.assert_close(_logits(model), expected('emo_5m')['logits_2x3x224x224'], rtol=0, atol=1e-4)
    features = timm.create_model(f'local-dir:{folder}', pretrained=True, features_only=True)
    assert features.feature_info.channels() == [48, 72, 160, 288]


def test_convert_protects_existing_folders_and_checks_the_variant(official_files, tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='not empty'):
        convert_official(official_files['emo_1m'], out)
    assert [p.name for p in out.iterdir()] == ['notes.txt']
    convert_official(official_files['emo_1m'], out, overwrite=True)
    assert (out / 'notes.txt').read_text() == 'mine' and (out / 'model.safetensors').is_file()
    with pytest.raises(CheckpointError, match='this checkpoint is EMO-1M'):
        convert_official(official_files['emo_1m'], tmp_path / 'x', variant='emo_6m')
    assert not (tmp_path / 'x').exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out']  # no scratch folders left behind


def test_convert_cli_and_script(official_files, tmp_path):
    for cmd in ([sys.executable, '-m', 'emo.cli', 'convert'], [sys.executable, 'scripts/convert_official.py']):
        out = tmp_path / cmd[-1].replace('/', '_')
        result = subprocess.run(
            [*cmd, str(official_files['emo_1m']), str(out), '--model', 'emo_1m'],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert 'model.safetensors' in result.stdout and (out / 'config.json').is_file()
    again = subprocess.run(
        [sys.executable, '-m', 'emo.cli', 'convert', str(official_files['emo_1m']), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 1 and 'not empty' in again.stderr and 'Traceback' not in again.stderr
