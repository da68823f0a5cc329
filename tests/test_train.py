"""Fine-tuning on generated class folders: bad data, learning, resume after SIGKILL, DDP, validate."""

import csv
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from classification_data import make_image_folders
from emo_cli import emo_in_process

from emo.training import train

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


def _start_training(run: Path, args) -> subprocess.Popen:
    """``emo train --output run ARGS`` in the background, returned once its first epoch's files are written."""
    proc = subprocess.Popen(
        [sys.executable, '-m', 'emo.cli', 'train', '--output', str(run), *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (run / 'metrics.csv').exists():
        time.sleep(0.01)
    return proc


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return (
        make_image_folders(tmp_path_factory.mktemp('tiny'), train_per_class=12, val_per_class=4, size=40)
        .get('train')
        .parent
    )


def test_bad_folders_fail_before_training(tmp_path, tiny):
    wrong = emo_in_process('train', '--data', tmp_path / 'nowhere', '--output', tmp_path / 'run', *FAST)
    assert wrong.returncode == 1 and 'training folder' in wrong.stderr and 'does not exist' in wrong.stderr
    data = make_image_folders(tmp_path / 'd', train_per_class=2, val_per_class=2, size=40)['train'].parent
    (data / 'train' / 'empty_class').mkdir()
    empty = emo_in_process('train', '--data', data, '--output', tmp_path / 'run', *FAST)
    assert empty.returncode == 1 and "['empty_class']" in empty.stderr and 'hold no images' in empty.stderr
    (data / 'train' / 'empty_class').rmdir()
    (data / 'val' / 'extra_class').mkdir()
    (data / 'val' / 'red_blob' / '000.png').rename(data / 'val' / 'extra_class' / '000.png')
    extra = emo_in_process('train', '--data', data, '--output', tmp_path / 'run', *FAST)
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

    from emo.training.data import SkippingImageFolder
    from emo.training.evaluate import evaluate

    data = make_image_folders(tmp_path / 'd', train_per_class=64, val_per_class=12, size=48)['train'].parent
    run = tmp_path / 'run'
    fast = _fast('--img-size', '48', '--batch-size', '32', '--lr', '1e-3', '--seed', '0')
    train.main(['--data', str(data), '--output', str(run), '--epochs', '10', *fast, '--ema-decay', '0.99'])
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
    proc = _start_training(killed_run, args)
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
    ]  # no --batch-size: one process takes 8 images a step, each of the two 4
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


def _fast(*overrides):
    """FAST with the values of some of its flags replaced: _fast('--model', 'emo_2m')."""
    args = list(FAST)
    for flag, value in zip(overrides[::2], overrides[1::2]):
        args[args.index(flag) + 1] = value
    return args


def _one_error_line(result) -> str:
    """The whole stderr of a refused command: one line, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory, tiny):
    """One finished epoch of emo_1m on the four tiny classes at 32x32."""
    run = tmp_path_factory.mktemp('finished') / 'run'
    result = _emo('train', '--data', tiny, '--output', run, '--epochs', '1', *FAST)
    assert result.returncode == 0, result.stderr
    return run


def test_a_run_folder_is_never_overwritten_unasked(tmp_path, tiny, finished_run):
    run = tmp_path / 'run'
    shutil.copytree(finished_run, run)
    before = {name: (run / name).read_bytes() for name in ('best.pth', 'last.pth', 'metrics.csv')}
    again = emo_in_process('train', '--data', tiny, '--output', run, '--epochs', '1', *FAST)
    line = _one_error_line(again)
    assert 'already holds a run' in line and f'--resume {run / "last.pth"}' in line and '--exist-ok' in line
    other = tmp_path / 'other'
    shutil.copytree(finished_run, other)  # resuming another folder's run into this one would overwrite it too
    into = emo_in_process(
        'train', '--data', tiny, '--output', run, '--resume', other / 'last.pth', '--epochs', '2', *FAST
    )
    assert 'already holds a run' in _one_error_line(into)
    assert {name: (run / name).read_bytes() for name in before} == before

    # resuming an earlier checkpoint of the run itself would replace a later last.pth and cut metrics.csv back
    state = torch.load(run / 'last.pth', weights_only=True)
    state['epoch'], state['history'] = -1, []
    torch.save(state, run / 'epoch0.pth')
    back = emo_in_process(
        'train', '--data', tiny, '--output', run, '--resume', run / 'epoch0.pth', '--epochs', '2', *FAST
    )
    assert 'whose last.pth is at epoch 1' in _one_error_line(back)
    assert {name: (run / name).read_bytes() for name in before} == before

    replaced = _emo('train', '--data', tiny, '--output', run, '--epochs', '1', '--seed', '7', '--exist-ok', *FAST)
    assert replaced.returncode == 0, replaced.stderr
    assert (run / 'last.pth').read_bytes() != before['last.pth']


def test_resume_refuses_what_does_not_continue_the_run(tmp_path, tiny, finished_run, official_files):
    last = finished_run / 'last.pth'

    def resume(*overrides, data=tiny):
        args = ['--data', data, '--output', finished_run, '--resume', resume_from[0], '--epochs', '2']
        return emo_in_process('train', *args, *_fast(*overrides))

    resume_from = [last]
    assert 'trained emo_1m, this run --model emo_2m' in _one_error_line(resume('--model', 'emo_2m'))
    assert 'trained at --img-size 32, this run at 64' in _one_error_line(resume('--img-size', '64'))

    fewer = tmp_path / 'fewer'
    shutil.copytree(tiny, fewer)
    for split in ('train', 'val'):
        shutil.rmtree(fewer / split / 'v_stripes')
    assert 'it has 4 classes, the data 3' in _one_error_line(resume(data=fewer))
    renamed = tmp_path / 'renamed'
    shutil.copytree(tiny, renamed)
    for split in ('train', 'val'):
        (renamed / split / 'red_blob').rename(renamed / split / 'crimson_blob')
    assert 'classes are other ones' in _one_error_line(resume(data=renamed))

    state = torch.load(last, weights_only=True)
    state['class_names'] = state['class_names'][::-1]  # as a checkpoint made elsewhere might hold them
    resume_from[0] = tmp_path / 'reordered.pth'
    torch.save(state, resume_from[0])
    assert 'the same but in another order' in _one_error_line(resume())

    resume_from[0] = official_files['emo_1m']
    line = _one_error_line(resume())
    assert 'not a checkpoint of emo train' in line and f'--weights {official_files["emo_1m"]}' in line
    assert torch.load(last, weights_only=True)['epoch'] == 0  # nothing was written


def test_bad_arguments_are_one_line(tmp_path, tiny):
    for flag, value, message in (('--epochs', '0', '--epochs must be at least 1'), ('--img-size', '16', 'too small')):
        assert message in _one_error_line(
            emo_in_process('train', '--data', tiny, '--output', tmp_path / 'a', *_fast(), flag, value)
        )
    assert not (tmp_path / 'a').exists()


def test_a_single_class_is_refused(tmp_path):
    one = make_image_folders(tmp_path / 'one', train_per_class=8, val_per_class=2, size=40)['train'].parent
    for split in ('train', 'val'):
        for name in ('green_blob', 'h_stripes', 'v_stripes'):
            shutil.rmtree(one / split / name)
    line = _one_error_line(emo_in_process('train', '--data', one, '--output', tmp_path / 'b', *FAST))
    assert "one class folder ('red_blob')" in line and 'at least two' in line and '100%' in line
    assert not (tmp_path / 'b').exists()


def test_validate_counts_only_readable_images_and_its_own_skips(tmp_path, finished_run):
    val = make_image_folders(tmp_path / 'd', train_per_class=1, val_per_class=12, size=40)['val']
    good = (val / 'red_blob' / '000.png').read_bytes()
    (val / 'red_blob' / 'truncated.jpg').write_bytes(b'\xff\xd8\xff\xe0' + good[4:200])
    (val / 'red_blob' / 'empty.jpg').write_bytes(b'')
    (val / 'green_blob' / 'readme.jpg').write_text('not an image')
    out = tmp_path / 'report'
    result = _emo('validate', '--data', val, '--checkpoint', finished_run / 'best.pth', '--output', out)
    assert result.returncode == 0, result.stderr
    assert '(48 images;' in result.stdout and 'skipped 3 unreadable image(s)' in result.stdout
    with open(out / 'per_class_accuracy.csv') as f:
        assert [int(r['images']) for r in csv.DictReader(f)] == [12, 12, 12, 12]
    listed = (out / 'validate_skipped_images.txt').read_text().splitlines()
    assert sorted(Path(p).name for p in listed) == ['empty.jpg', 'readme.jpg', 'truncated.jpg']

    for bad in ('truncated.jpg', 'empty.jpg'):
        (val / 'red_blob' / bad).unlink()
    (val / 'green_blob' / 'readme.jpg').unlink()
    again = _emo('validate', '--data', val, '--checkpoint', finished_run / 'best.pth', '--output', out)
    assert again.returncode == 0, again.stderr
    assert 'skipped' not in again.stdout and not (out / 'validate_skipped_images.txt').exists()


def test_training_skips_are_listed_for_their_run_only(tmp_path):
    data = make_image_folders(tmp_path / 'd', train_per_class=4, val_per_class=2, size=40)['train'].parent
    (data / 'train' / 'h_stripes' / 'notes.jpg').write_text('not an image')
    run = tmp_path / 'run'
    first = _emo('train', '--data', data, '--output', run, '--epochs', '1', *FAST)
    assert first.returncode == 0, first.stderr
    assert [Path(p).name for p in (run / 'skipped_images.txt').read_text().splitlines()] == ['notes.jpg']
    (data / 'train' / 'h_stripes' / 'notes.jpg').unlink()
    resumed = _emo('train', '--data', data, '--output', run, '--resume', run / 'last.pth', '--epochs', '2', *FAST)
    assert resumed.returncode == 0, resumed.stderr
    assert 'skipped' not in resumed.stderr and not (run / 'skipped_images.txt').exists()


def test_sigterm_leaves_no_temporary_and_stale_ones_are_swept(tmp_path, tiny):
    run = tmp_path / 'run'
    proc = _start_training(run, ['--data', tiny, '--epochs', '3', *FAST])
    proc.send_signal(signal.SIGTERM)  # right after the first epoch's files: often while the PNG is written
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and 'stopped by SIGTERM' in err.strip().splitlines()[-1], err
    assert 'Traceback' not in err
    assert not [p.name for p in run.iterdir() if '.tmp-' in p.name]
    # last.pth is written just before metrics.csv, both whole or not at all: the checkpoint is the last epoch listed
    last, rows = torch.load(run / 'last.pth', weights_only=True), _metrics(run)
    assert [int(r['epoch']) for r in rows] == list(range(1, len(rows) + 1)) and last['epoch'] == len(rows) - 1
    assert float(rows[-1]['val_top1']) == pytest.approx(last['metrics']['val_top1'])

    (run / '.last.pth.tmp-99999').write_bytes(b'half a checkpoint')  # what a SIGKILL mid-save leaves
    resumed = _emo('train', '--data', tiny, '--output', run, '--resume', run / 'last.pth', '--epochs', '3', *FAST)
    assert resumed.returncode == 0, resumed.stderr
    assert not (run / '.last.pth.tmp-99999').exists() and len(_metrics(run)) == 3


def _torchrun_train(args) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 -m emo.train ARGS`` on gloo, one thread per process."""
    return subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m', 'emo.train']
        + [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS='1'),
    )


