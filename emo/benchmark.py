"""``emo bench``: EMO against the official arithmetic and against its timm peers, eager and ONNX Runtime.

Every number a ratio is made of is measured in the same run, interleaved: each round times every candidate
once, so a machine that slows down mid-run slows all of them alike. Per candidate and batch size the report
gives the median and the min-max of the rounds. Candidates:

- ``<variant>``: this package's model after ``timm.utils.reparameterize_model`` (the fused inference path);
- ``<variant>/unfused``: the same weights without fusing;
- ``<variant>/official``: :class:`emo.official.OfficialEMO`, the official computation rebuilt from the spec,
  on the same weights; its logits are checked against ours before anything is timed;
- ``<variant>/official-code`` with ``--official-code DIR``: the official implementation itself, from a clone;
- every timm model named as a peer, reparameterized as timm's own benchmark does, run channels-first and
  channels-last, and reported with the faster layout (so the peers are never handicapped).

With ``--compile`` the fused EMO variants and the peers are also timed after ``torch.compile`` (inductor, with
weight freezing, the setting that makes it fast on CPU), in a section of their own: what a graph compiler makes
of each architecture, for EMO and its peers alike.

Memory: activation bytes (weights excluded) at their peak, counted exactly by :class:`ActivationMemory`, for a
training step with and without ``set_grad_checkpointing()`` and per image for inference.
"""

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from . import checkpoint as ckpt
from .files import atomic_write_text, save_png
from .hub import released_weights
from .official import official_emo
from .variants import VARIANTS

__all__ = [
    'ActivationMemory',
    'BenchSettings',
    'DEFAULT_PEERS',
    'PEER_PAIRS',
    'PEER_TOP1',
    'build_parser',
    'main',
    'run_benchmark',
    'write_report',
]

DEFAULT_PEERS = (
    'edgenext_xx_small',
    'edgenext_x_small',
    'mobilevit_xs',
    'repvit_m0_9',
    'mobilevit_s',
    'mobilenetv3_large_100',
)
# ImageNet-1k top-1 of timm's released weights for these models (timm's results tables); EMO's come from
# weights/manifest.json. Models named on the command line without an entry here are left off the plot.
PEER_TOP1 = {
    'edgenext_xx_small': 71.1,
    'edgenext_x_small': 74.9,
    'mobilevit_xs': 74.6,
    'repvit_m0_9': 78.7,
    'mobilevit_s': 78.3,
    'mobilenetv3_large_100': 75.8,
}
# EMO variant -> the peers of its accuracy tier it must be at least as fast as
PEER_PAIRS = {
    'emo_1m': ('edgenext_xx_small',),
    'emo_2m': ('edgenext_x_small', 'mobilevit_xs'),
    'emo_5m': ('repvit_m0_9', 'mobilevit_s'),
    'emo_6m': ('repvit_m0_9', 'mobilevit_s'),
}
AGREEMENT_ATOL = 1e-4  # ours against the official arithmetic, logits, same weights


@dataclass
class BenchSettings:
    variants: Sequence[str] = tuple(VARIANTS)
    peers: Sequence[str] = DEFAULT_PEERS
    batch_sizes: Sequence[int] = (1, 32)
    img_size: int = 224
    threads: int = 2
    rounds: Dict[int, int] = field(default_factory=dict)  # batch size -> timed rounds; default by size
    warmup: int = 3
    onnx: bool = True
    memory: bool = True
    memory_batch: int = 8
    weights: Optional[str] = None  # 'pretrained' or None (random weights: speed does not depend on values)
    official_code: Optional[str] = None  # a clone of github.com/zhangzjn/EMO, timed as '<variant>/official-code'
    compile: bool = False  # also time torch.compile'd fused EMO and peers

    def rounds_for(self, batch_size: int) -> int:
        return self.rounds.get(batch_size, 30 if batch_size == 1 else 8)


