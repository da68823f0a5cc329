"""emo.ultralytics: the shipped YOLO YAMLs build, scale and train with Ultralytics' own code, offline.

Needs the optional extra (``pip install -e ".[yolo]"``); without Ultralytics the whole file is skipped.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from timm.layers import LayerScale2d

# Ultralytics reads these at import: no online checks, and its settings file goes to a temporary folder, not
# ~/.config. It also sets OMP_NUM_THREADS=1 for the process; the environment is put back so other tests' subprocesses
# do not inherit any of it.
_CONFIG_DIR = tempfile.mkdtemp(prefix='emo-yolo-config-')
_ENV_BEFORE = {k: os.environ.get(k) for k in ('YOLO_OFFLINE', 'YOLO_CONFIG_DIR', 'OMP_NUM_THREADS')}
os.environ.update(YOLO_OFFLINE='1', YOLO_CONFIG_DIR=_CONFIG_DIR)
try:
    pytest.importorskip('ultralytics')
except BaseException:  # skipped (or broken): nothing will use the folder
    shutil.rmtree(_CONFIG_DIR, ignore_errors=True)
    raise
finally:
    for key, value in _ENV_BEFORE.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

from ultralytics import YOLO  # noqa: E402
from ultralytics.nn.modules import C2f, Index  # noqa: E402
from ultralytics.nn.tasks import DetectionModel, yaml_model_load  # noqa: E402
from yolo_data import offline_font, write_dataset  # noqa: E402

import emo.ultralytics as eu  # noqa: E402
from emo.layers import HybridWindowAttention  # noqa: E402
from emo.models import IRMB  # noqa: E402

OUR_LAYERS = (eu.iRMB, eu.C2f_iRMB, eu.EMOBackbone)  # and the EMOv2 subclasses i2RMB, C2f_i2RMB
# layer index -> our layer type, per shipped YAML (the plain yolov8 layer at that index, if any, is the reference)
PLACEMENTS = {
    'yolov8n-c2f-irmb': {2: eu.C2f_iRMB, 4: eu.C2f_iRMB, 6: eu.C2f_iRMB, 8: eu.C2f_iRMB},
    'yolov8n-c2f-i2rmb': {2: eu.C2f_i2RMB, 4: eu.C2f_i2RMB, 6: eu.C2f_i2RMB, 8: eu.C2f_i2RMB},
    'yolov8n-sppf-irmb': {10: eu.iRMB},
    'yolov8n-head-irmb': {12: eu.C2f_iRMB, 15: eu.C2f_iRMB, 18: eu.C2f_iRMB, 21: eu.C2f_iRMB},
    'yolov8n-emo': {0: eu.EMOBackbone},
    'yolov8n-emo2': {0: eu.EMOBackbone},
}


@pytest.fixture(scope='module', autouse=True)
def _one_thread():
    # as Ultralytics does on CPU: these models are tiny, and a second OpenMP thread only adds synchronisation,
    # which on a busy 2-core machine made a 64x96 forward pass take seconds instead of milliseconds
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    shutil.rmtree(_CONFIG_DIR, ignore_errors=True)


def build(name: str, scale: str = 'n') -> DetectionModel:
    return YOLO(eu.cfg(name.replace('yolov8n', f'yolov8{scale}', 1))).model


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def c2f_shape(layer: torch.nn.Module) -> tuple:
    """(c1, c2, n) of a C2f or C2f_iRMB."""
    return layer.cv1.conv.in_channels, layer.cv2.conv.out_channels, len(layer.m)


def test_configs_and_cfg():
    assert eu.configs() == sorted(PLACEMENTS)
    assert eu.configs('s') == [n.replace('yolov8n', 'yolov8s') for n in sorted(PLACEMENTS)]
    for name in eu.configs():
        path = Path(eu.cfg(name))
        assert path.name == f'{name}.yaml' and path.parent == eu.CFG_DIR
        assert (eu.CFG_DIR / f'{name.replace("yolov8n", "yolov8")}.yaml').is_file()  # one file holds all scales
    assert eu.cfg('yolov8s-emo.yaml').endswith('yolov8s-emo.yaml')
    with pytest.raises(ValueError, match='no shipped YAML'):
        eu.cfg('yolov8n-nothing')
    with pytest.raises(ValueError, match='scale'):
        eu.configs('q')


def test_registration_is_scoped_and_idempotent(monkeypatch):
    from ultralytics.nn import tasks

    # our classes stand in for C2f only while the wrapped parse_model runs
    assert eu.C2f_iRMB != C2f and eu.iRMB != C2f
    assert {eu.C2f_iRMB: 1}[eu.C2f_iRMB] == 1 and C2f not in {eu.C2f_iRMB, eu.iRMB}
    assert tasks.iRMB is eu.iRMB and tasks.C2f_iRMB is eu.C2f_iRMB and tasks.EMOBackbone is eu.EMOBackbone
    before = build('yolov8n-c2f-irmb')
    eu._register()  # a second registration (e.g. a module reload) must not wrap the wrapper
    after = build('yolov8n-c2f-irmb')
    assert count_params(after) == count_params(before)
    assert {m.i: type(m) for m in after.model if isinstance(m, OUR_LAYERS)} == PLACEMENTS['yolov8n-c2f-irmb']

    monkeypatch.delattr(tasks, 'Index')
    with pytest.raises(ImportError, match='Index layer'):
        DetectionModel(eu.cfg('yolov8n-emo'), verbose=False)


def test_parse_model_called_positionally_or_by_keyword_builds_the_same():
    from ultralytics.nn import tasks

    d = yaml_model_load(eu.cfg('yolov8s-c2f-irmb'))
    by_position, save_a = tasks.parse_model(dict(d), 3)
    by_keyword, save_b = tasks.parse_model(d=dict(d), ch=3, verbose=False)
    assert [type(m) for m in by_position] == [type(m) for m in by_keyword] and save_a == save_b
    assert count_params(by_position) == count_params(by_keyword)
    with pytest.raises(TypeError, match='ch'):  # what the original says about a call without the channels
        tasks.parse_model(dict(d))


def _reregister(monkeypatch, parse_model) -> None:
    """Register emo's layers over another ``parse_model`` and run the import-time probe on it."""
    import ultralytics.nn
    from ultralytics.nn import tasks

    monkeypatch.setattr(tasks, 'parse_model', parse_model)
    monkeypatch.setattr(ultralytics.nn, 'parse_model', parse_model, raising=False)
    eu._register()
    eu._check_assumptions()


