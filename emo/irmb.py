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

import warnings
from typing import Optional, Tuple, Type

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, SEModule, register_notrace_function

from .inference import FusedConv, is_eager

__all__ = [
    'IRMB',
    'GridAttention',
    'ConvBnAct',
    'grid_padding',
    'grid_partition',
    'grid_unpartition',
    'fold_bn_after',
    'fold_bn_before',
]


def _bn_affine(bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with ``bn(x) == x * scale + shift`` per channel, in eval mode (running statistics)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


@torch.no_grad()
def fold_bn_after(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv (with bias) computing ``bn(conv(x))`` with ``bn`` in eval mode (its running statistics)."""
    scale, shift = _bn_affine(bn)
    fused = _conv_like(conv, bias=True)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias.copy_(shift if conv.bias is None else conv.bias * scale + shift)
    return fused


@torch.no_grad()
def fold_bn_before(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """A conv computing ``conv(bn(x))`` with ``bn`` in eval mode; ``conv`` must be an ungrouped 1x1 conv, so no
    padding sees the BatchNorm's shift."""
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ValueError(f'a BatchNorm folds forward only into an ungrouped 1x1 conv, got {conv}')
    scale, shift = _bn_affine(bn)
    weight = conv.weight.flatten(1)
    fused = _conv_like(conv, bias=True)
    fused.weight.copy_((weight * scale).reshape_as(conv.weight))
    fused.bias.copy_(weight @ shift if conv.bias is None else conv.bias + weight @ shift)
    return fused


def _conv_like(conv: nn.Conv2d, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=bias,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )


def grid_padding(height: int, width: int, window_size: int) -> Tuple[int, int]:
    """(bottom, right) zero padding that makes ``height x width`` whole multiples of ``window_size``."""
    return (window_size - height % window_size) % window_size, (window_size - width % window_size) % window_size


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
    pad_b, pad_r = grid_padding(H, W, window_size)
    x = F.pad(x, [0, pad_r, 0, pad_b])
    n1 = (H + pad_b) // window_size
    n2 = (W + pad_r) // window_size
    x = x.reshape(B, C, window_size, n1, window_size, n2)
    return x.permute(0, 3, 5, 1, 2, 4).reshape(B * n1 * n2, C, window_size, window_size)


@register_notrace_function
def grid_unpartition(windows: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
    """Invert :func:`grid_partition` for ``batch`` images of ``height x width`` and crop the padding away."""
    _, C, window_size, _ = windows.shape
    n1 = (height + window_size - 1) // window_size
    n2 = (width + window_size - 1) // window_size
    x = windows.reshape(batch, n1, n2, C, window_size, window_size)
    x = x.permute(0, 3, 4, 1, 5, 2).reshape(batch, C, window_size * n1, window_size * n2)
    return x[:, :, :height, :width]


class GridAttention(nn.Module):
    """Multi-head self-attention inside the strided-grid windows of :func:`grid_partition`.

    Queries and keys come from one 1x1 conv (with bias; output channels ordered q|k, head, dim_head).
    The values are the input itself, split into heads: EMO applies attention to the normalised input and
    expands afterwards (the official ``attn_pre=True``). Padded tokens take part in the softmax unmasked,
    exactly as in the released model.
    """

    fused_attn = False  # class default: modules unpickled from before fuse() existed run unfused

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
        self.fused_attn = False  # set by fuse()

    def fuse(self) -> 'GridAttention':
        """Switch to the inference path (idempotent); returns ``self``."""
        self.fused_attn = True
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_attn:
            return self._forward_tokens(x)
        batch, height, width = x.shape[0], x.shape[2], x.shape[3]
        windows = grid_partition(x, self.window_size)
        # explicit sizes, no -1: torch.export then keeps batch, height and width symbolic
        num_windows, num_tokens = windows.shape[0], self.window_size * self.window_size
        qk = self.qk(windows).reshape(num_windows, 2, self.num_heads, self.dim_head, num_tokens)
        q = qk[:, 0].transpose(-1, -2)  # (G, heads, N, dim_head)
        k = qk[:, 1]  # (G, heads, dim_head, N): already transposed for q @ k^T
        v = windows.reshape(num_windows, self.num_heads, self.dim_head, num_tokens).transpose(-1, -2)
        # scale after the product, as the released model does, to stay bit-close to it
        attn = ((q @ k) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(-1, -2).reshape(windows.shape)
        return grid_unpartition(out, batch, height, width)

    @torch.jit.unused
    def _tracing(self) -> bool:
        return not is_eager()

    @torch.jit.unused
    def _few_heads(self, num_windows: int) -> bool:
        # eager CPU: below ~64 window-heads the fused kernel's setup costs more than it saves (measured on 2 cores)
        return is_eager() and num_windows * self.num_heads < 64

    def _forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The same attention computed token-major: windows as (G, N, C) rows, qk as one matmul, and heads whose
        last dim is contiguous, which is the layout channels-last maps already have and the one
        ``scaled_dot_product_attention``'s fused CPU and GPU kernels take. Used after :meth:`fuse`."""
        batch, channels, height, width = x.shape
        ws = self.window_size
        pad_b, pad_r = grid_padding(height, width, ws)
        n1 = (height + pad_b) // ws
        n2 = (width + pad_r) // ws
        num_windows, num_tokens = batch * n1 * n2, ws * ws
        tokens = x.permute(0, 2, 3, 1)  # (B, H, W, C); free for channels-last
        # eager skips a zero pad (a full copy); traces and scripts always pad, to stay valid at any input size
        if torch.jit.is_scripting() or self._tracing() or pad_b or pad_r:
            tokens = F.pad(tokens, [0, 0, 0, pad_r, 0, pad_b])
        windows = tokens.reshape(batch, ws, n1, ws, n2, channels).permute(0, 2, 4, 1, 3, 5)
        windows = windows.reshape(num_windows, num_tokens, channels)
        qk = F.linear(windows, self.qk.weight.reshape(2 * channels, channels), self.qk.bias)
        qk = qk.reshape(num_windows, num_tokens, 2, self.num_heads, self.dim_head).permute(2, 0, 3, 1, 4)
        v = windows.reshape(num_windows, num_tokens, self.num_heads, self.dim_head).transpose(1, 2)
        if not torch.jit.is_scripting() and self._few_heads(num_windows):
            attn = (qk[0] @ qk[1].transpose(-1, -2) * self.scale).softmax(dim=-1)
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(qk[0], qk[1], v, scale=self.scale)
        out = out.transpose(1, 2).reshape(batch, n1, n2, ws, ws, channels).permute(0, 3, 1, 4, 2, 5)
        out = out.reshape(batch, n1 * ws, n2 * ws, channels)[:, :height, :width]
        return out.permute(0, 3, 1, 2)


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

    def fuse(self) -> FusedConv:
        """The layer for inference: one :class:`~emo.inference.FusedConv` with the BatchNorm folded in."""
        return FusedConv.from_conv(fold_bn_after(self.conv, self.bn), self.act)


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

    fused = False  # class default: modules unpickled from before fuse() existed run unfused

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
        self.fused = False  # set by fuse()

    def fuse(self) -> 'IRMB':
        """Fuse for inference (idempotent; returns ``self``, as ``timm.utils.reparameterize_model`` expects).

        The input BatchNorm folds into the 1x1 ``v`` conv of blocks without attention (attention blocks use
        LayerNorm and take the normalised map itself as values, so nothing folds there), the depthwise conv
        takes in its BatchNorm, and every conv becomes a :class:`~emo.inference.FusedConv` that applies its
        activation itself. Outputs match the unfused block to fp32 rounding.
        """
        if self.training:
            warnings.warn(
                'fusing an iRMB in training mode: BatchNorm running statistics are folded in as they are now; '
                'call model.eval() first (and fine-tune the unfused model)',
                stacklevel=2,
            )
        self.fused = True
        if isinstance(self.v, nn.Conv2d):
            v = self.v
            if isinstance(self.norm, nn.BatchNorm2d) and isinstance(self.attn, nn.Identity):
                v = fold_bn_before(self.norm, v)
                self.norm = nn.Identity()
            self.v = FusedConv.from_conv(v, self.act)
            self.act = nn.Identity()
        if isinstance(self.conv_local, ConvBnAct):
            self.conv_local = self.conv_local.fuse()
        if isinstance(self.proj, nn.Conv2d):
            self.proj = FusedConv.from_conv(self.proj)
        if isinstance(self.attn, GridAttention):
            self.attn.fuse()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(x)
        x = self.attn(x)
        x = self.act(self.v(x))
        # fused and without autograd, the residual sums go into the fresh conv outputs: on small CPUs a new large
        # map costs more in page faults than the add itself (forward hooks on conv_local / proj then see the sums)
        inplace = self.fused and not torch.is_grad_enabled()
        if self.has_skip:
            y = self.se(self.conv_local(x))
            x = y.add_(x) if inplace else x + y
        else:
            x = self.se(self.conv_local(x))
        x = self.proj(x)
        if self.has_skip:
            x = self.drop_path(x)
            x = x.add_(shortcut) if inplace else shortcut + x
        return x