class ActivationMemory(TorchDispatchMode):
    """Counts the bytes of every tensor storage that ops create while active, and their peak.

    Storages made before entering (parameters, buffers, inputs) are not counted, nor are views of them or
    in-place updates to them, so ``peak`` is the memory of activations, and of gradients in a backward pass.
    A storage counts until the last tensor on it is freed, autograd's saved tensors included; the count does
    not depend on the allocator's caching.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._storages: Dict[int, List[int]] = {}  # data_ptr -> [live tensors, bytes]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # storages that existed before (parameters, buffers, inputs): views of them and in-place ops on them
        # (BatchNorm statistics) allocate nothing
        before = {
            p for t in tree_leaves((args, kwargs)) if (p := _storage_ptr(t)) is not None and p not in self._storages
        }
        out = func(*args, **kwargs)
        for t in tree_leaves(out):
            ptr = _storage_ptr(t)
            if ptr is not None and ptr not in before:
                self._track(t, ptr)
        return out

    def _track(self, t: torch.Tensor, ptr: int) -> None:
        entry = self._storages.get(ptr)
        if entry is None:
            entry = self._storages[ptr] = [0, t.untyped_storage().nbytes()]
            self.current += entry[1]
            self.peak = max(self.peak, self.current)
        entry[0] += 1
        weakref.finalize(t, self._release, ptr)

    def _release(self, ptr: int) -> None:
        entry = self._storages.get(ptr)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self._storages[ptr]


def _storage_ptr(t: object) -> Optional[int]:
    if not isinstance(t, torch.Tensor) or t.layout != torch.strided:  # oneDNN's packed weights are opaque
        return None
    return t.untyped_storage().data_ptr() or None


def activation_peak(fn: Callable[[], object]) -> int:
    """Peak activation bytes while ``fn()`` runs (see :class:`ActivationMemory`)."""
    with ActivationMemory() as mem:
        fn()
    return mem.peak


def memory_report(variant: str, batch_size: int = 8, img_size: int = 224) -> Dict[str, float]:
    """Peak MiB of activations and gradients in one training step (forward + backward) with and without
    gradient checkpointing, and of activations per image in inference, unfused and fused, at batch 1 and at
    ``batch_size`` (where the fused model runs large batches in slices)."""
    from timm.utils import reparameterize_model

    torch.manual_seed(0)
    x = torch.randn(batch_size, 3, img_size, img_size)
    model = timm.create_model(variant)
    model.train()

    def step():
        model(x).sum().backward()

    out = {'batch_size': batch_size}
    for ckpt_on in (False, True):
        model.set_grad_checkpointing(ckpt_on)
        model.zero_grad(set_to_none=True)
        out['train_mib_checkpointing' if ckpt_on else 'train_mib'] = activation_peak(step) / 2**20
    model.set_grad_checkpointing(False)
    model.eval()
    fused = reparameterize_model(model)
    for name, m in (('infer_mib_per_image', model), ('infer_fused_mib_per_image', fused)):
        with torch.inference_mode():
            out[name] = activation_peak(functools.partial(m, x)) / 2**20 / batch_size
            out[name + '_batch1'] = activation_peak(functools.partial(m, x[:1])) / 2**20
    return out


# ---------------------------------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    name: str  # as reported
    kind: str  # 'emo', 'emo-unfused', 'official', 'peer'
    model: nn.Module
    channels_last: bool = False
    times: Dict[int, List[float]] = field(default_factory=dict)  # batch size -> ms per round


def _emo_models(variant: str, weights: Optional[str]) -> Tuple[nn.Module, nn.Module, nn.Module]:
    """(ours unfused, ours fused, official arithmetic) on the same weights."""
    from timm.utils import reparameterize_model

    ours = timm.create_model(variant, pretrained=weights == 'pretrained').eval()
    official = official_emo(variant, ckpt.to_official_layout(ours.state_dict()))
    return ours, reparameterize_model(ours), official


def check_agreement(ours: nn.Module, official: nn.Module, img_size: int) -> float:
    """Largest logit difference between two models on a fixed random batch; raises above ``AGREEMENT_ATOL``."""
    x = torch.randn(2, 3, img_size, img_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = (ours(x) - official(x)).abs().max().item()
    if not diff <= AGREEMENT_ATOL:
        raise RuntimeError(f'our model and the official arithmetic disagree by {diff:.3g} (> {AGREEMENT_ATOL})')
    return diff


def _input(batch_size: int, img_size: int, channels_last: bool) -> torch.Tensor:
    x = torch.randn(batch_size, 3, img_size, img_size)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def time_interleaved(runners: Dict[str, Callable[[], object]], rounds: int, warmup: int) -> Dict[str, List[float]]:
    """Milliseconds per call of each runner; every round calls each runner once, in a rotating order."""
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            runners[name]()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def _summary(times: List[float]) -> Dict[str, float]:
    return {'median_ms': statistics.median(times), 'min_ms': min(times), 'max_ms': max(times), 'runs': len(times)}


class _FirstOutput(nn.Module):
    """The official model returns ``{'out': logits, 'out_kd': logits}``; this returns the logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)['out']


