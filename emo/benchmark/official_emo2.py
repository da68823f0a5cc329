"""The official EMOv2 computation, rebuilt from the facts in shared/design/emov2-spec.md, as the benchmark's baseline.

``OfficialEMO2`` does what the released code (github.com/zhangzjn/EMOv2 at 582a96f, ``model/lib_emo/emo2.py`` and
``basic_modules.py``, the ``EMO2_*_k5_hybrid`` constructors) does in eval mode, step for step, and takes the official
state dicts as they are (same module names, ``load_state_dict(strict=True)``):

- every conv is a conv / norm / activation trio with separate BatchNorm, never folded; SiLU runs in place, GELU
  (timm's, which ignores ``inplace``) does not;
- LayerNorm over channels (stages 3-4, the final norm) permutes to NHWC, copies, normalises, permutes back and copies
  again;
- every block: norm, its one "efficient operator", the depthwise 5x5 conv trio (BatchNorm + SiLU in every stage),
  the inner residual where the block has a shortcut, the 1x1 projection, then the layer scale as an in-place
  ``mul_`` by ``gamma`` (1, C, 1, 1) -- in every block, also the downsampling ones -- and the outer residual;
- the hybrid window attention zero-pads the normed map right / bottom to whole windows, copies the padded map into
  both partitions (the remote strided grid and the close contiguous windows) although it only reads their shapes,
  runs the 1x1 ``qk`` conv on the whole padded map, copies it into both partitions and each of those head-major
  (q|k first, then heads), multiplies q by k^T, scales, soft-maxes (padded tokens unmasked); runs ``v`` (1x1 conv +
  GELU) on the whole padded map, copies it into both partitions and each head-major, applies each attention, copies
  each result channel-major and back into the image through its own partition, adds the two and crops (with a copy);
- the head normalises, takes the mean over H x W (and copies), and applies the Linear.

It is not part of the model zoo. It exists so that ``emo bench`` can time our EMOv2 against the official arithmetic
on the same weights and check that both give the same outputs, on machines where the official code (which needs
einops, torchvision and its training framework's registry) does not install.
"""

from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.variants import get_variant
from .official import OfficialNet, _ConvNormAct, _norm

__all__ = ['OfficialEMO2', 'official_emo2']

_KERNEL = 5  # the depthwise kernel of every stage in the k5 models
_NORMS = ('bn', 'bn', 'ln', 'ln')
_ACTS = ('silu', 'silu', 'gelu', 'gelu')


