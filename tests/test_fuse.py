"""The fused inference path (timm.utils.reparameterize_model) reproduces the official outputs and the unfused
model, on every path it can take: oneDNN kernels, plain convs, batch slicing, TorchScript, torch.compile."""

import copy

import pytest
import timm
import torch
import torch.nn as nn
from reference import (
    INPUT_KEYS,
    V2_VARIANT_NAMES,
    VARIANT_NAMES,
    expected,
    input_keys,
    official_state_dict,
    reference_inputs,
)
from timm.models._features_fx import create_feature_extractor, get_graph_node_names
from timm.utils import reparameterize_model

import emo.layers.batch_slices
from emo.benchmark.official import official_emo
from emo.layers import FusedConv, fold_bn_after, fold_bn_before
from emo.weights import to_timm_layout

INPUTS = reference_inputs()


def _reference_model(variant: str) -> nn.Module:
    model = timm.create_model(variant).eval()
    model.load_state_dict(to_timm_layout(official_state_dict(variant)))
    return model


@pytest.mark.parametrize('variant', VARIANT_NAMES + V2_VARIANT_NAMES)
def test_fused_model_reproduces_the_reference(variant):
    model = _reference_model(variant)
    fused = reparameterize_model(model)
    ref = expected(variant)
    with torch.inference_mode():
        for key in input_keys(variant):
            x = INPUTS[key]
            logits = fused(x)
            torch.testing.assert_close(logits, ref[f'logits_{key}'], rtol=0, atol=1e-4)
            torch.testing.assert_close(logits, model(x), rtol=0, atol=1e-4)
            _, stages = fused.forward_intermediates(x)
            for i, stage in enumerate(stages):
                want = ref[f'stage{i + 1}_{key}_values']
                got = stage.flatten()[ref[f'stage{i + 1}_{key}_index']]
                torch.testing.assert_close(got, want, rtol=0, atol=1e-4 * max(1.0, want.abs().max().item()))
    # the deep copy is fused; the model the user holds keeps its BatchNorms
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_a_model_fused_inside_inference_mode_runs():
    # its weights are inference tensors, which have no version counter for the oneDNN weight cache to read
    model = _reference_model('emo_1m')
    x = INPUTS[INPUT_KEYS[0]]
    with torch.inference_mode():
        fused = reparameterize_model(model)
        torch.testing.assert_close(fused(x), expected('emo_1m')[f'logits_{INPUT_KEYS[0]}'], rtol=0, atol=1e-4)


@pytest.mark.parametrize('variant', VARIANT_NAMES)
def test_official_arithmetic_reproduces_the_reference(variant):
    """The benchmark's baseline computes what the official code computes, from the official state dict as is."""
    model = official_emo(variant, official_state_dict(variant))
    ref = expected(variant)
    with torch.inference_mode():
        for key in INPUT_KEYS:
            torch.testing.assert_close(model(INPUTS[key]), ref[f'logits_{key}'], rtol=0, atol=1e-4)


def test_official_arithmetic_needs_every_key():
    state = official_state_dict('emo_1m')
    del state['stage3.1.qk.conv.bias']
    with pytest.raises(RuntimeError, match='stage3.1.qk.conv.bias'):
        official_emo('emo_1m', state)
    with pytest.raises(ValueError, match='emo_3m'):
        official_emo('emo_3m')


def test_batchnorm_folds_are_exact():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(8, eps=1e-6).eval()
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-1, 1)
    x = torch.randn(2, 8, 9, 9)
    dw = nn.Conv2d(8, 8, 5, 2, 2, groups=8, bias=False)
    pw = nn.Conv2d(8, 16, 1, bias=True)
    with torch.no_grad():
        torch.testing.assert_close(fold_bn_after(dw, bn)(x), bn(dw(x)), rtol=0, atol=1e-5)
        torch.testing.assert_close(fold_bn_before(bn, pw)(x), pw(bn(x)), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match='1x1'):
        fold_bn_before(bn, dw)