def test_a_parse_model_with_another_signature_is_wrapped(monkeypatch):
    from ultralytics.nn import tasks

    real = tasks.parse_model.emo_original
    seen = []

    def future_parse_model(cfg, ch, *, verbose=True, scale=None):  # renamed, keyword-only extras
        seen.append(cfg['backbone'][0][3][:1])  # EMOBackbone rows arrive with the image channels put first
        return real(cfg, ch, verbose=verbose)

    _reregister(monkeypatch, future_parse_model)
    model = DetectionModel(eu.cfg('yolov8n-emo'), ch=3, verbose=False)
    assert isinstance(model.model[0], eu.EMOBackbone) and [3] in seen


def test_an_ultralytics_that_breaks_the_assumptions_fails_in_one_line(monkeypatch):
    import ultralytics
    from ultralytics.nn import tasks

    real = tasks.parse_model.emo_original

    def identity_checks(d, ch, verbose=True):  # as if parse_model compared layers with `is` instead of sets
        with monkeypatch.context() as m:
            m.setattr(type(eu.C2f_iRMB), '__eq__', lambda cls, other: cls is other)
            return real(d, ch, verbose)

    with pytest.raises(ImportError) as error:
        _reregister(monkeypatch, identity_checks)
    message = str(error.value)
    assert '\n' not in message and f'Ultralytics {ultralytics.__version__}' in message
    assert 'parse_model' in message  # here: the probe's C2f_iRMB got Ultralytics' arguments for a plain layer

    with pytest.raises(ImportError, match='takes no .model dict, input channels. arguments'):
        _reregister(monkeypatch, lambda d: d)


