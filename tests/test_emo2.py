"""EMOv2 (emo2_*): the architecture facts of the spec, the hybrid attention against its pixel-by-pixel definition,
the released tags, official checkpoints in every container, both families kept apart, downloads, Hub folders,
export and the benchmark's baseline."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
from origin_server import OriginServer
from reference import V2_VARIANT_NAMES, expected, input_keys, official_state_dict, reference_inputs
from timm.layers import LayerScale2d

import emo
from emo.layers import HybridWindowAttention, explicit_attention
from emo.weights import (
    CheckpointError,
    WeightsUnavailableError,
    cached_path,
    load_into,
    to_official_layout,
    to_timm_layout,
)

SPEC_PARAMS = {
    'emo2_1m': 1_460_844,
    'emo2_2m': 2_384_312,
    'emo2_5m': 5_126_440,
    'emo2_5m_512': 5_126_440,
    'emo2_20m': 20_195_208,
}
SPEC_GFLOPS = {'emo2_1m': 0.285, 'emo2_2m': 0.487, 'emo2_5m': 1.035, 'emo2_5m_512': 5.627, 'emo2_20m': 4.017}
SPEC_WIDTHS = {
    'emo2_1m': (32, 48, 80, 180),
    'emo2_2m': (32, 48, 120, 200),
    'emo2_5m': (48, 72, 160, 288),
    'emo2_5m_512': (48, 72, 160, 288),
    'emo2_20m': (64, 128, 320, 448),
}
SPEC_DEPTHS = {'emo2_1m': (2, 2, 8, 3), 'emo2_20m': (3, 3, 13, 3)}
INPUTS = reference_inputs()


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('variant', V2_VARIANT_NAMES)
def test_parameter_counts_and_gflops(variant):
    import fvcore.nn as fvcore

    model = timm.create_model(variant).eval()
    assert _count(model) == SPEC_PARAMS[variant] == emo.VARIANTS[variant].params
    size = 512 if variant.endswith('_512') else 224
    with explicit_attention(model):  # fvcore counts the two attention matmuls, not scaled_dot_product_attention
        flops = fvcore.FlopCountAnalysis(model, torch.randn(1, 3, size, size))
        flops.unsupported_ops_warnings(False)
        flops.uncalled_modules_warnings(False)
        gflops = flops.total() / 1e9
    assert gflops == pytest.approx(SPEC_GFLOPS[variant], rel=0.01)


@pytest.mark.parametrize('variant', ['emo2_1m', 'emo2_5m_512', 'emo2_20m'])
def test_structure_follows_the_spec(variant):
    model = timm.create_model(variant)
    spec = emo.VARIANTS[variant]
    assert spec.family == 'emo2' and spec.window_size == (8 if variant.endswith('_512') else 7)
    assert tuple(info['num_chs'] for info in model.feature_info) == SPEC_WIDTHS[variant] == spec.widths
    if variant in SPEC_DEPTHS:
        assert spec.depths == SPEC_DEPTHS[variant]
    # stem: 3x3 s2 conv with bias + BN + SiLU, 3x3 depthwise + BN + SiLU, 1x1 conv; width widths[0] / 2
    stem = model.stem
    assert stem.conv1.conv.stride == (2, 2) and stem.conv1.conv.bias is not None
    assert stem.conv2.conv.groups == stem.conv2.conv.in_channels == spec.widths[0] // 2
    assert stem.conv3.kernel_size == (1, 1) and stem.conv3.bias is None
    in_chs = spec.widths[0] // 2
    for s, stage in enumerate(model.stages):
        first, rest = stage.blocks[0], stage.blocks[1:]
        assert first.conv_local.conv.stride == (2, 2) and not first.has_skip
        assert first.v.out_channels == int(in_chs * spec.exp_ratios[s] * 2)  # 2x of the incoming width
        assert isinstance(first.attn, nn.Identity)
        for block in stage.blocks:
            # layer scale in every block, the downsampling ones included; depthwise 5x5 + BN + SiLU everywhere
            assert isinstance(block.layer_scale, LayerScale2d) and block.layer_scale.gamma.shape == (spec.widths[s],)
            assert block.conv_local.conv.kernel_size == (5, 5) and isinstance(block.conv_local.bn.act, nn.SiLU)
            norm = nn.BatchNorm2d if s < 2 else nn.LayerNorm
            assert isinstance(block.norm, norm) and block.norm.eps == 1e-6
        for block in rest:
            assert block.has_skip
            assert isinstance(block.attn, HybridWindowAttention) == (s >= 2)
            if s >= 2:  # the values are expanded inside the attention: v comes before it
                assert isinstance(block.v, nn.Identity)
                assert block.attn.v.out_channels == int(spec.widths[s] * spec.exp_ratios[s])
                assert block.attn.num_heads == spec.widths[s] // spec.dim_heads[s]
                assert block.attn.window_size == spec.window_size
        in_chs = spec.widths[s]


def naive_hybrid_attention(attn: HybridWindowAttention, x: torch.Tensor) -> torch.Tensor:
    """The spec written out pixel by pixel: zero-pad to multiples of the window, qk and act(v) on the padded map,
    for each partition gather each window's pixels, attend (unmasked), put the results back, sum, crop."""
    B, C, H, W = x.shape
    ws, heads, dh = attn.window_size, attn.num_heads, attn.dim_head
    n1, n2 = math.ceil(H / ws), math.ceil(W / ws)
    padded = torch.nn.functional.pad(x, (0, n2 * ws - W, 0, n1 * ws - H))
    qk = attn.qk(padded)
    v = attn.act(attn.v(padded))
    mid = v.shape[1]
    out = torch.zeros(B, mid, n1 * ws, n2 * ws, dtype=x.dtype)
    partitions = {
        'remote': lambda i, j, a, b: (i + n1 * a, j + n2 * b),
        'close': lambda i, j, a, b: (ws * i + a, ws * j + b),
    }
    for where in partitions.values():
        for i in range(n1):
            for j in range(n2):
                pos = [where(i, j, a, b) for a in range(ws) for b in range(ws)]
                tokens_qk = torch.stack([qk[:, :, r, c] for r, c in pos], dim=1)  # (B, N, 2C)
                tokens_v = torch.stack([v[:, :, r, c] for r, c in pos], dim=1)  # (B, N, mid)
                q = tokens_qk[..., :C].reshape(B, -1, heads, dh).transpose(1, 2)
                k = tokens_qk[..., C:].reshape(B, -1, heads, dh).transpose(1, 2)
                vv = tokens_v.reshape(B, -1, heads, mid // heads).transpose(1, 2)
                y = ((q @ k.transpose(-1, -2)) * dh**-0.5).softmax(-1) @ vv
                y = y.transpose(1, 2).reshape(B, -1, mid)
                for n, (r, c) in enumerate(pos):
                    out[:, :, r, c] += y[:, n]
    return out[:, :, :H, :W]


@pytest.mark.parametrize('fused_attn', [True, False])
@pytest.mark.parametrize('size', [(14, 14), (16, 12), (25, 33), (3, 5), (7, 8)])
def test_hybrid_attention_matches_pixel_by_pixel_definition(size, fused_attn, monkeypatch):
    # fused_attn: SDPA, forced past the CPU rule that takes the explicit form for wide value heads
    monkeypatch.setattr(HybridWindowAttention, '_explicit_is_faster', lambda self, *args: False)
    torch.manual_seed(0)
    attn = HybridWindowAttention(40, 120, dim_head=20, window_size=7)
    attn.fused_attn = fused_attn
    for conv in (attn.qk, attn.v):
        nn.init.normal_(conv.bias)  # the padded pixels carry the biases: make them count
    x = torch.randn(2, 40, *size)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), naive_hybrid_attention(attn, x), rtol=1e-5, atol=1e-5)