def test_ddp_stops_every_process_when_process_0_fails(tmp_path):
    data = make_image_folders(tmp_path / 'd', train_per_class=4, val_per_class=2, size=40)['train'].parent
    for image in (data / 'val').rglob('*.png'):
        image.write_bytes(b'')  # process 0 cannot evaluate; the other must not wait for it forever
    result = _torchrun_train(
        ['--output', tmp_path / 'run', '--data', data, '--epochs', '2', *_fast('--batch-size', '2')]
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith('emo train: error:')]
    assert sorted(errors) == [
        'emo train: error: another process of this run failed; its error is printed above',
        'emo train: error: no image of the evaluation set could be read: there is nothing to report',
    ], result.stderr[-3000:]
    assert not (tmp_path / 'run' / 'last.pth').exists()


def test_ddp_survives_a_batch_with_no_readable_image(tmp_path):
    from emo.training.data import SkippingImageFolder

    data = make_image_folders(tmp_path / 'd', train_per_class=4, val_per_class=2, size=40)['train'].parent
    samples = SkippingImageFolder(data / 'train').samples
    # the sampler emo train uses, with its seed: process 0's first batch of the first epoch
    sampler = torch.utils.data.DistributedSampler(range(len(samples)), 2, 0, shuffle=True, seed=1, drop_last=True)
    sampler.set_epoch(0)
    unreadable = [samples[i][0] for i in list(sampler)[:2]]  # the first batch: nothing earlier to fall back on
    for path in unreadable:
        Path(path).write_bytes(b'not an image')
    two = _torchrun_train(['--output', tmp_path / 'run', '--data', data, '--epochs', '1', *_fast('--batch-size', '2')])
    assert two.returncode == 0, two.stderr[-3000:]
    assert 'parameters identical on all 2 processes' in two.stderr
    assert 'process 0: batch 0 of epoch 1 has fewer than 2 readable image(s)' in two.stderr
    listed = (tmp_path / 'run' / 'skipped_images.txt').read_text().splitlines()
    assert sorted(listed) == sorted(str(Path(p).resolve()) for p in unreadable)
    row = _metrics(tmp_path / 'run')[0]
    assert math.isfinite(float(row['train_loss']))
    assert 0 <= float(row['val_top1']) <= 100 and 0 <= float(row['val_top5']) <= 100


