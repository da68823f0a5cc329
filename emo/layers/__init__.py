"""Layers of the model families: EMO's strided-grid window attention, EMOv2's hybrid window attention, BatchNorm
folding, the fused inference conv, batch slicing."""

from .batch_slices import SLICE_BYTES, run_in_slices
from .bn_fold import fold_bn_after, fold_bn_before
from .fused_conv import FusedConv, is_eager, onednn_available, pointwise_on_tokens
from .grid_attention import GridAttention, explicit_attention, grid_merge, grid_windows
from .hybrid_attention import HybridWindowAttention
from .windows import grid_padding, merge_windows, partition_windows

__all__ = [
    'FusedConv',
    'GridAttention',
    'HybridWindowAttention',
    'explicit_attention',
    'SLICE_BYTES',
    'fold_bn_after',
    'fold_bn_before',
    'grid_merge',
    'grid_padding',
    'grid_windows',
    'is_eager',
    'merge_windows',
    'partition_windows',
    'onednn_available',
    'pointwise_on_tokens',
    'run_in_slices',
]
