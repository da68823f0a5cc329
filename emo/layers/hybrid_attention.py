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
from timm.layers import get_act_layer, use_fused_attn

from .fused_conv import FusedConv, is_eager, pointwise_on_tokens
from .grid_attention import MIN_FUSED_WINDOW_HEADS
from .windows import grid_padding, merge_windows, partition_windows

__all__ = ['HybridWindowAttention']


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

    def fuse(self) -> 'HybridWindowAttention':
        """Fuse for inference (idempotent): the attention scale goes into the query rows of ``qk``
        (``(s q) k^T == s (q k^T)``, one multiply of every attention map less), and ``qk`` and ``v`` become
        :class:`~emo.layers.FusedConv` (``v`` with its activation). Outputs match to fp32 rounding."""
        if isinstance(self.qk, nn.Conv2d):
            channels = self.qk.weight.shape[1]
            with torch.no_grad():
                self.qk.weight[:channels].mul_(self.scale)
                if self.qk.bias is not None:
                    self.qk.bias[:channels].mul_(self.scale)
            self.scale = 1.0
            self.qk = FusedConv.from_conv(self.qk)
        if isinstance(self.v, nn.Conv2d):
            self.v = FusedConv.from_conv(self.v, self.act)
            self.act = nn.Identity()
        return self

    @torch.jit.unused
    def _eager(self) -> bool:
        return is_eager()

    @torch.jit.unused
    def _onnx_export(self) -> bool:
        return torch.onnx.is_in_onnx_export()

    @torch.jit.unused
    def _explicit_is_faster(self, x: torch.Tensor, num_windows: int, value_dim: int) -> bool:
        # on CPU, values wider than the queries (mid / heads vs dim_head) have no fused kernel: SDPA falls back to
        # its math path, the same two matmuls and softmax plus checks; with it the whole fused emo2_1m / emo2_5m
        # ran 9-14% slower at batch 1 and 32 (Intel Xeon, AVX-512, 2 threads; re-measure by timing a fused model
        # whose attentions' _explicit_is_faster returns False). Few window-heads: as GridAttention, explicit
        if x.device.type != 'cpu':
            return False
        return value_dim != self.dim_head or num_windows * self.num_heads < MIN_FUSED_WINDOW_HEADS

    def _windows(self, qk: torch.Tensor, v: torch.Tensor, strided: bool, eager: bool) -> torch.Tensor:
        """Attention inside one partition's windows, head-major: ``(G, heads, N, mid_chs / heads)``."""
        q, k = partition_windows(qk, self.window_size, strided, self.num_heads, num_groups=2).unbind(0)
        values = partition_windows(v, self.window_size, strided, self.num_heads)[0]
        if self.fused_attn and not (eager and self._explicit_is_faster(q, q.shape[0], values.shape[-1])):
            return F.scaled_dot_product_attention(q, k, values, scale=self.scale)
        attn = q @ k.transpose(-1, -2)
        if self.scale != 1.0:  # 1 once fused: the scale is in the queries
            attn = attn * self.scale
        return attn.softmax(dim=-1) @ values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        # traces and scripts must stay valid at any input size: they always pad
        eager = not torch.jit.is_scripting() and self._eager()
        pad_b, pad_r = grid_padding(height, width, self.window_size)
        padded_h, padded_w = height + pad_b, width + pad_r
        if not torch.jit.is_scripting() and self._onnx_export():
            # ONNX graphs are NCHW, so conv outputs reach the windows through a transpose that ONNX Runtime merges
            # with the partition into one 8-D transpose per tensor, run element by element: 7 of 20 ms of emo2_1m.
            # As matmuls over the channels-last tokens, the outputs are channels-last already: emo2_1m ran 1.33x
            # faster in ONNX Runtime and 1.15x in OpenVINO (batch 1, 2 threads, Intel Xeon AVX-512; re-measure with
            # `emo bench`, with `HybridWindowAttention._onnx_export` patched to return False for the other export)
            tokens = F.pad(x.permute(0, 2, 3, 1), [0, 0, 0, pad_r, 0, pad_b])
            qk = pointwise_on_tokens(self.qk, tokens)
            v = self.act(pointwise_on_tokens(self.v, tokens))
        else:
            if not eager or pad_b or pad_r:
                x = F.pad(x, [0, pad_r, 0, pad_b])  # zeros, right and bottom
            # qk and v on the padded map, as the released model computes them, taken channels-last (B, H, W, C):
            # free for the channels-last maps of a fused model. Its oneDNN 1x1 convs (GELU fused into v) made the
            # whole fused emo2_1m/2m/5m 1.7-3.3% faster at batch 32 than matmuls over the token rows, and the same
            # (-0.2 to +1.3%) at batch 1 (Intel Xeon, AVX-512, 2 threads, interleaved A/B)
            qk = self.qk(x).permute(0, 2, 3, 1)
            v = self.act(self.v(x)).permute(0, 2, 3, 1)
        ws = self.window_size
        out = merge_windows(self._windows(qk, v, True, eager), batch, padded_h, padded_w, ws, strided=True)
        close = self._windows(qk, v, False, eager)
        if eager and not torch.is_grad_enabled():  # the sum in place, into the fresh map: one pass less
            out = merge_windows(close, batch, padded_h, padded_w, ws, strided=False, out=out)
        else:
            out = out + merge_windows(close, batch, padded_h, padded_w, ws, strided=False)
        return out[:, :height, :width].permute(0, 3, 1, 2)