def test_every_block_counts_in_the_reference():
    """Guard against a test that cannot fail: the reference rule draws the layer scales like conv weights
    (randn / sqrt(C), not the 1e-6 of a fresh model), so each block's branch is visible in the logits; zeroing one
    stage-4 gamma moves them far beyond the tolerance."""
    model = timm.create_model('emo2_1m').eval()
    model.load_state_dict(to_timm_layout(official_state_dict('emo2_1m')))
    x = INPUTS['2x3x224x224']
    with torch.no_grad():
        before = model(x)
        model.stages[3].blocks[2].layer_scale.gamma.zero_()
        after = model(x)
    torch.testing.assert_close(before, expected('emo2_1m')['logits_2x3x224x224'], rtol=0, atol=1e-4)
    assert (before - after).abs().max() > 100 * 1e-4


def test_pretrained_tags_and_the_512_model():
    assert sorted(timm.list_models('emo2_*')) == sorted(V2_VARIANT_NAMES)
    assert sorted(timm.list_models('emo2_*', pretrained=True)) == [
        'emo2_1m.dist_in1k',
        'emo2_1m.in1k',
        'emo2_2m.dist_in1k',
        'emo2_2m.in1k',
        'emo2_5m.dist_in1k',
        'emo2_5m.in1k',
        'emo2_5m_512.dist_in1k',
    ]
    model = timm.create_model('emo2_5m_512.dist_in1k')
    cfg = model.pretrained_cfg
    assert cfg['input_size'] == (3, 512, 512) and cfg['crop_pct'] == 0.875 and cfg['pool_size'] == (16, 16)
    assert cfg['url'].endswith('resources/Cls/EMOv2_5M_512_KD.pth') and cfg['paper_ids'] == 'arXiv:2412.06674'
    assert {m.window_size for m in model.modules() if isinstance(m, HybridWindowAttention)} == {8}
    data_cfg = timm.data.resolve_data_config(model=model)
    assert data_cfg['input_size'] == (3, 512, 512) and data_cfg['crop_pct'] == 0.875
    small = timm.create_model('emo2_5m')
    assert small.pretrained_cfg['input_size'] == (3, 224, 224) and small.pretrained_cfg['tag'] == 'in1k'
    params = dict(small.named_parameters())
    assert small.pretrained_cfg['first_conv'] + '.weight' in params


