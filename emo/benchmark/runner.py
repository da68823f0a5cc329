"""The benchmark's run: the candidates (see :mod:`emo.benchmark`), each timed in every round, and the ratios."""

import contextlib
import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn

from ..models.variants import VARIANTS, get_variant
from ..timing import summary, time_interleaved
from ..weights import to_official_layout
from ..weights.manifest import default_weights
from .efficiency import count_gmacs, efficiency_table
from .memory import memory_report
from .official import load_official_code, official_emo
from .official_emo2 import official_emo2
from .report import environment

__all__ = [
    'BACKENDS',
    'BenchSettings',
    'Candidate',
    'DEFAULT_PEERS',
    'DEFAULT_VARIANTS',
    'PEER_PAIRS',
    'PEER_TOP1',
    'check_agreement',
    'int8_speedups',
    'official_arithmetic',
    'run_benchmark',
]

DEFAULT_PEERS = (
    'edgenext_xx_small',
    'edgenext_x_small',
    'mobilevit_xs',
    'repvit_m0_9',
    'mobilevit_s',
    'mobilenetv3_large_100',
    'mobilenetv4_conv_small',
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
    'mobilenetv4_conv_small': 73.8,  # mobilenetv4_conv_small.e2400_r224_in1k at 224
}
# variant -> the peers of its accuracy tier it must be at least as fast as
PEER_PAIRS = {
    'emo_1m': ('edgenext_xx_small',),
    'emo_2m': ('edgenext_x_small', 'mobilevit_xs'),
    'emo_5m': ('repvit_m0_9', 'mobilevit_s'),
    'emo_6m': ('repvit_m0_9', 'mobilevit_s'),
    'emo2_1m': ('edgenext_xx_small',),
    'emo2_2m': ('edgenext_x_small', 'mobilevit_xs'),
    'emo2_5m': ('repvit_m0_9', 'mobilevit_s'),
}
# the variants with released weights for 224x224 images, of both families (emo2_5m_512 is emo2_5m with window 8, for
# 512x512; emo2_20m has no released weights)
DEFAULT_VARIANTS = tuple(name for name, v in VARIANTS.items() if v.img_size == 224 and default_weights(name))
AGREEMENT_ATOL = 1e-4  # ours against the official arithmetic, logits, same weights
BACKENDS = ('eager', 'compiled', 'onnxruntime', 'openvino', 'openvino_int8')  # result keys of the timed runtimes


@dataclass
class BenchSettings:
    variants: Sequence[str] = DEFAULT_VARIANTS
    peers: Sequence[str] = DEFAULT_PEERS
    batch_sizes: Sequence[int] = (1, 32)
    img_size: int = 224
    threads: int = 2
    rounds: Dict[int, int] = field(default_factory=dict)  # batch size -> timed rounds; default by size
    warmup: int = 3
    onnx: bool = True
    openvino: bool = True  # OpenVINO f32 (needs openvino)
    int8: bool = True  # OpenVINO int8 of the fused EMO and the peers (needs openvino and nncf)
    int8_calibration_images: int = 16  # random images: latency does not depend on what the ranges were set from
    memory: bool = True
    memory_batch: int = 8
    weights: Optional[str] = None  # 'pretrained' or None (random weights: speed does not depend on values)
    official_code: Optional[str] = None  # a clone of github.com/zhangzjn/EMO, timed as '<variant>/official-code'
    compile: bool = False  # also time torch.compile'd fused EMO and peers

    def rounds_for(self, batch_size: int) -> int:
        return self.rounds.get(batch_size, 30 if batch_size == 1 else 8)


# ---------------------------------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    name: str  # as reported
    kind: str  # 'emo', 'emo-unfused', 'official', 'peer'
    model: nn.Module
    channels_last: bool = False
    times: Dict[int, List[float]] = field(default_factory=dict)  # batch size -> ms per round


def official_arithmetic(variant: str, official_state_dict: Dict[str, torch.Tensor]) -> nn.Module:
    """The official computation of ``variant``'s family (EMO or EMOv2), rebuilt, on an official-layout state dict."""
    build = official_emo2 if get_variant(variant).family == 'emo2' else official_emo
    return build(variant, official_state_dict)


