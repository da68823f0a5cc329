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
import time
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
from emo.ultralytics import parsing  # noqa: E402

OUR_LAYERS = (eu.iRMB, eu.C2f_iRMB, eu.C3k2_iRMB, eu.EMOBackbone)  # and the EMOv2 subclasses
C3K2_BACKBONE, C3K2_HEAD = (2, 4, 6, 8), (13, 16, 19, 22)  # the C3k2 rows of yolo11.yaml and yolo26.yaml
# layer index -> our layer type, per shipped YAML (the stock layer at that index, if any, is the reference)
PLACEMENTS = {
    **{f'{g}n-c3k2-irmb': dict.fromkeys(C3K2_BACKBONE, eu.C3k2_iRMB) for g in ('yolo11', 'yolo26')},
    **{f'{g}n-head-irmb': dict.fromkeys(C3K2_HEAD, eu.C3k2_iRMB) for g in ('yolo11', 'yolo26')},
    **{f'{g}n-sppf-irmb': {10: eu.iRMB} for g in ('yolo11', 'yolo26')},  # in place of C2PSA
    **{f'{g}n-{b}': {0: eu.EMOBackbone} for g in ('yolo11', 'yolo26') for b in ('emo', 'emo2')},
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
    return YOLO(eu.cfg(name.replace('n-', f'{scale}-', 1))).model


def generation(name: str) -> str:
    return name.split('-')[0][:-1]  # 'yolo11n-emo' -> 'yolo11'


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def c2f_shape(layer: torch.nn.Module) -> tuple:
    """(c1, c2, n) of a C2f or C2f_iRMB."""
    return layer.cv1.conv.in_channels, layer.cv2.conv.out_channels, len(layer.m)


def test_configs_and_cfg():
    assert eu.configs() == sorted(PLACEMENTS)
    assert eu.configs('s') == sorted(n.replace('n-', 's-', 1) for n in PLACEMENTS)
    for name in eu.configs():
        path = Path(eu.cfg(name))
        assert path.name == f'{name}.yaml' and path.parent == eu.CFG_DIR
        assert (eu.CFG_DIR / f'{name.replace("n-", "-", 1)}.yaml').is_file()  # one file holds all scales
    assert eu.cfg('yolov8s-emo.yaml').endswith('yolov8s-emo.yaml')
    assert eu.cfg('yolo26x-head-irmb').endswith('yolo26x-head-irmb.yaml')
    for wrong in ('yolov8n-nothing', 'yolo12n-emo', 'yolo11q-emo', 'emo'):
        with pytest.raises(ValueError, match='no shipped YAML'):
            eu.cfg(wrong)
    with pytest.raises(ValueError, match='scale'):
        eu.configs('q')


def test_registration_is_scoped_and_idempotent(monkeypatch):
    from ultralytics.nn import tasks

    # our classes stand in for C2f only while the wrapped parse_model runs
    assert eu.C2f_iRMB != C2f and eu.iRMB != C2f
    assert {eu.C2f_iRMB: 1}[eu.C2f_iRMB] == 1 and C2f not in {eu.C2f_iRMB, eu.iRMB}
    assert tasks.iRMB is eu.iRMB and tasks.C2f_iRMB is eu.C2f_iRMB and tasks.EMOBackbone is eu.EMOBackbone
    before = build('yolov8n-c2f-irmb')
    parsing._register()  # a second registration (e.g. a module reload) must not wrap the wrapper
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
    parsing._register()
    parsing._check_assumptions()


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
    assert not [name for name in vars(tasks) if name.startswith('emo_')]  # nor the current-head stand-ins
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
    assert message.endswith(
        'parse_model cannot build C2f_iRMB, Index, C3k2_iRMB and Detect rows (TypeError: an Ultralytics message)'
    )


def test_the_supported_range_is_the_extras():
    import configparser

    config = configparser.ConfigParser()
    config.read(Path(__file__).parents[1] / 'setup.cfg')
    assert config['options.extras_require']['yolo'].split()[0] == f'ultralytics{eu.SUPPORTED_ULTRALYTICS}'


def test_the_yolo_extra_has_what_onnx_export_checks_for():
    # Ultralytics' ONNX export pip-installs onnx, onnxslim and onnxruntime when they are missing; the extra has them
    # (test_each_shipped_yaml_trains_reloads_and_exports checks that an export asks for nothing)
    import configparser

    from packaging.requirements import Requirement

    config = configparser.ConfigParser()
    config.read(Path(__file__).parents[1] / 'setup.cfg')
    extra = [Requirement(r).name for r in config['options.extras_require']['yolo'].split()]
    assert extra == ['ultralytics', 'onnx', 'onnxslim', 'onnxruntime']


# worked out by hand: round(c / 32) heads, lowered to a divisor of c
@pytest.mark.parametrize(
    'channels, dim_head',
    [(8, 8), (16, 16), (20, 20), (24, 24), (40, 40), (48, 24), (72, 36), (96, 32), (200, 40), (256, 32), (576, 32),
     (640, 32)],
)  # fmt: skip
def test_attention_heads_divide_any_scaled_width(channels, dim_head):
    assert eu.attention_dim_head(channels, 32) == dim_head


@pytest.fixture(scope='module')
def stock() -> dict:
    """Ultralytics' own model of each generation at scale n: yolov8n, yolo11n, yolo26n."""
    return {g: YOLO(f'{g}n.yaml').model for g in ('yolov8', 'yolo11', 'yolo26')}


def block_shape(layer: torch.nn.Module) -> tuple:
    """(c1, c2, n, hidden c) of a C2f, C3k2 or one of ours in their layout."""
    return (*c2f_shape(layer), layer.c)


def head_layout(model: DetectionModel) -> list:
    """The Detect head's parameter names and shapes: YOLOv8's (legacy) and YOLO11's heads differ in both."""
    return [(k, tuple(v.shape)) for k, v in model.model[-1].state_dict().items()]


@pytest.mark.parametrize('name', sorted(PLACEMENTS))
def test_yaml_builds_runs_and_differs_from_the_stock_model(name, stock):
    model, plain = build(name), stock[generation(name)]
    placed = {m.i: type(m) for m in model.model if isinstance(m, OUR_LAYERS)}
    assert placed == PLACEMENTS[name]
    assert all(m.type == f'emo.ultralytics.{type(m).__name__}' for m in model.model if isinstance(m, OUR_LAYERS))
    assert torch.equal(model.stride, torch.tensor([8.0, 16.0, 32.0]))
    # the same Detect head as the stock model of its generation (YOLOv8's legacy one only for yolov8), also where
    # every C3k2 of the backbone or of the head is ours
    assert type(model.model[-1]) is type(plain.model[-1]) and head_layout(model) == head_layout(plain)

    # parameters: Ultralytics' own count (.np) per layer; the layers we did not touch are identical to the stock's
    params = count_params(model)
    assert params != count_params(plain)
    assert sum(m.np for m in model.model) == params
    if name == 'yolov8n-sppf-irmb':  # one layer inserted at 10: the rest shifts by one
        plain_np = {m.i + (m.i >= 10): m.np for m in plain.model}
    else:
        plain_np = {m.i: m.np for m in plain.model}
    if PLACEMENTS[name] != {0: eu.EMOBackbone}:  # a backbone replaced: the neck reads other widths
        assert all(m.np == plain_np[m.i] for m in model.model if m.i not in PLACEMENTS[name])
    for m in model.model:
        if isinstance(m, (eu.C2f_iRMB, eu.C3k2_iRMB)):  # same channels, repeats and hidden width as what it replaces
            assert block_shape(m) == block_shape(plain.model[m.i])
            irmbs = [b for b in m.modules() if isinstance(b, IRMB)]
            assert irmbs and all(not isinstance(b.attn, torch.nn.Identity) for b in irmbs)
            # EMOv2's block: hybrid attention (v inside it) and a layer scale; EMO's: neither
            v2 = isinstance(m, (eu.C2f_i2RMB, eu.C3k2_i2RMB))
            assert all(isinstance(b.attn, HybridWindowAttention) == v2 for b in irmbs)
            assert all(isinstance(b.layer_scale, LayerScale2d) == v2 for b in irmbs)
        if isinstance(m, eu.iRMB):  # after SPPF: keeps its width, so both shortcuts
            assert all(isinstance(b, IRMB) and b.has_skip for b in m)

    # forward and backward in training mode (raw head outputs), then inference in eval mode
    x = torch.randn(2, 3, 64, 96)
    out = model(x)
    out = out['one2many'] if 'one2many' in out else out  # YOLO26 trains both heads
    (out['boxes'].float().mean() + out['scores'].float().mean()).backward()
    for m in model.model:
        if isinstance(m, OUR_LAYERS):
            grads = [p.grad for p in m.parameters()]
            assert all(g is not None and torch.isfinite(g).all() for g in grads)
            assert any(g.abs().sum() > 0 for g in grads)
    model.eval()
    plain = copy.deepcopy(plain).eval()
    with torch.no_grad():
        y, expected = model(x)[0], plain(x)[0]
    assert y.shape == expected.shape  # (2, 4 + 80, 8 * 12 + 4 * 6 + 2 * 3), or YOLO26's top-k rows


def swapped(stock_yaml: str, rows, name: str = 'C3k2_iRMB') -> dict:
    """Ultralytics' own model dict with the C3k2 of the given layers renamed, as a user edits a YAML."""
    d = yaml_model_load(stock_yaml)
    for i, row in enumerate(d['backbone'] + d['head']):
        if i in rows:
            assert row[2] == 'C3k2'
            row[2] = name
    return d


@pytest.mark.parametrize('scale', ['n', 'm'])
@pytest.mark.parametrize('g', ['yolo11', 'yolo26'])
def test_c3k2_irmb_keeps_every_c3k2_argument(g, scale):
    # each C3k2 row renamed, arguments untouched: the same widths, repeats and block kind as Ultralytics' C3k2,
    # including c3k forced on at m/l/x and YOLO26's last head row with attn=True
    from ultralytics.nn.modules.block import Bottleneck, C3k, PSABlock
    from ultralytics.nn.tasks import parse_model

    rows = C3K2_BACKBONE + C3K2_HEAD
    theirs, _ = parse_model(yaml_model_load(f'{g}{scale}.yaml'), ch=3, verbose=False)
    d = swapped(f'{g}{scale}.yaml', rows)
    d['scale'] = scale
    ours, _ = parse_model(d, ch=3, verbose=False)
    kinds = {Bottleneck: IRMB, C3k: eu.C3k_iRMB}
    for i in rows:
        assert type(ours[i]) is eu.C3k2_iRMB and block_shape(ours[i]) == block_shape(theirs[i])
        for mine, stock_block in zip(ours[i].m, theirs[i].m):
            if isinstance(stock_block, torch.nn.Sequential):  # attn=True: a block, then a PSABlock
                assert isinstance(mine[0], IRMB) and isinstance(mine[1], PSABlock)
                assert count_params(mine[1]) == count_params(stock_block[1])
            else:
                assert type(mine) is kinds[type(stock_block)]
            if isinstance(mine, eu.C3k_iRMB):  # two iRMBs at C3k's hidden width
                assert [b.proj.out_channels for b in mine.m] == [b.cv2.conv.out_channels for b in stock_block.m]
    if scale == 'm':
        assert all(isinstance(ours[i].m[0], (eu.C3k_iRMB, torch.nn.Sequential)) for i in rows)
    with pytest.raises(ValueError, match='g=2, but an iRMB has no grouped conv'):
        eu.C3k2_iRMB(16, 16, 1, False, 0.5, False, 2)


@pytest.mark.parametrize('g', ['yolo11', 'yolo26'])
def test_every_c3k2_replaced_still_gets_the_current_detect_head(g, stock, monkeypatch):
    # Ultralytics keys the legacy (YOLOv8) head on seeing C3k2 itself; with ours in its place the model must still
    # get the stock head, without touching the class attribute Ultralytics keys it on
    from ultralytics.nn.modules import Detect

    monkeypatch.setattr(Detect, 'legacy', True)  # as a yolov8 build just before leaves it
    model = DetectionModel(swapped(f'{g}n.yaml', C3K2_BACKBONE + C3K2_HEAD), verbose=False)
    assert type(model.model[-1]) is Detect and model.model[-1].type == 'ultralytics.nn.modules.head.Detect'
    assert head_layout(model) == head_layout(stock[g])
    assert Detect.legacy is True and 'legacy' not in vars(model.model[-1])  # a plain Detect object
    # and YOLOv8 keeps its legacy head
    assert head_layout(YOLO('yolov8n.yaml').model) == head_layout(stock['yolov8'])
    assert type(stock['yolov8'].model[-1].cv3[0][0]).__name__ == 'Conv'  # legacy: a 3x3 Conv


def test_a_pose_head_is_current_too():
    from ultralytics.nn.modules import Pose
    from ultralytics.nn.tasks import PoseModel

    theirs = PoseModel(yaml_model_load('yolo11n-pose.yaml'), verbose=False)
    before = dict(vars(Pose))  # Ultralytics' own build sets the class's flag
    ours = PoseModel(swapped('yolo11n-pose.yaml', C3K2_BACKBONE + C3K2_HEAD), verbose=False)
    assert type(ours.model[-1]) is Pose and head_layout(ours) == head_layout(theirs)
    assert vars(Pose).get('legacy') == before.get('legacy')


def test_a_segment_head_that_would_come_out_legacy_is_warned_about(monkeypatch):
    from ultralytics.nn.tasks import parse_model

    warnings = []
    monkeypatch.setattr(parsing.LOGGER, 'warning', lambda message, *a, **k: warnings.append(message))
    parse_model(swapped('yolo11n-seg.yaml', C3K2_BACKBONE + C3K2_HEAD), ch=3, verbose=False)
    assert len(warnings) == 1 and 'legacy (YOLOv8) Segment head; keep one C3k2 row' in warnings[0]
    warnings.clear()
    parse_model(swapped('yolo11n-seg.yaml', C3K2_BACKBONE), ch=3, verbose=False)  # a C3k2 left: no warning
    assert warnings == []


@pytest.mark.parametrize('scale', ['s', 'l'])
@pytest.mark.parametrize('g', ['yolo11', 'yolo26'])
def test_yolo11_and_yolo26_yamls_scale_as_the_stock_model(g, scale):
    # one file, every scale: at s and l (n and m above) each layer we did not replace has the stock layer's
    # parameters, and each C3k2_iRMB the widths and repeats of the C3k2 it replaces
    from ultralytics.nn.tasks import parse_model

    stock_layers, _ = parse_model(yaml_model_load(f'{g}{scale}.yaml'), ch=3, verbose=False)
    for placement in ('c3k2-irmb', 'sppf-irmb', 'head-irmb'):
        layers, _ = parse_model(yaml_model_load(eu.cfg(f'{g}{scale}-{placement}')), ch=3, verbose=False)
        replaced = PLACEMENTS[f'{g}n-{placement}']
        for layer, theirs in zip(layers, stock_layers):
            if layer.i in replaced:
                assert type(layer) is replaced[layer.i]
                if isinstance(layer, eu.C3k2_iRMB):
                    assert block_shape(layer) == block_shape(theirs)
                else:  # the iRMB in place of C2PSA keeps C2PSA's width
                    assert layer[0].proj.out_channels == theirs.cv2.conv.out_channels
            else:
                assert layer.np == theirs.np, (placement, layer.i)


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


LOAD_AND_EXPORT_IN_FRESH_PROCESS = textwrap.dedent("""
    import json, sys, traceback
    import numpy as np, onnxruntime, torch
    from ultralytics import YOLO


    def check(best, image, data, project):
        # no `import emo.ultralytics`: unpickling best.pt imports it by the layers' module path
        emo_before = 'emo.ultralytics' in sys.modules
        model = YOLO(best)
        assert 'emo.ultralytics' in sys.modules
        layers = sorted({type(m).__name__ for m in model.model.modules() if type(m).__module__ == 'emo.ultralytics'})
        boxes = model.predict(image, imgsz=64, conf=0.0, max_det=10, device='cpu', verbose=False)[0].boxes
        metrics = model.val(data=data, imgsz=64, batch=8, workers=0, device='cpu', plots=False, project=project,
                            name='val', verbose=False)
        onnx = model.export(format='onnx', imgsz=64, device='cpu')

        # the exported graph against the checkpoint's model in PyTorch, on one letterboxed-size input
        x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        net = YOLO(best).model.float().eval().fuse(verbose=False)
        with torch.no_grad():
            expected = net(x)[0].numpy()
        session = onnxruntime.InferenceSession(onnx, providers=['CPUExecutionProvider'])
        exported = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        onnx_boxes = YOLO(onnx, task='detect').predict(image, imgsz=64, conf=0.0, max_det=10, device='cpu',
                                                         verbose=False)[0].boxes
        if exported.shape[-1] == 6:
            # NMS-free top-k rows (x1, y1, x2, y2, score, class) sorted by score: after one epoch many scores are
            # near equal, so rows may swap places, and at the k-th score one (anchor, class) may stand in for
            # another. The sorted scores must agree, and every row clearly above the cut must have its twin in the
            # other output.
            a, b = exported[0], expected[0]
            score_diff, box_diff = np.abs(np.sort(a[:, 4]) - np.sort(b[:, 4])).max(), 0.0
            cut = max(a[:, 4].min(), b[:, 4].min()) + 1e-4
            for x, y in ((a, b), (b, a)):
                clear = x[x[:, 4] > cut]
                if len(clear):
                    box_diff = max(box_diff, np.abs(clear[:, None] - y[None]).max(-1).min(1).max())
        else:  # one column per anchor, in a fixed order: 4 box rows, then the class scores
            box_diff = np.abs(exported[:, :4] - expected[:, :4]).max()
            score_diff = np.abs(exported[:, 4:] - expected[:, 4:]).max()
        return dict(emo_before=emo_before, layers=layers, shape=list(boxes.data.shape), xyxy=list(boxes.xyxy.shape),
                    map50=metrics.box.map50, onnx_shape=list(exported.shape), torch_shape=list(expected.shape),
                    box_diff=float(box_diff), score_diff=float(score_diff), onnx_boxes=list(onnx_boxes.data.shape))


    # one job per model: a failure is reported for its model, and the others still run
    for name, best, image, data, project in json.loads(sys.argv[1]):
        try:
            report = check(best, image, data, project)
        except Exception:
            report = dict(error=traceback.format_exc())
        print('REPORT ' + json.dumps(dict(report, name=name)), flush=True)
""")


def our_layer_names(name: str) -> list:
    """The emo.ultralytics classes a trained model of a shipped YAML holds (module path of its pickles)."""
    model = build(name)
    return sorted({type(m).__name__ for m in model.modules() if type(m).__module__ == 'emo.ultralytics'})


def train_one_epoch(model: str, data: Path, project: Path) -> Path:
    trained = YOLO(model)
    trained.train(
        data=str(data), epochs=1, imgsz=64, batch=8, workers=0, device='cpu', amp=False, plots=False, seed=0,
        project=str(project), name='train', exist_ok=True, verbose=False,
    )  # fmt: skip
    best = Path(trained.trainer.best)
    assert best.is_file() and best.is_relative_to(project)
    return best


def fresh_process_env(tmp_path: Path) -> dict:
    """Offline Ultralytics with its own settings folder (and a font), the emo under test first on the path, and
    Ultralytics' pip auto-install switched off: nothing it asks for may be missing."""
    config_dir = tmp_path / 'config'
    offline_font(config_dir / 'Ultralytics')
    env = dict(os.environ, YOLO_OFFLINE='1', YOLO_CONFIG_DIR=str(config_dir), OMP_NUM_THREADS='1')
    env['YOLO_AUTOINSTALL'] = 'false'
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(Path(eu.__file__).parents[2]), env.get('PYTHONPATH')]))
    return env