def test_emo2_20m_is_a_backbone_without_released_weights(official_files):
    cfg = timm.create_model('emo2_20m').pretrained_cfg
    assert not cfg.get('url') and 'no released ImageNet weights' in ' '.join(cfg['notes'])
    with pytest.raises(WeightsUnavailableError, match='emo2_20m has no released ImageNet weights'):
        timm.create_model('emo2_20m', pretrained=True)
    backbone = timm.create_model('emo2_20m', features_only=True)
    assert backbone.feature_info.reduction() == [4, 8, 16, 32]
    assert backbone.feature_info.channels() == list(SPEC_WIDTHS['emo2_20m'])


@pytest.mark.parametrize('variant', V2_VARIANT_NAMES)
def test_official_layout_round_trip(variant):
    official = official_state_dict(variant)
    ours = to_timm_layout(official)
    model = timm.create_model(variant)
    assert set(ours) == set(model.state_dict())
    back = to_official_layout(ours)
    assert list(back) == list(official)
    assert all(torch.equal(back[k], official[k]) for k in official)


@pytest.mark.parametrize('wrap', ['plain', 'net', 'net_E', 'state_dict', 'model', 'module.'])
def test_official_containers_are_accepted(wrap, tmp_path):
    state = official_state_dict('emo2_1m')
    if wrap == 'module.':
        checkpoint = {f'module.{k}': v for k, v in state.items()}
    elif wrap == 'plain':
        checkpoint = state
    else:
        checkpoint = {wrap: state, 'epoch': torch.tensor(300)}
    path = tmp_path / 'EMOv2_1M_224.pth'
    torch.save(checkpoint, path)
    model = timm.create_model('emo2_1m', pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    with torch.no_grad():
        logits = model(INPUTS['1x3x256x192'])
    torch.testing.assert_close(logits, expected('emo2_1m')['logits_1x3x256x192'], rtol=0, atol=1e-4)


def test_other_containers_and_keys_are_refused(tmp_path):
    state = official_state_dict('emo2_1m')
    torch.save([state], tmp_path / 'list.pth')
    with pytest.raises(CheckpointError, match='dict of tensors'):
        timm.create_model('emo2_1m', pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / 'list.pth')))
    state['stage3.1.eops.0.extra.weight'] = torch.zeros(1)
    torch.save(state, tmp_path / 'extra.pth')
    with pytest.raises(CheckpointError, match=r'not part of EMOv2.*zhangzjn/EMOv2'):
        timm.create_model('emo2_1m', pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / 'extra.pth')))


