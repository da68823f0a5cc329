"""emo.segmentation: the builders against the papers' sizes, the data and metrics contracts, emo segment train /
validate / export and emo predict --task segment, on generated shapes (no download)."""

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from emo_cli import emo_in_process
from PIL import Image
from torchvision.models.segmentation import FCN, DeepLabV3
from torchvision.models.segmentation.deeplabv3 import DeepLabHead

from emo.detection import emo_body
from emo.models.variants import VARIANTS
from emo.segmentation import (
    SegmentationLogits,
    SegmentationMetrics,
    SemanticFPN,
    deeplabv3,
    fcn,
    segmentation_gflops,
    semantic_fpn,
)
from emo.segmentation.data import SegmentationFolder, eval_transform
from emo.segmentation.shapes import SEGMENT_CLASSES, write_dataset
from emo.training.data import Unreadable

# parameters (M) of the official READMEs at 150 classes (ADE20K): EMOv2 counts leave the auxiliary head out
# (its get_flops.py drops it), EMO's include it (256 channels); both print truncated, not rounded, values
PAPER_PARAMS = {
    'deeplabv3:emo2_1m': 5.6, 'deeplabv3:emo2_2m': 6.6, 'deeplabv3:emo2_5m': 9.9,
    'deeplabv3:emo2_20m': 26.0,
    'semantic_fpn:emo2_1m': 5.3, 'semantic_fpn:emo2_2m': 6.2, 'semantic_fpn:emo2_5m': 8.9,
    'semantic_fpn:emo2_20m': 23.9,
    'deeplabv3+aux:emo_1m': 5.6, 'deeplabv3+aux:emo_2m': 6.9, 'deeplabv3+aux:emo_5m': 10.3,
}  # fmt: skip
BUILDERS = {'deeplabv3': deeplabv3, 'fcn': fcn, 'semantic_fpn': semantic_fpn}


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _emo(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', 'emo.cli', *map(str, args)], capture_output=True, text=True, timeout=600, **kw
    )


@pytest.mark.parametrize('key', sorted(PAPER_PARAMS))
def test_parameter_counts_are_the_papers(key):
    segmenter, variant = key.split(':')
    aux = {} if segmenter == 'semantic_fpn' else {'aux_loss': segmenter.endswith('+aux')}
    model = BUILDERS[segmenter.split('+')[0]](variant, num_classes=150, **aux)
    millions = _params(model) / 1e6
    assert math.floor(millions * 10) / 10 == PAPER_PARAMS[key], millions


def test_the_paper_heads_differ_from_torchvisions_by_the_bottleneck():
    paper = deeplabv3('emo2_1m', 150, aux_loss=False)
    tv = deeplabv3('emo2_1m', 150, aux_loss=False, head='torchvision')
    assert isinstance(tv.classifier, DeepLabHead) and isinstance(paper, DeepLabV3) and isinstance(tv, DeepLabV3)
    # mmseg's 3x3 bottleneck over the 5 branches (5*256*256*9) against torchvision's 1x1 projection and 3x3 conv
    # (and its BatchNorm), the classifiers being the same
    assert _params(paper) - _params(tv) == 5 * 256 * 256 * 9 - (5 * 256 * 256 + 256 * 256 * 9 + 2 * 256)
    backbone = _params(emo_body('emo2_1m'))
    assert _params(tv) - backbone == _params(DeepLabHead(180, 150))