def test_mixup_with_an_odd_batch_left_by_an_unreadable_image(tmp_path):
    data = make_image_folders(tmp_path / 'd', train_per_class=4, val_per_class=2, size=40)['train'].parent
    (data / 'train' / 'red_blob' / '000.png').write_bytes(b'')  # one batch of 8 keeps 7 images: mixup pairs them
    run = tmp_path / 'run'
    result = _emo('train', '--data', data, '--output', run, '--epochs', '1', '--mixup', '0.8', *FAST)
    assert result.returncode == 0, result.stderr
    assert 'skipped 1 unreadable image(s)' in result.stderr and len(_metrics(run)) == 1


def test_emo2_fine_tunes_from_an_official_file_and_validate_agrees(tmp_path, tiny, official_files):
    """EMOv2 through the same loop: started from an official-layout EMOv2_*.pth, the classifier replaced for 4
    classes, and `emo validate` reads the architecture back from the checkpoint."""
    run = tmp_path / 'run'
    args = _fast('--model', 'emo2_1m', '--img-size', '64')
    train.main(
        ['--data', str(tiny), '--output', str(run), '--epochs', '1', '--weights', str(official_files['emo2_1m']), *args]
    )
    state = torch.load(run / 'last.pth', map_location='cpu', weights_only=True)
    assert state['arch'] == 'emo2_1m' and state['state_dict']['head.weight'].shape[0] == 4
    result = _emo('validate', '--data', tiny / 'val', '--checkpoint', run / 'last.pth')
    assert result.returncode == 0, result.stderr
    last = _metrics(run)[-1]
    assert f'top-1 {float(last["val_top1"]):.2f}' in result.stdout


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, f'{path} did not appear'
        time.sleep(0.01)


