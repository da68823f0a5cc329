"""emo convert: official net.pth -> a timm-style hub folder, deterministic, loadable with local-dir:."""

import json
import random
import shutil
import subprocess
import sys

import pytest
import timm
import torch
from reference import expected, reference_inputs
from safetensors.torch import load_file

from emo.weights import CheckpointError, convert_official, git_blob_sha1, manifest

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
    # not the release: named a custom copy of emo_2m, whose config keeps emo_2m.in1k's preprocessing
    assert '# Model card for emo_2m.custom' in card
    assert "timm.create_model('hf-hub:ORG/emo_2m.custom', pretrained=True)" in card
    weights = load_file(a / 'model.safetensors')
    assert 'stages.2.blocks.1.attn.qk.weight' in weights and len(weights) == 258


def test_card_of_the_official_release_has_its_metrics(official_files, tmp_path, monkeypatch):
    data = json.loads(manifest.MANIFEST.read_text())
    data['weights']['emo_1m.in1k']['git_blob_sha1'] = git_blob_sha1(official_files['emo_1m'])
    (tmp_path / 'manifest.json').write_text(json.dumps(data))
    monkeypatch.setattr(manifest, 'MANIFEST', tmp_path / 'manifest.json')
    folder = convert_official(official_files['emo_1m'], tmp_path / 'out', repo_id='someorg/emo_1m.in1k')
    card = (folder / 'README.md').read_text()
    assert '(verified)' in card and '71.498 / 90.368' in card and 'resources/EMO_1M/net.pth' in card
    assert 'hf-hub:someorg/emo_1m.in1k' in card
    # valid BibTeX: single braces around the entry and its fields
    assert '@inproceedings{zhang2023rethinking,\n  title={Rethinking Mobile Block' in card and '{{' not in card
    assert 'trained on ImageNet-1k only' in card


def test_card_of_a_file_that_is_not_a_release_claims_nothing(official_files, tmp_path):
    folder = convert_official(official_files['emo2_20m'], tmp_path / 'out')
    card = (folder / 'README.md').read_text()
    assert '# Model card for emo2_20m.custom' in card and 'not the official release file of emo2_20m' in card
    assert 'ImageNet-1k top-1' not in card and 'trained on ImageNet-1k only' not in card
    assert 'cannot say what they were' in card and '@article{zhang2025emov2,' in card


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
    api = convert_official(official_files['emo_1m'], tmp_path / 'api', variant='emo_1m')
    files = sorted(p.name for p in api.iterdir())
    for cmd in ([sys.executable, '-m', 'emo.cli', 'convert'], [sys.executable, 'scripts/convert_official.py']):
        out = tmp_path / cmd[-1].replace('/', '_')
        result = subprocess.run(
            [*cmd, str(official_files['emo_1m']), str(out), '--model', 'emo_1m'],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert 'model.safetensors' in result.stdout
        # the conversion is deterministic: the command writes what convert_official writes, byte for byte
        assert sorted(p.name for p in out.iterdir()) == files
        for name in files:
            assert (out / name).read_bytes() == (api / name).read_bytes(), (cmd, name)
    again = subprocess.run(
        [sys.executable, '-m', 'emo.cli', 'convert', str(official_files['emo_1m']), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 1 and 'not empty' in again.stderr and 'Traceback' not in again.stderr


@pytest.fixture(scope='module')
def emo_1m_folder(official_files, tmp_path_factory):
    return convert_official(official_files['emo_1m'], tmp_path_factory.mktemp('hub') / 'emo_1m.in1k')


def _copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / folder.name)


@pytest.mark.parametrize(
    'config, reason',
    [
        pytest.param('{}', "no 'architecture' entry", id='empty-object'),
        pytest.param('{"architecture": "emo_1m", ', 'not valid JSON', id='invalid-json'),
        pytest.param('{"architecture": 5, "pretrained_cfg": {}}', 'architecture is 5, not a model name', id='int'),
        pytest.param('{"architecture": null}', 'architecture is None', id='null-legacy'),
        pytest.param('["emo_1m"]', 'it holds a JSON list, not an object', id='list'),
        pytest.param('{"architecture": "emo_1m", "pretrained_cfg": "x"}', 'pretrained_cfg is not an object', id='cfg'),
    ],
)
def test_local_dir_with_a_broken_config_names_the_file(emo_1m_folder, tmp_path, config, reason):
    folder = _copy(emo_1m_folder, tmp_path)
    (folder / 'config.json').write_text(config)
    with pytest.raises(CheckpointError) as info:
        timm.create_model(f'local-dir:{folder}', pretrained=True)
    message = str(info.value)
    assert message.startswith(f'{folder / "config.json"} cannot be read as a timm model config')
    assert reason in message and 're-create the folder with emo convert' in message


def test_the_config_guard_leaves_valid_folders_alone(emo_1m_folder, tmp_path):
    # a folder of another timm model, as timm itself writes one, loads through local-dir: as it was saved
    resnet = timm.create_model('resnet10t', num_classes=7).eval()
    timm.models.save_for_hf(resnet, tmp_path / 'resnet10t', safe_serialization=True)
    loaded = timm.create_model(f'local-dir:{tmp_path / "resnet10t"}', pretrained=True).eval()
    assert loaded.pretrained_cfg['architecture'] == 'resnet10t' and loaded.num_classes == 7
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), resnet(x), rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match='Config file not found'):  # timm's own errors pass through
        timm.create_model(f'local-dir:{emo_1m_folder / "nothing"}', pretrained=True)


@pytest.mark.parametrize('how', ['truncated', 'random', 'empty'])
def test_local_dir_with_broken_weights_names_the_file(emo_1m_folder, tmp_path, how):
    folder = _copy(emo_1m_folder, tmp_path)
    weights = folder / 'model.safetensors'
    data = weights.read_bytes()
    broken = {'truncated': data[: len(data) // 2], 'random': random.Random(0).randbytes(4096), 'empty': b''}[how]
    weights.write_bytes(broken)
    with pytest.raises(CheckpointError) as info:
        timm.create_model(f'local-dir:{folder}', pretrained=True)
    message = str(info.value)
    assert message.startswith(f'{weights} is not a readable safetensors file')
    assert 're-create the folder with emo convert' in message and '\n' not in message
