"""Make pickled test data with the code of emo at commit 3391efd ("today's main"), before modules move.

Files written to OUT (default /tmp/legacy_out):

  emo_models.pt            torch.save of a dict with a tiny emo.model.EMO, unfused and fused, its input and outputs
  emo_frozen.pt            the same EMO with its BatchNorms frozen by emo.detection.freeze_batch_norm, input, output
  yolo_best.pt             a real Ultralytics best.pt (1 epoch) of a tiny YAML with the iRMB and C2f_iRMB layers
  yolo_best_expected.pt    {'input', 'output', ...}: what YOLO('yolo_best.pt') computes on a seeded input
  yolo_emo_backbone_best.pt, yolo_emo_backbone_best_expected.pt: the same for a tiny YAML on EMOBackbone('emo_1m')
  globals.json             every GLOBAL each pickle names (static scan of data.pkl, nothing imported)
  README.md                how the files were made and how the expected outputs were computed

How to run (system python3, the OLD code first on sys.path; the editable install points at /work/main):

  git clone <this repository> /tmp/oldmain && git -C /tmp/oldmain checkout 3391efd
  PYTHONPATH=/tmp/oldmain python3 tests/data/legacy/make_legacy.py all

Every step runs in its own fresh python3 subprocess (PYTHONPATH=/tmp/oldmain, YOLO_OFFLINE=1, a private
YOLO_CONFIG_DIR, OMP_NUM_THREADS=1, torch.set_num_threads(1)); each step asserts that ``emo`` came from
/tmp/oldmain. The 'verify' step loads each file in a fresh process and compares with rtol=0, atol=0.

Expected outputs, exactly:

  emo_models.pt: x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)), fp32.
    'unfused_out' = m(x) and 'fused_out' = f(x), both under torch.no_grad(), eval mode, fp32, CPU, 1 thread.
    (The fused model's FusedConv runs oneDNN's fused conv on CPU/fp32/no-grad/eager; with grad enabled, or
    under inference_mode it is the same oneDNN path; compare under torch.no_grad() for bit-exactness.)
    64x64 pads at the attention stages: stage 3 is 4x4 (padded to 7x7), stage 4 is 2x2 (padded to 7x7).

  yolo_*_expected.pt: in a fresh process,
    model = YOLO(best_pt)                    # ultralytics load_checkpoint: ckpt['model'] (fp16 on disk) .float()
    net = model.model.eval()                 # DetectionModel, fp32 (weights are fp16 values), NOT fused
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))   # fp32, [0, 1)
    with torch.no_grad(): y, preds = net(x)  # eval Detect returns (decoded, raw dict)
    stored: 'input' = x, 'output' = y (B, 4 + nc, anchors) fp32, 'boxes' = preds['boxes'],
    'scores' = preds['scores'], 'feats' = preds['feats'] (list of the 3 neck maps), and
    'fused_output' = deepcopy(net).fuse(verbose=False)(x)[0] (Ultralytics' own fuse, what .predict runs).
    No .predict() call is stored: it letterboxes and runs NMS; the raw forward is the stable quantity.

Bit-exactness needs ONE intra-op thread (torch.set_num_threads(1), as every step here sets): measured on this
2-core machine, reloading under 2 threads gives max |diff| 6e-8 (emo_models.pt, logits ~0.2) and 9e-5 on the
YOLO decoded boxes (values up to ~480 px; scores 2e-6, neck maps 7e-9), i.e. float rounding, not a load problem.
With 1 thread every stored tensor is reproduced with rtol=0, atol=0 (same CPU; oneDNN kernels may differ on
another CPU, so a test on other hardware should allow about rtol=1e-5, atol=1e-5 * max|expected|).
"""

import copy
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

OLD = Path(os.environ.get('EMO_OLD', '/tmp/oldmain'))
OUT = Path(os.environ.get('LEGACY_OUT', '/tmp/legacy_out'))
WORK = Path(os.environ.get('LEGACY_WORK', '/tmp/legacy_gen/work'))
HERE = Path(__file__).resolve()

