"""Architecture facts and the timm model contract."""

import copy
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from reference import VARIANT_NAMES

import emo
from emo.layers import GridAttention

SPEC_PARAMS = {'emo_1m': 1_361_168, 'emo_2m': 2_377_472, 'emo_5m': 5_108_848, 'emo_6m': 6_168_496}
SPEC_BACKBONE_PARAMS = {'emo_1m': 1_191_832, 'emo_2m': 2_176_072, 'emo_5m': 4_819_272, 'emo_6m': 5_846_856}
SPEC_GFLOPS = {'emo_1m': 0.261, 'emo_2m': 0.439, 'emo_5m': 0.903, 'emo_6m': 0.961}
SPEC_WIDTHS = {
    'emo_1m': [32, 48, 80, 168],
    'emo_2m': [32, 48, 120, 200],
    'emo_5m': [48, 72, 160, 288],
    'emo_6m': [48, 72, 160, 320],
}


def _count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('variant', VARIANT_NAMES)
def test_parameter_counts(variant):
    model = timm.create_model(variant)
    assert _count(model) == SPEC_PARAMS[variant]
    assert _count(timm.create_model(variant, features_only=True)) == SPEC_BACKBONE_PARAMS[variant]


@pytest.mark.parametrize('variant', VARIANT_NAMES)
def test_fvcore_gflops(variant):
    import fvcore.nn as fvcore
    from timm.layers import use_fused_attn

    from emo.layers import explicit_attention

    model = timm.create_model(variant).eval()
    # fvcore counts q @ k and attn @ v, and has no count for scaled_dot_product_attention
    with explicit_attention(model):
        flops = fvcore.FlopCountAnalysis(model, torch.randn(1, 3, 224, 224))
        flops.unsupported_ops_warnings(False)
        flops.uncalled_modules_warnings(False)
        gflops = flops.total() / 1e9
    assert gflops == pytest.approx(SPEC_GFLOPS[variant], rel=0.01)
    assert all(m.fused_attn == use_fused_attn() for m in model.modules() if isinstance(m, GridAttention))  # restored


def naive_grid_attention(attn: GridAttention, x: torch.Tensor) -> torch.Tensor:
    """The official grouping written out pixel by pixel: window (i, j) of an image zero-padded to multiples of
    the window holds pixels (i + n1 * a, j + n2 * b); padded pixels are zeros that take part unmasked."""
    B, C, H, W = x.shape
    ws, heads, dh = attn.window_size, attn.num_heads, attn.dim_head
    n1, n2 = math.ceil(H / ws), math.ceil(W / ws)
    w_qk = attn.qk.weight.flatten(1)
    out = torch.zeros_like(x)
    for i in range(n1):
        for j in range(n2):
            pos = [(i + n1 * a, j + n2 * b) for a in range(ws) for b in range(ws)]
            tokens = torch.stack(
                [x[:, :, r, c] if r < H and c < W else x.new_zeros(B, C) for r, c in pos], dim=1
            )  # (B, N, C)
            qk = tokens @ w_qk.t() + attn.qk.bias
            q = qk[..., :C].reshape(B, -1, heads, dh).transpose(1, 2)
            k = qk[..., C:].reshape(B, -1, heads, dh).transpose(1, 2)
            v = tokens.reshape(B, -1, heads, dh).transpose(1, 2)
            y = ((q @ k.transpose(-1, -2)) * dh**-0.5).softmax(-1) @ v
            y = y.transpose(1, 2).reshape(B, -1, C)
            for n, (r, c) in enumerate(pos):
                if r < H and c < W:
                    out[:, :, r, c] = y[:, n]
    return out


@pytest.mark.parametrize('size', [(14, 14), (16, 12), (25, 33), (3, 5), (7, 8)])
def test_grid_attention_matches_pixel_by_pixel_definition(size):
    torch.manual_seed(0)
    attn = GridAttention(40, dim_head=20, window_size=7)
    torch.nn.init.normal_(attn.qk.bias)
    x = torch.randn(2, 40, *size)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), naive_grid_attention(attn, x), rtol=1e-5, atol=1e-5)


