"""The rebuilt official EMOv2 computation against the official outputs of tests/data/emo2 (README there)."""

import json
from typing import Dict

import pytest
import torch
from reference import V2_VARIANT_NAMES, data_dir, expected, input_keys, official_state_dict, reference_inputs

from emo.benchmark.official_emo2 import official_emo2

CASES = [(prefix, key) for prefix in V2_VARIANT_NAMES for key in input_keys(prefix)]


@pytest.fixture(scope='module')
def inputs() -> Dict[str, torch.Tensor]:
    return reference_inputs()


@pytest.fixture(scope='module')
def models():
    """One model per prefix, built and loaded once (strictly: the module names are the official keys)."""
    cache = {}

    def get(prefix):
        if prefix not in cache:
            cache[prefix] = official_emo2(prefix, official_state_dict(prefix))
        return cache[prefix]

    return get


@pytest.mark.parametrize('prefix, key', CASES)
def test_matches_official_outputs(models, inputs, prefix, key):
    model = models(prefix)
    ref = expected(prefix)
    x = inputs[key]
    stages = []
    with torch.no_grad():
        logits = model(x)
        # the same forward again, block by block, to see each stage's raw output
        y = x
        for i, stage in enumerate((model.stage0, model.stage1, model.stage2, model.stage3, model.stage4)):
            for block in stage:
                y = block(y)
            if i:
                stages.append(y)
        pre_logits = model.norm(y).mean((2, 3))
    for i, out in enumerate(stages, 1):
        shape = ref[f'stage{i}_{key}_shape']
        values = ref[f'stage{i}_{key}_values']
        assert tuple(out.shape) == tuple(shape.tolist())
        got = out.flatten()[ref[f'stage{i}_{key}_index']]
        torch.testing.assert_close(got, values, rtol=0, atol=1e-4 * max(1.0, values.abs().max().item()))
    torch.testing.assert_close(pre_logits, ref[f'pre_logits_{key}'], rtol=0, atol=1e-4)
    torch.testing.assert_close(logits, ref[f'logits_{key}'], rtol=0, atol=1e-4)


def test_input_left_alone():
    """The in-place activations and layer scale never write into the caller's tensor."""
    model = official_emo2('emo2_1m', official_state_dict('emo2_1m'))
    x = reference_inputs()['1x3x256x192']
    before = x.clone()
    with torch.no_grad():
        first = model(x)
        second = model(x)
    assert torch.equal(x, before)
    assert torch.equal(first, second)


def test_unknown_variant():
    with pytest.raises(ValueError, match='emo2_3m'):
        official_emo2('emo2_3m')
    with pytest.raises(ValueError, match='not an EMOv2 variant'):
        official_emo2('emo_1m')


def test_keys_are_official():
    for prefix in V2_VARIANT_NAMES:
        keys = [(k, list(s)) for k, s, _ in json.loads((data_dir(prefix) / f'{prefix}_official_keys.json').read_text())]
        model = official_emo2(prefix)
        assert [(k, list(t.shape)) for k, t in model.state_dict().items()] == keys
