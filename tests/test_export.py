"""``emo export``: ONNX (run in ONNX Runtime), TorchScript and torch.export files reproduce the official outputs."""

import os

import numpy as np
import onnxruntime as ort
import pytest
import torch
from reference import INPUT_KEYS, expected, reference_inputs

from emo.cli import main
from emo.deploy.export import export_model, export_onnx

INPUTS = reference_inputs()


def _ort_logits(path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return torch.from_numpy(session.run(None, {'images': x.numpy()})[0])


@pytest.mark.parametrize('variant', ['emo_2m', 'emo2_1m'])  # EMOv2's graph takes qk and v as matmuls over tokens
def test_onnx_cli_with_dynamic_axes_reproduces_the_reference(tmp_path, official_files, capsys, variant):
    out = tmp_path / f'{variant}.onnx'
    weights = str(official_files[variant])
    code = main(['export', 'onnx', '--model', variant, '--weights', weights, '--dynamic', '-o', str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert f'wrote {out} (' in printed and 'MiB)' in printed
    assert 'ONNX Runtime latency, batch 1, 224x224:' in printed
    ref = expected(variant)
    # one file, three shapes: the batch of two 224 images and the padded 256x192 image
    for key in INPUT_KEYS:
        torch.testing.assert_close(_ort_logits(out, INPUTS[key]), ref[f'logits_{key}'], rtol=0, atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no partial files left behind


def test_static_onnx_has_fixed_shapes(tmp_path, official_files):
    path, diffs = export_model('onnx', 'emo_1m', tmp_path / 'm.onnx', weights=str(official_files['emo_1m']))
    assert list(diffs) == ['1x3x224x224'] and diffs['1x3x224x224'] <= 1e-4
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert session.get_inputs()[0].shape == [1, 3, 224, 224]
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument):
        session.run(None, {'images': np.zeros((1, 3, 256, 192), np.float32)})


@pytest.mark.parametrize('variant', ['emo_1m', 'emo2_1m'])
def test_torchscript_and_program_reproduce_the_reference(tmp_path, official_files, variant):
    weights = str(official_files[variant])
    ref = expected(variant)
    ts_path, _ = export_model('torchscript', variant, tmp_path / 'm.pt', weights=weights)
    scripted = torch.jit.load(str(ts_path))
    prog_path, diffs = export_model('program', variant, tmp_path / 'm.pt2', weights=weights, dynamic=True)
    assert set(diffs) == {'1x3x224x224', '3x3x224x224'} and max(diffs.values()) <= 1e-4
    program = torch.export.load(str(prog_path)).module()
    with torch.inference_mode():
        for key in INPUT_KEYS:
            torch.testing.assert_close(scripted(INPUTS[key]), ref[f'logits_{key}'], rtol=0, atol=1e-4)
        x = INPUTS['2x3x224x224']
        torch.testing.assert_close(program(x), ref['logits_2x3x224x224'], rtol=0, atol=1e-4)


def test_existing_files_are_kept(tmp_path, official_files, capsys):
    out = tmp_path / 'model.onnx'
    out.write_bytes(b'precious')
    args = ['export', 'onnx', '--model', 'emo_1m', '--weights', str(official_files['emo_1m']), '-o', str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert 'exists' in err and '--overwrite' in err
    assert out.read_bytes() == b'precious'
    assert main(args + ['--overwrite']) == 0
    # the file now is the exported model (static: batch 1, 224x224): the first reference image's logits
    logits = _ort_logits(out, INPUTS['2x3x224x224'][:1])
    torch.testing.assert_close(logits, expected('emo_1m')['logits_2x3x224x224'][:1], rtol=0, atol=1e-4)


def test_python_export_keeps_existing_files_too(tmp_path):
    path = tmp_path / 'm.onnx'
    path.write_bytes(b'precious')
    with pytest.raises(FileExistsError, match='overwrite'):
        export_onnx(torch.nn.Conv2d(3, 3, 1), path, check=False)
    assert path.read_bytes() == b'precious'
    export_onnx(torch.nn.Conv2d(3, 3, 1), path, check=False, overwrite=True)
    assert path.read_bytes() != b'precious'
    assert path.stat().st_mode & 0o044 == 0o044 & ~_umask()  # an ordinary file, not mkstemp's private one


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_failed_export_leaves_nothing(tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError('cannot trace this')

    with pytest.raises(RuntimeError, match='cannot trace'):
        export_onnx(Broken(), tmp_path / 'broken.onnx')
    assert os.listdir(tmp_path) == []


def test_a_folder_as_output_is_refused_before_exporting(tmp_path, capsys, monkeypatch):
    import emo.weights

    def no_build(*args, **kwargs):
        raise AssertionError('the model was built although the output could never be written')

    monkeypatch.setattr(emo.weights, 'create_with_weights', no_build)
    folder = tmp_path / 'exports'
    folder.mkdir()
    (folder / 'keep.txt').write_text('mine')
    assert main(['export', 'onnx', '--random-weights', '-o', str(folder), '--overwrite']) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('emo export: error:') and 'is a folder' in err and len(err.splitlines()) == 1
    assert [p.name for p in folder.iterdir()] == ['keep.txt']
    with pytest.raises(IsADirectoryError):
        export_model('onnx', 'emo_1m', folder, weights=False, overwrite=True)


def test_bad_arguments_are_explained(tmp_path, capsys):
    assert main(['export', 'onnx', '--random-weights', '--img-size', '16', '-o', str(tmp_path / 'a.onnx')]) == 1
    assert 'too small' in capsys.readouterr().err
    assert main(['export', 'onnx', '--random-weights', '--weights', 'x.pth']) == 1
    assert 'exclude each other' in capsys.readouterr().err


def test_export_cli_takes_the_512_model_s_input_size(tmp_path, capsys):
    out = tmp_path / 'emo2_5m_512.onnx'
    assert main(['export', 'onnx', '--model', 'emo2_5m_512', '--random-weights', '-o', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'at 1x3x512x512' in printed and 'batch 1, 512x512' in printed
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    assert session.get_inputs()[0].shape == [1, 3, 512, 512]
