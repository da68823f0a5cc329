"""The official EMO computation, rebuilt from the facts in docs/architecture.md, as the benchmark's baseline.

``OfficialEMO`` does what the released code (github.com/zhangzjn/EMO, ``model/emo.py``) does, step for step,
and takes the official state dicts as they are (same module names, ``load_state_dict(strict=True)``):

- every conv is a conv / norm / activation trio with separate BatchNorm, never folded;
- LayerNorm over channels permutes to NHWC, copies, normalises, permutes back and copies again;
- attention pads the normed map, copies it into strided-grid windows, runs the 1x1 qk conv on the windows,
  copies q and k head-major, multiplies, scales, soft-maxes, copies the values head-major, applies the
  attention, copies back, runs ``v``, copies the windows back into the image and crops (with a copy);
- activations run in place where the official code sets ``inplace=True``.

It is not part of the model zoo: :mod:`emo.models.emo` is the implementation to use. It exists so that
``emo bench`` can time our model against the official arithmetic on the same weights and check that both give
the same outputs, on machines where the official code (which needs timm 0.6 and einops) does not install.
"""

import math
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.variants import get_variant

__all__ = ['OfficialEMO', 'official_emo']

_EPS = 1e-6


class _ChannelLayerNorm(nn.Module):
    """LayerNorm over channels the official way: NHWC copy, ``nn.LayerNorm``, NCHW copy."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x.permute(0, 2, 3, 1).contiguous())
        return x.permute(0, 3, 1, 2).contiguous()


def _norm(kind: str, dim: int) -> nn.Module:
    return {'bn': lambda: nn.BatchNorm2d(dim, eps=_EPS), 'ln': lambda: _ChannelLayerNorm(dim)}[kind]()


def _act(kind: str) -> nn.Module:
    return {'silu': lambda: nn.SiLU(inplace=True), 'gelu': nn.GELU, 'none': nn.Identity}[kind]()


class _ConvNormAct(nn.Module):
    def __init__(self, dim_in, dim_out, kernel_size, stride=1, groups=1, bias=False, norm='none', act='none'):
        super().__init__()
        padding = math.ceil((kernel_size - stride) / 2)
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size, stride, padding, groups=groups, bias=bias)
        self.norm = _norm(norm, dim_out) if norm != 'none' else nn.Identity()
        self.act = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class _SqueezeExcite(nn.Module):
    def __init__(self, dim: int, rd_dim: int, act: str):
        super().__init__()
        self.conv_reduce = nn.Conv2d(dim, rd_dim, 1, bias=True)
        self.act = _act(act)
        self.conv_expand = nn.Conv2d(rd_dim, dim, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.conv_expand(self.act(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * gate.sigmoid()


class _Block(nn.Module):
    def __init__(self, dim_in, dim_out, exp_ratio, norm, act, kernel_size, stride, dim_head, attn, skip, se_ratio=0.0):
        super().__init__()
        dim_mid = int(dim_in * exp_ratio)
        self.norm = _norm(norm, dim_in) if norm != 'none' else nn.Identity()
        self.has_skip = skip and dim_in == dim_out and stride == 1
        self.attn = attn
        if attn:
            self.dim_head = dim_head
            self.num_heads = dim_in // dim_head
            self.scale = dim_head**-0.5
            self.qk = _ConvNormAct(dim_in, dim_in * 2, 1, bias=True)
        if attn or exp_ratio != 1:
            self.v = _ConvNormAct(dim_in, dim_mid, 1, bias=True, act=act)
        else:
            self.v = nn.Identity()
        self.conv_local = _ConvNormAct(dim_mid, dim_mid, kernel_size, stride, groups=dim_mid, norm='bn', act='silu')
        self.se = _SqueezeExcite(dim_mid, int(dim_mid * se_ratio), act) if se_ratio > 0 else nn.Identity()
        self.proj = _ConvNormAct(dim_mid, dim_out, 1)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        ws = 7
        pad_r, pad_b = (ws - W % ws) % ws, (ws - H % ws) % ws
        x = F.pad(x, (0, pad_r, 0, pad_b))
        n1, n2 = (H + pad_b) // ws, (W + pad_r) // ws
        # '(b) c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1': the strided grid
        x = x.reshape(B, C, ws, n1, ws, n2).permute(0, 3, 5, 1, 2, 4).reshape(B * n1 * n2, C, ws, ws).contiguous()
        b, c, h, w = x.shape
        qk = self.qk(x)
        qk = qk.reshape(b, 2, self.num_heads, self.dim_head, h * w).permute(1, 0, 2, 4, 3).contiguous()
        q, k = qk[0], qk[1]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = x.reshape(b, self.num_heads, self.dim_head, h * w).transpose(-1, -2).contiguous()
        x = (attn @ x).transpose(-1, -2).reshape(b, c, h, w).contiguous()
        x = self.v(x)
        c = x.shape[1]
        x = x.reshape(B, n1, n2, c, ws, ws).permute(0, 3, 4, 1, 5, 2).reshape(B, c, ws * n1, ws * n2).contiguous()
        # the official code crops (and copies) only when it padded; without padding both are no-ops, and doing
        # them unconditionally keeps traces (ONNX export) valid for every input size
        return x[:, :, :H, :W].contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(x)
        x = self._attention(x) if self.attn else self.v(x)
        x = x + self.se(self.conv_local(x)) if self.has_skip else self.se(self.conv_local(x))
        x = self.proj(x)
        return shortcut + x if self.has_skip else x


class _PatchEmbed(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(dim_in, dim_out, 3, 2, 1), nn.BatchNorm2d(dim_out, eps=_EPS))]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs[0](x)


class OfficialNet(nn.Module):
    """What the official EMO and EMOv2 models share: ``stage0`` (the stem) then ``stage1..4`` of blocks, whose first
    block downsamples with twice the expansion, a LayerNorm over channels, the mean over H x W and a Linear."""

    def _add_stages(
        self,
        in_dim: int,
        depths: Sequence[int],
        widths: Sequence[int],
        exp_ratios: Sequence[float],
        num_classes: int,
        make_block: Callable[..., nn.Module],
    ) -> None:
        """``make_block(stage, dim_in, dim_out, exp_ratio, first)`` for every block, then the norm and the head."""
        dim_prev = in_dim
        for i, depth in enumerate(depths):
            blocks: List[nn.Module] = []
            for j in range(depth):
                first = j == 0
                blocks.append(make_block(i, dim_prev, widths[i], exp_ratios[i] * 2 if first else exp_ratios[i], first))
                dim_prev = widths[i]
            setattr(self, f'stage{i + 1}', nn.ModuleList(blocks))
        self.norm = _ChannelLayerNorm(widths[-1])
        self.head = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The raw output of stage 4 (before the final norm)."""
        for stage in (self.stage0, self.stage1, self.stage2, self.stage3, self.stage4):
            for block in stage:
                x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.forward_features(x))
        return self.head(x.mean((2, 3)).contiguous())