def test_fuse_is_idempotent_and_keeps_the_timm_api(official_files):
    model = _reference_model('emo_1m')
    once = reparameterize_model(model)
    twice = reparameterize_model(once)
    x = INPUTS['1x3x256x192']
    with torch.inference_mode():
        torch.testing.assert_close(twice(x), once(x), rtol=0, atol=0)
    # the feature pyramid and the head API still work on the fused model
    overlay = dict(file=str(official_files['emo_1m']))
    features = timm.create_model('emo_1m', pretrained=True, features_only=True, pretrained_cfg_overlay=overlay).eval()
    fused_features = reparameterize_model(features)
    with torch.inference_mode():
        fused_maps, maps = fused_features(x), features(x)
    assert len(fused_maps) == len(maps) == 4  # strides 4, 8, 16, 32: none lost in fusing
    for a, b in zip(fused_maps, maps):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    once.reset_classifier(10)
    with torch.inference_mode():
        assert once(x).shape == (1, 10)


def _plain_copy(fused: nn.Module) -> nn.Module:
    plain = copy.deepcopy(fused)  # deepcopy after a oneDNN run: the packed weights live outside the module
    for m in plain.modules():
        if isinstance(m, FusedConv):
            m.use_onednn = False
    return plain


@pytest.mark.skipif(not emo.layers.onednn_available(), reason='this torch build has no oneDNN')
def test_onednn_and_plain_paths_agree(monkeypatch):
    fused = reparameterize_model(_reference_model('emo_2m'))
    convs = [m for m in fused.modules() if isinstance(m, FusedConv)]
    plain = _plain_copy(fused)
    # the two oneDNN ops FusedConv calls (looked up through torch.ops.mkldnn at each call), counted per conv
    calls, current = [], [None]
    for i, conv in enumerate(convs):
        conv.register_forward_pre_hook(lambda m, args, i=i: current.__setitem__(0, i))
    for op, kind in (('_reorder_convolution_weight', 'pack'), ('_convolution_pointwise', 'run')):
        real = getattr(torch.ops.mkldnn, op)
        monkeypatch.setattr(
            torch.ops.mkldnn,
            op,
            lambda *a, real=real, kind=kind, **k: calls.append((kind, current[0])) or real(*a, **k),
        )

    def counted(model):
        calls.clear()
        with torch.inference_mode():
            out = model(x)
        return out, [i for kind, i in calls if kind == 'pack'], {i for kind, i in calls if kind == 'run'}

    x = INPUTS['2x3x224x224']
    out, packed, ran = counted(fused)
    torch.testing.assert_close(out, counted(plain)[0], rtol=0, atol=1e-4)
    assert not calls  # the plain copy never touches oneDNN
    # oneDNN ran for every fused conv, and each weight was packed once (stage 1 runs the batch one image at a time:
    # the second slice has the first one's shape and reuses its packed weight)
    all_convs = list(range(len(convs)))
    assert ran == set(all_convs) and sorted(packed) == all_convs
    out, packed, ran = counted(fused)
    assert packed == [] and ran == set(all_convs)  # a second call packs nothing
    first, first_plain = convs[0], [m for m in plain.modules() if isinstance(m, FusedConv)][0]
    with torch.no_grad():
        # a weight replaced through .data is re-packed, once
        new_weight = torch.randn_like(first.weight)
        first.weight.data = new_weight.clone()
        first_plain.weight.data = new_weight.clone()
    out, packed, _ = counted(fused)
    assert packed == [0]
    torch.testing.assert_close(out, counted(plain)[0], rtol=0, atol=1e-4)
    with torch.no_grad():
        # one edited through .data in place is re-packed once after repack()
        first.weight.data.mul_(2)
        first_plain.weight.data.mul_(2)
    first.repack()
    out, packed, _ = counted(fused)
    assert packed == [0]
    torch.testing.assert_close(out, counted(plain)[0], rtol=0, atol=1e-4)