def _emo_models(variant: str, weights: Optional[str]) -> Tuple[nn.Module, nn.Module, nn.Module]:
    """(ours unfused, ours fused, official arithmetic) on the same weights."""
    from timm.layers import LayerScale2d
    from timm.utils import reparameterize_model

    ours = timm.create_model(variant, pretrained=weights == 'pretrained').eval()
    if weights != 'pretrained':
        # EMOv2's layer scales start at 1e-6, which would leave the agreement check blind to every block's branch
        for m in ours.modules():
            if isinstance(m, LayerScale2d):
                torch.nn.init.ones_(m.gamma)
    official = official_arithmetic(variant, to_official_layout(ours.state_dict()))
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


# ---------------------------------------------------------------------------------------------------- onnx
def _export_onnx(model: nn.Module, img_size: int, folder: Path, name: str) -> Path:
    from ..deploy.export import export_onnx

    path = folder / f'{name.replace("/", "_")}.onnx'
    export_onnx(model, path, img_size=img_size, dynamic=True, check=False)
    return path


def _time_exported(
    files: Dict[str, Path], kinds: Dict[str, str], settings: BenchSettings, result: Dict, log: Callable
) -> None:
    """ONNX Runtime, then OpenVINO f32 and int8, on the same exported files; each batch size a fixed shape."""
    from ..deploy.export import onnx_session

    for batch_size in settings.batch_sizes if settings.onnx else ():
        shape = (batch_size, 3, settings.img_size, settings.img_size)
        # sessions take turns here: a session whose threads keep spinning after its run would starve the next one
        sessions = {
            name: onnx_session(path, settings.threads, spinning=False, shape=shape) for name, path in files.items()
        }
        x = _input(batch_size, settings.img_size, False).numpy()
        runners = {name: functools.partial(s.run, None, {s.get_inputs()[0].name: x}) for name, s in sessions.items()}
        log(f'onnxruntime, batch {batch_size}: {len(runners)} models')
        times = time_interleaved(runners, settings.rounds_for(batch_size), settings.warmup)
        result['onnxruntime'][str(batch_size)] = {n: summary(t) for n, t in times.items()}
    if not (settings.openvino or settings.int8):
        return
    from ..deploy.openvino import compile_ir, fixed_shape, quantize_int8, require_openvino

    ov = require_openvino(int8=settings.int8)

    graphs = {name: ov.convert_model(str(path)) for name, path in files.items()}
    sections = {'openvino': graphs} if settings.openvino else {}
    if settings.int8:
        generator = torch.Generator().manual_seed(0)
        size = settings.img_size
        calibration = [
            torch.randn(1, 3, size, size, generator=generator).numpy() for _ in range(settings.int8_calibration_images)
        ]
        quantized = {}
        for name, graph in graphs.items():
            if kinds[name] not in ('emo', 'peer'):
                continue  # the fused EMO and the peers: the baselines are f32 references
            log(f'int8: quantizing {name} (NNCF)')
            quantized[name] = quantize_int8(fixed_shape(graph, [1, 3, size, size]), calibration)
        sections['openvino_int8'] = quantized
    for section, models in sections.items():
        for batch_size in settings.batch_sizes:
            shape = (batch_size, 3, settings.img_size, settings.img_size)
            requests = {
                n: compile_ir(m, settings.threads, shape=shape).create_infer_request() for n, m in models.items()
            }
            x = _input(batch_size, settings.img_size, False).numpy()
            runners = {name: functools.partial(r.infer, [x]) for name, r in requests.items()}
            log(f'{section}, batch {batch_size}: {len(runners)} models')
            times = time_interleaved(runners, settings.rounds_for(batch_size), settings.warmup)
            result[section][str(batch_size)] = {n: summary(t) for n, t in times.items()}


# ---------------------------------------------------------------------------------------------------- the run
@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the block, and put back after it: a benchmark called from
    Python (or a test) must not leave the rest of the process on its thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_benchmark(settings: BenchSettings, log: Callable[[str], None] = print) -> Dict:
    """Run everything ``settings`` asks for, on ``settings.threads`` threads; returns the JSON-ready result."""
    with torch_threads(settings.threads):
        return _run_benchmark(settings, log)


