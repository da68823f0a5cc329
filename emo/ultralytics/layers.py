"""The YAML layers of :mod:`emo.ultralytics`: iRMB stacks, C2f and C3k2 with iRMB blocks, and the EMO backbone.

Each layer class says how Ultralytics' ``parse_model`` should treat it through its ``parsed_as`` class (C2f or
C3k2): see :class:`_ParsedAs` and :mod:`emo.ultralytics.parsing`, which registers them.
"""

import threading
from pathlib import Path
from typing import Callable, List, Optional, Union

import torch
import torch.nn as nn
from ultralytics.nn.modules import C2f, C3k2, Conv
from ultralytics.nn.modules.block import PSABlock

from ..models import IRMB
from ..models.variants import get_variant
from ..weights import create_with_weights

__all__ = [
    'iRMB', 'i2RMB', 'C2f_iRMB', 'C2f_i2RMB', 'C3k2_iRMB', 'C3k2_i2RMB', 'C3k_iRMB', 'EMOBackbone',
    'attention_dim_head',
]  # fmt: skip

_NORMS = ('bn', 'ln')


class _Parsing(threading.local):
    depth = 0  # > 0 while the wrapped parse_model runs in this thread


_parsing = _Parsing()


class _ParsedAs(type):
    """Metaclass of YAML layers that Ultralytics should treat like the class in their ``parsed_as``.

    Inside the wrapped ``parse_model`` such a class compares equal to ``parsed_as``, so its membership tests
    (``m in base_modules``, ``m in repeat_modules``) succeed; outside it compares equal only to itself. The hash is
    that of ``parsed_as`` throughout, because a hash may not change while a class sits in a set or dict.
    """

    def __eq__(cls, other: object) -> bool:
        return cls is other or (_parsing.depth > 0 and other is cls.parsed_as)

    def __hash__(cls) -> int:
        return hash(cls.parsed_as)


def attention_dim_head(channels: int, dim_head: int) -> int:
    """The head width closest to ``dim_head`` that divides ``channels``: width scaling gives any multiple of 8
    (of 4 inside a C2f), so the number of heads is ``round(channels / dim_head)`` lowered to a divisor."""
    heads = max(1, round(channels / dim_head))
    while channels % heads:
        heads -= 1
    return channels // heads


def _irmb(
    in_chs: int,
    out_chs: int,
    exp_ratio: float,
    dim_head: Optional[int],
    window_size: int,
    kernel_size: int,
    norm: str,
    shortcut: bool = True,
    emo2: bool = False,
) -> IRMB:
    if norm not in _NORMS:
        raise ValueError(f'norm must be one of {_NORMS}, got {norm!r}')
    # EMOv2's i2RMB: hybrid window attention and a layer scale, at the official training init
    v2 = dict(attn_layer='hybrid', layer_scale_init=1e-6) if emo2 else {}
    return IRMB(
        in_chs,
        out_chs,
        exp_ratio=exp_ratio,
        kernel_size=kernel_size,
        norm_layer=norm,
        act_layer=nn.SiLU,  # YOLOv8's activation
        dim_head=attention_dim_head(in_chs, dim_head) if dim_head else None,
        window_size=window_size,
        skip=shortcut,
        **v2,
    )


class iRMB(nn.Sequential, metaclass=_ParsedAs):  # noqa: N801 - the name used in YAMLs and in the paper
    """``n`` iRMBs with grid-window attention: the first maps ``c1 -> c2``, the others keep ``c2``.

    An iRMB has both its shortcuts (around the depthwise conv and around the block) where input and output
    widths agree, so ``[-1, 1, iRMB, [c]]`` after a layer of width ``c`` is a residual attention layer.

    Args:
        c1: input channels (from Ultralytics).
        c2: output channels (the YAML's, scaled by width like a Conv's or C2f's).
        n: number of blocks (the YAML's repeats, scaled by depth).
        exp_ratio: expansion of each block's 1x1 conv.
        dim_head: target attention head width, adjusted to divide the width (:func:`attention_dim_head`);
            0 or None for blocks without attention.
        window_size: side of the strided-grid attention windows.
        kernel_size: depthwise kernel.
        norm: 'bn' (BatchNorm) or 'ln' (LayerNorm over channels) before each block.
    """

    parsed_as = C2f  # Ultralytics: c1 in, c2 scaled by width, repeats scaled by depth and passed as n
    emo2 = False  # EMOv2's block (i2RMB)

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        exp_ratio: float = 2.0,
        dim_head: Optional[int] = 32,
        window_size: int = 7,
        kernel_size: int = 3,
        norm: str = 'bn',
    ):
        super().__init__(
            *(
                _irmb(c1 if i == 0 else c2, c2, exp_ratio, dim_head, window_size, kernel_size, norm, emo2=self.emo2)
                for i in range(n)
            )
        )


