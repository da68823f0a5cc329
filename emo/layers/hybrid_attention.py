"""EMOv2's hybrid window attention: one qk/v over the padded map, attended in two window partitions, summed.

With the map zero-padded to multiples of the window side ``ws`` (``n1 = H_pad / ws``, ``n2 = W_pad / ws``), the
"remote" partition is EMO's strided grid (window ``(i, j)`` holds pixels ``(i + n1 * a, j + n2 * b)``) and the
"close" partition is contiguous ``ws x ws`` windows (pixels ``(ws * i + a, ws * j + b)``); ``a, b`` run over
``0..ws-1``. Both attend over the same queries, keys and values, which the released weights compute on the padded
map: padded pixels carry ``qk = bias`` and ``v = act(bias)``, not zeros, and take part in the softmax unmasked.
"""

from typing import Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import get_act_layer, register_notrace_function, use_fused_attn

from .fused_conv import is_eager
from .grid_attention import MIN_FUSED_WINDOW_HEADS, grid_padding

__all__ = ['HybridWindowAttention', 'partition_windows', 'merge_windows']


@register_notrace_function
def partition_windows(tokens: torch.Tensor, window_size: int, strided: bool) -> torch.Tensor:
    """Windows of a channels-last map ``(B, H, W, C)`` whose sides are multiples of ``window_size``, as token rows
    ``(B * n1 * n2, window_size ** 2, C)``: strided-grid windows (``strided``) or contiguous ones.

    A leaf for torch.fx: its shape arithmetic stays out of traced graphs.
    """
    batch, height, width, channels = tokens.shape
    n1, n2 = height // window_size, width // window_size
    if strided:  # row = a * n1 + i, column = b * n2 + j
        windows = tokens.reshape(batch, window_size, n1, window_size, n2, channels).permute(0, 2, 4, 1, 3, 5)
    else:  # row = i * ws + a, column = j * ws + b
        windows = tokens.reshape(batch, n1, window_size, n2, window_size, channels).permute(0, 1, 3, 2, 4, 5)
    return windows.reshape(batch * n1 * n2, window_size * window_size, channels)


@register_notrace_function
def merge_windows(
    windows: torch.Tensor, batch: int, height: int, width: int, window_size: int, strided: bool
) -> torch.Tensor:
    """Invert :func:`partition_windows`: the ``(B, height, width, C)`` map the windows were taken from."""
    channels = windows.shape[-1]
    n1, n2 = height // window_size, width // window_size
    x = windows.reshape(batch, n1, n2, window_size, window_size, channels)
    x = x.permute(0, 3, 1, 4, 2, 5) if strided else x.permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, height, width, channels)


class HybridWindowAttention(nn.Module):
    """EMOv2's attention operator: ``qk`` (1x1 conv with bias, channels q|k, head, dim_head) and ``v`` (1x1 conv
    with bias + ``act``, ``mid_chs`` channels split into as many heads) on the zero-padded map, attention in the
    strided-grid and in the contiguous windows, the two results summed and cropped back.

    Unlike EMO's :class:`~emo.layers.GridAttention`, the values are expanded before the attention (the official
    ``attn_pre=False``), so the operator maps ``dim`` channels to ``mid_chs``. ``fused_attn`` (timm's
    ``use_fused_attn()``) computes with ``F.scaled_dot_product_attention``, else as ``softmax(q k^T * scale) v``.
    """

    fused_attn: torch.jit.Final[bool]

    def __init__(
        self,
        dim: int,
        mid_chs: int,
        dim_head: int,
        window_size: int = 7,
        qk_bias: bool = True,
        act_layer: Union[str, Type[nn.Module]] = 'gelu',
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if dim % dim_head:
            raise ValueError(f'attention width {dim} is not a multiple of dim_head {dim_head}')
        self.dim_head = dim_head
        self.num_heads = dim // dim_head
        if mid_chs % self.num_heads:
            raise ValueError(f'value width {mid_chs} does not split into {self.num_heads} heads')
        self.window_size = window_size
        self.scale = dim_head**-0.5
        self.fused_attn = use_fused_attn()
        self.qk = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=qk_bias, **dd)
        self.v = nn.Conv2d(dim, mid_chs, kernel_size=1, bias=True, **dd)
        self.act = get_act_layer(act_layer)()

    @torch.jit.unused
    def _eager(self) -> bool:
        return is_eager()

    @torch.jit.unused
    def _explicit_is_faster(self, num_windows: int, value_dim: int) -> bool:
        # values wider than the queries (mid / heads vs dim_head) have no fused CPU kernel: SDPA falls back to its
        # math path, the same two matmuls and softmax plus checks; with it the whole fused emo2_1m / emo2_5m ran
        # 9-14% slower at batch 1 and 32 (Intel Xeon, AVX-512, 2 threads; re-measure by timing a fused model whose
        # attentions' _explicit_is_faster returns False). Few window-heads: as GridAttention, explicit
        return value_dim != self.dim_head or num_windows * self.num_heads < MIN_FUSED_WINDOW_HEADS

    def _windows(self, qk: torch.Tensor, v: torch.Tensor, strided: bool, eager: bool) -> torch.Tensor:
        """Attention inside one partition's windows: ``(G, N, mid_chs)`` token rows."""
        qk_windows = partition_windows(qk, self.window_size, strided)
        v_windows = partition_windows(v, self.window_size, strided)
        # explicit sizes, no -1: torch.export then keeps the batch symbolic
        num_windows, num_tokens = qk_windows.shape[0], self.window_size * self.window_size
        qk_windows = qk_windows.reshape(num_windows, num_tokens, 2, self.num_heads, self.dim_head)
        q, k = qk_windows.permute(2, 0, 3, 1, 4).unbind(0)  # (G, heads, N, dim_head)
        mid_chs = v.shape[-1]
        v_windows = v_windows.reshape(num_windows, num_tokens, self.num_heads, mid_chs // self.num_heads)
        v_windows = v_windows.transpose(1, 2)
        if self.fused_attn and not (eager and self._explicit_is_faster(num_windows, mid_chs // self.num_heads)):
            out = F.scaled_dot_product_attention(q, k, v_windows, scale=self.scale)
        else:
            attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
            out = attn @ v_windows
        return out.transpose(1, 2).reshape(num_windows, num_tokens, mid_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        # traces and scripts must stay valid at any input size: they always pad
        eager = not torch.jit.is_scripting() and self._eager()
        pad_b, pad_r = grid_padding(height, width, self.window_size)
        tokens = x.permute(0, 2, 3, 1)  # (B, H, W, C): free for a channels-last map
        if not eager or pad_b or pad_r:
            tokens = F.pad(tokens, [0, 0, 0, pad_r, 0, pad_b])  # zeros, right and bottom
        padded_h, padded_w = height + pad_b, width + pad_r
        # the 1x1 convs as matmuls over channels-last tokens; on the padded map, as the released model computes them
        qk = F.linear(tokens, self.qk.weight.reshape(2 * channels, channels), self.qk.bias)
        v = self.act(F.linear(tokens, self.v.weight.reshape(self.v.weight.shape[0], channels), self.v.bias))
        ws = self.window_size
        out = merge_windows(self._windows(qk, v, True, eager), batch, padded_h, padded_w, ws, strided=True)
        close = merge_windows(self._windows(qk, v, False, eager), batch, padded_h, padded_w, ws, strided=False)
        out = out + close
        return out[:, :height, :width].permute(0, 3, 1, 2)