def test_gflops_at_512_are_the_papers():
    # EMOv2-1M with the papers' window 10: DeepLabv3 3.3, Semantic FPN 23.4 GFLOPs (official README)
    assert math.floor(segmentation_gflops(deeplabv3('emo2_1m', 150)) * 10) / 10 == 3.3
    assert math.floor(segmentation_gflops(semantic_fpn('emo2_1m', 150)) * 10) / 10 == 23.4


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_every_builder_trains_and_infers_for_every_variant(variant):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 70, 90)
    for name, builder in BUILDERS.items():
        model = builder(variant, num_classes=4)
        assert isinstance(model, {'deeplabv3': DeepLabV3, 'fcn': FCN, 'semantic_fpn': SemanticFPN}[name])
        out = model.train()(x)
        assert set(out) == ({'out'} if name == 'semantic_fpn' else {'out', 'aux'})
        assert all(v.shape == (2, 4, 70, 90) for v in out.values())
        sum(v.square().mean() for v in out.values()).backward()
        assert all(p.grad is not None for p in model.parameters()), f'{name}: a parameter got no gradient'
        with torch.no_grad():
            logits = SegmentationLogits(model.eval())(x[:1])
            assert torch.equal(logits, model(x[:1])['out'])  # the export wrapper computes 'out' as the model does


def test_backbone_options_reach_the_backbone(tmp_path):
    model = deeplabv3('emo2_1m', 3, trainable_backbone_layers=2, frozen_bn=True, window_size=4)
    trainable = {name.split('.')[0] for name, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable == {'layer3', 'layer4'}
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    assert {m.window_size for m in model.backbone.modules() if hasattr(m, 'window_size')} == {4}
    # a classification checkpoint of emo train as the backbone's start: the same backbone weights
    import timm

    source = timm.create_model('emo2_1m')
    torch.save({'state_dict': source.state_dict(), 'arch': 'emo2_1m'}, tmp_path / 'net.pth')
    seeded = deeplabv3('emo2_1m', 3, pretrained_backbone=str(tmp_path / 'net.pth'))
    torch.testing.assert_close(seeded.backbone.layer4.state_dict(), source.stages[3].state_dict())


def test_metrics_against_hand_counts():
    metrics = SegmentationMetrics(4, ignore_index=255)
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 255]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 3, 3]]])
    metrics.update(pred, target)
    result = metrics.compute()
    # class 0: hit 1, target 2, predicted 2 -> IoU 1/3; class 1: 2/3; class 2: 1/2; class 3: no target pixel and
    # predicted only where the target is ignored -> no pixel at all, no IoU (NaN), left out of the mean
    iou = result['per_class_iou']
    assert iou[:3] == pytest.approx([100 / 3, 200 / 3, 50]) and math.isnan(iou[3])
    assert result['mIoU'] == pytest.approx((100 / 3 + 200 / 3 + 50) / 3)
    assert result['aAcc'] == pytest.approx(4 / 6 * 100)
    assert result['mAcc'] == pytest.approx((50 + 100 + 50) / 3)
    assert metrics.pixels == 6
    empty = SegmentationMetrics(3)
    empty.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 255))
    with pytest.raises(ValueError, match='no labelled pixel'):
        empty.compute()


@pytest.fixture(scope='module')
def shapes(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp('seg') / 'shapes', num_train=40, num_val=12, sizes=(96, 128))


def _copy_split(src: Path, dst: Path, count: int) -> Path:
    for kind in ('images', 'annotations'):
        for split in ('training', 'validation'):
            (dst / kind / split).mkdir(parents=True)
            for path in sorted((src / kind / split).iterdir())[:count]:
                (dst / kind / split / path.name).write_bytes(path.read_bytes())
    return dst


