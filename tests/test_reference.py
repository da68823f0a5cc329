"""The models reproduce the official EMO's and EMOv2's outputs, loaded through timm's own pretrained-file route."""

import pytest
import timm
import torch
from reference import V2_VARIANT_NAMES, VARIANT_NAMES, expected, full_reference_dir, input_keys, reference_inputs

INPUTS = reference_inputs()


@pytest.fixture(params=['sdpa', 'explicit'])
def attention(request, monkeypatch):
    """Both ways GridAttention computes: scaled_dot_product_attention everywhere (timm's fused_attn, with the
    few-window-heads shortcut off), and the explicit softmax(q k^T) v (fused_attn off)."""
    from timm.layers import set_fused_attn, use_fused_attn

    import emo.layers.grid_attention as grid_attention
    import emo.layers.hybrid_attention as hybrid_attention

    before = use_fused_attn()
    set_fused_attn(request.param == 'sdpa')
    monkeypatch.setattr(grid_attention, 'MIN_FUSED_WINDOW_HEADS', 0)
    # EMOv2's attention takes the explicit form on CPU for its wide value heads: SDPA forced here, to test it
    monkeypatch.setattr(hybrid_attention.HybridWindowAttention, '_explicit_is_faster', lambda self, *args: False)
    yield request.param
    set_fused_attn(before)


def _check_attention(model: torch.nn.Module, attention: str) -> None:
    flags = {m.fused_attn for m in model.modules() if hasattr(m, 'fused_attn')}
    assert flags == {attention == 'sdpa'}


def _stage_values(stage: torch.Tensor, ref: dict, key: str) -> torch.Tensor:
    assert list(stage.shape) == ref[f'{key}_shape'].tolist()
    return stage.flatten()[ref[f'{key}_index']]


@pytest.mark.parametrize('variant', VARIANT_NAMES + V2_VARIANT_NAMES)
def test_portable_reference(variant, official_files, attention):
    model = timm.create_model(variant, pretrained=True, pretrained_cfg_overlay=dict(file=str(official_files[variant])))
    model.eval()
    _check_attention(model, attention)
    ref = expected(variant)
    assert {f'logits_{k}' for k in input_keys(variant)} == {k for k in ref if k.startswith('logits_')}
    with torch.no_grad():
        for input_key in input_keys(variant):
            final, stages = model.forward_intermediates(INPUTS[input_key])
            torch.testing.assert_close(model.forward_head(final), ref[f'logits_{input_key}'], rtol=0, atol=1e-4)
            torch.testing.assert_close(
                model.forward_head(final, pre_logits=True), ref[f'pre_logits_{input_key}'], rtol=0, atol=1e-4
            )
            # the plain forward is the same computation
            torch.testing.assert_close(model(INPUTS[input_key]), ref[f'logits_{input_key}'], rtol=0, atol=1e-4)
            for i, stage in enumerate(stages):
                key = f'stage{i + 1}_{input_key}'
                values = _stage_values(stage, ref, key)
                want = ref[f'{key}_values']
                torch.testing.assert_close(values, want, rtol=0, atol=1e-4 * max(1.0, want.abs().max().item()))


@pytest.mark.parametrize('variant', ['emo_1m', 'emo2_1m'])
def test_reference_rule_is_input_sensitive(variant):
    """Guard against a test that cannot fail: the reference logits differ between the two 224 images."""
    ref = expected(variant)
    logits = ref['logits_2x3x224x224']
    assert (logits[0] - logits[1]).abs().max() > 100 * 1e-4


@pytest.mark.parametrize('variant', VARIANT_NAMES + V2_VARIANT_NAMES)
def test_features_only_matches_reference_stages(variant, official_files):
    model = timm.create_model(
        variant, pretrained=True, features_only=True, pretrained_cfg_overlay=dict(file=str(official_files[variant]))
    ).eval()
    ref = expected(variant)
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        for input_key in input_keys(variant):
            for i, stage in enumerate(model(INPUTS[input_key])):
                key = f'stage{i + 1}_{input_key}'
                want = ref[f'{key}_values']
                torch.testing.assert_close(
                    _stage_values(stage, ref, key), want, rtol=0, atol=1e-4 * max(1.0, want.abs().max().item())
                )


FULL = full_reference_dir()


@pytest.mark.skipif(
    FULL is None,
    reason='shared/reference (the larger reference set) is not beside this checkout; set EMO_REFERENCE_DIR to run it',
)
@pytest.mark.parametrize('variant', VARIANT_NAMES)
def test_full_reference(variant, attention):
    """Stored official checkpoints (calibrated BatchNorm) and full stage maps, tolerances from its README."""
    model = timm.create_model(
        variant, pretrained=True, pretrained_cfg_overlay=dict(file=str(FULL / f'{variant}_official_state_dict.pth'))
    ).eval()
    _check_attention(model, attention)
    ref = torch.load(FULL / f'{variant}_expected.pt', weights_only=True)
    inputs = {
        '224': torch.load(FULL / 'input_2x3x224x224.pt', weights_only=True),
        '256x192': torch.load(FULL / 'input_1x3x256x192.pt', weights_only=True),
    }
    with torch.no_grad():
        for suffix, x in inputs.items():
            final, stages = model.forward_intermediates(x)
            torch.testing.assert_close(model.forward_head(final), ref[f'logits_{suffix}'], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(
                model.forward_head(final, pre_logits=True), ref[f'pre_logits_{suffix}'], rtol=1e-4, atol=1e-5
            )
            for i, stage in enumerate(stages):
                key = f'stage{i + 1}' + ('' if suffix == '224' else f'_{suffix}')
                torch.testing.assert_close(stage, ref[key], rtol=1e-4, atol=1e-4)