def load_official_code(repo_dir, variant: str, state_dict: Dict[str, torch.Tensor]) -> nn.Module:
    """The official implementation itself, from a clone of github.com/zhangzjn/EMO at ``repo_dir``, in eval mode.

    It was written for timm 0.6: the modules it imports from there are pointed at their timm 1.x homes, and its
    ``model`` package is loaded without its ``__init__`` (which pulls in the training framework). Needs
    ``einops``. Nothing of it is part of this package; it is only timed.
    """
    import importlib
    import sys
    import types

    model_dir = Path(repo_dir) / 'model'
    if not (model_dir / 'emo.py').is_file():
        raise ValueError(f'{repo_dir} is not a clone of github.com/zhangzjn/EMO: {model_dir / "emo.py"} is missing')
    try:
        import einops  # noqa: F401
    except ImportError:
        raise ValueError('the official code needs einops: pip install einops') from None
    from timm.layers import activations, weight_init
    from timm.models import _efficientnet_blocks, _efficientnet_builder

    for name, module in {
        'timm.models.layers.activations': activations,
        'timm.models.layers.weight_init': weight_init,
        'timm.models.efficientnet_blocks': _efficientnet_blocks,
        'timm.models.efficientnet_builder': _efficientnet_builder,
    }.items():
        sys.modules.setdefault(name, module)
    try:
        import cv2  # noqa: F401  (imported, unused, by the official basic_modules.py)
    except ImportError:
        sys.modules.setdefault('cv2', types.ModuleType('cv2'))
    package = types.ModuleType('model')
    package.__path__ = [str(model_dir)]
    package.MODEL = types.SimpleNamespace(register_module=lambda fn: fn)
    sys.modules['model'] = package
    try:
        official = importlib.import_module('model.emo')
    finally:
        for name in [n for n in sys.modules if n == 'model' or n.startswith('model.')]:
            del sys.modules[name]
    model = getattr(official, 'EMO_' + variant.split('_')[1].upper())()
    model.load_state_dict(state_dict, strict=True)
    return _FirstOutput(model).eval()


# ---------------------------------------------------------------------------------------------------- onnx
def _onnx_session(model: nn.Module, img_size: int, threads: int, folder: Path, name: str):
    from .export import export_onnx, onnx_session

    path = folder / f'{name.replace("/", "_")}.onnx'
    export_onnx(model, path, img_size=img_size, dynamic=True, check=False)
    # sessions take turns here: a session whose threads keep spinning after its run would starve the next one
    return onnx_session(path, threads, spinning=False)


