"""The `emo` command: zoo and predict, run as a user runs them."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from emo_cli import emo_in_process
from origin_server import closed_port_url
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ImageNetInfo

import emo
from emo.weights import released_weights


def run_emo(*args, env=None, timeout=300):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, '-m', 'emo.cli', *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def test_zoo_table():
    result = run_emo('zoo', '--runs', '3', '--warmup', '1')
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith('| emo')]
    assert len(rows) == len(emo.VARIANTS) == 9  # both generations
    for line, (name, variant) in zip(rows, emo.VARIANTS.items()):
        cells = [c.strip() for c in line.strip('|').split('|')]
        weights = [e for e in released_weights().values() if e.variant == name and not e.distilled]
        distilled = [e for e in released_weights().values() if e.variant == name and e.distilled]
        assert cells[0] == name and cells[1] == ('EMOv2' if name.startswith('emo2_') else 'EMO')
        assert float(cells[2]) == pytest.approx(variant.params / 1e6, abs=0.005)
        assert int(cells[3]) == variant.img_size == (512 if name == 'emo2_5m_512' else 224)
        assert float(cells[4]) == variant.gflops
        # the accuracy columns print the manifest's figures to 0.1 (test_weights checks those against the paper);
        # '-' where nothing was released: emo2_20m has no weights, EMOv2 no top-5, EMO no distilled weights,
        # emo2_5m_512 only distilled ones
        for cell, entry, field in (
            (cells[5], weights, 'top1'),
            (cells[6], distilled, 'top1'),
            (cells[7], weights, 'top5'),
        ):
            value = getattr(entry[0], field) if entry else None
            assert cell == '-' if value is None else float(cell) == pytest.approx(value, abs=0.05), (name, field)
        median, low, high = map(float, re.match(r'([\d.]+) \(([\d.]+)-([\d.]+)\)', cells[8]).groups())
        assert 0 < low <= median <= high
    assert rows[-1].split('|')[6].strip() == '-' and 'emo2_20m' in rows[-1]
    row_512 = next(r for r in rows if r.startswith('| emo2_5m_512 '))
    assert [c.strip() for c in row_512.split('|')[6:8]] == ['-', '82.9']  # no plain weights at 512
    assert 'measuring latency' in result.stderr  # the progress bar


def _manual_top5(model, path, k=5):
    """Independent preprocessing: resize the short side to 256 (bicubic), centre-crop 224, normalise."""
    img = Image.open(path).convert('RGB')
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    w, h = img.size
    left, top = round((w - 224) / 2), round((h - 224) / 2)
    img = img.crop((left, top, left + 224, top + 224))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 255
    x = (x - torch.tensor(IMAGENET_DEFAULT_MEAN)[:, None, None]) / torch.tensor(IMAGENET_DEFAULT_STD)[:, None, None]
    with torch.no_grad():
        probs = model.eval()(x[None]).softmax(-1)[0]
    return probs.topk(k)


def test_predict_with_weights_file(tmp_path, official_files):
    g = torch.Generator().manual_seed(1)
    paths = []
    for i, size in enumerate([(300, 240), (224, 400)]):
        pixels = (torch.rand(size[1], size[0], 3, generator=g) * 255).to(torch.uint8).numpy()
        path = tmp_path / f'img{i}.png'
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    result = run_emo('predict', *paths, '--model', 'emo_1m', '--weights', str(official_files['emo_1m']))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    model = timm.create_model(
        'emo_1m', pretrained=True, pretrained_cfg_overlay=dict(file=str(official_files['emo_1m']))
    )
    info = ImageNetInfo()
    for i, path in enumerate(paths):
        block = lines[i * 6 : (i + 1) * 6]
        assert block[0] == path
        printed = [re.match(r'\s+([\d.]+)%\s+(.*)$', line).groups() for line in block[1:]]
        probs, idx = _manual_top5(model, path)
        assert [label for _, label in printed] == [info.index_to_description(j) for j in idx.tolist()]
        for (pct, _), p in zip(printed, probs.tolist()):
            assert float(pct) == pytest.approx(100 * p, abs=0.02)


def test_predict_errors_are_clear(tmp_path, official_files, monkeypatch):
    # in this process (emo_in_process): refusals, where a new interpreter would only add its start
    image = tmp_path / 'x.png'
    Image.new('RGB', (64, 64)).save(image)
    # no weights and the origin unreachable (a closed local port): says how to use a local file
    monkeypatch.setenv('EMO_ORIGIN_URL', closed_port_url())
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    offline = emo_in_process('predict', image, '--model', 'emo_1m')
    assert offline.returncode == 1
    assert 'could not download the emo_1m.in1k weights' in offline.stderr and '--weights' in offline.stderr
    assert 'Traceback' not in offline.stderr
    wrong = emo_in_process('predict', str(image), '--model', 'emo_1m', '--weights', str(official_files['emo_2m']))
    assert wrong.returncode == 1 and 'this checkpoint is EMO-2M' in wrong.stderr
    not_image = tmp_path / 'notes.png'
    not_image.write_text('not an image')
    bad = emo_in_process('predict', str(not_image), '--model', 'emo_1m', '--weights', str(official_files['emo_1m']))
    assert bad.returncode == 1 and 'not a readable image' in bad.stderr
    # a missing image is named first, not a download failure of the weights (the origin is unreachable here too)
    missing = emo_in_process('predict', tmp_path / 'nope.jpg', '--model', 'emo_1m')
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [
        f"emo predict: error: no image file '{tmp_path / 'nope.jpg'}'; give the paths of image files"
    ]


def test_predict_uses_what_an_emo_train_checkpoint_records(tmp_path):
    # what emo train writes, as far as predict reads it: the architecture, the class names and the weights
    classes = ['cat', 'dog', 'fox']
    torch.manual_seed(0)
    model = timm.create_model('emo_1m', num_classes=len(classes)).eval()
    checkpoint = tmp_path / 'best.pth'
    torch.save(
        {'arch': 'emo_1m', 'class_names': classes, 'img_size': 224, 'state_dict': model.state_dict()}, checkpoint
    )
    image = tmp_path / 'x.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    result = emo_in_process('predict', image, '--weights', checkpoint, '--top-k', '3')  # no --model
    assert result.returncode == 0, result.stderr
    values, indices = _manual_top5(model, image, k=3)
    printed = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [name for _, name in printed] == [classes[i] for i in indices.tolist()]  # its names, not 'class 2'
    assert [float(p.rstrip('%')) / 100 for p, _ in printed] == pytest.approx(values.tolist(), abs=1e-4)
