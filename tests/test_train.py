"""Fine-tuning on generated class folders: bad data, learning, resume after SIGKILL, DDP, validate."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from classification_data import make_image_folders

from emo import train

FAST = [
    '--model',
    'emo_1m',
    '--img-size',
    '32',
    '--batch-size',
    '8',
    '--workers',
    '0',
    '--lr',
    '2e-3',
    '--drop-path',
    '0',
    '--aa',
    'none',
    '--no-progress',
    '--seed',
    '1',
]


def _metrics(run: Path):
    with open(run / 'metrics.csv') as f:
        return list(csv.DictReader(f))


def _emo(*args, **kw):
    return subprocess.run(
        [sys.executable, '-m', 'emo.cli', *map(str, args)], capture_output=True, text=True, timeout=600, **kw
    )


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return (
        make_image_folders(tmp_path_factory.mktemp('tiny'), train_per_class=12, val_per_class=4, size=40)
        .get('train')
        .parent
    )


def test_bad_folders_fail_before_training(tmp_path, tiny):
    wrong = _emo('train', '--data', tmp_path / 'nowhere', '--output', tmp_path / 'run', *FAST)
    assert wrong.returncode == 1 and 'training folder' in wrong.stderr and 'does not exist' in wrong.stderr
    data = make_image_folders(tmp_path / 'd', train_per_class=2, val_per_class=2, size=40)['train'].parent
    (data / 'train' / 'empty_class').mkdir()
    empty = _emo('train', '--data', data, '--output', tmp_path / 'run', *FAST)
    assert empty.returncode == 1 and "['empty_class']" in empty.stderr and 'hold no images' in empty.stderr
    (data / 'train' / 'empty_class').rmdir()
    (data / 'val' / 'extra_class').mkdir()
    (data / 'val' / 'red_blob' / '000.png').rename(data / 'val' / 'extra_class' / '000.png')
    extra = _emo('train', '--data', data, '--output', tmp_path / 'run', *FAST)
    assert extra.returncode == 1 and "['extra_class'] have no training folder" in extra.stderr
    assert not (tmp_path / 'run').exists() and 'Traceback' not in extra.stderr


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    data = make_image_folders(tmp_path / 'd', train_per_class=4, val_per_class=2, size=40)['train'].parent
    good = (data / 'train' / 'red_blob' / '000.png').read_bytes()
    (data / 'train' / 'red_blob' / 'truncated.png').write_bytes(good[: len(good) // 3])
    (data / 'train' / 'h_stripes' / 'notes.jpg').write_text('not an image')
    result = _emo('train', '--data', data, '--output', tmp_path / 'run', '--epochs', '2', *FAST)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count('skipping unreadable image') == 2  # one warning per file, not per epoch
    assert 'truncated.png' in result.stderr and 'notes.jpg' in result.stderr
    assert 'skipped 2 unreadable image(s)' in result.stderr
    assert len(_metrics(tmp_path / 'run')) == 2


@pytest.mark.slow
def test_short_run_learns_and_validate_agrees(tmp_path):
    import timm
    from timm.data import create_transform
    from torch.utils.data import DataLoader

    from emo.data import SkippingImageFolder
    from emo.evaluate import evaluate

    data = make_image_folders(tmp_path / 'd', train_per_class=64, val_per_class=12, size=48)['train'].parent
    run = tmp_path / 'run'
    train.main(
        [
            '--data',
            str(data),
            '--output',
            str(run),
            '--epochs',
            '10',
            '--model',
            'emo_1m',
            '--img-size',
            '48',
            '--batch-size',
            '32',
            '--workers',
            '0',
            '--lr',
            '1e-3',
            '--drop-path',
            '0',
            '--aa',
            'none',
            '--no-progress',
            '--ema-decay',
            '0.99',
        ]
    )
    rows = _metrics(run)
    best = max(rows, key=lambda r: float(r['val_top1']))
    untrained_model = timm.create_model('emo_1m', num_classes=4)
    val = SkippingImageFolder(
        data / 'val', create_transform(input_size=(3, 48, 48), crop_pct=0.875, interpolation='bicubic')
    )
    untrained = evaluate(untrained_model, DataLoader(val, batch_size=16), torch.device('cpu'), 4)['top1']
    assert float(best['val_top1']) >= 80.0 and float(best['val_top1']) > untrained + 40, (rows, untrained)
    assert float(rows[-1]['train_loss']) < float(rows[0]['train_loss'])
    assert (run / 'metrics.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    result = _emo('validate', '--data', data / 'val', '--checkpoint', run / 'best.pth')
    assert result.returncode == 0, result.stderr
    assert f'top-1 {float(best["val_top1"]):.2f}' in result.stdout  # the training loop's number for best.pth
    with open(run / 'per_class_accuracy.csv') as f:
        per_class = list(csv.DictReader(f))
    assert [r['class'] for r in per_class] == ['green_blob', 'h_stripes', 'red_blob', 'v_stripes']
    assert sum(float(r['top1']) * int(r['images']) for r in per_class) / 48 == pytest.approx(
        float(best['val_top1']), abs=0.01
    )
    assert (run / 'confusion_matrix.png').is_file()


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, tiny):
    args = ['--data', tiny, '--epochs', '3', *FAST]
    full = _emo('train', '--output', tmp_path / 'full', *args)
    assert full.returncode == 0, full.stderr

    killed_run = tmp_path / 'killed'
    proc = subprocess.Popen(
        [sys.executable, '-m', 'emo.cli', 'train', '--output', str(killed_run), *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (killed_run / 'metrics.csv').exists():
        time.sleep(0.05)
    time.sleep(0.5)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows_at_kill = _metrics(killed_run)
    assert 1 <= len(rows_at_kill) < 3, 'the kill should land mid-run'
    state = torch.load(killed_run / 'last.pth', weights_only=True)  # intact, not half-written
    assert state['epoch'] == len(rows_at_kill) - 1

    resumed = _emo('train', '--output', killed_run, '--resume', killed_run / 'last.pth', *args)
    assert resumed.returncode == 0, resumed.stderr
    assert 'resumed from' in resumed.stderr
    for a, b in zip(_metrics(tmp_path / 'full'), _metrics(killed_run), strict=True):
        for key in ('train_loss', 'val_loss', 'val_top1', 'lr'):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4, abs=1e-5), (key, a, b)


def test_two_process_ddp_agrees_with_one_process(tmp_path, tiny):
    common = [
        '--data',
        tiny,
        '--epochs',
        '2',
        '--freeze-bn',
        '--no-aug',
        '--ema-decay',
        '0',
        '--model',
        'emo_1m',
        '--img-size',
        '32',
        '--workers',
        '0',
        '--lr',
        '1e-3',
        '--drop-path',
        '0',
        '--no-progress',
    ]
    one = _emo('train', '--output', tmp_path / 'one', '--batch-size', '8', *common)
    assert one.returncode == 0, one.stderr
    env = dict(os.environ, OMP_NUM_THREADS='1')
    two = subprocess.run(
        [
            sys.executable,
            '-m',
            'torch.distributed.run',
            '--standalone',  # a free local port for the rendezvous
            '--nproc_per_node=2',
            '-m',
            'emo.train',
            '--output',
            str(tmp_path / 'two'),
            '--batch-size',
            '4',
            *map(str, common),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert 'parameters identical on all 2 processes' in two.stderr
    a = torch.load(tmp_path / 'one' / 'last.pth', weights_only=True)['state_dict']
    b = torch.load(tmp_path / 'two' / 'last.pth', weights_only=True)['state_dict']
    for key in a:
        if key.endswith('attn.qk.bias'):
            # the key half of this bias has no true gradient (softmax ignores a shift shared by all keys of a
            # query), so AdamW turns rounding noise into full-size steps there: compare the query half only
            a[key], b[key] = a[key][: len(a[key]) // 2], b[key][: len(b[key]) // 2]
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4, msg=key)
    for r1, r2 in zip(_metrics(tmp_path / 'one'), _metrics(tmp_path / 'two'), strict=True):
        assert float(r1['val_top1']) == float(r2['val_top1'])
        assert float(r1['train_loss']) == pytest.approx(float(r2['train_loss']), rel=1e-3)