# ---------------------------------------------------------------------------------------------------- the run
def run_benchmark(settings: BenchSettings, log: Callable[[str], None] = print) -> Dict:
    """Run everything ``settings`` asks for; returns the JSON-ready result."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    result: Dict = {
        'settings': {
            'variants': list(settings.variants),
            'peers': list(settings.peers),
            'batch_sizes': list(settings.batch_sizes),
            'img_size': settings.img_size,
            'threads': torch.get_num_threads(),
            'dtype': 'float32',
            'warmup': settings.warmup,
            'rounds': {str(b): settings.rounds_for(b) for b in settings.batch_sizes},
            'weights': settings.weights or 'random (same for ours and the official arithmetic)',
        },
        'environment': _environment(),
        'eager': {},
        'onnxruntime': {},
        'compiled': {},
        'ratios': {},
        'agreement': {},
        'memory': {},
        'top1': {},
    }
    accuracy = {entry.variant: entry.top1 for entry in released_weights().values()}
    candidates: List[Candidate] = []
    for variant in settings.variants:
        if variant not in VARIANTS:
            raise ValueError(f'unknown EMO variant {variant!r}; choose from {sorted(VARIANTS)}')
        ours, fused, official = _emo_models(variant, settings.weights)
        result['agreement'][variant] = {
            'unfused_vs_official': check_agreement(ours, official, settings.img_size),
            'fused_vs_official': check_agreement(fused, official, settings.img_size),
        }
        result['top1'][variant] = accuracy.get(variant)
        if settings.official_code:
            code = load_official_code(settings.official_code, variant, ckpt.to_official_layout(ours.state_dict()))
            result['agreement'][variant]['fused_vs_official_code'] = check_agreement(fused, code, settings.img_size)
            candidates.append(Candidate(f'{variant}/official-code', 'official-code', code))
        candidates += [
            Candidate(variant, 'emo', fused),
            Candidate(f'{variant}/unfused', 'emo-unfused', ours),
            Candidate(f'{variant}/official', 'official', official),
        ]
    for peer in settings.peers:
        from timm.utils import reparameterize_model

        model = reparameterize_model(timm.create_model(peer).eval())
        result['top1'][peer] = PEER_TOP1.get(peer)
        candidates.append(Candidate(peer, 'peer', model))
        cl = reparameterize_model(timm.create_model(peer).eval()).to(memory_format=torch.channels_last)
        candidates.append(Candidate(f'{peer}@channels_last', 'peer', cl, channels_last=True))

    for batch_size in settings.batch_sizes:
        runners = {}
        for c in candidates:
            x = _input(batch_size, settings.img_size, c.channels_last)
            runners[c.name] = functools.partial(c.model, x)
        log(f'eager, batch {batch_size}: {len(runners)} candidates x {settings.rounds_for(batch_size)} rounds')
        with torch.inference_mode():
            times = time_interleaved(runners, settings.rounds_for(batch_size), settings.warmup)
        result['eager'][str(batch_size)] = _best_layout({n: _summary(t) for n, t in times.items()})

    if settings.onnx:
        with tempfile.TemporaryDirectory() as tmp:
            sessions = {}
            for c in candidates:
                if c.kind in ('emo-unfused', 'official-code') or c.channels_last:
                    continue  # ONNX Runtime folds BatchNorm itself, and picks its own layout
                log(f'exporting {c.name} to ONNX')
                sessions[c.name] = _onnx_session(c.model, settings.img_size, settings.threads, Path(tmp), c.name)
            for batch_size in settings.batch_sizes:
                x = _input(batch_size, settings.img_size, False).numpy()
                runners = {
                    name: functools.partial(session.run, None, {session.get_inputs()[0].name: x})
                    for name, session in sessions.items()
                }
                log(f'onnxruntime, batch {batch_size}: {len(runners)} models')
                times = time_interleaved(runners, settings.rounds_for(batch_size), settings.warmup)
                result['onnxruntime'][str(batch_size)] = {n: _summary(t) for n, t in times.items()}

    if settings.compile:
        _time_compiled(candidates, settings, result, log)

    result['ratios'] = compute_ratios(result, settings)
    if settings.memory:
        for variant in settings.variants:
            log(f'memory: {variant}')
            result['memory'][variant] = memory_report(variant, settings.memory_batch, settings.img_size)
    return result


def _time_compiled(candidates: List[Candidate], settings: BenchSettings, result: Dict, log: Callable) -> None:
    # inductor with freezing folds the weights as constants and pre-packs them for oneDNN; it needs no_grad,
    # not inference_mode, and compiles each batch size on its first call (the warm-up)
    compiled = {
        c.name: torch.compile(c.model, dynamic=False, options={'freezing': True})
        for c in candidates
        if c.kind in ('emo', 'peer') and not c.channels_last
    }
    for batch_size in settings.batch_sizes:
        x = _input(batch_size, settings.img_size, False)
        runners = {name: functools.partial(model, x) for name, model in compiled.items()}
        log(f'torch.compile, batch {batch_size}: compiling {len(runners)} models (tens of seconds each), then timing')
        with torch.no_grad():
            times = time_interleaved(runners, settings.rounds_for(batch_size), max(settings.warmup, 1))
        result['compiled'][str(batch_size)] = {n: _summary(t) for n, t in times.items()}


def _best_layout(summaries: Dict[str, Dict]) -> Dict[str, Dict]:
    """Fold each peer's two layouts into one entry: the faster one, with the layout named."""
    out = {}
    for name, s in summaries.items():
        if name.endswith('@channels_last'):
            continue
        cl = summaries.get(f'{name}@channels_last')
        if cl is not None:
            best, layout = (cl, 'channels_last') if cl['median_ms'] < s['median_ms'] else (s, 'channels_first')
            out[name] = dict(best, layout=layout)
        else:
            out[name] = s
    return out