YOLO_IRMB_YAML = textwrap.dedent("""
    # tiny YOLOv8-style detector with every emo YAML layer but EMOBackbone: iRMB (bn and ln, with attention)
    # and C2f_iRMB (with and without attention, n=1 and n=2), in backbone and head
    nc: 2
    depth_multiple: 1.0
    width_multiple: 1.0
    backbone:
      - [-1, 1, Conv, [16, 3, 2]]                  # 0 P1/2
      - [-1, 1, Conv, [16, 3, 2]]                  # 1 P2/4
      - [-1, 1, C2f_iRMB, [16, True, 2.0, 8]]      # 2 bottleneck width 8, attention (1 head of 8), bn
      - [-1, 1, Conv, [24, 3, 2]]                  # 3 P3/8
      - [-1, 1, iRMB, [24, 2.0, 8, 7, 3, ln]]      # 4 attention (3 heads), LayerNorm, both shortcuts
      - [-1, 1, Conv, [32, 3, 2]]                  # 5 P4/16
      - [-1, 2, C2f_iRMB, [32, True, 2.0, 0]]      # 6 two bottlenecks without attention
      - [-1, 1, Conv, [48, 3, 2]]                  # 7 P5/32
      - [-1, 1, SPPF, [48, 5]]                     # 8
      - [-1, 1, iRMB, [48, 2.0, 16]]               # 9 attention (3 heads), BatchNorm
    head:
      - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
      - [[-1, 6], 1, Concat, [1]]
      - [-1, 1, C2f, [32]]                         # 12
      - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
      - [[-1, 4], 1, Concat, [1]]
      - [-1, 1, C2f_iRMB, [24, True, 2.0, 4]]      # 15 P3 out (bottleneck width 12, 3 heads of 4)
      - [-1, 1, Conv, [24, 3, 2]]
      - [[-1, 12], 1, Concat, [1]]
      - [-1, 1, C2f, [32]]                         # 18 P4 out
      - [-1, 1, Conv, [32, 3, 2]]
      - [[-1, 9], 1, Concat, [1]]
      - [-1, 1, C2f, [48]]                         # 21 P5 out
      - [[15, 18, 21], 1, Detect, [nc]]
""")

YOLO_EMO_YAML = textwrap.dedent("""
    # tiny neck and head on EMOBackbone(emo_1m, not pretrained); P3/P4/P5 = 48/80/168
    nc: 2
    depth_multiple: 1.0
    width_multiple: 1.0
    backbone:
      - [-1, 1, EMOBackbone, [emo_1m, False]]      # 0
      - [0, 1, Index, [48, 0]]                     # 1 P3/8
      - [0, 1, Index, [80, 1]]                     # 2 P4/16
      - [0, 1, Index, [168, 2]]                    # 3 P5/32
      - [-1, 1, SPPF, [32, 5]]                     # 4
    head:
      - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
      - [[-1, 2], 1, Concat, [1]]
      - [-1, 1, C2f, [32]]                         # 7
      - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
      - [[-1, 1], 1, Concat, [1]]
      - [-1, 1, C2f, [32]]                         # 10 P3 out
      - [-1, 1, Conv, [32, 3, 2]]
      - [[-1, 7], 1, Concat, [1]]
      - [-1, 1, C2f, [32]]                         # 13 P4 out
      - [-1, 1, Conv, [32, 3, 2]]
      - [[-1, 4], 1, Concat, [1]]
      - [-1, 1, C2f, [32]]                         # 16 P5 out
      - [[10, 13, 16], 1, Detect, [nc]]
""")

YOLOS = {  # name -> (yaml text, best.pt file, expected file)
    'irmb': (YOLO_IRMB_YAML, 'yolo_best.pt', 'yolo_best_expected.pt'),
    'emo_backbone': (YOLO_EMO_YAML, 'yolo_emo_backbone_best.pt', 'yolo_emo_backbone_best_expected.pt'),
}
SIZE_CAP = {'irmb': 3_000_000, 'emo_backbone': 3_500_000}


# ----------------------------------------------------------------------------------------------------- helpers


def _env() -> dict:
    cfg = WORK / 'yolo_config'
    cfg.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(OLD), YOLO_OFFLINE='1', YOLO_CONFIG_DIR=str(cfg), OMP_NUM_THREADS='1')
    return env


def _fresh(step: str, *args: str) -> None:
    """Run a step of this script in a fresh python3 process with the old code."""
    print(f'== {step} {" ".join(args)}', flush=True)
    subprocess.run([sys.executable, str(HERE), step, *args], env=_env(), check=True, cwd=str(WORK))