def test_odd_input_size_whole_model_matches_pixel_by_pixel_attention(monkeypatch):
    """A 97x131 image pads every attention stage; the model equals one whose attention is the naive definition."""
    torch.manual_seed(0)
    model = timm.create_model('emo_1m').eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        final, stages = model.forward_intermediates(x)
        assert [tuple(s.shape[-2:]) for s in stages] == [(25, 33), (13, 17), (7, 9), (4, 5)]
        monkeypatch.setattr(GridAttention, 'forward', naive_grid_attention)
        final_naive, _ = model.forward_intermediates(x)
    torch.testing.assert_close(final, final_naive, rtol=1e-4, atol=1e-4)
    assert model(x).shape == (1, 1000)


@pytest.mark.parametrize('variant', VARIANT_NAMES)
def test_structure_follows_spec(variant):
    model = timm.create_model(variant)
    spec = emo.VARIANTS[variant]
    assert [info['num_chs'] for info in model.feature_info] == SPEC_WIDTHS[variant]
    assert [len(stage.blocks) for stage in model.stages] == list(spec.depths)
    for s, stage in enumerate(model.stages):
        first, rest = stage.blocks[0], stage.blocks[1:]
        assert first.conv_local.conv.stride == (2, 2) and not first.has_skip
        assert isinstance(first.attn, torch.nn.Identity)
        assert first.v.out_channels == int(first.v.in_channels * spec.exp_ratios[s] * 2)
        for block in rest:
            assert block.has_skip
            assert isinstance(block.attn, GridAttention) == (s >= 2)
        norm_type = torch.nn.BatchNorm2d if s < 2 else torch.nn.LayerNorm
        assert all(isinstance(b.norm, norm_type) and b.norm.eps == 1e-6 for b in stage.blocks)
        assert all(isinstance(b.conv_local.bn, torch.nn.BatchNorm2d) for b in stage.blocks)
    heads = [b.attn.num_heads for st in model.stages for b in st.blocks if isinstance(b.attn, GridAttention)]
    assert heads[0] == SPEC_WIDTHS[variant][2] // spec.dim_heads[2]
    assert heads[-1] == SPEC_WIDTHS[variant][3] // spec.dim_heads[3]


def test_default_cfg():
    model = timm.create_model('emo_2m')
    cfg = model.pretrained_cfg
    assert cfg['architecture'] == 'emo_2m' and cfg['tag'] == 'in1k'
    assert cfg['input_size'] == (3, 224, 224) and cfg['pool_size'] == (7, 7)
    assert cfg['crop_pct'] == 0.875 and cfg['interpolation'] == 'bicubic'
    assert cfg['mean'] == timm.data.IMAGENET_DEFAULT_MEAN and cfg['std'] == timm.data.IMAGENET_DEFAULT_STD
    assert cfg['paper_ids'] == 'arXiv:2301.01146' and cfg['origin_url'] == 'https://github.com/zhangzjn/EMO'
    assert 'license' in cfg and cfg['url'].endswith('/resources/EMO_2M/net.pth')
    params = dict(model.named_parameters())
    assert cfg['first_conv'] + '.weight' in params and cfg['classifier'] + '.weight' in params
    assert timm.list_models('emo_*') == list(VARIANT_NAMES)
    assert timm.list_models('emo_*', pretrained=True) == [f'{n}.in1k' for n in VARIANT_NAMES]
    with torch.no_grad():
        assert model.eval().forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 200, 7, 7)


def test_create_model_keywords():
    x = torch.randn(2, 1, 64, 96)
    model = timm.create_model(
        'emo_1m', num_classes=7, in_chans=1, global_pool='max', drop_rate=0.3, drop_path_rate=0.1
    ).eval()
    assert model(x).shape == (2, 7)
    assert model.stem.conv.in_channels == 1 and model.head_drop.p == 0.3
    drops = [b.drop_path.drop_prob for st in model.stages for b in st.blocks if hasattr(b.drop_path, 'drop_prob')]
    assert max(drops) == pytest.approx(0.1) and drops == sorted(drops)
    features = timm.create_model('emo_1m', num_classes=0, in_chans=1).eval()
    assert features(x).shape == (2, 168)
    unpooled = timm.create_model('emo_1m', num_classes=0, global_pool='', in_chans=1).eval()
    assert unpooled(x).shape == (2, 168, 2, 3)
    with pytest.raises(TypeError):
        timm.create_model('emo_1m', not_an_arg=1)
    with pytest.raises(ValueError, match='global_pool'):
        timm.create_model('emo_1m', global_pool='catavgmax')


