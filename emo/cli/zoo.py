"""The variant table of ``emo zoo``: official figures next to parameters counted and latency measured now."""

import functools
import statistics
from typing import Dict, List, Optional

import timm
import torch
from timm.utils import reparameterize_model
from tqdm import tqdm

from ..models.variants import VARIANTS
from ..timing import time_interleaved
from ..weights import released_weights

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
    """One row per variant: params counted on the built model, official GFLOPs, accuracy of the released weights
    (weights/manifest.json) and latency measured now."""
    rows = []
    accuracy = {entry.variant: entry for entry in released_weights().values()}
    with tqdm(
        total=len(VARIANTS) * (runs + warmup),
        desc='measuring latency (batch 1, 224, CPU)',
        disable=not show_progress,
        unit='fwd',
    ) as progress:
        for name, variant in VARIANTS.items():
            model = timm.create_model(name)
            # the inference path users deploy: BatchNorm folded, fused kernels (docs/deploy.md)
            times = measure_latency(reparameterize_model(model.eval()), warmup=warmup, runs=runs, progress=progress)
            rows.append(
                dict(
                    model=name,
                    params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                    gflops=variant.gflops,
                    top1=accuracy[name].top1,
                    top5=accuracy[name].top5,
                    latency_ms=statistics.median(times),
                    latency_min_ms=min(times),
                    latency_max_ms=max(times),
                )
            )
    return rows


def format_table(rows: List[Dict]) -> str:
    header = '| model | params (M) | GFLOPs | top-1 | top-5 | CPU latency ms, median (min-max) |'
    lines = [header, '|---|---:|---:|---:|---:|---:|']
    for r in rows:
        lines.append(
            f'| {r["model"]} | {r["params_m"]:.2f} | {r["gflops"]:.3f} | {r["top1"]:.1f} | {r["top5"]:.1f} | '
            f'{r["latency_ms"]:.1f} ({r["latency_min_ms"]:.1f}-{r["latency_max_ms"]:.1f}) |'
        )
    return '\n'.join(lines)