def test_the_two_families_are_kept_apart():
    """emo_2m and emo2_2m have the same stage widths and depths: a checkpoint of one never loads into the other."""
    v1 = to_timm_layout(official_state_dict('emo_2m'))
    v2 = to_timm_layout(official_state_dict('emo2_2m'))
    with pytest.raises(CheckpointError, match=r"this checkpoint is EMO-2M .*you built emo2_2m.*build 'emo_2m'"):
        load_into(timm.create_model('emo2_2m'), v1)
    with pytest.raises(CheckpointError, match=r"this checkpoint is EMOv2-2M .*you built emo_2m.*build 'emo2_2m'"):
        load_into(timm.create_model('emo_2m'), v2)
    with pytest.raises(CheckpointError, match=r"EMOv2-5M .*build 'emo2_5m'"):
        load_into(timm.create_model('emo2_1m'), to_timm_layout(official_state_dict('emo2_5m')))


def test_download_of_a_distilled_tag_verifies_and_caches(release, tmp_path, monkeypatch):
    with OriginServer(release) as origin:
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        model = timm.create_model('emo2_1m.dist_in1k', pretrained=True).eval()
        assert origin.requests == ['resources/Cls/EMOv2_1M_224_KD.pth']
    with torch.no_grad():
        torch.testing.assert_close(
            model(INPUTS['1x3x256x192']), expected('emo2_1m')['logits_1x3x256x192'], rtol=0, atol=1e-4
        )
    cached = sorted(p.name for p in (tmp_path / 'torch' / 'hub' / 'checkpoints').iterdir())
    path = cached_path('emo2_1m.dist_in1k')
    assert cached == [path.name, path.name + '.sha256'] and path.name.startswith('emo2_1m.dist_in1k')
    # offline now: the cache answers
    monkeypatch.setenv('EMO_ORIGIN_URL', 'http://127.0.0.1:9')
    timm.create_model('emo2_1m.dist_in1k', pretrained=True)


def test_hub_folder_of_an_emo2_release_file(release, official_files, tmp_path):
    from emo.weights import convert_official

    folder = convert_official(official_files['emo2_1m'], tmp_path / 'hub')
    card = (folder / 'README.md').read_text()
    assert 'EMOv2-1M, an EMOv2 image classifier' in card and 'arXiv:2412.06674' in card
    assert 'resources/Cls/EMOv2_1M_224.pth' in card and '(verified)' in card and 'TPAMI' in card
    assert '| ImageNet-1k top-1 (official) | 72.326 |' in card
    model = timm.create_model(f'local-dir:{folder}', pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model(INPUTS['2x3x224x224']), expected('emo2_1m')['logits_2x3x224x224'], rtol=0, atol=1e-4
        )
    # the 512x512 weights differ from emo2_5m's in their window only: named, the folder gets the 512 config
    folder512 = convert_official(official_files['emo2_5m_512'], tmp_path / 'hub512', variant='emo2_5m_512')
    config = (folder512 / 'config.json').read_text()
    assert '"architecture": "emo2_5m_512"' in config and '"tag": "dist_in1k"' in config
    card512 = (folder512 / 'README.md').read_text()
    assert '| input | 3x512x512, ImageNet mean/std, resize 585 bicubic + center crop 512 |' in card512
    assert '| GFLOPs at 512x512 (fvcore) | 5.627 |' in card512