def test_pooling_and_heads_agree():
    model = timm.create_model('emo_1m').eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        features = model.forward_features(x)
        pre = model.forward_head(features, pre_logits=True)
        torch.testing.assert_close(pre, features.mean((2, 3)))
        torch.testing.assert_close(model(x), model.head(pre))
        model.reset_classifier(0)
        torch.testing.assert_close(model(x), pre)
        model.reset_classifier(5, 'avgmax')
        assert model.get_classifier().out_features == 5 and model(x).shape == (2, 5)
        torch.testing.assert_close(
            model.forward_head(features, pre_logits=True), 0.5 * (features.mean((2, 3)) + features.amax((2, 3)))
        )
        model.reset_classifier(3, '')  # dense: the classifier at every position
        dense = model(x)
        assert dense.shape == (2, 3, 3, 3)
        torch.testing.assert_close(dense[:, :, 1, 2], model.head(features[:, :, 1, 2]))


def test_reset_classifier_keeps_device_dtype_and_mode():
    model = timm.create_model('emo_1m').to(torch.float64).train()
    model.reset_classifier(4)
    assert model.head.weight.dtype == torch.float64 and model.head.training


def test_features_only_and_out_indices():
    model = timm.create_model('emo_2m', features_only=True, out_indices=(1, 3)).eval()
    assert model.feature_info.channels() == [48, 200] and model.feature_info.reduction() == [8, 32]
    outs = model(torch.randn(1, 3, 128, 160))
    assert [tuple(o.shape) for o in outs] == [(1, 48, 16, 20), (1, 200, 4, 5)]


@pytest.mark.parametrize(
    'out_indices, message',
    [((5,), r'\[5\] are not stages'), ((0, 0), 'each stage once'), ((3, 1), 'increasing order'), ((), 'non-empty')],
)
def test_bad_out_indices_get_one_clear_error(out_indices, message):
    # (3, 1) was built, returned the features in network order and described them in the order asked for
    with pytest.raises(ValueError, match=message):
        timm.create_model('emo_1m', features_only=True, out_indices=out_indices)


def test_int_out_indices_take_the_last_stages():
    last_two = timm.create_model('emo_1m', features_only=True, out_indices=2)  # timm's int form: the last n
    assert last_two.feature_info.channels() == [80, 168] and last_two.feature_info.reduction() == [16, 32]


def test_forward_intermediates_contract():
    model = timm.create_model('emo_1m').eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        assert [t.shape[1] for t in inter] == [32, 48, 80, 168]
        assert [t.shape[-1] for t in inter] == [24, 12, 6, 3]
        normed = model.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)
        torch.testing.assert_close(normed[0], final)
        early = model.forward_intermediates(x, indices=[1], stop_early=True, intermediates_only=True)
        torch.testing.assert_close(early[0], inter[1])
        with pytest.raises(ValueError, match='NCHW'):
            model.forward_intermediates(x, output_fmt='NHWC')


BOTH = ['emo_1m', 'emo2_1m']  # the timm contract is written once for both families; each test runs on one of each


@pytest.mark.parametrize('variant', BOTH)
@pytest.mark.parametrize('index', [0, 1, 2, 3])
def test_prune_intermediate_layers(index, variant):
    model = timm.create_model(variant).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        taps = model.forward_intermediates(x, intermediates_only=True)
        keep_head = copy.deepcopy(model)
        keep_head.prune_intermediate_layers([3], prune_head=False)
        torch.testing.assert_close(keep_head(x), expected)

        pruned = copy.deepcopy(model)
        take = pruned.prune_intermediate_layers([index], prune_norm=True)
        assert len(pruned.stages) == index + 1
        torch.testing.assert_close(
            pruned.forward_intermediates(x, indices=take, intermediates_only=True)[0], taps[index]
        )
        torch.testing.assert_close(pruned.forward_features(x), taps[index])
    pruned.train()
    pruned.forward_features(x).sum().backward()
    assert all(p.grad is not None for p in pruned.parameters())