class OfficialEMO(OfficialNet):
    """EMO computed as the official code computes it (module names included); returns logits."""

    def __init__(
        self,
        depths: Sequence[int],
        widths: Sequence[int],
        exp_ratios: Sequence[float],
        dim_heads: Sequence[int],
        num_classes: int = 1000,
        stem_dim: int = 24,
    ):
        super().__init__()
        norms, acts, kernels = ('bn', 'bn', 'ln', 'ln'), ('silu', 'silu', 'gelu', 'gelu'), (3, 3, 5, 5)
        self.stage0 = nn.ModuleList(
            [
                _PatchEmbed(3, stem_dim),
                _Block(stem_dim, stem_dim, 1, 'none', 'silu', 3, 1, None, False, False, se_ratio=1.0),
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
                norms[i],
                acts[i],
                kernels[i],
                2 if first else 1,
                dim_heads[i],
                attn=i >= 2 and not first,
                skip=not first,
            ),
        )


def official_emo(variant: str, state_dict: Dict[str, torch.Tensor] = None) -> OfficialEMO:
    """An :class:`OfficialEMO` for ``'emo_1m'`` ... ``'emo_6m'``, in eval mode, loaded from an official-layout
    state dict when one is given (strictly: every key must match)."""
    v = get_variant(variant)
    model = OfficialEMO(v.depths, v.widths, v.exp_ratios, v.dim_heads)
    if state_dict is not None:
        model.load_state_dict(state_dict, strict=True)
    return model.eval()


class _FirstOutput(nn.Module):
    """The official model returns ``{'out': logits, 'out_kd': logits}``; this returns the logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)['out']


def load_official_code(repo_dir: Union[str, Path], variant: str, state_dict: Dict[str, torch.Tensor]) -> nn.Module:
    """The official implementation itself, from a clone of github.com/zhangzjn/EMO at ``repo_dir``, in eval mode.

    It was written for timm 0.6: the modules it imports from there are pointed at their timm 1.x homes, and its
    ``model`` package is loaded without its ``__init__`` (which pulls in the training framework). Needs
    ``einops``. Nothing of it is part of this package; it is only timed.
    """
    import importlib
    import sys
    import types

    model_dir = Path(repo_dir) / 'model'
    if not (model_dir / 'emo.py').is_file():
        raise ValueError(f'{repo_dir} is not a clone of github.com/zhangzjn/EMO: {model_dir / "emo.py"} is missing')
    try:
        import einops  # noqa: F401
    except ImportError:
        raise ValueError('the official code needs einops: pip install einops') from None
    from timm.layers import activations, weight_init
    from timm.models import _efficientnet_blocks, _efficientnet_builder

    for name, module in {
        'timm.models.layers.activations': activations,
        'timm.models.layers.weight_init': weight_init,
        'timm.models.efficientnet_blocks': _efficientnet_blocks,
        'timm.models.efficientnet_builder': _efficientnet_builder,
    }.items():
        sys.modules.setdefault(name, module)
    try:
        import cv2  # noqa: F401  (imported, unused, by the official basic_modules.py)
    except ImportError:
        sys.modules.setdefault('cv2', types.ModuleType('cv2'))
    package = types.ModuleType('model')
    package.__path__ = [str(model_dir)]
    package.MODEL = types.SimpleNamespace(register_module=lambda fn: fn)
    sys.modules['model'] = package
    try:
        official = importlib.import_module('model.emo')
    finally:
        for name in [n for n in sys.modules if n == 'model' or n.startswith('model.')]:
            del sys.modules[name]
    model = getattr(official, 'EMO_' + variant.split('_')[1].upper())()
    model.load_state_dict(state_dict, strict=True)
    return _FirstOutput(model).eval()
