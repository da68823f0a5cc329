"""Window partitions of a channels-last map, the one implementation behind both attentions.

With the map zero-padded to multiples of the window side ``ws`` (``n1 = H_pad / ws``, ``n2 = W_pad / ws``), window
``(i, j)`` of the strided grid (EMO, and EMOv2's "remote" partition) holds the pixels ``(i + n1 * a, j + n2 * b)``,
and contiguous window ``(i, j)`` (EMOv2's "close" partition) the pixels ``(ws * i + a, ws * j + b)``, for ``a, b``
in ``0..ws-1``. :func:`partition_windows` and :func:`merge_windows` take and give one copy each, head-major.
"""

from typing import Optional, Tuple

import torch
from timm.layers import register_notrace_function

__all__ = ['grid_padding', 'partition_windows', 'merge_windows']


def grid_padding(height: int, width: int, window_size: int) -> Tuple[int, int]:
    """(bottom, right) zero padding that makes ``height x width`` whole multiples of ``window_size``."""
    return (window_size - height % window_size) % window_size, (window_size - width % window_size) % window_size


def _window_dims(height: int, width: int, window_size: int, strided: bool) -> Tuple[int, int, int, int]:
    """The (row, row, column, column) factors of a padded map: (a, i, b, j) strided, (i, a, j, b) contiguous."""
    n1, n2 = height // window_size, width // window_size
    return (window_size, n1, window_size, n2) if strided else (n1, window_size, n2, window_size)


@register_notrace_function
def partition_windows(
    tokens: torch.Tensor, window_size: int, strided: bool, num_heads: int = 1, num_groups: int = 1
) -> torch.Tensor:
    """The windows of a channels-last map ``(B, H, W, C)`` whose sides are multiples of ``window_size``, head-major
    in one copy: ``(num_groups, B * n1 * n2, num_heads, window_size ** 2, C // (num_groups * num_heads))``.

    Strided-grid windows (``strided``: window ``(i, j)`` holds rows ``a * n1 + i`` and columns ``b * n2 + j``) or
    contiguous ones (rows ``i * ws + a``, columns ``j * ws + b``). The channels split as (group, head, dim): q|k
    are two groups of the qk map. A leaf for torch.fx: its shape arithmetic stays out of traced graphs.
    """
    batch, height, width, channels = tokens.shape
    r1, r2, c1, c2 = _window_dims(height, width, window_size, strided)
    dim = channels // (num_groups * num_heads)
    x = tokens.reshape(batch, r1, r2, c1, c2, num_groups, num_heads, dim)
    # to (group, B, window row, window column, head, token row, token column, dim)
    x = x.permute(5, 0, 2, 4, 6, 1, 3, 7) if strided else x.permute(5, 0, 1, 3, 6, 2, 4, 7)
    num_windows = batch * (height // window_size) * (width // window_size)
    return x.reshape(num_groups, num_windows, num_heads, window_size * window_size, dim)


@register_notrace_function
def merge_windows(
    windows: torch.Tensor,
    batch: int,
    height: int,
    width: int,
    window_size: int,
    strided: bool,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Invert :func:`partition_windows` for head-major windows ``(G, heads, N, dim)``: the ``(B, height, width,
    heads * dim)`` map, in one copy; with ``out`` (such a map) the windows are added into it in place instead."""
    n1, n2 = height // window_size, width // window_size
    num_heads, dim = windows.shape[1], windows.shape[3]
    x = windows.reshape(batch, n1, n2, num_heads, window_size, window_size, dim)
    # back to (B, row factor, row factor, column factor, column factor, head, dim), the map's own order
    x = x.permute(0, 4, 1, 5, 2, 3, 6) if strided else x.permute(0, 1, 4, 2, 5, 3, 6)
    if out is None:
        return x.reshape(batch, height, width, num_heads * dim)
    r1, r2, c1, c2 = _window_dims(height, width, window_size, strided)
    out.view(batch, r1, r2, c1, c2, num_heads, dim).add_(x)
    return out