def test_masks_are_class_indices_and_bad_samples_are_unreadable(tmp_path, shapes):
    data = _copy_split(shapes, tmp_path / 'd', 6)
    masks = sorted((data / 'annotations' / 'training').iterdir())
    images = sorted((data / 'images' / 'training').iterdir())
    with Image.open(masks[0]) as m:
        assert m.mode == 'P'
        indices = np.asarray(m).copy()
        rgb = m.convert('RGB')
    assert set(np.unique(indices)) <= {0, 1, 2} and len(np.unique(indices)) > 1
    rgb.save(masks[1])  # a colour mask: not class indices
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(masks[2])  # another size than its image
    Image.fromarray(np.full(indices.shape, 7, dtype=np.uint8)).save(masks[3])  # a label of no class
    images[4].write_bytes(images[4].read_bytes()[:200])  # a truncated image
    with Image.open(masks[5]) as m:
        own = np.asarray(m)
    Image.fromarray(np.where(own == 1, 255, own).astype(np.uint8)).save(masks[5])  # 255 is ignored: fine
    dataset = SegmentationFolder(data, 'training', num_classes=3)
    samples = [dataset[i] for i in range(len(dataset))]
    image, mask = samples[0]
    assert torch.equal(mask, torch.from_numpy(indices.astype(np.int64)))  # read as stored, not through the palette
    assert image.shape == (3, *indices.shape)
    errors = {i: s.error for i, s in enumerate(samples) if isinstance(s, Unreadable)}
    assert sorted(errors) == [1, 2, 3, 4], errors
    assert 'not single-channel' in errors[1] and 'its image' in errors[2] and 'mask value 7' in errors[3]
    assert samples[1].path == str(masks[1].resolve()) and samples[4].path == str(images[4].resolve())
    # ADE20K's reduce_zero_label: 0 is ignored and k becomes k-1; 255 stays ignored
    reduced = SegmentationFolder(data, 'training', num_classes=3, reduce_zero_label=True)[0][1]
    expected = np.where(indices == 0, 255, indices - 1)
    assert torch.equal(reduced, torch.from_numpy(expected.astype(np.int64)))
    # the stored ignore value stays ignored, and an ignore index just above the classes does not swallow the last
    Image.fromarray(np.where(indices == 1, 255, indices).astype(np.uint8)).save(masks[0])
    reduced = SegmentationFolder(data, 'training', num_classes=3, reduce_zero_label=True)[0][1]
    assert set(reduced[torch.from_numpy(indices == 1)].tolist()) == {255}
    assert set(reduced[torch.from_numpy(indices == 2)].tolist()) == {1}
    Image.fromarray(indices.astype(np.uint8) + 1).save(masks[0])  # 1..3 stored, 3 classes after the reduction
    reduced = SegmentationFolder(data, 'training', num_classes=3, ignore_index=3, reduce_zero_label=True)[0][1]
    assert torch.equal(reduced, torch.from_numpy(indices.astype(np.int64)))


def test_bad_folders_and_arguments_are_one_line(tmp_path, shapes):
    data = _copy_split(shapes, tmp_path / 'd', 3)
    next((data / 'annotations' / 'training').iterdir()).unlink()
    args = ['--num-classes', 3, '--output', tmp_path / 'run', '--workers', 0, '--crop-size', 32]
    cases = {
        'no mask NAME.png': ['--data', data],
        'does not exist': ['--data', tmp_path / 'nowhere'],
        'at least 2 for deeplabv3': ['--data', shapes, '--batch-size', 1],
        'is a class of --num-classes': ['--data', shapes, '--ignore-index', 1],
        'too small': ['--data', shapes, '--crop-size', 16],
        'a mask of one class leaves nothing to tell apart': [
            '--data',
            shapes,
            '--num-classes',
            1,
            '--ignore-index',
            255,
        ],
    }
    empty = _copy_split(shapes, tmp_path / 'e', 0)
    cases['holds no images'] = ['--data', empty]
    for expected, extra in cases.items():
        result = emo_in_process('segment', 'train', *args, *extra)
        assert result.returncode == 1, result.stderr
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1 and line.startswith('emo segment: error:') and expected in line, line
    assert not (tmp_path / 'run').exists()
    # a fresh run that diverges stops at once and, having written nothing, leaves no folder; in a process of its own
    # (in the test process, after OpenVINO had run there, an in-process training crashed it: tests/test_train.py)
    diverged = _emo('segment', 'train', *args, '--data', shapes, '--lr', '1e6', '--window-size', 2, '--no-progress')
    lines = diverged.stderr.strip().splitlines()
    assert diverged.returncode == 1 and len(lines) == 1, diverged.stderr
    assert lines[0].startswith('emo segment: error: training diverged at epoch 1, step ') and 'Lower --lr' in lines[0]
    assert not (tmp_path / 'run').exists()
    others = {
        ('segment', 'validate', '--data', shapes, '--checkpoint', tmp_path / 'no.pth'): 'does not exist',
        ('segment', 'export', '--checkpoint', tmp_path / 'no.pth', '-o', tmp_path / 'm.onnx'): 'does not exist',
        ('segment', 'fit'): 'usage: emo segment {train,validate,export}',
        ('predict', '--task', 'segment', next((shapes / 'images' / 'training').iterdir())): 'needs --weights',
    }
    for argv, expected in others.items():
        result = emo_in_process(*argv)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and expected in lines[0], result.stderr


