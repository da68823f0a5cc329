"""The variant table of ``emo zoo`` (both generations): official figures next to parameters counted and latency
measured now."""

import functools
import statistics
from typing import Dict, List, Optional

import timm
import torch
from timm.utils import reparameterize_model
from tqdm import tqdm

from ..models.variants import VARIANTS
from ..timing import time_interleaved
from ..weights.manifest import weights_of

__all__ = ['measure_latency', 'zoo_rows', 'format_table']


@torch.inference_mode()
def measure_latency(
    model: torch.nn.Module,
    input_size=(1, 3, 224, 224),
    warmup: int = 5,
    runs: int = 30,
    progress: Optional[tqdm] = None,
) -> List[float]:
    """Forward times in milliseconds of ``model`` (eval mode) on a random batch, one per run after warm-up."""
    model.eval()
    x = torch.randn(input_size)
    on_call = None if progress is None else progress.update
    return time_interleaved({'model': functools.partial(model, x)}, runs, warmup, on_call=on_call)['model']


def zoo_rows(runs: int = 30, warmup: int = 5, show_progress: bool = True) -> List[Dict]:
    """One row per variant of EMO and EMOv2: params counted on the built model, official GFLOPs at its input size,
    accuracy of its released weights (weights/manifest.json: the plain ImageNet-1k weights and the distilled ones,
    each None where there are none) and latency measured now at its input size."""
    rows = []
    with tqdm(
        total=len(VARIANTS) * (runs + warmup),
        desc='measuring latency (batch 1, CPU)',
        disable=not show_progress,
        unit='fwd',
    ) as progress:
        for name, variant in VARIANTS.items():
            model = timm.create_model(name)
            weights = weights_of(name)
            plain = next((e for e in weights if not e.distilled), None)  # emo2_5m_512 has distilled weights only
            distilled = next((e for e in weights if e.distilled), None)
            # the inference path users deploy: BatchNorm folded, fused kernels (docs/deploy.md)
            size = (1, 3, variant.img_size, variant.img_size)
            fused = reparameterize_model(model.eval())
            times = measure_latency(fused, size, warmup=warmup, runs=runs, progress=progress)
            rows.append(
                dict(
                    model=name,
                    family=variant.family_info.title,
                    params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                    img_size=variant.img_size,
                    gflops=variant.gflops,
                    top1=plain.top1 if plain else None,
                    top1_distilled=distilled.top1 if distilled else None,
                    top5=plain.top5 if plain else None,
                    latency_ms=statistics.median(times),
                    latency_min_ms=min(times),
                    latency_max_ms=max(times),
                )
            )
    return rows


def _figure(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.1f}'  # no released weights, or no such figure in the release


def format_table(rows: List[Dict]) -> str:
    header = (
        '| model | generation | params (M) | input | GFLOPs | top-1 | top-1 distilled | top-5 '
        '| CPU latency ms, median (min-max) |'
    )
    lines = [header, '|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        lines.append(
            f'| {r["model"]} | {r["family"]} | {r["params_m"]:.2f} | {r["img_size"]} | {r["gflops"]:.3f} | '
            f'{_figure(r["top1"])} | {_figure(r["top1_distilled"])} | {_figure(r["top5"])} | '
            f'{r["latency_ms"]:.1f} ({r["latency_min_ms"]:.1f}-{r["latency_max_ms"]:.1f}) |'
        )
    return '\n'.join(lines)