def test_onnx_at_224_and_dynamic_at_256x192(tmp_path, official_files):
    import onnxruntime as ort

    from emo.deploy.export import export_model

    weights = str(official_files['emo2_1m'])
    path, diffs = export_model('onnx', 'emo2_1m', tmp_path / 'static.onnx', weights=weights)
    assert max(diffs.values()) <= 1e-4
    path, diffs = export_model('onnx', 'emo2_1m', tmp_path / 'dynamic.onnx', weights=weights, dynamic=True)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    ref = expected('emo2_1m')
    for key in input_keys('emo2_1m'):
        got = torch.from_numpy(session.run(None, {'images': INPUTS[key].numpy()})[0])
        torch.testing.assert_close(got, ref[f'logits_{key}'], rtol=0, atol=1e-4)
    assert np.isfinite(session.run(None, {'images': np.zeros((1, 3, 97, 131), np.float32)})[0]).all()


def test_benchmark_baseline_is_the_family_s_and_sees_every_block():
    from emo.benchmark import check_agreement
    from emo.benchmark.official_emo2 import OfficialEMO2
    from emo.benchmark.runner import DEFAULT_VARIANTS, _emo_models

    assert set(DEFAULT_VARIANTS) == {'emo_1m', 'emo_2m', 'emo_5m', 'emo_6m', 'emo2_1m', 'emo2_2m', 'emo2_5m'}
    ours, fused, official = _emo_models('emo2_1m', None)
    assert isinstance(official, OfficialEMO2)
    assert all(bool((m.gamma == 1).all()) for m in ours.modules() if isinstance(m, LayerScale2d))
    assert check_agreement(fused, official, 64) <= 1e-4
    with torch.no_grad():
        official.stage4[1].eops[0].v.conv.bias.add_(0.5)
    with pytest.raises(RuntimeError, match='disagree'):
        check_agreement(fused, official, 64)


def test_a_released_file_names_its_variant_and_tag(release, tmp_path):
    """emo convert knows released files by their blob id: the 512x512 KD file becomes emo2_5m_512.dist_in1k although
    its weights look like emo2_5m's, and its card gives the official figures."""
    from emo.weights import convert_official

    for name, entry in emo.weights.released_weights('emo2').items():
        if not entry.distilled:
            continue
        src = tmp_path / Path(entry.path).name
        src.write_bytes(release[entry.path])
        folder = convert_official(src, tmp_path / name)
        config = json.loads((folder / 'config.json').read_text())
        assert (config['architecture'], config['pretrained_cfg']['tag']) == (entry.variant, entry.tag), name
        card = (folder / 'README.md').read_text()
        assert f'# Model card for {name}' in card and f'| ImageNet-1k top-1 (official) | {entry.top1} |' in card
        assert 'knowledge distillation' in card and '@article{zhang2025emov2,' in card


def test_predict_with_a_distilled_tag_and_a_local_file(official_files, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    image = tmp_path / 'noise.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 260, 3), dtype=np.uint8)).save(image)
    result = subprocess.run(
        [sys.executable, '-m', 'emo.cli', 'predict', str(image), '--model', 'emo2_1m.dist_in1k', '--weights',
         str(official_files['emo2_1m']), '--top-k', '3'],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == str(image) and len(lines) == 4 and all('%' in line for line in lines[1:])