def _setup() -> None:
    import torch

    torch.set_num_threads(1)
    import emo

    assert Path(emo.__file__).resolve().is_relative_to(OLD.resolve()), f'emo from {emo.__file__}, not {OLD}'


def _randomize_norms(model) -> None:
    """Non-trivial BN running stats and affine params (and LN affine, conv/linear biases) so folding matters."""
    import torch
    import torch.nn as nn
    from timm.layers import LayerNorm2d

    g = torch.Generator().manual_seed(123)

    def u(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                u(mod.running_mean, -0.5, 0.5)
                u(mod.running_var, 0.5, 2.0)
                u(mod.weight, 0.5, 1.5)
                u(mod.bias, -0.5, 0.5)
            elif isinstance(mod, (LayerNorm2d, nn.LayerNorm)):
                u(mod.weight, 0.5, 1.5)
                u(mod.bias, -0.5, 0.5)
            elif isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.bias is not None:
                u(mod.bias, -0.1, 0.1)


# ----------------------------------------------------------------------------------------------------- steps


def step_emo() -> None:
    """emo_models.pt: tiny EMO, unfused and fused (timm.utils.reparameterize_model, as tests/test_fuse.py)."""
    _setup()
    import torch
    from emo.model import EMO
    from timm.utils import reparameterize_model

    torch.manual_seed(0)
    m = EMO(
        depths=(1, 1, 2, 2),
        widths=(16, 24, 32, 40),
        exp_ratios=(2, 2, 2, 2),
        dim_heads=(None, None, 8, 8),
        num_classes=10,
    )
    _randomize_norms(m)
    m.eval()
    f = reparameterize_model(m)  # a fused deep copy; m keeps its BatchNorms
    assert f is not m
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        unfused_out = m(x)
        fused_out = f(x)
    diff = (unfused_out - fused_out).abs().max().item()
    print(f'unfused vs fused max abs diff {diff:.3e}, |out| max {unfused_out.abs().max().item():.3f}')
    assert diff < 1e-4, diff
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / 'emo_models.pt'
    torch.save({'unfused': m, 'fused': f, 'input': x, 'unfused_out': unfused_out, 'fused_out': fused_out}, path)
    print(path, path.stat().st_size)


def step_frozen() -> None:
    """emo_frozen.pt: the tiny EMO of emo_models.pt with its BatchNorms frozen by emo.detection.freeze_batch_norm
    (torchvision's FrozenBatchNorm2d, as detection backbones with pretrained weights have them)."""
    _setup()
    import copy

    import torch
    from emo.model import EMO

    from emo.detection import freeze_batch_norm

    torch.manual_seed(0)
    m = EMO(depths=(1, 1, 2, 2), widths=(16, 24, 32, 40), exp_ratios=(2, 2, 2, 2), dim_heads=(None, None, 8, 8),
            num_classes=10)  # fmt: skip
    _randomize_norms(m)
    frozen = freeze_batch_norm(copy.deepcopy(m)).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = frozen(x)
        assert (out - m.eval()(x)).abs().max().item() < 1e-5
    path = OUT / 'emo_frozen.pt'
    torch.save({'frozen': frozen, 'input': x, 'output': out}, path)
    print(path, path.stat().st_size)


sys.path.insert(0, str(HERE.parents[2]))  # tests/yolo_data.py: the data set of tests/test_ultralytics.py
from pickle_globals import pickle_globals  # noqa: E402
from yolo_data import offline_font as _offline_font  # noqa: E402
from yolo_data import write_dataset  # noqa: E402,F401


def offline_font() -> None:
    """Ultralytics wants Arial.ttf in its config dir (else it downloads it): give it a local font."""
    cfg = Path(os.environ['YOLO_CONFIG_DIR'])
    for d in (cfg, cfg / 'Ultralytics'):
        _offline_font(d)


def step_train(name: str) -> None:
    """1 epoch, imgsz 64, CPU, as tests/test_ultralytics.py::test_train_save_and_load_in_fresh_process."""
    _setup()
    from ultralytics import YOLO

    import emo.ultralytics  # noqa: F401 - registers the YAML layers

    offline_font()
    text, best_name, _ = YOLOS[name]
    root = WORK / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    data = write_dataset(root / 'shapes')
    yaml = root / f'tiny-{name}.yaml'
    yaml.write_text(text)
    model = YOLO(str(yaml))
    model.train(
        data=str(data), epochs=1, imgsz=64, batch=8, workers=0, device='cpu', amp=False, plots=False, seed=0,
        project=str(root / 'runs'), name='train', exist_ok=True, verbose=False,
    )  # fmt: skip
    best = Path(model.trainer.best)
    assert best.is_file(), best
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copy(best, OUT / best_name)
    size = (OUT / best_name).stat().st_size
    print(OUT / best_name, size)
    if size > SIZE_CAP[name]:
        raise SystemExit(f'{best_name} is {size} bytes, over the cap {SIZE_CAP[name]}')


def _yolo_input():
    import torch

    return torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))


