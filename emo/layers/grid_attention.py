"""Multi-head self-attention inside strided-grid windows: EMO's window attention.

The windows are a dilated grid, not contiguous Swin windows: with the map zero-padded to multiples of the window
side ``ws`` and ``n1 = H_pad / ws``, ``n2 = W_pad / ws``, window ``(i, j)`` holds the pixels ``(i + n1 * a,
j + n2 * b)`` for ``a, b`` in ``0..ws-1``, so every window spans the whole image. The released weights were
trained with these windows and with padded tokens taking part in the softmax unmasked; both are kept.
"""

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import register_notrace_function, use_fused_attn

from .fused_conv import is_eager
from .windows import grid_padding, merge_windows, partition_windows

__all__ = ['GridAttention', 'explicit_attention', 'grid_windows', 'grid_merge']

# Eager CPU with fewer window-heads than this: the explicit softmax(q k^T) v, measured faster there than
# scaled_dot_product_attention in an earlier session on a 2-core machine (its CPU was not recorded). On the Intel
# Xeon (AVX-512, AMX) of a later session SDPA was faster at every size (docs/benchmarks.md): the best value depends
# on the CPU. `python -m emo.benchmark.tuning` measures both ways at 8 to 256 window-heads on yours.
MIN_FUSED_WINDOW_HEADS = 64


@register_notrace_function
def grid_windows(x: torch.Tensor, window_size: int, always_pad: bool = True) -> torch.Tensor:
    """The strided-grid windows of NCHW ``x`` as token rows: ``(B * n1 * n2, window_size ** 2, C)``.

    Tokens are taken channels-last (free for a channels-last map), the layout whose last dim is contiguous per
    head, as ``scaled_dot_product_attention``'s fused kernels take it. Without ``always_pad`` a zero pad (a full
    copy) is skipped when the map needs none; traces and scripts always pad, to stay valid at any input size.
    A leaf for torch.fx: its shape arithmetic stays out of traced graphs.
    """
    pad_b, pad_r = grid_padding(x.shape[2], x.shape[3], window_size)
    tokens = x.permute(0, 2, 3, 1)  # (B, H, W, C)
    if always_pad or pad_b or pad_r:
        tokens = F.pad(tokens, [0, 0, 0, pad_r, 0, pad_b])
    return partition_windows(tokens, window_size, strided=True)[0, :, 0]  # one group, one head


@register_notrace_function
def grid_merge(windows: torch.Tensor, batch: int, height: int, width: int, window_size: int) -> torch.Tensor:
    """Invert :func:`grid_windows` for ``batch`` maps of ``height x width``: NCHW, the padding cropped away."""
    padded_h = (height + window_size - 1) // window_size * window_size
    padded_w = (width + window_size - 1) // window_size * window_size
    x = merge_windows(windows.unsqueeze(1), batch, padded_h, padded_w, window_size, strided=True)
    return x[:, :height, :width].permute(0, 3, 1, 2)


class GridAttention(nn.Module):
    """Multi-head self-attention inside the strided-grid windows of :func:`grid_windows`.

    Queries and keys come from one 1x1 conv (with bias; output channels ordered q|k, head, dim_head).
    The values are the input itself, split into heads: EMO applies attention to the normalised input and
    expands afterwards (the official ``attn_pre=True``). Padded tokens take part in the softmax unmasked,
    exactly as in the released model.

    ``fused_attn`` (timm's ``use_fused_attn()``, set at construction) computes the attention with
    ``F.scaled_dot_product_attention``, else as ``softmax(q k^T * scale) v``; both match the released model.
    """

    fused_attn: torch.jit.Final[bool]

    def __init__(
        self,
        dim: int,
        dim_head: int,
        window_size: int = 7,
        qk_bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if dim % dim_head:
            raise ValueError(f'attention width {dim} is not a multiple of dim_head {dim_head}')
        self.dim_head = dim_head
        self.num_heads = dim // dim_head
        self.window_size = window_size
        self.scale = dim_head**-0.5
        self.fused_attn = use_fused_attn()
        self.qk = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=qk_bias, device=device, dtype=dtype)

    @torch.jit.unused
    def _eager(self) -> bool:
        return is_eager()

    @torch.jit.unused
    def _few_heads(self, num_windows: int) -> bool:
        return num_windows * self.num_heads < MIN_FUSED_WINDOW_HEADS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        # traces and scripts must stay valid at any input size: they always pad, and always take SDPA when fused
        eager = not torch.jit.is_scripting() and self._eager()
        windows = grid_windows(x, self.window_size, always_pad=not eager)
        # explicit sizes, no -1: torch.export then keeps the batch symbolic
        num_windows, num_tokens = windows.shape[0], self.window_size * self.window_size
        qk = F.linear(windows, self.qk.weight.reshape(2 * channels, channels), self.qk.bias)
        qk = qk.reshape(num_windows, num_tokens, 2, self.num_heads, self.dim_head).permute(2, 0, 3, 1, 4)
        q, k = qk[0], qk[1]  # (G, heads, N, dim_head)
        v = windows.reshape(num_windows, num_tokens, self.num_heads, self.dim_head).transpose(1, 2)
        if self.fused_attn and not (eager and self._few_heads(num_windows)):
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            # scale after the product, as the released model does
            attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
            out = attn @ v
        out = out.transpose(1, 2).reshape(num_windows, num_tokens, channels)
        return grid_merge(out, batch, height, width, self.window_size)


@contextlib.contextmanager
def explicit_attention(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with every attention (:class:`GridAttention`, EMOv2's ``HybridWindowAttention``: the modules with
    a ``fused_attn`` flag) computing ``softmax(q k^T) v`` explicitly.

    For FLOP counters (fvcore), which count the two matmuls but have no count for
    ``scaled_dot_product_attention``; the outputs are the same. The attentions' ``fused_attn`` is restored after.
    """
    attentions = [m for m in model.modules() if hasattr(m, 'fused_attn')]
    before = [m.fused_attn for m in attentions]
    for m in attentions:
        m.fused_attn = False
    try:
        yield model
    finally:
        for m, fused in zip(attentions, before):
            m.fused_attn = fused