def test_many_windows_take_the_fused_attention_kernel(monkeypatch):
    model = _reference_model('emo_1m')
    fused = reparameterize_model(model)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional, 'scaled_dot_product_attention', lambda *a, **k: calls.append(a[0].shape) or sdpa(*a, **k)
    )
    x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(2))  # 16 windows x 4 heads in stage 3
    with torch.inference_mode():
        want = model(x)  # the unfused model takes SDPA too: only the fused model's calls count below
        calls.clear()
        torch.testing.assert_close(fused(x), want, rtol=0, atol=1e-4)
    assert (16, 4, 49, 20) in calls


def test_unfused_blocks_never_write_into_outputs_hooks_hold():
    model = _reference_model('emo_1m')
    seen = []
    block = model.stages[0].blocks[1]
    for module in (block.conv_local, block.proj):
        module.register_forward_hook(lambda m, i, out: seen.append((out, out.clone())))
    with torch.inference_mode():
        model(INPUTS['1x3x256x192'])
    assert len(seen) == 2 and all(torch.equal(out, kept) for out, kept in seen)


def test_fusing_in_training_mode_warns():
    with pytest.warns(UserWarning, match='model.eval'):
        reparameterize_model(timm.create_model('emo_1m'))


def test_large_batches_run_in_slices(monkeypatch):
    fused = reparameterize_model(_reference_model('emo_1m'))
    x = torch.randn(5, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        whole = fused(x)
    calls = []
    real = emo.layers.run_in_slices

    def counting(fn, inp, bytes_per_pixel):
        calls.append(inp.shape[0])
        return real(fn, inp, bytes_per_pixel)

    # a budget of one image: every stage and the stem now split the batch
    monkeypatch.setattr(emo.layers.batch_slices, 'SLICE_BYTES', 1)
    monkeypatch.setattr('emo.models.emo.run_in_slices', counting)
    split_calls = []
    original_split = torch.Tensor.split
    monkeypatch.setattr(torch.Tensor, 'split', lambda t, *a, **k: split_calls.append(a) or original_split(t, *a, **k))
    with torch.inference_mode():
        sliced = fused(x)
    assert calls == [5] * 5 and len(split_calls) == 5
    torch.testing.assert_close(sliced, whole, rtol=0, atol=1e-5)


def test_fused_model_still_computes_gradients():
    """With autograd on, fused layers take the plain-conv path (oneDNN's fused op has no backward)."""
    model = _reference_model('emo_1m')  # eval mode: BatchNorm uses its running statistics, as the fused model does
    fused = reparameterize_model(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    grads = []
    for m in (model, fused):
        xi = x.clone().requires_grad_()
        m(xi).sum().backward()
        grads.append(xi.grad)
    assert grads[1].abs().sum() > 0
    # the same function, so the same gradient with respect to the input
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)
    assert all(p.grad is not None for p in fused.parameters() if p.requires_grad)


def test_fused_model_scripts_and_traces():
    fused = reparameterize_model(_reference_model('emo_1m'))
    x = INPUTS['1x3x256x192']
    scripted = torch.jit.script(fused)
    with torch.inference_mode():
        torch.testing.assert_close(scripted(x), fused(x), rtol=0, atol=1e-4)
    # timm's fx tracer (features and layer-wise tools): the fused layers trace like any other
    last = get_graph_node_names(fused)[1][-1]
    gm = create_feature_extractor(fused, return_nodes=[last])
    with torch.inference_mode():
        torch.testing.assert_close(gm(x)[last], fused(x), rtol=0, atol=1e-4)


@pytest.mark.slow
def test_fused_model_compiles():
    model = _reference_model('emo_1m')
    compiled = torch.compile(reparameterize_model(model))
    key = '1x3x256x192'  # the padded windows: one input, since every new shape compiles again (a minute here)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(INPUTS[key]), expected('emo_1m')[f'logits_{key}'], rtol=0, atol=1e-4)
