"""Running a large eager CPU batch through a fused stage in slices, so that no map outgrows the allocator's cache."""

from typing import Callable

import torch

from .fused_conv import is_eager

__all__ = ['SLICE_BYTES', 'run_in_slices']

# Largest map a sliced batch may produce. Maps beyond glibc's mmap threshold (at most 32 MiB) come fresh from the
# kernel on every call and cost a page fault per 4 KiB, which on a small CPU takes longer than the conv itself.
# Chosen by timing fused models at batch 32 on a 2-core machine in an earlier session (its CPU was not recorded; on
# a later session's Intel Xeon 32 MiB was faster, docs/benchmarks.md). `python -m emo.benchmark.tuning` re-measures
# it on yours (a fused emo_2m at batch 32 with slices of 2 to 32 MiB, interleaved).
SLICE_BYTES = 8 << 20


def run_in_slices(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, bytes_per_pixel: int) -> torch.Tensor:
    """``fn(x)``, computed on slices of the batch when a whole batch would make maps over :data:`SLICE_BYTES`.

    ``bytes_per_pixel`` is the size of the widest map ``fn`` makes, per input pixel of one image. Only eager CPU
    inference is sliced; with autograd, in traces and exports, and on GPUs this is plainly ``fn(x)``.
    Slicing only changes which images share a kernel call, so the outputs are the same.
    """
    batch = x.shape[0]
    if torch.is_grad_enabled() or not is_eager() or x.device.type != 'cpu' or batch == 1:
        return fn(x)
    per_image = bytes_per_pixel * x.shape[2] * x.shape[3]
    slice_size = max(1, SLICE_BYTES // per_image)
    if slice_size >= batch:
        return fn(x)
    return torch.cat([fn(part) for part in x.split(slice_size)])
