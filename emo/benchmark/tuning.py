"""Re-measure the two constants of the inference path that were tuned by timing, on this machine.

``python -m emo.benchmark.tuning`` times, interleaved, in one run:

* :data:`emo.layers.grid_attention.MIN_FUSED_WINDOW_HEADS`: one ``GridAttention`` (channels-last input, as a fused
  model gives it) with ``scaled_dot_product_attention`` against the explicit ``softmax(q k^T) v``, for growing
  numbers of window-heads; the constant belongs where SDPA starts to win;
* :data:`emo.layers.batch_slices.SLICE_BYTES`: a fused ``emo_2m`` at batch 32 with each candidate slice size.

It prints the CPU and its SIMD flags, the medians and the ratios; it changes nothing.
"""

import argparse
import functools
from typing import Dict, List, Optional, Sequence
from unittest import mock

import timm
import torch
from timm.utils import reparameterize_model

from ..layers import GridAttention, batch_slices, grid_attention
from ..timing import summary, time_interleaved
from .report import environment
from .runner import torch_threads

__all__ = ['attention_crossover', 'slice_sizes', 'main']


@torch.inference_mode()
def attention_crossover(
    window_counts: Sequence[int] = (1, 2, 4, 8, 16, 32), dim: int = 160, dim_head: int = 20, rounds: int = 50
) -> List[Dict[str, float]]:
    """Median ms of one attention at each number of 7x7 windows, with SDPA and with the explicit softmax."""
    attn = GridAttention(dim, dim_head).eval()

    def run(x: torch.Tensor, fused: bool) -> None:
        attn.fused_attn = fused
        attn(x)

    rows = []
    for windows in window_counts:
        x = torch.randn(windows, dim, 7, 7).contiguous(memory_format=torch.channels_last)
        with mock.patch.object(grid_attention, 'MIN_FUSED_WINDOW_HEADS', 0):
            times = time_interleaved(
                {'sdpa': functools.partial(run, x, True), 'explicit': functools.partial(run, x, False)}, rounds, 5
            )
        sdpa, explicit = (summary(times[k])['median_ms'] for k in ('sdpa', 'explicit'))
        rows.append(dict(window_heads=windows * attn.num_heads, sdpa_ms=sdpa, explicit_ms=explicit))
    return rows


def slice_sizes(
    mib: Sequence[int] = (2, 4, 8, 16, 32), model_name: str = 'emo_2m', batch: int = 32, rounds: int = 8
) -> List[Dict[str, float]]:
    """Median ms of a fused model at ``batch`` with each largest slice map (MiB)."""
    model = reparameterize_model(timm.create_model(model_name).eval())
    x = torch.randn(batch, 3, 224, 224)

    def run(size: int) -> None:
        with mock.patch.object(batch_slices, 'SLICE_BYTES', size << 20), torch.inference_mode():
            model(x)

    times = time_interleaved({str(m): functools.partial(run, m) for m in mib}, rounds, 2)
    return [dict(slice_mib=m, median_ms=summary(times[str(m)])['median_ms']) for m in mib]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m emo.benchmark.tuning', description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=2, help='torch intra-op threads (default 2)')
    args = parser.parse_args(argv)
    with torch_threads(args.threads):
        return _report(args)


def _report(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    env = environment()
    print(f'{env["cpu"]}; SIMD flags: {env["cpu_flags"] or "-"}; torch {env["torch"]}, {args.threads} threads')
    print(f'\nattention (now MIN_FUSED_WINDOW_HEADS = {grid_attention.MIN_FUSED_WINDOW_HEADS}):')
    print('| window-heads | SDPA ms | explicit ms | explicit / SDPA |\n|---:|---:|---:|---:|')
    for r in attention_crossover():
        ratio = r['explicit_ms'] / r['sdpa_ms']
        print(f'| {r["window_heads"]} | {r["sdpa_ms"]:.3f} | {r["explicit_ms"]:.3f} | {ratio:.2f} |')
    print(f'\nbatch slices, fused emo_2m at batch 32 (now SLICE_BYTES = {batch_slices.SLICE_BYTES >> 20} MiB):')
    rows = slice_sizes()
    best = min(r['median_ms'] for r in rows)
    print('| largest slice map, MiB | median ms | / fastest |\n|---:|---:|---:|')
    for r in rows:
        print(f'| {r["slice_mib"]} | {r["median_ms"]:.1f} | {r["median_ms"] / best:.2f} |')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