def _yolo_forward(best: Path) -> dict:
    import torch
    from ultralytics import YOLO

    model = YOLO(str(best))  # no `import emo.ultralytics`: unpickling imports it
    net = model.model.eval()
    p = next(net.parameters())
    assert p.dtype == torch.float32, p.dtype
    x = _yolo_input()
    with torch.no_grad():
        y, preds = net(x)
        fused_y = copy.deepcopy(net).fuse(verbose=False)(x)[0]
    return {
        'input': x,
        'output': y,
        'boxes': preds['boxes'],
        'scores': preds['scores'],
        'feats': list(preds['feats']),
        'fused_output': fused_y,
        'layers': sorted(
            {f'{type(m).__module__}.{type(m).__name__}' for m in net.modules() if 'emo' in type(m).__module__}
        ),
    }


def step_expected(name: str) -> None:
    """In a fresh process: load best.pt with YOLO() and store the raw eval forward on a seeded input."""
    _setup()
    import torch

    _, best_name, expected_name = YOLOS[name]
    out = _yolo_forward(OUT / best_name)
    assert 'emo.ultralytics' in sys.modules
    torch.save(out, OUT / expected_name)
    print(OUT / expected_name, {k: tuple(v.shape) for k, v in out.items() if isinstance(v, torch.Tensor)})
    print('emo modules in the loaded model:', out['layers'])


def step_verify(name: str) -> None:
    """In a fresh process: load and compare with the stored outputs, rtol=0 atol=0."""
    _setup()
    import torch

    if name == 'emo':
        d = torch.load(OUT / 'emo_models.pt', weights_only=False)
        with torch.no_grad():
            u, f = d['unfused'](d['input']), d['fused'](d['input'])
        du = (u - d['unfused_out']).abs().max().item()
        df = (f - d['fused_out']).abs().max().item()
        print(f'emo_models.pt: unfused max diff {du}, fused max diff {df}')
        torch.testing.assert_close(u, d['unfused_out'], rtol=0, atol=0)
        torch.testing.assert_close(f, d['fused_out'], rtol=0, atol=0)
        return
    _, best_name, expected_name = YOLOS[name]
    want = torch.load(OUT / expected_name, weights_only=False)
    got = _yolo_forward(OUT / best_name)
    torch.testing.assert_close(got['input'], want['input'], rtol=0, atol=0)
    for key in ('output', 'boxes', 'scores', 'feats', 'fused_output'):
        a, b = got[key], want[key]
        a, b = (a, b) if isinstance(a, list) else ([a], [b])
        print(f'{best_name} {key}: max diff {max((x - y).abs().max().item() for x, y in zip(a, b))}')
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def step_scan() -> None:
    report = {}
    for f in sorted(OUT.glob('*.pt')):
        names = pickle_globals(f)
        report[f.name] = {
            'size': f.stat().st_size,
            'emo': [n for n in names if n.startswith('emo.') or n == 'emo'],
            'other': [n for n in names if not n.startswith('emo.')],
        }
        print(f'{f.name} ({f.stat().st_size} bytes): emo globals')
        for n in report[f.name]['emo']:
            print('   ', n)
    (OUT / 'globals.json').write_text(json.dumps(report, indent=2) + '\n')


def step_all() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    _fresh('emo')
    _fresh('frozen')
    for name in YOLOS:
        _fresh('train', name)
        _fresh('expected', name)
    for name in ('emo', *YOLOS):
        _fresh('verify', name)
    step_scan()


if __name__ == '__main__':
    step, *args = sys.argv[1:] or ['all']
    {
        'all': step_all,
        'emo': step_emo,
        'frozen': step_frozen,
        'train': step_train,
        'expected': step_expected,
        'verify': step_verify,
        'scan': step_scan,
    }[step](*args)