def _bytes_saved_for_backward(model, x):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).sum()
    loss.backward()
    return total


@pytest.mark.parametrize('variant', BOTH)
def test_grad_checkpointing_saves_memory_and_keeps_outputs(variant):
    torch.manual_seed(0)
    model = timm.create_model(variant, num_classes=10).train()
    x = torch.randn(4, 3, 128, 128)
    plain = _bytes_saved_for_backward(model, x)
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing()
    assert all(stage.grad_checkpointing for stage in model.stages)
    checkpointed = _bytes_saved_for_backward(model, x)
    assert checkpointed < 0.25 * plain, (checkpointed, plain)
    # same gradients (BatchNorm in train mode makes this exact only with identical batch statistics)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('variant', BOTH)
def test_layer_decay_with_timm_optimizer_factory(variant):
    from timm.optim import create_optimizer_v2

    model = timm.create_model(variant, num_classes=10)
    optimizer = create_optimizer_v2(model, 'adamw', lr=1e-3, weight_decay=0.05, layer_decay=0.8)
    scales = sorted({g['lr_scale'] for g in optimizer.param_groups})
    # group_matcher makes one layer of the stem, one of each block (EMO-1M and EMOv2-1M: 2 + 2 + 8 + 3) and one of
    # the final norm with the head (the norm matched last, the head left unmatched: timm puts it in the last
    # layer): 17
    layers = 1 + sum((2, 2, 8, 3)) + 1
    assert scales == pytest.approx([0.8 ** (layers - 1 - i) for i in range(layers)])
    first_conv = model.get_submodule(model.pretrained_cfg['first_conv']).weight
    head_group = next(g for g in optimizer.param_groups if any(p is model.head.weight for p in g['params']))
    stem_group = next(g for g in optimizer.param_groups if any(p is first_conv for p in g['params']))
    assert head_group['lr_scale'] == 1.0 and stem_group['lr_scale'] == min(scales)
    coarse = timm.models.group_parameters(model, model.group_matcher(coarse=True))
    assert len(coarse) == 6  # stem, 4 stages, norm + head


@pytest.mark.parametrize('variant', BOTH)
def test_torchscript_and_fx_match_eager(variant):
    from timm.models import get_notrace_functions, get_notrace_modules
    from torchvision.models.feature_extraction import create_feature_extractor

    model = timm.create_model(variant).eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
        fx_model = create_feature_extractor(
            model,
            return_nodes={'stages.3': 'stage4', 'head': 'logits'},
            tracer_kwargs=dict(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions()),
        )
        torch.testing.assert_close(fx_model(x)['logits'], expected)


@pytest.mark.parametrize(
    'bad, message',
    [
        (torch.randn(3, 224, 224), '4-D batch'),
        (torch.randn(1, 4, 224, 224), '3-channel images, got 4 channels'),
        (torch.randn(1, 3, 16, 224), 'too small'),
    ],
)
@pytest.mark.parametrize('variant', BOTH)
def test_bad_input_gets_one_clear_error(bad, message, variant):
    model = timm.create_model(variant).eval()
    with pytest.raises(ValueError, match=message):
        model(bad)
    with pytest.raises(ValueError, match=message):
        timm.create_model(variant, features_only=True).eval()(bad)


def test_channels_last_and_bfloat16():
    model = timm.create_model('emo_1m').eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(
            model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last)),
            expected,
            rtol=1e-4,
            atol=1e-4,
        )
        out = model.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert F.cosine_similarity(out.float(), expected).min() > 0.99


def test_an_activation_fuse_cannot_take_is_refused_at_construction():
    with pytest.raises(ValueError, match="act_layers must each be one of .'silu', 'gelu'., got .'relu'"):
        emo.EMO(act_layers=('relu',) * 4)