# window 4: the papers' 10 would pad the 3x3 and 6x6 maps of a 96x96 crop to 10x10 (at 64x64, 0.20 s a step, not 0.14)
FAST = ['--crop-size', 96, '--batch-size', 4, '--window-size', 4, '--workers', 0, '--lr', 2e-3, '--no-progress']
FAST += ['--num-classes', 3]


def _metrics(run: Path):
    with open(run / 'metrics.csv') as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_deeplabv3_emo2_1m_learns_the_shapes_and_validate_predict_export_agree(tmp_path, shapes):
    from emo.segmentation.checkpoint import load_segmenter
    from emo.segmentation.evaluate import evaluate
    from emo.segmentation.predict import palette, predict_masks
    from emo.training.data import readable_loader

    # 10 steps an epoch, 20 epochs: 200 steps
    run = tmp_path / 'run'
    result = _emo('segment', 'train', '--data', shapes, '--output', run, '--epochs', 20, *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _metrics(run)
    assert len(rows) == 20 and {p.name for p in run.iterdir()} >= {'best.pth', 'last.pth', 'metrics.png'}

    val = SegmentationFolder(shapes, 'validation', 3, transform=eval_transform(96))
    loader = readable_loader(val, batch_size=1)
    torch.manual_seed(0)
    untrained = evaluate(deeplabv3('emo2_1m', 3, window_size=4).eval(), loader, torch.device('cpu'), 3)
    model, info = load_segmenter(run / 'best.pth')
    trained = evaluate(model, loader, torch.device('cpu'), 3)
    assert trained['images'] == untrained['images'] == 12
    # measured: about 29 untrained (the background alone), about 49 trained, each shape class above 20
    assert trained['mIoU'] > untrained['mIoU'] + 12, (trained, untrained)
    assert min(trained['per_class_iou']) > 10, trained  # every class, not the background alone
    best = max(float(r['val_mIoU']) for r in rows)
    assert trained['mIoU'] == pytest.approx(best, abs=1e-3)

    # the commands after training run in this process (emo_in_process): each new interpreter costs ~5 s to start
    run_files = {p.name: p.read_bytes() for p in run.iterdir()}
    validated = emo_in_process(
        'segment', 'validate', '--data', shapes, '--checkpoint', run / 'best.pth', '--workers', 0
    )
    assert validated.returncode == 0, validated.stderr
    assert f'mIoU {best:.2f}' in validated.stdout and '12 images, 3 of 3 classes present' in validated.stdout
    with open(run / 'validate_per_class_iou.csv') as f:
        per_class = [float(r['iou']) for r in csv.DictReader(f)]
    assert per_class == pytest.approx(trained['per_class_iou'], abs=1e-3)
    assert {name: (run / name).read_bytes() for name in run_files} == run_files  # the run's files untouched

    # the overlay next to the image: half the image, half the colour of each pixel's predicted class
    image = tmp_path / 'picture.jpg'
    image.write_bytes(next((shapes / 'images' / 'validation').iterdir()).read_bytes())
    predicted = emo_in_process('predict', '--task', 'segment', image, '--weights', run / 'best.pth')
    assert predicted.returncode == 0, predicted.stderr
    with Image.open(image) as i:
        picture = i.convert('RGB')
    (labels,) = predict_masks(model, [picture], 96)
    assert set(np.unique(labels)) >= {0, 1} or set(np.unique(labels)) >= {0, 2}  # a shape found, not background only
    with Image.open(tmp_path / 'picture_segment.png') as o:
        overlay = np.asarray(o.convert('RGB'), dtype=np.float32)
    expected = 0.5 * np.asarray(picture, dtype=np.float32) + 0.5 * palette(3)[labels]
    assert overlay.shape == expected.shape and np.abs(overlay - expected).max() <= 0.5 + 1e-3
    again = emo_in_process('predict', '--task', 'segment', image, '--weights', run / 'best.pth')
    assert again.returncode == 1 and '--overwrite' in again.stderr  # never written over unasked

    onnx = tmp_path / 'seg.onnx'
    exported = emo_in_process('segment', 'export', '--checkpoint', run / 'best.pth', '-o', onnx, '--dynamic')
    assert exported.returncode == 0, exported.stderr
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx), providers=['CPUExecutionProvider'])
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        expected = SegmentationLogits(model)(x)
    got = session.run(None, {'images': x.numpy()})[0]
    assert got.shape == (2, 3, 96, 64) and np.abs(got - expected.numpy()).max() < 1e-4