class _ConvOp(nn.Module):
    """The 1x1-conv operator; the official code nests its trio one level deeper, as ``net``."""

    def __init__(self, dim_in: int, dim_mid: int, act: str):
        super().__init__()
        self.net = _ConvNormAct(dim_in, dim_mid, 1, bias=True, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _to_windows(x: torch.Tensor, n1: int, n2: int, remote: bool) -> torch.Tensor:
    """Copied into windows: remote 'b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1' (window (i, j) holds pixels
    (i + n1 a, j + n2 b)), close 'b c (n1 h1) (n2 w1) -> (b n1 n2) c h1 w1' (pixels (w i + a, w j + b))."""
    B, C, H, W = x.shape
    if remote:
        x = x.reshape(B, C, H // n1, n1, W // n2, n2).permute(0, 3, 5, 1, 2, 4)
    else:
        x = x.reshape(B, C, n1, H // n1, n2, W // n2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B * n1 * n2, C, H // n1, W // n2).contiguous()


def _from_windows(x: torch.Tensor, n1: int, n2: int, remote: bool) -> torch.Tensor:
    """Copied back: the inverse of :func:`_to_windows`, '(b n1 n2) c h1 w1 -> b c (h1 n1) (w1 n2)' (remote) or
    '-> b c (n1 h1) (n2 w1)' (close)."""
    b, c, h, w = x.shape
    x = x.reshape(b // (n1 * n2), n1, n2, c, h, w)
    x = x.permute(0, 3, 4, 1, 5, 2) if remote else x.permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b // (n1 * n2), c, h * n1, w * n2).contiguous()


class _HybridAttention(nn.Module):
    """The official ``EW_MHSA_Hybrid`` with ``attn_pre=False``: remote + close window attention on shared qk, v."""

    def __init__(self, dim_in: int, dim_mid: int, act: str, dim_head: int, window_size: int):
        super().__init__()
        self.dim_head = dim_head
        self.num_heads = dim_in // dim_head
        self.window_size = window_size
        self.scale = dim_head**-0.5
        self.qk = _ConvNormAct(dim_in, dim_in * 2, 1, bias=True)
        self.v = _ConvNormAct(dim_in, dim_mid, 1, bias=True, act=act)

    def _attend(self, qk: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention within each window of one partition; in and out channel-major (b, c, h, w)."""
        b, _, h, w = qk.shape
        # 'b (qk heads dim_head) h w -> qk b heads (h w) dim_head'
        qk = qk.reshape(b, 2, self.num_heads, self.dim_head, h * w).permute(1, 0, 2, 4, 3).contiguous()
        attn = ((qk[0] @ qk[1].transpose(-2, -1)) * self.scale).softmax(dim=-1)
        # 'b (heads dim_head) h w -> b heads (h w) dim_head': v's heads are mid / heads channels wide
        v = v.reshape(b, self.num_heads, -1, h * w).permute(0, 1, 3, 2).contiguous()
        x = attn @ v
        # 'b heads (h w) dim_head -> b (heads dim_head) h w'
        return x.permute(0, 1, 3, 2).reshape(b, -1, h, w).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, H, W = x.shape
        ws = self.window_size
        pad_r, pad_b = (ws - W % ws) % ws, (ws - H % ws) % ws
        x = F.pad(x, (0, pad_r, 0, pad_b))
        n1, n2 = (H + pad_b) // ws, (W + pad_r) // ws
        # the official code copies the padded map into both partitions and reads nothing but their shape; the copies
        # are kept because they are part of what it costs
        _to_windows(x, n1, n2, remote=True)
        _to_windows(x, n1, n2, remote=False)
        qk = self.qk(x)
        v = self.v(x)
        remote, close = (
            _from_windows(self._attend(_to_windows(qk, n1, n2, r), _to_windows(v, n1, n2, r)), n1, n2, r)
            for r in (True, False)
        )
        x = remote + close
        # the official code crops (and copies) only when it padded; without padding both are no-ops, and doing
        # them unconditionally keeps traces (ONNX export) valid for every input size
        return x[:, :, :H, :W].contiguous()


class _LayerScale(nn.Module):
    """``x * gamma`` in place, as the official ``LayerScale2D`` (``inplace=True``) does."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul_(self.gamma)


class _Block(nn.Module):
    """The official ``iiRMB`` with one efficient operator (``eops.0``)."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        exp_ratio: float,
        norm: str,
        act: str,
        stride: int,
        dim_head: Optional[int],
        window_size: int,
        attn: bool,
        skip: bool,
    ):
        super().__init__()
        dim_mid = int(dim_in * exp_ratio)
        self.norm = _norm(norm, dim_in)
        self.has_skip = skip and dim_in == dim_out and stride == 1
        op = _HybridAttention(dim_in, dim_mid, act, dim_head, window_size) if attn else _ConvOp(dim_in, dim_mid, act)
        self.eops = nn.ModuleList([op])
        self.conv_local = _ConvNormAct(dim_mid, dim_mid, _KERNEL, stride, groups=dim_mid, norm='bn', act='silu')
        self.proj = _ConvNormAct(dim_mid, dim_out, 1)
        self.ls = _LayerScale(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.eops[0](self.norm(x))
        x = x + self.conv_local(x) if self.has_skip else self.conv_local(x)
        x = self.ls(self.proj(x))
        return shortcut + x if self.has_skip else x


class OfficialEMO2(OfficialNet):
    """EMOv2 computed as the official code computes it (module names included); returns logits."""

    def __init__(
        self,
        depths: Sequence[int],
        widths: Sequence[int],
        exp_ratios: Sequence[float],
        dim_heads: Sequence[Optional[int]],
        window_size: int = 7,
        num_classes: int = 1000,
    ):
        super().__init__()
        stem_dim = widths[0] // 2
        self.stage0 = nn.ModuleList(
            [
                _ConvNormAct(3, stem_dim, 3, 2, bias=True, norm='bn', act='silu'),
                _ConvNormAct(stem_dim, stem_dim, 3, 1, groups=stem_dim, norm='bn', act='silu'),
                _ConvNormAct(stem_dim, stem_dim, 1),
            ]
        )
        self._add_stages(
            stem_dim,
            depths,
            widths,
            exp_ratios,
            num_classes,
            lambda i, dim_in, dim_out, exp_ratio, first: _Block(
                dim_in,
                dim_out,
                exp_ratio,
                _NORMS[i],
                _ACTS[i],
                2 if first else 1,
                dim_heads[i],
                window_size,
                attn=i >= 2 and not first,
                skip=not first,
            ),
        )


def official_emo2(variant: str, state_dict: Optional[Dict[str, torch.Tensor]] = None) -> OfficialEMO2:
    """An :class:`OfficialEMO2` for ``'emo2_1m'``, ``'emo2_2m'``, ``'emo2_5m'``, ``'emo2_5m_512'`` (window 8) or
    ``'emo2_20m'``, in eval mode, loaded from an official-layout state dict when one is given (strictly: every key
    must match)."""
    v = get_variant(variant)
    if v.family != 'emo2':
        raise ValueError(f'{variant!r} is not an EMOv2 variant; the official EMO arithmetic is emo.benchmark.official')
    model = OfficialEMO2(v.depths, v.widths, v.exp_ratios, v.dim_heads, v.window_size)
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True)
    return model.eval()