def compute_ratios(result: Dict, settings: BenchSettings) -> Dict:
    """Speed-ups (>1: ours faster): over the official arithmetic, and over each peer of the variant's tier."""
    ratios: Dict = {}
    for backend in ('eager', 'onnxruntime', 'compiled'):
        for batch, table in result.get(backend, {}).items():
            for variant in settings.variants:
                if variant not in table:
                    continue
                ours = table[variant]['median_ms']
                entry = ratios.setdefault(backend, {}).setdefault(batch, {}).setdefault(variant, {})
                if f'{variant}/official' in table:
                    entry['vs_official'] = table[f'{variant}/official']['median_ms'] / ours
                if f'{variant}/official-code' in table:
                    entry['vs_official_code'] = table[f'{variant}/official-code']['median_ms'] / ours
                for peer in PEER_PAIRS.get(variant, ()):
                    if peer in table:
                        entry[f'vs_{peer}'] = table[peer]['median_ms'] / ours
    return ratios


def _environment() -> Dict[str, str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    env = {
        'torch': torch.__version__,
        'timm': timm.__version__,
        'python': platform.python_version(),
        'cpu': cpu,
        'cpu_count': str(os.cpu_count()),
        'onednn': str(torch.backends.mkldnn.is_available()),
    }
    with contextlib.suppress(ImportError):
        import onnxruntime

        env['onnxruntime'] = onnxruntime.__version__
    return env


# ---------------------------------------------------------------------------------------------------- report
_EXTRA_COLUMNS = {'onnxruntime': 'ORT', 'compiled': 'compiled'}  # backends after eager: result key -> column label


def format_markdown(result: Dict) -> str:
    """The latency tables, the ratio table and the memory table, as Markdown."""
    s, lines = result['settings'], []
    batches = [str(b) for b in s['batch_sizes']]
    rounds = ', '.join(f'{s["rounds"][b]} rounds at batch {b}' for b in batches)
    lines.append(
        f'fp32, {s["img_size"]}x{s["img_size"]}, {s["threads"]} threads, torch {result["environment"]["torch"]}, '
        f'onnxruntime {result["environment"].get("onnxruntime", "-")}, {result["environment"]["cpu"]}. '
        f'Median (min-max) of {rounds}, candidates interleaved.'
    )
    lines.append('')
    header = ['model', 'top-1']
    for b in batches:
        header += [f'eager b{b} ms', f'eager b{b} img/s']
    for backend, label in _EXTRA_COLUMNS.items():
        header += [f'{label} b{b} ms' for b in batches if b in result.get(backend, {})]
    lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    names = list(result['eager'][batches[0]]) if batches else []
    for name in names:
        base = name.split('/')[0]
        top1 = result['top1'].get(base)
        row = [name, f'{top1:.1f}' if top1 and '/' not in name else '']
        for b in batches:
            e = result['eager'][b].get(name)
            layout = ' (NHWC)' if e and e.get('layout') == 'channels_last' else ''
            row.append(f'{e["median_ms"]:.1f} ({e["min_ms"]:.1f}-{e["max_ms"]:.1f}){layout}' if e else '')
            row.append(f'{int(b) * 1000 / e["median_ms"]:.0f}' if e else '')
        for backend in _EXTRA_COLUMNS:
            for b in batches:
                if b in result.get(backend, {}):
                    o = result[backend][b].get(name)
                    row.append(f'{o["median_ms"]:.1f} ({o["min_ms"]:.1f}-{o["max_ms"]:.1f})' if o else '')
        lines.append('| ' + ' | '.join(row) + ' |')
    lines += ['', 'Speed-ups of our fused EMO (median / median, same run; above 1: ours is faster):', '']
    cols = sorted({k for bk in result['ratios'].values() for t in bk.values() for v in t.values() for k in v})
    lines += ['| backend | batch | variant | ' + ' | '.join(cols) + ' |', '|' + '---|' * (3 + len(cols))]
    for backend, per_batch in result['ratios'].items():
        for b, per_variant in per_batch.items():
            for variant, r in per_variant.items():
                cells = [f'{r[c]:.2f}' if c in r else '' for c in cols]
                lines.append(f'| {backend} | {b} | {variant} | ' + ' | '.join(cells) + ' |')
    if result['memory']:
        batch = next(iter(result['memory'].values()))['batch_size']
        lines += ['', 'Peak memory in MiB (live tensor storages made by ops; weights and inputs excluded):', '']
        lines += [
            f'| variant | train step, batch {batch} (activations + gradients) | with grad checkpointing | saved '
            f'| inference per image, batch 1 | fused, batch 1 | inference per image, batch {batch} | fused, '
            f'batch {batch} |',
            '|---|---|---|---|---|---|---|---|',
        ]
        for variant, m in result['memory'].items():
            saved = 1 - m['train_mib_checkpointing'] / m['train_mib']
            lines.append(
                f'| {variant} | {m["train_mib"]:.0f} | {m["train_mib_checkpointing"]:.0f} | {saved:.0%} | '
                f'{m["infer_mib_per_image_batch1"]:.1f} | {m["infer_fused_mib_per_image_batch1"]:.1f} | '
                f'{m["infer_mib_per_image"]:.1f} | {m["infer_fused_mib_per_image"]:.1f} |'
            )
    return '\n'.join(lines) + '\n'


def plot(result: Dict, path: Path, batch: str = '1') -> None:
    """ImageNet top-1 against eager latency at ``batch``: EMO (fused and official arithmetic) and the peers."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    table = result['eager'][batch]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, marker, color, label in (
        ('emo', 'o', 'tab:red', 'EMO (this package, fused)'),
        ('official', 'x', 'tab:gray', 'EMO, official arithmetic'),
        ('peer', 's', 'tab:blue', 'timm peers'),
    ):
        xs, ys, names = [], [], []
        for name, entry in table.items():
            base = name.split('/')[0]
            is_kind = (
                (kind == 'emo' and name in VARIANTS)
                or (kind == 'official' and name.endswith('/official'))
                or (kind == 'peer' and name not in VARIANTS and '/' not in name)
            )
            top1 = result['top1'].get(base)
            if is_kind and top1:
                xs.append(entry['median_ms'])
                ys.append(top1)
                names.append(base)
        ax.scatter(xs, ys, marker=marker, color=color, label=label)
        if kind != 'official':
            for x, y, n in zip(xs, ys, names):
                ax.annotate(n, (x, y), textcoords='offset points', xytext=(4, 3), fontsize=7)
    s = result['settings']
    ax.set_xlabel(f'eager PyTorch latency, batch {batch}, {s["threads"]} CPU threads (ms, median)')
    ax.set_ylabel('ImageNet-1k top-1 (%)')
    ax.set_title(f'{result["environment"]["cpu"]}, torch {result["environment"]["torch"]}', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='lower right')
    fig.tight_layout()
    save_png(fig, path, dpi=110)


def write_report(result: Dict, out_dir: Path) -> Dict[str, Path]:
    """Write ``benchmark.json``, ``benchmark.md`` and ``benchmark.png`` into ``out_dir`` (each atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {'json': out_dir / 'benchmark.json', 'md': out_dir / 'benchmark.md', 'png': out_dir / 'benchmark.png'}
    for key, text in (('json', json.dumps(result, indent=1) + '\n'), ('md', format_markdown(result))):
        atomic_write_text(paths[key], text)
    plot(result, paths['png'], str(result['settings']['batch_sizes'][0]))
    return paths


# ---------------------------------------------------------------------------------------------------- command line
def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(',') if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected comma-separated integers, got {text!r}') from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f'expected positive integers, got {text!r}')
    return values


def _name_list(text: str) -> List[str]:
    return [v for v in text.split(',') if v]


def build_parser(prog: str = 'emo bench') -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split('\n\n')[0])
    p.add_argument('--models', type=_name_list, default=list(VARIANTS), help='EMO variants (default: all four)')
    p.add_argument(
        '--peers', type=_name_list, default=list(DEFAULT_PEERS), help='timm models to compare with ("" for none)'
    )
    p.add_argument('--batch-sizes', type=_int_list, default=[1, 32], help='default 1,32')
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--threads', type=int, default=2, help='torch and ONNX Runtime intra-op threads (default 2)')
    p.add_argument('--rounds', type=int, default=0, help='timed rounds per batch size (default 30 at batch 1, else 8)')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--no-onnx', action='store_true', help='skip ONNX Runtime')
    p.add_argument('--no-memory', action='store_true', help='skip the memory report')
    p.add_argument('--memory-batch', type=int, default=8, help='batch of the memory report (default 8)')
    p.add_argument('--pretrained', action='store_true', help='time the released weights (default: random ones)')
    p.add_argument(
        '--official-code',
        default=None,
        metavar='DIR',
        help='also time the official implementation from a clone of github.com/zhangzjn/EMO (needs einops)',
    )
    p.add_argument(
        '--compile',
        action='store_true',
        help='also time torch.compile (inductor, freezing) of the fused EMO variants and the peers; slow to start',
    )
    p.add_argument('--out-dir', default='benchmark-results', help='where benchmark.{json,md,png} go')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.img_size < 32 or args.threads < 1 or args.warmup < 0 or args.rounds < 0 or args.memory_batch < 1:
        raise ValueError('--img-size must be at least 32, --threads and --memory-batch at least 1, --rounds >= 0')
    if not args.no_onnx:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ValueError('ONNX Runtime is not installed: pip install onnx onnxruntime, or pass --no-onnx') from None
    settings = BenchSettings(
        variants=args.models,
        peers=args.peers,
        batch_sizes=args.batch_sizes,
        img_size=args.img_size,
        threads=args.threads,
        rounds={b: args.rounds for b in args.batch_sizes} if args.rounds else {},
        warmup=args.warmup,
        onnx=not args.no_onnx,
        memory=not args.no_memory,
        memory_batch=args.memory_batch,
        weights='pretrained' if args.pretrained else None,
        official_code=args.official_code,
        compile=args.compile,
    )
    result = run_benchmark(settings)
    paths = write_report(result, Path(args.out_dir))
    print(format_markdown(result))
    for path in paths.values():
        print(f'wrote {path}')
    print(f'command: emo bench {" ".join(argv if argv is not None else sys.argv[1:])}'.rstrip())
    return 0