def _start(run: Path, args) -> subprocess.Popen:
    """``emo segment train --output run ARGS`` in the background, returned once its first epoch is written."""
    proc = subprocess.Popen(
        [sys.executable, '-m', 'emo.cli', 'segment', 'train', '--output', str(run), *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (run / 'metrics.csv').exists():
        time.sleep(0.01)
    return proc


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, shapes):
    data = _copy_split(shapes, tmp_path / 'd', 8)
    args = ['--data', data, '--epochs', 3, *FAST, '--crop-size', 32, '--batch-size', 2, '--window-size', 2]
    # the reference, uninterrupted, in a process of its own like the others: this one's thread count may differ
    full = _emo('segment', 'train', '--output', tmp_path / 'full', *args)
    assert full.returncode == 0, full.stderr

    killed = tmp_path / 'killed'
    proc = _start(killed, args)  # returns once the first epoch's files are written: the kill lands in the second
    try:
        busy = emo_in_process('segment', 'train', '--output', killed, '--exist-ok', *args)
        assert busy.returncode == 1, busy.stderr
        assert f'is in use by another run (process {proc.pid}: emo segment train)' in busy.stderr, busy.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    rows_at_kill = _metrics(killed)
    assert 1 <= len(rows_at_kill) < 3, 'the kill should land mid-run'
    assert torch.load(killed / 'last.pth', weights_only=True)['epoch'] == len(rows_at_kill) - 1

    # the killed run left no lock: the folder is refused for what it holds, not for being in use
    again = emo_in_process('segment', 'train', '--output', killed, *args)
    assert again.returncode == 1 and 'already holds a run' in again.stderr  # never written over unasked
    other = emo_in_process(
        'segment', 'train', '--output', killed, '--resume', killed / 'last.pth', *args, '--num-classes', 4
    )
    assert other.returncode == 1 and 'does not continue this run' in other.stderr and 'num_classes' in other.stderr
    resumed = _emo('segment', 'train', '--output', killed, '--resume', killed / 'last.pth', *args)
    assert resumed.returncode == 0, resumed.stderr
    assert 'resumed from' in resumed.stderr
    for a, b in zip(_metrics(tmp_path / 'full'), _metrics(killed), strict=True):
        for key in ('train_loss', 'val_mIoU', 'val_aAcc', 'lr'):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4, abs=1e-5), (key, a, b)

    # what takes a segmentation checkpoint, and what does not, says so in one line
    existing = tmp_path / 'taken.onnx'
    existing.write_bytes(b'a file of the user')
    state = torch.load(killed / 'best.pth', weights_only=True)
    next(v for v in state['state_dict'].values() if v.is_floating_point()).fill_(float('nan'))
    torch.save(state, tmp_path / 'nan.pth')
    val = data / 'images' / 'validation'
    cases = {
        ('validate', '--data', val, '--checkpoint', killed / 'best.pth'): 'is a checkpoint of emo segment train',
        ('segment', 'export', '--checkpoint', killed / 'best.pth', '-o', existing): '(emo segment export --overwrite)',
        ('segment', 'validate', '--data', data, '--checkpoint', tmp_path / 'nan.pth'): 'holds non-finite weights',
    }
    for argv, expected in cases.items():
        result = emo_in_process(*argv)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and expected in lines[0], result.stderr
    assert existing.read_bytes() == b'a file of the user'


