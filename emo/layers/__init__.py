"""Layers both model families share: strided-grid window attention, BatchNorm folding, the fused inference conv."""

from .batch_slices import SLICE_BYTES, run_in_slices
from .bn_fold import fold_bn_after, fold_bn_before
from .fused_conv import FusedConv, is_eager, onednn_available
from .grid_attention import GridAttention, explicit_attention, grid_merge, grid_padding, grid_windows

__all__ = [
    'FusedConv',
    'GridAttention',
    'explicit_attention',
    'SLICE_BYTES',
    'fold_bn_after',
    'fold_bn_before',
    'grid_merge',
    'grid_padding',
    'grid_windows',
    'is_eager',
    'onednn_available',
    'run_in_slices',
]
