"""``emo bench``: its memory counter is exact, its baseline is checked, and a small run writes a full report."""

import json
import sys

import pytest
import timm
import torch

from emo.benchmark import PEER_PAIRS, ActivationMemory, check_agreement, memory_report, time_interleaved
from emo.benchmark.efficiency import EFFICIENCY_TIERS, count_gmacs
from emo.benchmark.official import official_emo
from emo.cli import main
from emo.weights import to_official_layout

MIB = 2**20


def test_activation_memory_counts_storages_exactly():
    with ActivationMemory() as mem:
        a = torch.ones(MIB // 4)  # 1 MiB of float32
        b = a * 2  # 2 MiB live
        view = b.view(-1, 2)  # same storage: no new bytes
        del a  # 1 MiB live
        c = view + 1  # 2 MiB live again
        assert mem.current == 2 * MIB
        del b, view, c
        assert mem.current == 0
    assert mem.peak == 2 * MIB


def test_activation_memory_skips_what_existed_before():
    weight = torch.ones(MIB // 4)
    running = torch.zeros(MIB // 4)
    with ActivationMemory() as mem:
        view = weight.view(-1, 2)  # a view of a parameter allocates nothing
        running.add_(1)  # nor does an in-place update of a buffer
        out = view * 2  # 1 MiB
        del view, out
    assert mem.peak == MIB


def test_grad_checkpointing_uses_less_training_memory():
    report = memory_report('emo_1m', batch_size=2, img_size=96)
    assert report['train_mib_checkpointing'] < 0.8 * report['train_mib']
    assert 0 < report['infer_fused_mib_per_image'] <= report['infer_mib_per_image']
    # a training step keeps every activation for backward; inference frees them as it goes
    assert report['infer_mib_per_image'] * report['batch_size'] < report['train_mib']


def test_agreement_check_catches_a_wrong_baseline():
    ours = timm.create_model('emo_1m').eval()
    official = official_emo('emo_1m', to_official_layout(ours.state_dict()))
    assert check_agreement(ours, official, 64) <= 1e-4
    with torch.no_grad():
        official.stage3[1].qk.conv.bias.add_(1.0)
    with pytest.raises(RuntimeError, match='disagree'):
        check_agreement(ours, official, 64)


def test_interleaved_rounds_rotate():
    calls = []
    times = time_interleaved({n: (lambda n=n: calls.append(n)) for n in 'abc'}, rounds=3, warmup=1)
    assert calls[:3] == ['a', 'b', 'c']  # warm-up
    assert calls[3:] == ['a', 'b', 'c', 'b', 'c', 'a', 'c', 'a', 'b']
    assert {n: len(t) for n, t in times.items()} == {'a': 3, 'b': 3, 'c': 3}


def test_gmacs_are_the_multiply_accumulates():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(8 * 32 * 32, 10)
    )
    assert count_gmacs(model, 32) * 1e9 == pytest.approx(8 * 32 * 32 * 3 * 9 + 8 * 32 * 32 * 10)
    # the paper's (fvcore's) 0.261 GFLOPs of EMO-1M at 224, fused or not
    emo_1m = timm.create_model('emo_1m').eval()
    assert count_gmacs(emo_1m, 224) == pytest.approx(0.261, rel=0.03)
    from timm.utils import reparameterize_model

    assert count_gmacs(reparameterize_model(emo_1m), 224) == pytest.approx(count_gmacs(emo_1m, 224), rel=1e-6)


def test_small_run_writes_json_markdown_and_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(PEER_PAIRS, 'emo_1m', ('mobilenetv3_small_050',))
    monkeypatch.setitem(EFFICIENCY_TIERS, 'emo_1m', ('mobilenetv3_small_050', 'absent_peer'))
    args = ['bench', '--models', 'emo_1m', '--peers', 'mobilenetv3_small_050', '--batch-sizes', '1,2']
    args += ['--img-size', '64', '--rounds', '2', '--warmup', '1', '--memory-batch', '2', '--out-dir', str(tmp_path)]
    assert main(args) == 0
    result = json.loads((tmp_path / 'benchmark.json').read_text())
    for backend in ('eager', 'onnxruntime', 'openvino', 'openvino_int8'):
        for batch in ('1', '2'):
            table = result[backend][batch]
            # int8 of the fused EMO and the peers; the baselines are f32 references
            names = {'emo_1m', 'mobilenetv3_small_050'} | ({'emo_1m/official'} if backend != 'openvino_int8' else set())
            assert names <= set(table)
            efficiency = result['efficiency'][backend][batch]
            rate = result['gmacs']['emo_1m'] * int(batch) * 1000 / table['emo_1m']['median_ms']
            assert efficiency['emo_1m']['gmacs_per_s'] == pytest.approx(rate)
            peer_rate = efficiency['mobilenetv3_small_050']['gmacs_per_s']
            assert efficiency['emo_1m']['best_peer'] == 'mobilenetv3_small_050'
            assert efficiency['emo_1m']['vs_best_peer'] == pytest.approx(rate / peer_rate)
            if backend == 'openvino_int8':
                f32 = result['openvino'][batch]['emo_1m']['median_ms']
                assert result['int8_speedup'][batch]['emo_1m'] == pytest.approx(f32 / table['emo_1m']['median_ms'])
                continue
            assert all(0 < e['min_ms'] <= e['median_ms'] <= e['max_ms'] and e['runs'] == 2 for e in table.values())
            ratios = result['ratios'][backend][batch]['emo_1m']
            ours = table['emo_1m']['median_ms']
            assert ratios['vs_official'] == pytest.approx(table['emo_1m/official']['median_ms'] / ours)
            assert ratios['vs_mobilenetv3_small_050'] == pytest.approx(
                table['mobilenetv3_small_050']['median_ms'] / ours
            )
    assert result['eager']['1']['mobilenetv3_small_050']['layout'] in ('channels_first', 'channels_last')
    assert max(result['agreement']['emo_1m'].values()) <= 1e-4
    assert result['top1']['emo_1m'] == pytest.approx(71.498)
    memory = result['memory']['emo_1m']
    assert memory['train_mib_checkpointing'] < memory['train_mib']
    assert 0 < memory['infer_fused_mib_per_image_batch1'] <= memory['infer_mib_per_image_batch1']
    markdown = (tmp_path / 'benchmark.md').read_text()
    assert '| emo_1m/official |' in markdown and '| eager | 1 | emo_1m |' in markdown
    assert '| openvino_int8 | 2 | emo_1m |' in markdown and 'OV int8 b1 ms' in markdown
    assert (tmp_path / 'benchmark.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert markdown in capsys.readouterr().out


def test_bench_rejects_unknown_models(tmp_path, capsys):
    args = ['bench', '--models', 'emo_3m', '--peers', '', '--no-onnx', '--no-openvino', '--out-dir', str(tmp_path)]
    assert main(args) == 1
    assert 'emo_3m' in capsys.readouterr().err
    assert not (tmp_path / 'benchmark.json').exists()


@pytest.mark.slow
def test_compiled_section_times_emo_and_peers(tmp_path, monkeypatch):
    monkeypatch.setitem(PEER_PAIRS, 'emo_1m', ('mobilenetv3_small_050',))
    args = ['bench', '--models', 'emo_1m', '--peers', 'mobilenetv3_small_050', '--batch-sizes', '1', '--compile']
    args += ['--img-size', '64', '--rounds', '2', '--warmup', '1', '--no-onnx', '--no-openvino', '--no-memory']
    assert main([*args, '--out-dir', str(tmp_path)]) == 0
    result = json.loads((tmp_path / 'benchmark.json').read_text())
    compiled = result['compiled']['1']
    # the fused EMO and the peer are compiled; the baselines stay eager-only
    assert set(compiled) == {'emo_1m', 'mobilenetv3_small_050'}
    # --rounds 2: two timed runs each, after the warm-up
    assert all(e['runs'] == 2 and 0 < e['min_ms'] <= e['median_ms'] <= e['max_ms'] for e in compiled.values())
    ratio = result['ratios']['compiled']['1']['emo_1m']['vs_mobilenetv3_small_050']
    assert ratio == pytest.approx(compiled['mobilenetv3_small_050']['median_ms'] / compiled['emo_1m']['median_ms'])
    assert '| compiled | 1 | emo_1m |' in (tmp_path / 'benchmark.md').read_text()


def test_tuning_times_both_attentions_and_every_slice_size(capsys, monkeypatch):
    import emo.layers.batch_slices as batch_slices
    import emo.layers.grid_attention as grid_attention
    from emo.benchmark import tuning

    rows = tuning.attention_crossover(window_counts=(1, 4), rounds=3)
    assert [r['window_heads'] for r in rows] == [8, 32]  # 160 channels in heads of 20
    assert all(r['sdpa_ms'] > 0 and r['explicit_ms'] > 0 for r in rows)
    # a sliced run is the same computation: the constants are back as they were after each measurement
    sizes = tuning.slice_sizes(mib=(1, 64), model_name='emo_1m', batch=2, rounds=1)
    assert [r['slice_mib'] for r in sizes] == [1, 64] and all(r['median_ms'] > 0 for r in sizes)
    assert batch_slices.SLICE_BYTES == 8 << 20 and grid_attention.MIN_FUSED_WINDOW_HEADS == 64

    monkeypatch.setattr(tuning, 'attention_crossover', lambda: rows)
    monkeypatch.setattr(tuning, 'slice_sizes', lambda: sizes)
    assert tuning.main(['--threads', '1']) == 0
    out = capsys.readouterr().out
    assert 'SIMD flags' in out and out.count('\n| ') == 2 + len(rows) + len(sizes)  # two headers and the rows


def test_bench_without_openvino_says_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'openvino', None)  # import openvino now fails, as where it is not installed
    assert main(['bench', '--models', 'emo_1m', '--peers', '', '--out-dir', str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "emo[openvino]"' in err[0] and '--no-openvino' in err[0]
    assert not (tmp_path / 'benchmark.json').exists()
