"""Whole models pickled by emo 0.1.0 (before the package was split into layers/, models/, weights/) still load.

``tests/data/legacy/`` holds files saved by the code of commit 3391efd (``make_legacy.py`` there made them; its
README says how): a tiny EMO, unfused and fused, and the same EMO with frozen BatchNorms (as a detection backbone
has them), with their inputs and outputs. Their pickles name
``emo.irmb.IRMB``, ``emo.irmb.ConvBnAct``, ``emo.model.EMO``, ``emo.inference.FusedConv``, ... The Ultralytics
``best.pt`` files of that commit are tested in test_ultralytics.py.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from pickle_globals import pickle_globals
from timm.layers import ConvNormAct
from timm.utils import reparameterize_model

import emo

LEGACY = Path(__file__).parent / 'data' / 'legacy'
MODELS = LEGACY / 'emo_models.pt'
FROZEN = LEGACY / 'emo_frozen.pt'
# float rounding between the 0.1.0 arithmetic and today's (token-major attention, another summation order)
ATOL = 1e-5


def _emo_globals(path: Path) -> set:
    return {n for n in pickle_globals(path) if n.startswith('emo.')}


def test_the_files_name_the_old_module_paths():
    # the point of the test data: if these were today's paths, the tests below would prove nothing
    assert _emo_globals(MODELS) == {
        'emo.inference.FusedConv',
        'emo.irmb.ConvBnAct',
        'emo.irmb.GridAttention',
        'emo.irmb.IRMB',
        'emo.model.EMO',
        'emo.model.EmoStage',
        'emo.model.Stem',
    }


LOAD_IN_FRESH_PROCESS = """
import json, sys, torch
torch.set_num_threads(1)
assert 'emo' not in sys.modules
saved = torch.load(sys.argv[1], weights_only=False)  # unpickling imports emo, which maps the old module paths
with torch.no_grad():
    diffs = {k: (saved[k](saved['input']) - saved[k + '_out']).abs().max().item() for k in ('unfused', 'fused')}
print(json.dumps(dict(diffs=diffs, emo=sys.modules['emo'].__file__)))
"""


def test_pickled_models_load_in_a_fresh_process_and_compute_what_they_did(tmp_path):
    env = {'PYTHONPATH': str(Path(emo.__file__).parents[1]), 'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'}
    result = subprocess.run(
        [sys.executable, '-c', LOAD_IN_FRESH_PROCESS, str(MODELS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report['emo']).parent == Path(emo.__file__).parent
    assert report['diffs']['unfused'] < ATOL and report['diffs']['fused'] < ATOL, report


def test_a_pickled_unfused_model_becomes_todays_model():
    saved = torch.load(MODELS, weights_only=False)
    old = saved['unfused']
    assert type(old) is emo.EMO
    blocks = [m for m in old.modules() if isinstance(m, emo.IRMB)]
    assert blocks and all(isinstance(b.conv_local, ConvNormAct) for b in blocks)  # ConvBnAct, rebuilt on load
    new = emo.EMO(depths=(1, 1, 2, 2), widths=(16, 24, 32, 40), exp_ratios=(2, 2, 2, 2), dim_heads=(None, None, 8, 8),
                  num_classes=10)  # fmt: skip
    assert list(old.state_dict()) == list(new.state_dict())
    new.load_state_dict(old.state_dict())
    new.eval()
    x = saved['input']
    with torch.no_grad():
        torch.testing.assert_close(new(x), saved['unfused_out'], rtol=0, atol=ATOL)
        fused = reparameterize_model(old)  # today's fuse() on the old model
        torch.testing.assert_close(fused(x), saved['fused_out'], rtol=0, atol=ATOL)
        # and the timm API on it, which uses the pooling module 0.1.0 did not have, in the model's mode
        torch.testing.assert_close(old.forward_head(old.forward_features(x)), saved['unfused_out'], rtol=0, atol=ATOL)
    assert not any(m.training for m in old.modules())


def test_old_pickles_save_again_under_todays_paths(tmp_path):
    saved = torch.load(MODELS, weights_only=False)
    path = tmp_path / 'resaved.pt'
    torch.save({'fused': saved['fused'], 'unfused': saved['unfused']}, path)
    assert not any(n.startswith(('emo.irmb.', 'emo.model.', 'emo.inference.')) for n in _emo_globals(path))
    again = torch.load(path, weights_only=False)
    with torch.no_grad():
        for key in ('fused', 'unfused'):
            torch.testing.assert_close(again[key](saved['input']), saved[key](saved['input']), rtol=0, atol=0)


@pytest.mark.parametrize('old_path', ['emo.irmb', 'emo.model', 'emo.inference'])
def test_old_module_paths_import(old_path):
    import importlib

    module = importlib.import_module(old_path)
    assert module is emo.legacy
    assert timm.create_model('emo_1m').__class__ is module.EMO


def test_modules_the_old_docs_named_are_their_successors():
    import emo.checkpoint
    import emo.export
    import emo.hub

    assert emo.hub.git_blob_sha1 is emo.weights.git_blob_sha1 and emo.hub.HubUploadError is emo.weights.HubUploadError
    assert emo.checkpoint.to_timm_layout is emo.weights.to_timm_layout
    assert emo.export.export_onnx is emo.deploy.export.export_onnx


def test_a_pickled_model_with_frozen_batchnorms_loads():
    # 0.1.0's freeze_batch_norm put torchvision's FrozenBatchNorm2d into the ConvBnAct modules
    from timm.layers.norm_act import FrozenBatchNormAct2d

    assert 'emo.irmb.ConvBnAct' in _emo_globals(FROZEN)
    saved = torch.load(FROZEN, weights_only=False)
    frozen = saved['frozen']
    locals_ = [b.conv_local for b in frozen.modules() if isinstance(b, emo.IRMB)]
    assert locals_ and all(isinstance(m, ConvNormAct) and isinstance(m.bn, FrozenBatchNormAct2d) for m in locals_)
    with torch.no_grad():
        torch.testing.assert_close(frozen(saved['input']), saved['output'], rtol=0, atol=ATOL)


def test_old_attention_takes_todays_fused_attn(monkeypatch):
    # 0.1.0's fused_attn said 'token-major, after fuse()'; today it chooses SDPA, from timm's setting at load
    from timm.layers import set_fused_attn, use_fused_attn

    before = use_fused_attn()
    try:
        for setting in (False, True):
            set_fused_attn(setting)
            saved = torch.load(MODELS, weights_only=False)
            for model in (saved['unfused'], saved['fused']):
                attentions = [m for m in model.modules() if isinstance(m, emo.GridAttention)]
                assert attentions and all(type(m) is emo.GridAttention for m in attentions)
                assert {m.fused_attn for m in attentions} == {setting}
    finally:
        set_fused_attn(before)