IMPORT_ON_A_BROKEN_ULTRALYTICS = textwrap.dedent("""
    import json, sys
    import ultralytics.nn.tasks as tasks

    real = tasks.parse_model

    def parse_model(d, ch, verbose=True):  # as if a release built every layer with (c1, c2) it takes for a Conv
        raise TypeError('an Ultralytics message\\nover two lines')

    tasks.parse_model = parse_model
    try:
        import emo.ultralytics
    except ImportError as e:
        message = str(e)
    else:
        sys.exit('imported')
    # Ultralytics is left as it was: its own parse_model, none of emo's YAML names
    assert tasks.parse_model is parse_model and not hasattr(tasks, 'iRMB') and not hasattr(tasks, 'C2f_iRMB')
    print(json.dumps(message))
""")


def test_import_on_an_ultralytics_that_breaks_the_assumptions_fails_in_one_line_and_leaves_it_alone(tmp_path):
    import ultralytics

    env = dict(os.environ, YOLO_OFFLINE='1', YOLO_CONFIG_DIR=str(tmp_path), OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(Path(eu.__file__).parents[2]), env.get('PYTHONPATH')]))
    result = subprocess.run(
        [sys.executable, '-c', IMPORT_ON_A_BROKEN_ULTRALYTICS], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    message = json.loads(result.stdout.strip().splitlines()[-1])  # Ultralytics prints its settings file first
    assert '\n' not in message and f'Ultralytics {ultralytics.__version__}' in message
    assert message.endswith('parse_model cannot build a C2f_iRMB and an Index (TypeError: an Ultralytics message)')


def test_the_supported_range_is_the_extras():
    import configparser

    config = configparser.ConfigParser()
    config.read(Path(__file__).parents[1] / 'setup.cfg')
    assert config['options.extras_require']['yolo'].split() == [f'ultralytics{eu.SUPPORTED_ULTRALYTICS}']


# worked out by hand: round(c / 32) heads, lowered to a divisor of c
@pytest.mark.parametrize(
    'channels, dim_head',
    [(8, 8), (16, 16), (20, 20), (24, 24), (40, 40), (48, 24), (72, 36), (96, 32), (200, 40), (256, 32), (576, 32),
     (640, 32)],
)  # fmt: skip
def test_attention_heads_divide_any_scaled_width(channels, dim_head):
    assert eu.attention_dim_head(channels, 32) == dim_head


@pytest.fixture(scope='module')
def plain_n() -> DetectionModel:
    return YOLO('yolov8n.yaml').model


@pytest.mark.parametrize('name', sorted(PLACEMENTS))
def test_yaml_builds_runs_and_differs_from_yolov8n(name, plain_n):
    model = build(name)
    placed = {m.i: type(m) for m in model.model if isinstance(m, OUR_LAYERS)}
    assert placed == PLACEMENTS[name]
    assert all(m.type == f'emo.ultralytics.{type(m).__name__}' for m in model.model if isinstance(m, OUR_LAYERS))
    assert torch.equal(model.stride, torch.tensor([8.0, 16.0, 32.0]))

    # parameters: Ultralytics' own count (.np) per layer; the layers we did not touch are identical to yolov8n's
    params = count_params(model)
    assert params != count_params(plain_n)
    assert sum(m.np for m in model.model) == params
    if name == 'yolov8n-sppf-irmb':  # one layer inserted at 10: the rest shifts by one
        plain = {m.i + (m.i >= 10): m.np for m in plain_n.model}
    else:
        plain = {m.i: m.np for m in plain_n.model}
    if PLACEMENTS[name] != {0: eu.EMOBackbone}:  # a backbone replaced: the neck reads other widths
        assert all(m.np == plain[m.i] for m in model.model if m.i not in PLACEMENTS[name])
    for m in model.model:
        if isinstance(m, eu.C2f_iRMB):  # same channels and repeats as the C2f it replaces
            assert c2f_shape(m) == c2f_shape(plain_n.model[m.i])
            assert all(isinstance(b, IRMB) and not isinstance(b.attn, torch.nn.Identity) for b in m.m)
            # EMOv2's block: hybrid attention (v inside it) and a layer scale; EMO's: neither
            v2 = isinstance(m, eu.C2f_i2RMB)
            assert all(isinstance(b.attn, HybridWindowAttention) == v2 for b in m.m)
            assert all(isinstance(b.layer_scale, LayerScale2d) == v2 for b in m.m)
        if isinstance(m, eu.iRMB):  # after SPPF: keeps its width, so both shortcuts
            assert all(isinstance(b, IRMB) and b.has_skip for b in m)

    # forward and backward in training mode (raw head outputs), then inference in eval mode
    x = torch.randn(2, 3, 64, 96)
    out = model(x)
    (out['boxes'].float().mean() + out['scores'].float().mean()).backward()
    for m in model.model:
        if isinstance(m, OUR_LAYERS):
            grads = [p.grad for p in m.parameters()]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            assert any(g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        y, _ = model(x)
    assert y.shape == (2, 4 + 80, (8 * 12) + (4 * 6) + (2 * 3))


def test_fuse_keeps_outputs():
    model = build('yolov8n-head-irmb').eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)[0]
        model.fuse(verbose=False)
        after = model(x)[0]
    assert model.is_fused()
    torch.testing.assert_close(after, before, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize('name', ['yolov8n-c2f-irmb', 'yolov8n-head-irmb', 'yolov8n-sppf-irmb'])
def test_width_scaling_matches_ultralytics(name):
    # at 's' (width 0.5) our layers get exactly the channels Ultralytics gives its own C2f/SPPF there
    model, plain = build(name, 's'), YOLO('yolov8s.yaml').model
    for m in model.model:
        if isinstance(m, eu.C2f_iRMB):
            assert c2f_shape(m) == c2f_shape(plain.model[m.i])
            assert c2f_shape(m)[1] == 2 * c2f_shape(build(name).model[m.i])[1]
        if isinstance(m, eu.iRMB):
            sppf_out = plain.model[9].cv2.conv.out_channels
            assert m[0].proj.in_channels // 2 == sppf_out == m[-1].proj.out_channels == 512
    y = model.eval()(torch.randn(1, 3, 64, 64))[0]
    assert y.shape == (1, 84, 84)


def test_depth_scaling_matches_ultralytics():
    # at 'm' (depth 0.67, width 0.75, max 768) repeats grow: build the layer lists only (no stride forward)
    from ultralytics.nn.tasks import parse_model

    ours, _ = parse_model(yaml_model_load(eu.cfg('yolov8m-c2f-irmb')), ch=3, verbose=False)
    plain, _ = parse_model(yaml_model_load('yolov8m.yaml'), ch=3, verbose=False)
    repeats = []
    for m in ours:
        if isinstance(m, eu.C2f_iRMB):
            assert isinstance(plain[m.i], C2f) and c2f_shape(m) == c2f_shape(plain[m.i])
            repeats.append(len(m.m))
    assert repeats == [2, 4, 4, 2]  # the YAML's 3, 6, 6, 3 times 0.67
    irmb, _ = parse_model(yaml_model_load(eu.cfg('yolov8m-sppf-irmb')), ch=3, verbose=False)
    layer = irmb[10]
    assert len(layer) == 1 and layer[0].has_skip and layer[0].proj.out_channels == 576  # 768 * 0.75
    assert layer[0].attn.num_heads == 18  # 576 / 32


def test_emo_backbone_feeds_p3_p4_p5():
    model = build('yolov8n-emo')
    backbone = model.model[0]
    assert isinstance(backbone, eu.EMOBackbone) and backbone.variant == 'emo_1m'
    assert backbone.channels == [48, 80, 168] and backbone.strides == [8, 16, 32]
    assert [m.index for m in model.model[1:4]] == [0, 1, 2] and all(isinstance(m, Index) for m in model.model[1:4])
    assert model.model[4].cv1.conv.in_channels == 168  # SPPF on P5
    assert count_params(backbone) == 1_191_832  # the timm backbone, docs/architecture.md
    feats = backbone(torch.randn(1, 3, 96, 128))
    assert [tuple(f.shape[1:]) for f in feats] == [(48, 12, 16), (80, 6, 8), (168, 3, 4)]
    # Ultralytics resets BatchNorm eps to 1e-3 in its layers; the backbone keeps the 1e-6 its weights need
    assert {m.eps for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-6}
    assert model.model[4].cv1.bn.eps == 1e-3

    # the backbone is fixed by the YAML: scale 's' widens neck and head only
    small = build('yolov8n-emo', 's')
    assert small.model[0].channels == [48, 80, 168] and count_params(small.model[0]) == count_params(backbone)
    assert small.model[4].cv2.conv.out_channels == 2 * model.model[4].cv2.conv.out_channels == 512


def test_emo2_backbone_and_block():
    model = build('yolov8n-emo2')
    backbone = model.model[0]
    assert backbone.variant == 'emo2_1m' and backbone.channels == [48, 80, 180] and backbone.strides == [8, 16, 32]
    assert model.model[4].cv1.conv.in_channels == 180  # SPPF on P5
    assert {m.eps for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-6}
    assert any(isinstance(m, HybridWindowAttention) for m in backbone.modules())
    # an i2RMB row after SPPF: the EMOv2 block keeps the width and both shortcuts
    d = yaml_model_load(eu.cfg('yolov8n-sppf-irmb'))
    d['backbone'][10][2] = 'i2RMB'
    layer = DetectionModel(d, verbose=False).model[10]
    assert isinstance(layer, eu.i2RMB) and layer.type == 'emo.ultralytics.i2RMB'
    assert all(b.has_skip and isinstance(b.attn, HybridWindowAttention) for b in layer)
    assert all(isinstance(b.layer_scale, LayerScale2d) for b in layer)


def test_emo_backbone_variant_and_checks():
    d = yaml_model_load(eu.cfg('yolov8n-emo'))
    d['backbone'][0][3] = ['emo_2m']
    with pytest.raises(ValueError, match=r'has 120 channels, the YAML says 80; write \[120, 1\]'):
        DetectionModel(d, verbose=False)
    for row, width in zip(d['backbone'][1:4], (48, 120, 200)):
        row[3][0] = width
    model = DetectionModel(d, verbose=False)
    assert model.model[0].channels == [48, 120, 200]

    d = yaml_model_load(eu.cfg('yolov8n-emo'))
    d['backbone'].insert(0, [-1, 1, 'Conv', [16, 3, 1]])
    with pytest.raises(ValueError, match='EMOBackbone must be layer 0'):
        DetectionModel(d, verbose=False)


def test_emo_backbone_pretrained_from_file(tmp_path):
    # the pretrained route offline: an official-layout net.pth given as the YAML's pretrained argument
    import timm
    from reference import official_state_dict

    file = tmp_path / 'net.pth'
    torch.save(official_state_dict('emo_1m'), file)
    d = yaml_model_load(eu.cfg('yolov8n-emo'))
    d['backbone'][0][3] = ['emo_1m', str(file)]
    backbone = DetectionModel(d, verbose=False).model[0].eval()
    reference = timm.create_model(
        'emo_1m', pretrained=True, features_only=True, out_indices=(1, 2, 3), pretrained_cfg_overlay=dict(file=file)
    ).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ours, theirs = backbone(x), reference(x)
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


LOAD_IN_FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    from ultralytics import YOLO

    # no `import emo.ultralytics`: unpickling best.pt imports it by the layers' module path
    model = YOLO(sys.argv[1])
    assert 'emo.ultralytics' in sys.modules
    layers = sorted({type(m).__name__ for m in model.model.modules() if type(m).__module__ == 'emo.ultralytics'})
    boxes = model.predict(sys.argv[2], imgsz=64, conf=0.0, max_det=10, device='cpu', verbose=False)[0].boxes
    metrics = model.val(data=sys.argv[3], imgsz=64, batch=8, workers=0, device='cpu', plots=False,
                        project=sys.argv[4], name='val', verbose=False)
    print(json.dumps(dict(layers=layers, is_tensor=isinstance(boxes.data, __import__('torch').Tensor),
                          shape=list(boxes.data.shape), xyxy=list(boxes.xyxy.shape), map50=metrics.box.map50)))
""")


@pytest.mark.slow
@pytest.mark.parametrize(
    'name, layers', [('yolov8n-emo', ['EMOBackbone', '_BackboneBatchNorm2d']), ('yolov8n-c2f-irmb', ['C2f_iRMB'])]
)
def test_train_save_and_load_in_fresh_process(tmp_path, name, layers):
    from ultralytics.utils import USER_CONFIG_DIR

    offline_font(Path(USER_CONFIG_DIR))
    data = write_dataset(tmp_path / 'shapes')
    model = YOLO(eu.cfg(name))
    model.train(
        data=str(data), epochs=1, imgsz=64, batch=8, workers=0, device='cpu', amp=False, plots=False, seed=0,
        project=str(tmp_path / 'runs'), name='train', exist_ok=True, verbose=False,
    )  # fmt: skip
    best = Path(model.trainer.best)
    assert best.is_file() and best.is_relative_to(tmp_path)

    config_dir = tmp_path / 'config'
    offline_font(config_dir / 'Ultralytics')
    env = dict(os.environ, YOLO_OFFLINE='1', YOLO_CONFIG_DIR=str(config_dir), OMP_NUM_THREADS='1')
    # the emo being tested, also from a checkout that is not installed
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(Path(eu.__file__).parents[2]), env.get('PYTHONPATH')]))
    image = next((tmp_path / 'shapes' / 'images' / 'val').iterdir())
    result = subprocess.run(
        [sys.executable, '-c', LOAD_IN_FRESH_PROCESS, str(best), str(image), str(data), str(tmp_path / 'runs')],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['layers'] == layers
    assert report['is_tensor'] and report['shape'][1] == 6 and 0 < report['shape'][0] <= 10
    assert report['xyxy'] == [report['shape'][0], 4]
    assert 0.0 <= report['map50'] <= 1.0


LEGACY = Path(__file__).parent / 'data' / 'legacy'


@pytest.mark.parametrize(
    'name, layers',
    [('yolo', {'iRMB', 'C2f_iRMB'}), ('yolo_emo_backbone', {'EMOBackbone', '_BackboneBatchNorm2d'})],
)
def test_best_pt_trained_with_emo_0_1_loads_and_predicts_as_it_did(name, layers):
    # real best.pt files of 1-epoch runs with the code of commit 3391efd, whose pickles name emo.irmb.IRMB,
    # emo.irmb.ConvBnAct, emo.model.Stem, ... (tests/data/legacy/README.md says how they and the outputs were made)
    expected = torch.load(LEGACY / f'{name}_best_expected.pt', weights_only=True)
    net = YOLO(str(LEGACY / f'{name}_best.pt')).model.eval()
    assert {type(m).__name__ for m in net.modules() if type(m).__module__ == 'emo.ultralytics'} == layers
    assert any(isinstance(m, IRMB) for m in net.modules())
    with torch.no_grad():
        decoded, raw = net(expected['input'])
        fused = copy.deepcopy(net).fuse(verbose=False)(expected['input'])[0]
    # boxes are pixels (up to ~480); the rest is float rounding of today's attention arithmetic
    torch.testing.assert_close(decoded, expected['output'], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(raw['scores'], expected['scores'], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused, expected['fused_output'], rtol=1e-4, atol=1e-3)