def test_two_process_ddp_trains_in_step_and_counts_skipped_samples_once(tmp_path, shapes):
    data = _copy_split(shapes, tmp_path / 'd', 8)
    bad_train = sorted((data / 'annotations' / 'training').iterdir())[0]
    Image.new('L', (8, 8)).save(bad_train)  # another size than its image
    bad_val = sorted((data / 'images' / 'validation').iterdir())[0]
    bad_val.write_bytes(b'not an image')
    # a batch of 2 per process: the one holding the bad sample is left with 1, too few for BatchNorm, and both
    # processes skip that step together; crops pad masks with the ignore index 3, not 255
    args = ['--data', data, '--epochs', 1, *FAST, '--crop-size', 32, '--batch-size', 2, '--window-size', 2]
    args += ['--ignore-index', 3]
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m', 'emo.cli']
        + ['segment', 'train', '--output', str(tmp_path / 'run'), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS='1'),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'parameters identical on all 2 processes' in result.stderr
    assert 'fewer than 2 readable sample(s)' in result.stderr
    assert '(7 images)' in result.stderr  # validation counted the 7 readable images only
    assert len(_metrics(tmp_path / 'run')) == 1
    listed = (tmp_path / 'run' / 'skipped_images.txt').read_text().split()
    assert listed == sorted([str(bad_train.resolve()), str(bad_val.resolve())])


def test_shapes_data_set_is_reproducible_and_never_overwritten(tmp_path):
    a, b = write_dataset(tmp_path / 'a', 3, 2), write_dataset(tmp_path / 'b', 3, 2)
    files = sorted(p.relative_to(a) for p in a.rglob('*') if p.is_file())
    assert len(files) == 10 and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert len(SEGMENT_CLASSES) == 3
    with pytest.raises(FileExistsError):
        write_dataset(a, 1, 1)


def test_a_folder_names_the_files_it_leaves_out(tmp_path, shapes, caplog):
    data = _copy_split(shapes, tmp_path / 'd', 3)
    images, masks = data / 'images' / 'training', data / 'annotations' / 'training'
    (images / 'notes.txt').write_text('not an image')
    Image.new('L', (8, 8)).save(masks / 'orphan.png')  # a mask without its image
    (images / 'loop.jpg').symlink_to('loop.jpg')  # a link loop: unreadable, listed as named
    Image.new('L', (8, 8)).save(masks / 'loop.png')
    dataset = SegmentationFolder(data, 'training', num_classes=3)
    assert 'left out 1 file(s) of ' in caplog.text and 'not images' in caplog.text and 'notes.txt' in caplog.text
    assert 'masks without an image: orphan.png' in caplog.text
    loop = dataset[[p.name for p, _ in dataset.samples].index('loop.jpg')]
    assert isinstance(loop, Unreadable) and loop.path == str(images / 'loop.jpg') and 'symbolic links' in loop.error
    first = images / '00000.jpg'
    first.with_suffix('.png').write_bytes(first.read_bytes())  # x.png beside x.jpg: one would be left out unseen
    with pytest.raises(ValueError, match='holds 00000.jpg and 00000.png: both would be paired with the mask 00000'):
        SegmentationFolder(data, 'training', num_classes=3)
