"""``emo export openvino``: f32 IRs reproduce the official outputs, int8 IRs calibrate on a folder, files are kept."""

import hashlib
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from classification_data import CLASSES, make_image_folders
from reference import INPUT_KEYS, expected, reference_inputs

import emo
from emo.cli import main
from emo.deploy import openvino as ov_export
from emo.deploy.export import export_model

ov = pytest.importorskip('openvino')
pytest.importorskip('nncf')

INPUTS = reference_inputs()


def _ops(xml: Path) -> dict:
    counts = {}
    for op in ov.Core().read_model(str(xml)).get_ops():
        counts[op.get_type_name()] = counts.get(op.get_type_name(), 0) + 1
    return counts


def _attention_inputs(xml: Path) -> list:
    """For each ScaledDotProductAttention of an IR, the op types feeding its query, key and value."""
    return [
        [op.input_value(i).get_node().get_type_name() for i in range(3)]
        for op in ov.Core().read_model(str(xml)).get_ordered_ops()
        if op.get_type_name() == 'ScaledDotProductAttention'
    ]


def _tiny_checkpoint(path: Path, arch: str, seed: int, img_size: int = 32) -> Path:
    """A checkpoint as emo train writes it (arch, classes, training size, weights): the generated set's classes,
    weights drawn with ``seed``."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, num_classes=len(CLASSES))
    torch.save(
        {'arch': arch, 'class_names': sorted(CLASSES), 'img_size': img_size, 'state_dict': model.state_dict()}, path
    )
    return path


@pytest.fixture(scope='module')
def pictures(tmp_path_factory):
    """Generated images (the classification set's patterns) to calibrate with, and one file that is no image."""
    root = tmp_path_factory.mktemp('calibration')
    folders = make_image_folders(root, train_per_class=5, val_per_class=0, size=96)
    (folders['train'] / 'red_blob' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n not really a png')
    return folders['train']


def test_dynamic_ir_reproduces_the_reference(tmp_path, official_files, capsys):
    out = tmp_path / 'emo2_1m.xml'
    args = ['export', 'openvino', '--model', 'emo2_1m', '--weights', str(official_files['emo2_1m']), '--dynamic']
    assert main([*args, '-o', str(out), '--threads', '2']) == 0
    printed = capsys.readouterr().out
    assert f'wrote {out} and emo2_1m.bin (' in printed and 'OpenVINO latency, batch 1, 224x224:' in printed
    ref = expected('emo2_1m')
    model = ov_export.IRClassifier(out)
    for key in INPUT_KEYS:  # one IR, both shapes: the batch of two 224 images and the padded 256x192 image
        torch.testing.assert_close(model(INPUTS[key]), ref[f'logits_{key}'], rtol=0, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['emo2_1m.bin', 'emo2_1m.xml']  # no scratch left


def test_static_ir_takes_its_shape_and_was_checked_at_a_second_size(tmp_path, official_files):
    path, checks = export_model('openvino', 'emo_1m', tmp_path / 'm', weights=str(official_files['emo_1m']))
    assert path == tmp_path / 'm.xml' and (tmp_path / 'm.bin').is_file()
    assert set(checks) == {'1x3x224x224', '2x3x256x192'}
    assert max(c['max_abs_diff'] for c in checks.values()) <= 1e-4
    compiled = ov_export.compile_ir(path)
    assert list(compiled.inputs[0].get_shape()) == [1, 3, 224, 224]
    x = INPUTS['2x3x224x224']
    torch.testing.assert_close(
        ov_export.IRClassifier(path)(x), expected('emo_1m')['logits_2x3x224x224'], atol=1e-4, rtol=0
    )


def test_int8_calibrates_on_a_folder_skips_what_is_unreadable_and_follows_pytorch(
    tmp_path, official_files, pictures, capsys, caplog
):
    out = tmp_path / 'q.xml'
    args = ['export', 'openvino', '--model', 'emo_1m', '--weights', str(official_files['emo_1m']), '--img-size', '96']
    with caplog.at_level(logging.WARNING, logger='emo.deploy.openvino'):
        assert main([*args, '--int8', '--calibrate', str(pictures), '--calibration-images', '12', '-o', str(out)]) == 0
    assert not [r for r in caplog.records if r.name == 'emo.deploy.openvino']  # 8 held-out images: no warning
    printed = capsys.readouterr().out
    assert f'calibrating int8 on 12 image(s) from {pictures}; skipped 1 unreadable: ' in printed
    assert 'broken.png' in printed
    assert 'at 8 held-out images:' in printed  # 20 readable images: 12 to calibrate, the other 8 to check
    ops = _ops(out)
    assert ops.get('FakeQuantize', 0) >= 30  # every conv and linear input quantized
    # the nine window attentions are one op each, softmax inside, and stay in float: no input of theirs quantized
    attention = _attention_inputs(out)
    assert len(attention) == 9 and not [i for inputs in attention for i in inputs if i == 'FakeQuantize']
    f32_bin = tmp_path / 'f.bin'
    export_model('openvino', 'emo_1m', tmp_path / 'f.xml', weights=str(official_files['emo_1m']), img_size=96)
    assert (tmp_path / 'q.bin').stat().st_size < 0.6 * f32_bin.stat().st_size  # int8 weights
    # independently of the export's own check: logits of readable held-out pictures against PyTorch's
    from timm.utils import reparameterize_model

    from emo.weights import create_with_weights

    model = reparameterize_model(create_with_weights('emo_1m', str(official_files['emo_1m'])).eval())
    images, skipped = ov_export.calibration_images(pictures, model, (96, 96), limit=20)
    assert len(images) == 20 and [Path(p).name for p in skipped] == ['broken.png']
    x = torch.from_numpy(np.concatenate(images[12:]))
    with torch.inference_mode():
        agreement = ov_export.logit_agreement(model(x), ov_export.IRClassifier(out)(x))
    assert agreement['cosine'] > 0.98


def test_fine_tuned_checkpoint_exports_at_its_size_and_validates(tmp_path, capsys):
    folders = make_image_folders(tmp_path / 'data', train_per_class=8, val_per_class=4, size=40)
    run = tmp_path / 'run'
    train = [sys.executable, '-m', 'emo.cli', 'train', '--data', str(tmp_path / 'data'), '--output', str(run)]
    train += ['--model', 'emo_1m', '--img-size', '32', '--batch-size', '8', '--workers', '0', '--epochs', '1']
    train += ['--aa', 'none', '--no-progress', '--seed', '1']
    result = subprocess.run(train, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    ckpt = run / 'best.pth'
    # the checkpoint's 4 classes and 32x32 training size, without saying them again
    assert main(['export', 'openvino', '--model', 'emo_1m', '--weights', str(ckpt), '-o', str(run / 'f32.xml')]) == 0
    compiled = ov_export.compile_ir(run / 'f32.xml')
    assert list(compiled.inputs[0].get_shape()) == [1, 3, 32, 32] and list(compiled.outputs[0].get_shape()) == [1, 4]
    args = ['export', 'openvino', '--model', 'emo_1m', '--weights', str(ckpt), '--int8']
    assert main([*args, '--calibrate', str(folders['train']), '-o', str(run / 'int8.xml')]) == 0

    from emo.training import validate

    pytorch = validate.main(['--data', str(folders['val']), '--checkpoint', str(ckpt), '--workers', '0'])
    csv_before = (run / 'per_class_accuracy.csv').read_text()
    f32 = validate.main(
        ['--data', str(folders['val']), '--checkpoint', str(ckpt), '--workers', '0', '--openvino', str(run / 'f32.xml')]
    )
    int8 = validate.main(
        [
            '--data',
            str(folders['val']),
            '--checkpoint',
            str(ckpt),
            '--workers',
            '0',
            '--openvino',
            str(run / 'int8.xml'),
        ]
    )
    assert f32['count'] == int8['count'] == pytorch['count'] == 16
    # f32 logits within 1e-4: the same loss, and the same predictions but for a tie (one image at most)
    assert f32['loss'] == pytest.approx(pytorch['loss'], abs=1e-4) and abs(f32['top1'] - pytorch['top1']) <= 100 / 16
    assert int8['loss'] == pytest.approx(pytorch['loss'], rel=0.2)
    # the IRs' results go beside the checkpoint's own, which stay as they were
    assert (run / 'per_class_accuracy.csv').read_text() == csv_before
    assert (run / 'f32_per_class_accuracy.csv').is_file() and (run / 'int8_confusion_matrix.png').is_file()

    # an IR that is not this checkpoint's, or not at its size, is refused in one line
    other = run / 'imagenet.xml'
    assert (
        main(['export', 'openvino', '--model', 'emo_1m', '--random-weights', '--img-size', '32', '-o', str(other)]) == 0
    )
    base = ['validate', '--data', str(folders['val']), '--checkpoint', str(ckpt), '--workers', '0']
    capsys.readouterr()
    assert main([*base, '--openvino', str(other)]) == 1
    assert 'gives 1000 logits, but' in capsys.readouterr().err
    assert main([*base, '--openvino', str(run / 'f32.xml'), '--img-size', '40']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'takes 32x32 images, but this evaluation runs at 40x40' in err[0]


def test_existing_files_are_kept_and_a_failed_check_writes_nothing(tmp_path, official_files, monkeypatch, capsys):
    weights = str(official_files['emo_1m'])
    export = ['export', 'openvino', '--model', 'emo_1m', '--weights', weights, '--img-size', '64']
    for existing in ('m.bin', 'm.xml'):  # either file of the pair is the user's
        (tmp_path / existing).write_bytes(b'user data')
        assert main([*export, '-o', str(tmp_path / 'm.xml')]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f'{existing} exists' in err[0] and '--overwrite' in err[0]
        assert (tmp_path / existing).read_bytes() == b'user data'
        assert sorted(p.name for p in tmp_path.iterdir()) == [existing]
        (tmp_path / existing).unlink()
    # --overwrite replaces both, with a pair that loads
    (tmp_path / 'm.xml').write_bytes(b'old')
    (tmp_path / 'm.bin').write_bytes(b'old')
    assert main([*export, '-o', str(tmp_path / 'm.xml'), '--overwrite']) == 0
    assert ov_export.IRClassifier(tmp_path / 'm.xml').input_shape == (1, 3, 64, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m.bin', 'm.xml']
    # an IR is NAME.xml: a folder or another suffix is refused before any work
    for wrong, message in ((tmp_path, 'is a folder'), (tmp_path / 'x.onnx', 'not x.onnx')):
        assert main([*export, '-o', str(wrong)]) == 1
        assert message in capsys.readouterr().err
    for name in ('m.xml', 'm.bin'):
        (tmp_path / name).unlink()

    # a check that fails (as a wrong graph would): nothing is written, nothing is left behind
    monkeypatch.setattr(
        ov_export, 'logit_agreement', lambda e, g: {'max_abs_diff': 1.0, 'cosine': 0.5, 'top1_agreement': 0.0}
    )
    assert main([*export, '-o', str(tmp_path / 'n.xml')]) == 1
    assert 'differs from PyTorch by 1' in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    'args, message',
    [
        (['--int8'], '--int8 and --calibrate DIR go together'),
        (['--calibrate', 'x'], '--int8 and --calibrate DIR go together'),
        (['--int8', '--calibrate', '/nonexistent/folder'], 'calibration folder /nonexistent/folder does not exist'),
    ],
)
def test_bad_int8_arguments_are_one_line(tmp_path, capsys, args, message):
    out = tmp_path / 'm.xml'
    assert main(['export', 'openvino', '--model', 'emo_1m', '--random-weights', *args, '-o', str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and 'Traceback' not in err[0]
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_images_is_refused(tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    args = [
        'export',
        'openvino',
        '--model',
        'emo_1m',
        '--random-weights',
        '--int8',
        '--calibrate',
        str(tmp_path / 'empty'),
    ]
    assert main([*args, '-o', str(tmp_path / 'm.xml')]) == 1
    assert 'holds no images' in capsys.readouterr().err
    assert not (tmp_path / 'm.xml').exists()


def test_onnx_qk_and_v_are_matmuls_over_tokens(tmp_path):
    """EMOv2's ONNX graph computes qk and v as matmuls on channels-last tokens (no conv inside an attention): the
    layout ONNX Runtime and OpenVINO run without an 8-D transpose per partition."""
    import onnx

    path, _ = export_model('onnx', 'emo2_1m', tmp_path / 'm.onnx', weights=False)
    nodes = onnx.load(str(path)).graph.node
    attention = [n for n in nodes if '/attn/' in n.name]
    assert attention and not [n for n in attention if n.op_type == 'Conv']
    assert len([n for n in attention if n.op_type == 'MatMul']) >= 4 * 9  # qk, v and two attention products, x9


def test_missing_or_corrupt_ir_is_one_clear_error(tmp_path):
    (tmp_path / 'm.xml').write_text('<net>')
    with pytest.raises(FileNotFoundError, match='m.bin does not exist'):
        ov_export.IRClassifier(tmp_path / 'm.xml')
    (tmp_path / 'm.bin').write_bytes(b'\0' * 64)
    with pytest.raises(ValueError, match='m.xml is not a readable OpenVINO IR'):
        ov_export.IRClassifier(tmp_path / 'm.xml')


def test_validate_openvino_takes_only_the_ir_of_its_own_checkpoint(tmp_path, capsys):
    """An IR records its model and checkpoint sha256 (OpenVINO runtime info): another checkpoint of the same class
    count and size, of another model or of the same model, is refused in one line, as is an IR with no record."""
    val = make_image_folders(tmp_path / 'data', train_per_class=0, val_per_class=2, size=40)['val']
    ckpt = _tiny_checkpoint(tmp_path / 'emo_1m.pth', 'emo_1m', seed=0)
    others = {
        'emo2_1m': _tiny_checkpoint(tmp_path / 'emo2_1m.pth', 'emo2_1m', seed=0),  # another model
        'emo_1m': _tiny_checkpoint(tmp_path / 'emo_1m_again.pth', 'emo_1m', seed=1),  # the same model, other weights
    }
    xml = tmp_path / 'ir' / 'emo_1m.xml'
    assert main(['export', 'openvino', '--model', 'emo_1m', '--weights', str(ckpt), '-o', str(xml)]) == 0
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()

    def validate(checkpoint: Path, ir: Path, output: Path) -> int:
        capsys.readouterr()
        base = ['validate', '--data', str(val), '--checkpoint', str(checkpoint), '--workers', '0']
        return main([*base, '--openvino', str(ir), '--output', str(output)])

    for arch, other in others.items():
        assert validate(other, xml, tmp_path / arch) == 1, f'an IR of emo_1m.pth was validated on {other.name}'
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and 'Traceback' not in err[0], err
        assert f'{xml} was exported from emo_1m with the weights of checkpoint emo_1m.pth (sha256 {sha[:12]})' in err[0]
        assert f'not from {arch} with checkpoint {other} (sha256 ' in err[0]
        assert f'emo export openvino --model {arch} --weights {other}' in err[0]
        assert not list((tmp_path / arch).glob('*.csv'))  # no number for the wrong model
    # the record, as the IR holds it
    assert ov_export.read_record(xml) == {
        'arch': 'emo_1m',
        'weights': 'checkpoint emo_1m.pth',
        'checkpoint_sha256': sha,
        'num_classes': str(len(CLASSES)),
        'img_size': '32x32',
        'dynamic': 'false',
        'emo_version': emo.__version__,
    }
    assert ov_export.IRClassifier(xml).record == ov_export.read_record(xml)
    # the pair that belongs together is evaluated
    assert validate(ckpt, xml, tmp_path / 'match') == 0
    assert capsys.readouterr().out.startswith(f'{xml}: top-1 ')
    assert (tmp_path / 'match' / 'emo_1m_per_class_accuracy.csv').is_file()
    # an IR with no record (an older emo's: the same files without the runtime info) is refused: re-export it
    old = tmp_path / 'old.xml'
    old.write_text(re.sub(r'\s*<emo>.*?</emo>', '', xml.read_text(), flags=re.S))
    shutil.copy(xml.with_suffix('.bin'), old.with_suffix('.bin'))
    assert ov_export.read_record(old) is None
    assert validate(ckpt, old, tmp_path / 'old') == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f'{old} does not record what it was exported from' in err[0]
    assert (
        f're-export it (export the IR from this checkpoint with emo export openvino --model emo_1m --weights {ckpt})'
        in err[0]
    )


def test_int8_check_on_calibration_images_or_one_image_warns(tmp_path, official_files, caplog, capsys):
    # end to end, the case: a folder of one image calibrates and checks on that same image
    folder = make_image_folders(tmp_path / 'data', train_per_class=1, val_per_class=0, size=32)['train']
    for extra in sorted(folder.rglob('*.png'))[1:]:
        extra.unlink()
    out = tmp_path / 'q.xml'
    # the reference rule's weights, not random ones: their int8 logits keep a cosine of 0.99 here, far from 0.95
    weights = str(official_files['emo_1m'])
    args = ['export', 'openvino', '--model', 'emo_1m', '--weights', weights, '--img-size', '32', '-o', str(out)]
    with caplog.at_level(logging.WARNING, logger='emo.deploy.openvino'):
        assert main([*args, '--int8', '--calibrate', str(folder)]) == 0  # a warning, not a refusal: the IR is written
    assert out.is_file() and 'at 1 calibration images:' in capsys.readouterr().out
    warnings = [r.getMessage() for r in caplog.records if r.name == 'emo.deploy.openvino']
    assert len(warnings) == 1, warnings
    assert 'the int8 check ran on the calibration image(s) themselves (1; none were left over' in warnings[0]
    assert f'check it with emo validate --openvino {out} --data VAL --checkpoint CKPT' in warnings[0]
    # which checks warn, without another export each (~12 s): one held-out image does, two do not (and 8 held-out
    # ones, end to end, do not in test_int8_calibrates_on_a_folder_skips_what_is_unreadable_and_follows_pytorch)
    image = np.zeros((1, 3, 32, 32), dtype=np.float32)
    for held_out, warns in ((1, 'the int8 check ran on 1 held-out image only'), (2, None)):
        caplog.clear()
        ov_export._warn_on_weak_int8_check(out, [image] * 3, [image] * held_out)
        warnings = [r.getMessage() for r in caplog.records if r.name == 'emo.deploy.openvino']
        assert warnings == [] if warns is None else (len(warnings) == 1 and warns in warnings[0]), warnings