@pytest.fixture(scope='module')
def shapes(tmp_path_factory) -> Path:
    from ultralytics.utils import USER_CONFIG_DIR

    offline_font(Path(USER_CONFIG_DIR))
    return write_dataset(tmp_path_factory.mktemp('yolo') / 'shapes')


E2E_TEST = 'test_each_shipped_yaml_trains_reloads_and_exports'


@pytest.fixture(scope='module')
def fresh_process_reports(request, tmp_path_factory, shapes) -> dict:
    """The shipped YAMLs the session runs :func:`test_each_shipped_yaml_trains_reloads_and_exports` for, each
    trained one epoch with Ultralytics' trainer, then all loaded, predicted, validated and exported in ONE new
    process that does not import emo (a process each would add ~5 s of imports to every model): name -> report."""
    names = sorted(
        {
            item.callspec.params['name']
            for item in request.session.items
            if getattr(item, 'originalname', '') == E2E_TEST
        }
    )
    root = tmp_path_factory.mktemp('e2e')
    image = str(next((shapes.parent / 'images' / 'val').iterdir()))
    jobs = [
        [name, str(train_one_epoch(eu.cfg(name), shapes, root / name)), image, str(shapes), str(root / name)]
        for name in names
    ]
    result = subprocess.run(
        [sys.executable, '-c', LOAD_AND_EXPORT_IN_FRESH_PROCESS, json.dumps(jobs)],
        capture_output=True, text=True, env=fresh_process_env(root), cwd=root, timeout=120 + 60 * len(jobs),
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert 'not found' not in log and 'AutoUpdate' not in log, log[-3000:]  # export asked for nothing missing
    assert log.count('onnxslim') >= len(jobs)  # and simplified each graph with it
    reports = [json.loads(line[len('REPORT ') :]) for line in result.stdout.splitlines() if line.startswith('REPORT ')]
    assert [r['name'] for r in reports] == names and not reports[0]['emo_before'], log[-3000:]
    return {r['name']: r for r in reports}


# one YAML per layer kind and head generation runs end to end by default; the others repeat a kind already run
# (same layer classes, same head) and are left to -m exhaustive, for CI's time
E2E_DEFAULT = (
    'yolov8n-c2f-i2rmb', 'yolov8n-emo', 'yolo11n-c3k2-irmb', 'yolo11n-sppf-irmb', 'yolo26n-head-irmb',
    'yolo26n-emo2',
)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    'name', [n if n in E2E_DEFAULT else pytest.param(n, marks=pytest.mark.exhaustive) for n in sorted(PLACEMENTS)]
)
def test_each_shipped_yaml_trains_reloads_and_exports(fresh_process_reports, name):
    # Ultralytics' trainer for one epoch; then, in a new process that does not import emo (the first model's load
    # is checked to import it by the pickles' module path): load best.pt, predict, validate, export to ONNX (no
    # requirement missing, onnxslim used) and check the ONNX model's boxes and scores against PyTorch
    report = fresh_process_reports[name]
    assert 'error' not in report, report['error']
    assert report['layers'] == our_layer_names(name)
    assert report['shape'][1] == 6 and 0 < report['shape'][0] <= 10 and report['xyxy'] == [report['shape'][0], 4]
    assert report['onnx_boxes'][1] == 6 and 0 < report['onnx_boxes'][0] <= 10
    assert 0.0 <= report['map50'] <= 1.0
    # boxes in pixels of the 64x64 input and class scores in [0, 1], float rounding apart
    assert report['onnx_shape'] == report['torch_shape']
    assert report['box_diff'] < 1e-2 and report['score_diff'] < 1e-4, report


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


