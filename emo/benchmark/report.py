"""The benchmark's report: ``benchmark.json``, ``benchmark.md`` (latency, ratio and memory tables) and a plot."""

import contextlib
import json
import os
import platform
from pathlib import Path
from typing import Dict, List

import timm
import torch

from ..files import atomic_write_text, pyplot, save_png
from ..models.variants import VARIANTS

__all__ = ['environment', 'format_markdown', 'plot', 'write_report']

SIMD_FLAG_PREFIXES = ('avx', 'fma', 'amx', 'f16c', 'sse4')


def environment() -> Dict[str, str]:
    """The versions and the CPU a result was measured with."""
    cpu, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
            elif line.startswith('flags'):
                flags = set(line.split(':', 1)[1].split())
            if cpu and flags:
                break
    env = {
        'torch': torch.__version__,
        'timm': timm.__version__,
        'python': platform.python_version(),
        'cpu': cpu,
        'cpu_count': str(os.cpu_count()),
        # the SIMD extensions oneDNN and ONNX Runtime pick kernels by: timings compare only on the same ones
        'cpu_flags': ' '.join(sorted(f for f in flags if f.startswith(SIMD_FLAG_PREFIXES))),
        'onednn': str(torch.backends.mkldnn.is_available()),
    }
    with contextlib.suppress(ImportError):
        import onnxruntime

        env['onnxruntime'] = onnxruntime.__version__
    with contextlib.suppress(ImportError):
        import openvino

        env['openvino'] = openvino.__version__
    with contextlib.suppress(ImportError):
        import nncf

        env['nncf'] = nncf.__version__
    return env


# backends after eager: result key -> column label
_EXTRA_COLUMNS = {'compiled': 'compiled', 'onnxruntime': 'ORT', 'openvino': 'OV', 'openvino_int8': 'OV int8'}


def format_markdown(result: Dict) -> str:
    """The latency tables, the ratio table and the memory table, as Markdown."""
    s, lines = result['settings'], []
    batches = [str(b) for b in s['batch_sizes']]
    rounds = ', '.join(f'{s["rounds"][b]} rounds at batch {b}' for b in batches)
    lines.append(
        f'fp32 (OV int8: int8), {s["img_size"]}x{s["img_size"]}, {s["threads"]} threads, '
        f'torch {result["environment"]["torch"]}, '
        f'onnxruntime {result["environment"].get("onnxruntime", "-")}, '
        f'openvino {result["environment"].get("openvino", "-")}, {result["environment"]["cpu"]} '
        f'(SIMD: {result["environment"].get("cpu_flags") or "-"}). '
        f'Median (min-max) of {rounds}, candidates interleaved.'
    )
    lines.append('')
    header = ['model', 'top-1', 'GMACs']
    for b in batches:
        header += [f'eager b{b} ms', f'eager b{b} img/s']
    for backend, label in _EXTRA_COLUMNS.items():
        header += [f'{label} b{b} ms' for b in batches if b in result.get(backend, {})]
    lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    names = list(result['eager'][batches[0]]) if batches else []
    for name in names:
        base = name.split('/')[0]
        top1 = result['top1'].get(base)
        gmacs = result.get('gmacs', {}).get(base)
        row = [name, f'{top1:.1f}' if top1 and '/' not in name else '', f'{gmacs:.3f}' if gmacs else '']
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
    if result.get('efficiency'):
        lines += _efficiency_lines(result)
    if any(result.get('int8_speedup', {}).values()):
        lines += ['', 'OpenVINO int8 (NNCF) against OpenVINO f32, same run (f32 median / int8 median):', '']
        lines += ['| batch | model | f32 ms | int8 ms | speed-up |', '|---|---|---:|---:|---:|']
        for b, per_model in result['int8_speedup'].items():
            for name, speedup in per_model.items():
                f32, int8 = result['openvino'][b][name]['median_ms'], result['openvino_int8'][b][name]['median_ms']
                lines.append(f'| {b} | {name} | {f32:.2f} | {int8:.2f} | {speedup:.2f} |')
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


def _efficiency_lines(result: Dict) -> List[str]:
    lines = [
        '',
        "Achieved GMAC/s (multiply-accumulates per second; model GMACs / median latency) and the variant's GMAC/s "
        'over the best peer of its accuracy tier in the same runtime and batch:',
        '',
        '| backend | batch | variant | GMAC/s | best peer | peer GMAC/s | efficiency |',
        '|---|---|---|---:|---|---:|---:|',
    ]
    for backend, per_batch in result['efficiency'].items():
        for b, table in per_batch.items():
            for name, e in table.items():
                if 'vs_best_peer' in e:
                    peer = e['best_peer']
                    lines.append(
                        f'| {backend} | {b} | {name} | {e["gmacs_per_s"]:.1f} | {peer} | '
                        f'{table[peer]["gmacs_per_s"]:.1f} | {e["vs_best_peer"]:.2f} |'
                    )
    return lines


def plot(result: Dict, path: Path, batch: str = '1') -> None:
    """ImageNet top-1 against eager latency at ``batch``: EMO and EMOv2 (fused, official arithmetic) and the peers."""
    plt = pyplot()
    table = result['eager'][batch]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, marker, color, label in (
        ('emo', 'o', 'tab:red', 'EMO (this package, fused)'),
        ('emo2', 'D', 'tab:purple', 'EMOv2 (this package, fused)'),
        ('official', 'x', 'tab:gray', 'EMO / EMOv2, official arithmetic'),
        ('peer', 's', 'tab:blue', 'timm peers'),
    ):
        xs, ys, names = [], [], []
        for name, entry in table.items():
            base = name.split('/')[0]
            is_kind = (
                (kind in ('emo', 'emo2') and name in VARIANTS and VARIANTS[name].family == kind)
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