def _run_benchmark(settings: BenchSettings, log: Callable[[str], None]) -> Dict:
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
        'environment': environment(),
        'eager': {},
        'onnxruntime': {},
        'openvino': {},
        'openvino_int8': {},
        'compiled': {},
        'gmacs': {},
        'ratios': {},
        'efficiency': {},
        'int8_speedup': {},
        'agreement': {},
        'memory': {},
        'top1': {},
    }
    defaults = {v: default_weights(v) for v in settings.variants}
    accuracy = {v: entry.top1 for v, entry in defaults.items() if entry is not None}
    candidates: List[Candidate] = []
    for variant in settings.variants:
        get_variant(variant)
        ours, fused, official = _emo_models(variant, settings.weights)
        result['agreement'][variant] = {
            'unfused_vs_official': check_agreement(ours, official, settings.img_size),
            'fused_vs_official': check_agreement(fused, official, settings.img_size),
        }
        result['top1'][variant] = accuracy.get(variant)
        result['gmacs'][variant] = count_gmacs(ours, settings.img_size)
        if settings.official_code and get_variant(variant).family == 'emo':
            code = load_official_code(settings.official_code, variant, to_official_layout(ours.state_dict()))
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
        result['gmacs'][peer] = count_gmacs(model, settings.img_size)  # the reparameterized model that is timed
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
        result['eager'][str(batch_size)] = _best_layout({n: summary(t) for n, t in times.items()})

    if settings.onnx or settings.openvino or settings.int8:
        with tempfile.TemporaryDirectory() as tmp:
            files = {}
            for c in candidates:
                if c.kind in ('emo-unfused', 'official-code') or c.channels_last:
                    continue  # the runtimes fold BatchNorm themselves, and pick their own layouts
                log(f'exporting {c.name} to ONNX')
                files[c.name] = _export_onnx(c.model, settings.img_size, Path(tmp), c.name)
            _time_exported(files, {c.name: c.kind for c in candidates}, settings, result, log)

    if settings.compile:
        _time_compiled(candidates, settings, result, log)

    result['ratios'] = compute_ratios(result, settings)
    result['int8_speedup'] = int8_speedups(result)
    result['efficiency'] = {
        backend: {batch: efficiency_table(table, result['gmacs'], int(batch)) for batch, table in per_batch.items()}
        for backend, per_batch in result.items()
        if backend in BACKENDS
    }
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
    # the variants of a family share one forward: dynamo keeps a compiled entry per model and batch size on it, and
    # past its recompile limit (8) it would silently run the rest eager
    limit = max(8, 2 * len(compiled) * len(settings.batch_sizes))
    with torch._dynamo.config.patch(recompile_limit=limit, accumulated_recompile_limit=max(256, 4 * limit)):
        for batch_size in settings.batch_sizes:
            x = _input(batch_size, settings.img_size, False)
            runners = {name: functools.partial(model, x) for name, model in compiled.items()}
            log(
                f'torch.compile, batch {batch_size}: compiling {len(runners)} models '
                '(tens of seconds each), then timing'
            )
            with torch.no_grad():
                times = time_interleaved(runners, settings.rounds_for(batch_size), max(settings.warmup, 1))
            result['compiled'][str(batch_size)] = {n: summary(t) for n, t in times.items()}


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
    for backend in BACKENDS:
        for batch, table in result.get(backend, {}).items():
            for variant in settings.variants:
                if variant not in table:
                    continue
                ours = table[variant]['median_ms']
                entry: Dict[str, float] = {}
                if f'{variant}/official' in table:
                    entry['vs_official'] = table[f'{variant}/official']['median_ms'] / ours
                if f'{variant}/official-code' in table:
                    entry['vs_official_code'] = table[f'{variant}/official-code']['median_ms'] / ours
                for peer in PEER_PAIRS.get(variant, ()):
                    if peer in table:
                        entry[f'vs_{peer}'] = table[peer]['median_ms'] / ours
                if entry:
                    ratios.setdefault(backend, {}).setdefault(batch, {})[variant] = entry
    return ratios


def int8_speedups(result: Dict) -> Dict[str, Dict[str, float]]:
    """Per batch, every model's OpenVINO f32 median over its int8 median (above 1: int8 is faster)."""
    out: Dict[str, Dict[str, float]] = {}
    for batch, table in result.get('openvino_int8', {}).items():
        f32 = result.get('openvino', {}).get(batch, {})
        out[batch] = {n: f32[n]['median_ms'] / e['median_ms'] for n, e in table.items() if n in f32}
    return out