class i2RMB(iRMB):  # noqa: N801 - the name used in YAMLs and in the EMOv2 paper
    """``n`` EMOv2 blocks (i2RMB): :class:`iRMB`'s arguments, with hybrid window attention and layer scale.

    The values are expanded by ``exp_ratio`` before the attention and split into as many heads as the queries, so
    ``int(c2 * exp_ratio)`` must divide into them (it does for integer ``exp_ratio``).
    """

    emo2 = True


class _SplitConcat(nn.Module, metaclass=_ParsedAs):
    """C2f's layout: a 1x1 conv to ``2c`` channels (``c = c2 * e``), split in halves, ``n`` blocks ``c -> c`` one
    after another on the second half, and a 1x1 conv fusing all ``2 + n`` maps to ``c2``.

    The 1x1 convs are Ultralytics' ``Conv`` (conv, BN, SiLU), so ``model.fuse()`` folds them as in a C2f.
    """

    parsed_as = C2f
    emo2 = False  # EMOv2's block (i2RMB) in place of EMO's

    def __init__(self, c1: int, c2: int, n: int, e: float, block: Callable[[int], nn.Module]):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(block(self.c) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = list(self.cv1(x).chunk(2, 1))
        for block in self.m:
            maps.append(block(maps[-1]))
        return self.cv2(torch.cat(maps, 1))


class C2f_iRMB(_SplitConcat):  # noqa: N801 - the name used in YAMLs
    """C2f with iRMB bottlenecks (C2f's layout, ``n`` IRMB blocks ``c -> c``); YAML args as C2f's, then the iRMB's.

    Args:
        c1, c2, n: input and output channels and bottleneck count, scaled by Ultralytics as for C2f.
        shortcut: iRMB shortcuts. Unlike C2f the default is on, also in the neck: an iRMB without shortcuts loses
            its depthwise residual as well.
        exp_ratio, dim_head, window_size, kernel_size, norm: the iRMBs' settings (see :class:`iRMB`).
        e: hidden width ratio, as in C2f.
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        shortcut: bool = True,
        exp_ratio: float = 2.0,
        dim_head: Optional[int] = 32,
        window_size: int = 7,
        kernel_size: int = 3,
        norm: str = 'bn',
        e: float = 0.5,
    ):
        def block(c: int) -> IRMB:
            return _irmb(c, c, exp_ratio, dim_head, window_size, kernel_size, norm, shortcut, self.emo2)

        super().__init__(c1, c2, n, e, block)


class C2f_i2RMB(C2f_iRMB):  # noqa: N801 - the name used in YAMLs
    """C2f with EMOv2 (i2RMB) bottlenecks: :class:`C2f_iRMB`'s arguments and layout."""

    emo2 = True


class C3k_iRMB(nn.Module):  # noqa: N801 - named after Ultralytics' C3k
    """C3k with iRMB bottlenecks, the block of :class:`C3k2_iRMB` with ``c3k``: two 1x1 convs to ``c_ = c2 * e``,
    ``n`` IRMB blocks ``c_ -> c_`` on the first, and a 1x1 conv from both to ``c2``."""

    def __init__(self, c1: int, c2: int, n: int, e: float, block: Callable[[int], nn.Module]):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(block(c_) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k2_iRMB(_SplitConcat):  # noqa: N801 - the name used in YAMLs
    """YOLO11's C3k2 with iRMB blocks, a drop-in: C3k2's YAML arguments in C3k2's order, then the iRMB's.

    Replacing ``C3k2`` by ``C3k2_iRMB`` in a YAML keeps the meaning of every argument, and Ultralytics' rules for
    C3k2 apply to it too (:mod:`emo.ultralytics.parsing`): ``c3k`` is forced on at scales m, l and x, and a model
    with it gets YOLO11's Detect head even where no plain C3k2 is left.

    Args:
        c1, c2, n: input and output channels and block count, scaled by Ultralytics as for C3k2.
        c3k: each block is a :class:`C3k_iRMB` (two iRMBs at half the width in C3k's layout) instead of one iRMB.
        e: hidden width ratio, as in C3k2.
        attn: each block is followed by Ultralytics' PSABlock (C3k2's attention option, used by YOLO26's last
            head layer); it takes precedence over ``c3k``, as in C3k2.
        g: C3k2's bottleneck groups; an iRMB has no grouped 3x3 conv, so only 1 is accepted.
        shortcut: iRMB shortcuts (C3k2's default, on).
        exp_ratio, dim_head, window_size, kernel_size, norm: the iRMBs' settings (see :class:`iRMB`).
    """

    parsed_as = C3k2

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        c3k: bool = False,
        e: float = 0.5,
        attn: bool = False,
        g: int = 1,
        shortcut: bool = True,
        exp_ratio: float = 2.0,
        dim_head: Optional[int] = 32,
        window_size: int = 7,
        kernel_size: int = 3,
        norm: str = 'bn',
    ):
        if g != 1:
            raise ValueError(f'{type(self).__name__}: g={g}, but an iRMB has no grouped conv; write 1 (the default)')

        def irmb(c: int) -> IRMB:
            return _irmb(c, c, exp_ratio, dim_head, window_size, kernel_size, norm, shortcut, self.emo2)

        def block(c: int) -> nn.Module:
            if attn:
                return nn.Sequential(irmb(c), PSABlock(c, attn_ratio=0.5, num_heads=max(c // 64, 1)))
            return C3k_iRMB(c, c, 2, 0.5, irmb) if c3k else irmb(c)

        super().__init__(c1, c2, n, e, block)


class C3k2_i2RMB(C3k2_iRMB):  # noqa: N801 - the name used in YAMLs
    """YOLO11's C3k2 with EMOv2 (i2RMB) blocks: :class:`C3k2_iRMB`'s arguments and layout."""

    emo2 = True


class _BackboneBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm of the EMO backbone. Ultralytics' ``initialize_weights`` resets eps to 1e-3 and momentum to 0.03
    on modules whose type is exactly ``nn.BatchNorm2d``; EMO's weights were trained with eps 1e-6, which this
    subclass keeps so a pretrained backbone computes what it computes in timm."""


class EMOBackbone(nn.Module):
    """A timm EMO feature extractor for YOLO necks: returns ``[P3, P4, P5]`` (strides 8, 16, 32).

    Channels per variant: emo_1m 48/80/168, emo_2m 48/120/200, emo_5m 72/160/288, emo_6m 72/160/320; emo2_1m
    48/80/180, emo2_2m 48/120/200, emo2_5m and emo2_5m_512 72/160/288, emo2_20m 128/320/448. Width and
    depth scaling do not apply: the variant named in the YAML fixes the backbone (pretrained weights fix its shape),
    the neck and head after it scale as usual.

    Args:
        c1: image channels (set by the parse_model wrapper from the model's input channels).
        variant: an EMO or EMOv2 variant, 'emo_1m' ... 'emo_6m', 'emo2_1m' ... 'emo2_20m' (a pretrained tag such as
            'emo_2m.in1k' or 'emo2_1m.dist_in1k' is accepted).
        pretrained: False, True for the released ImageNet weights (downloaded once, verified and cached; see
            docs/weights.md), or the path of a checkpoint file that ``timm.create_model(..., pretrained=True)``
            accepts (an official ``net.pth`` or ``EMOv2_*.pth`` included).
        drop_path_rate: stochastic depth of the backbone blocks.
    """

    def __init__(
        self, c1: int, variant: str = 'emo_1m', pretrained: Union[bool, str, Path] = False, drop_path_rate: float = 0.0
    ):
        super().__init__()
        self.variant = variant
        self.body = create_with_weights(
            variant, pretrained, features_only=True, out_indices=(1, 2, 3), in_chans=c1, drop_path_rate=drop_path_rate
        )
        self.channels: List[int] = self.body.feature_info.channels()
        self.strides: List[int] = self.body.feature_info.reduction()
        for module in self.body.modules():
            if type(module) is nn.BatchNorm2d:
                module.__class__ = _BackboneBatchNorm2d

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.body(x)

    @staticmethod
    def feature_channels(variant: str) -> List[int]:
        """P3/P4/P5 channels of a variant, without building its weights."""
        try:
            return list(get_variant(variant).widths[1:])
        except ValueError as e:
            raise ValueError(f'EMOBackbone: {e}') from None