def test_a_folder_in_use_by_a_run_is_refused_to_a_second_one(tmp_path, tiny):
    from emo.files import LOCK_FILE

    run = tmp_path / 'run'
    first = subprocess.Popen(
        [sys.executable, '-m', 'emo.cli', 'train', '--data', str(tiny), '--output', str(run), '--epochs', '2', *FAST],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(run / LOCK_FILE, first)  # held from before the first file is written
        for extra in ([], ['--exist-ok']):  # no flag lets two runs share a folder
            second = emo_in_process('train', '--data', tiny, '--output', run, '--epochs', '2', *FAST, *extra)
            line = _one_error_line(second)
            assert f'--output {run} is in use by another run (process {first.pid}: emo train)' in line, line
        _, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, err
    rows, last = _metrics(run), torch.load(run / 'last.pth', weights_only=True)
    assert [int(r['epoch']) for r in rows] == [1, 2] and last['epoch'] == 1  # the first run's files, whole
    assert [h['val_top1'] for h in last['history']] == [float(r['val_top1']) for r in rows]
    assert not (run / LOCK_FILE).exists()


def _poisoned_optimizer(checkpoint: Path, into: Path) -> None:
    """``checkpoint`` with NaN in its AdamW moments: the first step after resuming makes the weights NaN, as a
    learning rate far too high does."""
    state = torch.load(checkpoint, weights_only=True)
    for moments in state['optimizer']['state'].values():
        moments['exp_avg'].fill_(float('nan'))
    torch.save(state, into)


def test_a_diverged_run_stops_keeps_its_last_good_files_and_nan_weights_are_refused(tmp_path, tiny, finished_run):
    # training runs in processes of their own: in the test process, after OpenVINO had run there (test_openvino),
    # an in-process training crashed it (SIGSEGV in native code), as SIGTERM did (test_files)
    fresh = _emo('train', '--data', tiny, '--output', tmp_path / 'fresh', '--epochs', '2', *_fast('--lr', '1e6'))
    line = _one_error_line(fresh)
    assert line.startswith('emo train: error: training diverged at epoch 1, step ') and 'Lower --lr' in line
    assert 'no checkpoint was written' in line and not (tmp_path / 'fresh').exists()

    run = tmp_path / 'run'
    shutil.copytree(finished_run, run)
    _poisoned_optimizer(finished_run / 'last.pth', run / 'last.pth')
    before = {name: (run / name).read_bytes() for name in ('best.pth', 'last.pth', 'metrics.csv')}
    resumed = _emo('train', '--data', tiny, '--output', run, '--resume', run / 'last.pth', '--epochs', '2', *FAST)
    line = resumed.stderr.strip().splitlines()[-1]  # after the 'resumed from' line
    assert resumed.returncode == 1 and 'Traceback' not in resumed.stderr, resumed.stderr
    assert line.startswith('emo train: error: training diverged at epoch 2, step 1:'), line
    assert 'last.pth and best.pth are those of epoch 1 and earlier, untouched' in line
    assert {name: (run / name).read_bytes() for name in before} == before

    # a checkpoint whose weights are NaN (written by an older emo, or by hand) is neither evaluated nor exported
    state = torch.load(finished_run / 'best.pth', weights_only=True)
    next(v for v in state['state_dict'].values() if v.is_floating_point()).fill_(float('nan'))
    torch.save(state, tmp_path / 'nan.pth')
    image = next((tiny / 'val').rglob('*.png'))
    for argv in (
        ('validate', '--data', tiny / 'val', '--checkpoint', tmp_path / 'nan.pth', '--output', tmp_path / 'v'),
        ('export', 'onnx', '--model', 'emo_1m', '--weights', tmp_path / 'nan.pth', '-o', tmp_path / 'nan.onnx'),
        ('predict', image, '--weights', tmp_path / 'nan.pth'),
    ):
        line = _one_error_line(emo_in_process(*argv))
        assert 'holds non-finite weights' in line and 'lower --lr' in line, line
    assert not (tmp_path / 'nan.onnx').exists() and not (tmp_path / 'v').exists()


def test_a_kill_between_the_checkpoint_writes_is_put_right_at_resume(tmp_path, tiny, finished_run):
    run = tmp_path / 'run'
    shutil.copytree(finished_run, run)
    # what a kill right after last.pth of a best epoch leaves: best.pth not yet written (epoch 1: none at all), and
    # metrics.csv of the epoch before (none)
    (run / 'best.pth').unlink()
    (run / 'metrics.csv').unlink()
    resumed = _emo('train', '--data', tiny, '--output', run, '--resume', run / 'last.pth', '--epochs', '1', *FAST)
    assert resumed.returncode == 0, resumed.stderr
    assert 'best.pth was missing, while' in resumed.stderr and 'records epoch 1 as the best' in resumed.stderr
    assert (run / 'best.pth').read_bytes() == (run / 'last.pth').read_bytes()
    assert _metrics(run) == _metrics(finished_run)


def test_link_loops_and_names_that_are_not_utf8_are_listed_escaped(tmp_path, finished_run, tiny):
    val = tmp_path / 'val'
    shutil.copytree(tiny / 'val', val)
    (val / 'red_blob' / 'loop.png').symlink_to('loop.png')  # a link to itself: any open fails with ELOOP
    with open(os.fsencode(val / 'green_blob') + b'/caf\xe9.png', 'wb') as f:  # Latin-1 bytes in a name
        f.write(b'not an image')
    result = _emo('validate', '--data', val, '--checkpoint', finished_run / 'best.pth', '--output', tmp_path)
    assert result.returncode == 0 and 'Traceback' not in result.stderr, result.stderr
    assert 'skipped 2 unreadable image(s)' in result.stdout
    listed = (tmp_path / 'validate_skipped_images.txt').read_text(encoding='utf-8').splitlines()
    assert listed == [str(val / 'green_blob' / 'caf\\xe9.png'), str(val / 'red_blob' / 'loop.png')]


# `emo ARGS` under a file-size limit, set by the child itself: a preexec_fn would make subprocess fork() the test
# process, whose OpenMP and OpenVINO threads then crashed it (SIGSEGV in the parent, in CI)
UNDER_FSIZE_LIMIT = """
import resource, runpy, sys
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv[0] = 'emo'
runpy.run_module('emo.cli', run_name='__main__')
"""


def _emo_under_fsize_limit(limit: int, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-c', UNDER_FSIZE_LIMIT, str(limit), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_full_disk_is_one_line_and_an_unwritable_folder_is_refused_before_training(tmp_path, tiny, finished_run):
    run = tmp_path / 'run'
    shutil.copytree(finished_run, run)
    before = {name: (run / name).read_bytes() for name in ('best.pth', 'last.pth', 'metrics.csv')}
    args = ['train', '--data', tiny, '--output', run, '--resume', run / 'last.pth', '--epochs', '2', *FAST]
    # 1 MiB a file: the metrics and plots fit, a checkpoint (19 MiB) does not, as on a disk that is full
    full = _emo_under_fsize_limit(2**20, *args)
    last_line = full.stderr.strip().splitlines()[-1]
    assert full.returncode == 1 and 'Traceback' not in full.stderr, full.stderr
    assert last_line.startswith(f'emo train: error: could not write {run / "last.pth"} (File too large): it needs')
    assert 'the last.pth that was there is unchanged' in last_line
    assert {name: (run / name).read_bytes() for name in before} == before
    assert not [p.name for p in run.iterdir() if '.tmp-' in p.name]

    nothing = _emo_under_fsize_limit(0, 'train', '--data', tiny, '--output', tmp_path / 'new', '--epochs', '1', *FAST)
    assert nothing.returncode == 1 and 'epoch 1' not in nothing.stderr, nothing.stderr
    assert _one_error_line(nothing).startswith(f'emo train: error: --output {tmp_path / "new"} is not writable')
    assert not (tmp_path / 'new').exists()


def test_a_batch_left_with_one_image_is_skipped_and_counted(tmp_path):
    from emo.training.data import SkippingImageFolder

    data = make_image_folders(tmp_path / 'd', train_per_class=2, val_per_class=2, size=40)['train'].parent
    samples = SkippingImageFolder(data / 'train').samples
    sampler = torch.utils.data.DistributedSampler(range(len(samples)), 1, 0, shuffle=True, seed=1, drop_last=True)
    sampler.set_epoch(0)
    Path(samples[list(sampler)[0]][0]).write_bytes(b'')  # the first batch of 2 keeps one image: BatchNorm cannot
    result = _emo('train', '--data', data, '--output', tmp_path / 'run', '--epochs', '1', *_fast('--batch-size', '2'))
    assert result.returncode == 0, result.stderr
    assert 'batch 0 of epoch 1 has fewer than 2 readable image(s); not trained on' in result.stderr
    assert 'skipped 1 training step(s) whose batch had fewer than 2 readable sample(s)' in result.stderr
    assert len(_metrics(tmp_path / 'run')) == 1
    one = emo_in_process('train', '--data', data, '--output', tmp_path / 'one', *_fast('--batch-size', '1'))
    assert '--batch-size 1 cannot train BatchNorm' in _one_error_line(one) and '--freeze-bn' in _one_error_line(one)
