"""The Inverted Residual Mobile Block (iRMB), the only block EMO is built from.

An iRMB is an inverted residual whose expansion is a 1x1 conv ("v"), optionally preceded by
windowed self-attention on the block's normalised input, followed by a depthwise conv with its
own BatchNorm + SiLU and a 1x1 projection:

    x = norm(s)
    x = attention(x)                       # attention blocks only: grid windows, values = x itself
    x = act(v(x))                          # 1x1 expansion C -> mid
    x = x + dw(x)  (or dw(x) without skip) # depthwise k x k conv + BN + SiLU
    x = proj(x)                            # 1x1 projection mid -> C_out
    out = s + drop_path(x)  (or x without skip)

The numbers and the exact arithmetic of the released weights are documented in docs/architecture.md.
"""

from typing import Optional, Type

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, SEModule, register_notrace_function

__all__ = ['IRMB', 'GridAttention', 'ConvBnAct', 'grid_partition', 'grid_unpartition']


@register_notrace_function
def grid_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Zero-pad NCHW ``x`` to multiples of ``window_size`` and split it into a strided grid of windows.

    With ``n1 = H_pad / window_size`` and ``n2 = W_pad / window_size``, window ``(i, j)`` holds the pixels
    ``(i + n1 * a, j + n2 * b)`` for ``a, b`` in ``0..window_size-1``: every window spans the whole image
    (a dilated grid), which is what the released weights were trained with, not contiguous Swin windows.

    Returns ``(B * n1 * n2, C, window_size, window_size)``. A leaf for torch.fx: its shape arithmetic
    stays out of traced graphs.
    """
    B, C, H, W = x.shape
    pad_b = (window_size - H % window_size) % window_size
    pad_r = (window_size - W % window_size) % window_size
    x = F.pad(x, [0, pad_r, 0, pad_b])
    n1 = (H + pad_b) // window_size
    n2 = (W + pad_r) // window_size
    x = x.reshape(B, C, window_size, n1, window_size, n2)
    return x.permute(0, 3, 5, 1, 2, 4).reshape(B * n1 * n2, C, window_size, window_size)


@register_notrace_function
def grid_unpartition(windows: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Invert :func:`grid_partition` for an image of ``height x width`` and crop the padding away."""
    G, C, window_size, _ = windows.shape
    n1 = (height + window_size - 1) // window_size
    n2 = (width + window_size - 1) // window_size
    x = windows.reshape(G // (n1 * n2), n1, n2, C, window_size, window_size)
    x = x.permute(0, 3, 4, 1, 5, 2).reshape(-1, C, window_size * n1, window_size * n2)
    return x[:, :, :height, :width]


class GridAttention(nn.Module):
    """Multi-head self-attention inside the strided-grid windows of :func:`grid_partition`.

    Queries and keys come from one 1x1 conv (with bias; output channels ordered q|k, head, dim_head).
    The values are the input itself, split into heads: EMO applies attention to the normalised input and
    expands afterwards (the official ``attn_pre=True``). Padded tokens take part in the softmax unmasked,
    exactly as in the released model.
    """

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
        self.qk = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=qk_bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        windows = grid_partition(x, self.window_size)
        num_tokens = self.window_size * self.window_size
        qk = self.qk(windows).reshape(-1, 2, self.num_heads, self.dim_head, num_tokens)
        q = qk[:, 0].transpose(-1, -2)  # (G, heads, N, dim_head)
        k = qk[:, 1]  # (G, heads, dim_head, N): already transposed for q @ k^T
        v = windows.reshape(-1, self.num_heads, self.dim_head, num_tokens).transpose(-1, -2)
        # scale after the product, as the released model does, to stay bit-close to it
        attn = ((q @ k) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(-1, -2).reshape(windows.shape)
        return grid_unpartition(out, height, width)


class ConvBnAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation, with symmetric 'same' padding."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        act_layer: Type[nn.Module] = nn.SiLU,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False, **dd
        )
        self.bn = nn.BatchNorm2d(out_chs, eps=1e-6, **dd)
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class IRMB(nn.Module):
    """Inverted Residual Mobile Block.

    Args:
        in_chs: input width.
        out_chs: output width.
        exp_ratio: expansion of the 1x1 ``v`` conv, ``mid = int(in_chs * exp_ratio)``; with ``exp_ratio == 1``
            and no attention ``v`` is left out (the stem block).
        kernel_size: depthwise kernel size.
        stride: depthwise stride; a stride-2 block has no shortcuts.
        norm_layer: 'bn', 'ln' or None (no input norm, the stem block).
        act_layer: activation after ``v``.
        dim_head: head width; ``None`` makes a block without attention.
        window_size: side of the attention windows.
        se_ratio: squeeze-excite after the depthwise conv (reduction ratio), 0 for none.
        skip: allow shortcuts (they also need ``in_chs == out_chs`` and stride 1).
        drop_path: stochastic depth rate of the outer shortcut.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        exp_ratio: float = 1.0,
        kernel_size: int = 3,
        stride: int = 1,
        norm_layer: Optional[str] = 'bn',
        act_layer: Type[nn.Module] = nn.SiLU,
        dim_head: Optional[int] = None,
        window_size: int = 7,
        qk_bias: bool = True,
        se_ratio: float = 0.0,
        skip: bool = True,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        mid_chs = int(in_chs * exp_ratio)
        self.has_skip = skip and in_chs == out_chs and stride == 1

        if norm_layer == 'bn':
            self.norm = nn.BatchNorm2d(in_chs, eps=1e-6, **dd)
        elif norm_layer == 'ln':
            self.norm = LayerNorm2d(in_chs, eps=1e-6, **dd)
        elif norm_layer is None:
            self.norm = nn.Identity()
        else:
            raise ValueError(f"norm_layer must be 'bn', 'ln' or None, got {norm_layer!r}")

        if dim_head is not None:
            self.attn = GridAttention(in_chs, dim_head, window_size=window_size, qk_bias=qk_bias, **dd)
        else:
            self.attn = nn.Identity()

        if dim_head is not None or mid_chs != in_chs:
            self.v = nn.Conv2d(in_chs, mid_chs, kernel_size=1, bias=True, **dd)
            self.act = act_layer()
        else:
            self.v = nn.Identity()
            self.act = nn.Identity()

        self.conv_local = ConvBnAct(mid_chs, mid_chs, kernel_size, stride, groups=mid_chs, **dd)
        if se_ratio > 0:
            self.se = SEModule(mid_chs, rd_channels=int(mid_chs * se_ratio), act_layer=nn.SiLU, **dd)
        else:
            self.se = nn.Identity()
        self.proj = nn.Conv2d(mid_chs, out_chs, kernel_size=1, bias=False, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(x)
        x = self.attn(x)
        x = self.act(self.v(x))
        if self.has_skip:
            x = x + self.se(self.conv_local(x))
        else:
            x = self.se(self.conv_local(x))
        x = self.proj(x)
        if self.has_skip:
            x = shortcut + self.drop_path(x)
        return x