def yolo_command(argv: list, tmp_path: Path, emo: bool = True, cwd: Path = None) -> subprocess.CompletedProcess:
    """``emo yolo ARGV``, or (``emo=False``) what the ``yolo`` console script runs: Ultralytics' entry point; in
    ``cwd`` (default ``tmp_path``), with Ultralytics' settings in ``tmp_path/config``."""
    if emo:
        code = 'import sys; from emo.cli import main; sys.exit(main(["yolo", *sys.argv[1:]]))'
    else:
        code = 'import sys; from ultralytics.cfg import entrypoint; sys.argv[0] = "yolo"; entrypoint()'
    return subprocess.run(
        [sys.executable, '-c', code, *argv], capture_output=True, text=True, env=fresh_process_env(tmp_path),
        cwd=cwd or tmp_path, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_emo_yolo_train_needs_no_import_where_the_yolo_command_fails(tmp_path, shapes):
    args = [
        f'data={shapes}', 'epochs=1', 'imgsz=64', 'batch=8', 'workers=0', 'device=cpu', 'plots=False',
        f'project={tmp_path / "runs"}', 'exist_ok=True',
    ]  # fmt: skip
    # Ultralytics' own command cannot resolve our layer names: the error docs/yolo.md quotes
    plain = yolo_command(['train', f'model={eu.cfg("yolo11n-sppf-irmb")}', *args, 'name=plain'], tmp_path, emo=False)
    assert plain.returncode != 0 and plain.stderr.strip().splitlines()[-1] == "KeyError: 'iRMB'"
    # emo yolo: the same arguments, a shipped name for model=, and our layers registered
    ours = yolo_command(['train', 'model=yolo11n-sppf-irmb', *args, 'name=emo'], tmp_path)
    assert ours.returncode == 0, ours.stderr[-3000:]
    best = tmp_path / 'runs' / 'emo' / 'weights' / 'best.pt'
    assert isinstance(YOLO(str(best)).model.model[10], eu.iRMB)
    # bad input: one line, from Ultralytics' own checks
    for wrong, says in ((f'data={tmp_path / "none.yaml"}', 'does not exist'), ('epoch=1', 'not a valid YOLO argument')):
        result = yolo_command(['train', 'model=yolo11n-sppf-irmb', wrong], tmp_path)
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith('emo yolo: error: ') and says in last and 'Traceback' not in result.stderr


@pytest.mark.slow
def test_compare_trains_validates_exports_and_tabulates(tmp_path, shapes, capsys):
    import csv
    from dataclasses import asdict

    from emo.cli import main
    from emo.ultralytics.compare import TrainSettings, compare, resolve_model

    models = ['yolo11n', 'yolo11n-sppf-irmb']
    settings = TrainSettings(data=str(shapes), epochs=1, imgsz=64, batch=8)
    out = tmp_path / 'compare'
    # the command as a user types it (in this process: Ultralytics is imported already)
    argv = ['yolo', 'compare', '--data', str(shapes), '--models', ','.join(models), '--epochs', '1', '--imgsz', '64']
    assert main([*argv, '--batch', '8', '--runs', '3', '--warmup', '1', '--out-dir', str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.strip().endswith(str(out / 'compare.png')) and '| yolo11n-sppf-irmb | ' in printed
    with open(out / 'compare.csv') as f:
        table = list(csv.DictReader(f))
    assert [t['model'] for t in table] == models
    for row, name in zip(table, models):
        # the trained model: the YAML built for the data set's two classes
        assert int(row['params']) == count_params(DetectionModel(resolve_model(name), nc=2, verbose=False))
        assert float(row['gflops']) > 0 and float(row['latency_ms']) > 0
        ratio = float(row['latency_ms']) / float(table[0]['latency_ms'])
        assert float(row['latency_ratio']) == pytest.approx(ratio, rel=1e-2)
        assert 0 <= float(row['map50_95']) <= float(row['map50']) <= 1
        assert (out / 'runs' / row['model'] / 'weights' / 'best.onnx').is_file()
        assert row['resumed_from_epoch'] == ''  # trained in one go
    markdown = (out / 'compare.md').read_text()
    assert 'rect=False' in markdown and all(f'| {m} | ' in markdown for m in models)
    assert 'resumed' not in markdown
    assert (out / 'compare.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    # a rerun with the same settings trains nothing again; one with other settings is refused
    capsys.readouterr()
    compare(models[:1], settings, out, runs=3, warmup=1)
    assert 'yolo11n: trained already' in capsys.readouterr().out
    with pytest.raises(ValueError, match=r'trained with other settings \(epochs 1 there, 2 now\)'):
        compare(models[:1], TrainSettings(data=str(shapes), epochs=2, imgsz=64, batch=8), out)
    with pytest.raises(ValueError, match="no model 'yolo11n-nothing'"):
        compare(['yolo11n', 'yolo11n-nothing'], settings, tmp_path / 'other')
    # what Ultralytics would change behind the user's back is refused up front
    for wrong, says in ((dict(imgsz=100), 'multiple of 32'), (dict(optimizer='auto'), 'name one'),
                        (dict(batch=0), 'at least 1')):  # fmt: skip
        with pytest.raises(ValueError, match=says):
            compare(models, TrainSettings(**{**asdict(settings), **wrong}), tmp_path / 'other')
    assert not (tmp_path / 'other').exists()  # refused before anything was written
    # another model under a name already trained is not taken for it
    d = yaml_model_load('yolo11n.yaml')
    other = tmp_path / 'mine' / 'yolo11n-sppf-irmb.yaml'
    other.parent.mkdir()
    other.write_text(json.dumps({k: d[k] for k in ('nc', 'scales', 'backbone', 'head')}))
    with pytest.raises(ValueError, match='model .* there, .* now'):
        compare([str(other)], settings, out)


@pytest.mark.slow
def test_compare_resumes_a_killed_training(tmp_path, shapes, monkeypatch, capsys):
    import csv

    from ultralytics.engine.trainer import BaseTrainer

    from emo.ultralytics.compare import TrainSettings, compare

    save_model = BaseTrainer.save_model

    def killed_after_first_save(self):
        save_model(self)
        raise KeyboardInterrupt  # Ctrl-C right after epoch 1's last.pt

    monkeypatch.setattr(BaseTrainer, 'save_model', killed_after_first_save)
    settings = TrainSettings(data=str(shapes), epochs=2, imgsz=64, batch=8)
    out = tmp_path / 'compare'
    with pytest.raises(KeyboardInterrupt):
        compare(['yolo11n-head-irmb'], settings, out, runs=2, warmup=1)
    run = out / 'runs' / 'yolo11n-head-irmb'
    assert torch.load(run / 'weights' / 'last.pt', weights_only=False)['epoch'] == 0
    assert not (out / 'compare.md').exists()

    monkeypatch.setattr(BaseTrainer, 'save_model', save_model)
    capsys.readouterr()
    rows = compare(['yolo11n-head-irmb'], settings, out, runs=2, warmup=1)
    assert 'yolo11n-head-irmb: resuming' in capsys.readouterr().out
    epochs = (run / 'results.csv').read_text().strip().splitlines()[1:]
    assert [int(float(line.split(',')[0])) for line in epochs] == [1, 2]  # epoch 1 kept, epoch 2 added
    assert rows[0]['model'] == 'yolo11n-head-irmb' and (out / 'compare.md').is_file()

    # not the training of an uninterrupted run: marked in both tables as resumed after epoch 1, also after a rerun
    # that finds the model trained already (the mark is a file in its run folder)
    def marked() -> bool:
        with open(out / 'compare.csv') as f:
            (row,) = csv.DictReader(f)
        markdown = (out / 'compare.md').read_text()
        return row['resumed_from_epoch'] == '1' and '| yolo11n-head-irmb (resumed after epoch 1) | ' in markdown

    assert rows[0]['resumed_from_epoch'] == '1' and marked()
    capsys.readouterr()
    compare(['yolo11n-head-irmb'], settings, out, runs=2, warmup=1)
    assert 'yolo11n-head-irmb: trained already' in capsys.readouterr().out and marked()

    # a last.pt cut short (Ultralytics writes it in place) is one line that says what to do
    (run / 'weights' / 'last.pt').write_bytes(b'PK\x03\x04 not a whole file')
    with pytest.raises(ValueError, match=r'unreadable .* delete .*yolo11n-head-irmb to train that model again'):
        compare(['yolo11n-head-irmb'], settings, out, runs=2, warmup=1)


@pytest.mark.slow
def test_compare_takes_a_run_killed_in_its_final_validation_as_trained(tmp_path, shapes, monkeypatch, capsys):
    # the last epoch saved, then a kill while Ultralytics validated best.pt: its last.pt says epoch 0 of 1, which
    # Ultralytics refuses to resume; best.pt is final
    from ultralytics.engine.trainer import BaseTrainer

    from emo.ultralytics.compare import TrainSettings, compare

    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(BaseTrainer, 'final_eval', killed)
    settings = TrainSettings(data=str(shapes), epochs=1, imgsz=64, batch=8)
    with pytest.raises(KeyboardInterrupt):
        compare(['yolo11n'], settings, tmp_path, runs=2, warmup=1)
    monkeypatch.undo()
    capsys.readouterr()
    rows = compare(['yolo11n'], settings, tmp_path, runs=2, warmup=1)
    assert 'yolo11n: trained already' in capsys.readouterr().out and rows[0]['latency_ms'] > 0


@pytest.mark.slow
def test_compare_refuses_a_finished_model_whose_best_pt_was_removed(tmp_path, shapes):
    # its last.pt says "finished": resuming it is no resume, and Ultralytics would start a new training with its
    # own defaults (coco8.yaml, 100 epochs) in ./runs/detect/train. One line instead, and nothing written anywhere
    from emo.ultralytics.compare import TrainSettings, compare

    out, cwd = tmp_path / 'out', tmp_path / 'cwd'
    compare(['yolo11n'], TrainSettings(data=str(shapes), epochs=1, imgsz=64, batch=8), out, runs=2, warmup=1)
    best = out / 'runs' / 'yolo11n' / 'weights' / 'best.pt'
    best.unlink()
    before = {p: p.stat().st_mtime_ns for p in out.rglob('*')}
    cwd.mkdir()
    argv = ['compare', '--data', str(shapes), '--models', 'yolo11n', '--epochs', '1', '--imgsz', '64', '--batch', '8',
            '--runs', '2', '--warmup', '1', '--out-dir', str(out)]  # fmt: skip
    result = yolo_command(argv, tmp_path, cwd=cwd)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
    assert last.startswith('emo yolo: error: ') and f'{best} is missing' in last
    assert f'delete {best.parents[1]} to train that model again' in last
    # neither "yolo11n: training" nor Ultralytics' "Starting new training instead"
    assert 'training' not in result.stdout + result.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob('*')} == before  # nothing in OUT written or left
    assert list(cwd.iterdir()) == [] and sorted(tmp_path.iterdir()) == [tmp_path / 'config', cwd, out]


# `emo yolo compare ARGV` in a new process that, when it comes to train its first model (holding --out-dir's lock),
# writes the file RELEASE.waiting and waits for the file RELEASE to exist
HOLD_THE_LOCK_UNTIL_RELEASED = textwrap.dedent("""
    import sys, time
    from pathlib import Path

    import emo.ultralytics.compare as compare
    from emo.cli import main

    release, argv = Path(sys.argv[1]), sys.argv[2:]
    train_one = compare.train_one

    def held(*args, **kwargs):
        release.with_suffix('.waiting').touch()
        deadline = time.monotonic() + 240
        while not release.exists():
            if time.monotonic() > deadline:
                sys.exit('never released')
            time.sleep(0.05)
        return train_one(*args, **kwargs)

    compare.train_one = held
    sys.exit(main(['yolo', 'compare', *argv]))
""")


@pytest.mark.slow
def test_compare_refuses_a_second_run_on_the_same_out_dir(tmp_path, shapes, capsys):
    import csv

    from emo.cli import main
    from emo.files import LOCK_FILE

    out, release = tmp_path / 'compare', tmp_path / 'release'
    argv = ['--data', str(shapes), '--models', 'yolo11n', '--epochs', '1', '--imgsz', '64', '--batch', '8',
            '--runs', '2', '--warmup', '1', '--out-dir', str(out)]  # fmt: skip
    with open(tmp_path / 'first.log', 'w') as log:
        first = subprocess.Popen(
            [sys.executable, '-c', HOLD_THE_LOCK_UNTIL_RELEASED, str(release), *argv], stdout=log,
            stderr=subprocess.STDOUT, env=fresh_process_env(tmp_path), cwd=tmp_path,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not release.with_suffix('.waiting').exists():  # the first run is about to train
            assert first.poll() is None and time.monotonic() < deadline, (tmp_path / 'first.log').read_text()[-3000:]
            time.sleep(0.05)
        # and holds the lock: the lock file, named after the lock was taken
        assert (out / LOCK_FILE).read_text() == f'process {first.pid}: emo yolo compare\n'
        before = sorted(out.rglob('*'))
        capsys.readouterr()
        assert main(['yolo', 'compare', *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f'emo yolo: error: --out-dir {out} is in use by another run')
        assert f'process {first.pid}: emo yolo compare' in err[0]
        assert sorted(out.rglob('*')) == before and first.poll() is None  # nothing written; the first runs on

        release.touch()
        assert first.wait(timeout=300) == 0, (tmp_path / 'first.log').read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    with open(out / 'compare.csv') as f:
        assert [row['model'] for row in csv.DictReader(f)] == ['yolo11n']
    epochs = (out / 'runs' / 'yolo11n' / 'results.csv').read_text().strip().splitlines()[1:]
    assert [int(float(line.split(',')[0])) for line in epochs] == [1]  # one training, not two mixed
    assert not (out / LOCK_FILE).exists()


def test_emo_yolo_compare_bad_input_is_one_line(tmp_path, shapes, capsys):
    from emo.cli import main

    cases = [
        (['--data', str(tmp_path / 'none.yaml'), '--models', 'yolo11n'], 'no data set file'),
        (['--data', str(shapes), '--models', 'yolo11n,yolo11n-nothing'], "no model 'yolo11n-nothing'"),
        (['--data', str(shapes), '--models', ' , '], '--models is empty'),
        (['--data', str(shapes), '--models', 'yolo11n', '--threads', '-3'], '--threads must be 0'),
        (['--data', str(shapes), '--models', 'yolo11n', '--warmup', '-2'], '--warmup must be 0'),
    ]
    for argv, says in cases:
        rc = main(['yolo', 'compare', *argv, '--epochs', '1', '--imgsz', '64', '--out-dir', str(tmp_path / 'c')])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and err[0].startswith('emo yolo: error: ') and says in err[0]
    assert not (tmp_path / 'c').exists()


def test_the_generated_data_set_is_reproducible_and_never_written_over(tmp_path):
    a, b = write_dataset(tmp_path / 'a', 3, 2), write_dataset(tmp_path / 'b', 3, 2)
    files = sorted(p.relative_to(a.parent) for p in a.parent.rglob('*') if p.is_file() and p.suffix != '.yaml')
    assert len(files) == 2 * (3 + 2)
    assert all((a.parent / f).read_bytes() == (b.parent / f).read_bytes() for f in files)
    before = (a.parent / 'labels' / 'train' / '0.txt').read_text()
    with pytest.raises(FileExistsError, match='give a new folder'):
        write_dataset(a.parent, 5, 5)
    assert (a.parent / 'labels' / 'train' / '0.txt').read_text() == before
    assert not (a.parent / 'images' / 'train' / '4.jpg').exists()
