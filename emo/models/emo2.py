"""EMOv2: Pushing 5M Vision Model Frontier (IEEE TPAMI 2025).

Paper: https://arxiv.org/abs/2412.06674 (Zhang et al.). Official code and weights:
https://github.com/zhangzjn/EMOv2. A timm-native implementation whose arithmetic matches the released weights:
``import emo`` registers ``emo2_1m``, ``emo2_2m``, ``emo2_5m``, ``emo2_5m_512`` (window 8, for the 512x512
weights) and ``emo2_20m`` (no released classification weights), with the ``.in1k`` and ``.dist_in1k`` tags.

EMOv2 keeps EMO's plan (:class:`~emo.models.emo.EmoStage`: a downsampling block, then width-keeping blocks with
shortcuts; a LayerNorm, average pooling and a linear classifier) and changes the block, the i2RMB: the
:class:`~emo.models.emo.IRMB` with ``attn_layer='hybrid'`` (:class:`~emo.layers.HybridWindowAttention`: the
values expanded before the attention, strided-grid and contiguous windows over one qk/v computed on the padded
map) and a layer scale at the end of every block, shortcut or not. The stem is three plain convs, the depthwise
kernel 5 in every stage. Official checkpoints (``stage0.0.conv.weight``, ``stage3.1.eops.0.qk.conv.weight``, ...)
are converted on load by :func:`~emo.models.emo.checkpoint_filter_fn`.
"""

from typing import Optional, Tuple

import torch
import torch.nn as nn
from timm.layers import ConvNormAct
from timm.models import generate_default_cfgs, register_model

from ..layers import FusedConv, fold_bn_after
from ..weights.manifest import families, official_figures, released_weights
from .emo import EMO, StemBase, _cfg, _create_model

__all__ = ['EMO2', 'Emo2Stem']


class Emo2Stem(StemBase):
    """Stride 2: a 3x3 conv (with bias) + BN + SiLU, a 3x3 depthwise conv + BN + SiLU, a 1x1 conv; no shortcut."""

    def __init__(self, in_chans: int, out_chs: int = 16, device=None, dtype=None):
        super().__init__(in_chans, out_chs)
        dd = {'device': device, 'dtype': dtype}
        norm_kwargs = dict(eps=1e-6)
        self.conv1 = ConvNormAct(
            in_chans, out_chs, 3, stride=2, bias=True, act_layer=nn.SiLU, norm_kwargs=norm_kwargs, **dd
        )
        self.conv2 = ConvNormAct(out_chs, out_chs, 3, groups=out_chs, act_layer=nn.SiLU, norm_kwargs=norm_kwargs, **dd)
        self.conv3 = nn.Conv2d(out_chs, out_chs, kernel_size=1, bias=False, **dd)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x)))

    def fuse(self) -> 'Emo2Stem':
        """Fold the BatchNorms into their convs and run the network channels-last (idempotent)."""
        for name in ('conv1', 'conv2'):
            layer = getattr(self, name)
            if isinstance(layer, ConvNormAct):
                setattr(self, name, FusedConv.from_conv(fold_bn_after(layer.conv, layer.bn), layer.bn.act))
        if isinstance(self.conv3, nn.Conv2d):
            self.conv3 = FusedConv.from_conv(self.conv3)
        self.channels_last = True
        return self


class EMO2(EMO):
    """EMOv2 backbone and classifier: :class:`~emo.models.emo.EMO`'s plan with EMOv2's stem and i2RMB blocks.

    Args:
        depths, widths, exp_ratios, dim_heads, window_size: as for :class:`~emo.models.emo.EMO`.
        stem_chs: stem width, ``widths[0] // 2`` when None (as the official model).
        layer_scale_init: initial value of every block's layer scale (the official training value, 1e-6).
        kwargs: the other arguments of :class:`~emo.models.emo.EMO` (``num_classes``, ``drop_path_rate``, ...).
    """

    def __init__(
        self,
        depths: Tuple[int, ...] = (3, 3, 9, 3),
        widths: Tuple[int, ...] = (32, 48, 120, 200),
        exp_ratios: Tuple[float, ...] = (2, 2.5, 3, 3.5),
        dim_heads: Tuple[Optional[int], ...] = (None, None, 20, 20),
        kernel_sizes: Tuple[int, ...] = (5, 5, 5, 5),
        stem_chs: Optional[int] = None,
        window_size: int = 7,
        layer_scale_init: float = 1e-6,
        **kwargs,
    ):
        super().__init__(
            depths=depths,
            widths=widths,
            exp_ratios=exp_ratios,
            dim_heads=dim_heads,
            kernel_sizes=kernel_sizes,
            stem_chs=widths[0] // 2 if stem_chs is None else stem_chs,
            window_size=window_size,
            stem_layer=Emo2Stem,
            attn_layer='hybrid',
            layer_scale_init=layer_scale_init,
            **kwargs,
        )


_EMO2 = families()['emo2']


def _cfg2(url: str = '', **kwargs) -> dict:
    return _cfg(
        url=url,
        first_conv='stem.conv1.conv',
        paper_ids=f'arXiv:{_EMO2.arxiv}',
        paper_name=_EMO2.paper,
        origin_url=_EMO2.repository,
        **kwargs,
    )


def _weights_cfg(entry) -> dict:
    size = official_figures()[entry.variant].get('img_size', 224)  # 512 for emo2_5m_512
    return _cfg2(url=entry.url, hf_hub_id=entry.hf_hub_id, input_size=(3, size, size), pool_size=(size // 32,) * 2)


# one cfg per released checkpoint of weights/manifest.json (the first tag of a variant is its default: the plain
# ImageNet-1k training, as in the paper's main table; '.dist_in1k' names the distilled weights)
default_cfgs = generate_default_cfgs({
    **{name: _weights_cfg(entry) for name, entry in released_weights('emo2').items()},
    # no released classification weights: a backbone to train (the paper uses it for detection and segmentation)
    'emo2_20m': _cfg2(notes=('no released ImageNet weights: pretrained=True needs a file; train it',)),
})  # fmt: skip


def _create_emo2(variant: str, pretrained: bool = False, **kwargs) -> EMO2:
    return _create_model(EMO2, variant, pretrained, **kwargs)


@register_model
def emo2_1m(pretrained: bool = False, **kwargs) -> EMO2:
    """EMOv2-1M: 1.46M params, 0.285 GFLOPs, 72.3% ImageNet-1k top-1 (73.5% distilled; official weights)."""
    model_args = dict(
        depths=(2, 2, 8, 3), widths=(32, 48, 80, 180), exp_ratios=(2, 2.5, 3, 3.5), dim_heads=(None, None, 20, 20)
    )
    return _create_emo2('emo2_1m', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def emo2_2m(pretrained: bool = False, **kwargs) -> EMO2:
    """EMOv2-2M: 2.38M params, 0.487 GFLOPs, 75.8% ImageNet-1k top-1 (76.7% distilled; official weights)."""
    model_args = dict(
        depths=(3, 3, 9, 3), widths=(32, 48, 120, 200), exp_ratios=(2, 2.5, 3, 3.5), dim_heads=(None, None, 20, 20)
    )
    return _create_emo2('emo2_2m', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def emo2_5m(pretrained: bool = False, **kwargs) -> EMO2:
    """EMOv2-5M: 5.13M params, 1.035 GFLOPs, 79.4% ImageNet-1k top-1 (80.9% distilled; official weights)."""
    model_args = dict(
        depths=(3, 3, 9, 3), widths=(48, 72, 160, 288), exp_ratios=(2, 3, 4, 4), dim_heads=(None, None, 32, 32)
    )
    return _create_emo2('emo2_5m', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def emo2_5m_512(pretrained: bool = False, **kwargs) -> EMO2:
    """EMOv2-5M with window 8 for 512x512 inputs: 5.63 GFLOPs at 512, 82.9% ImageNet-1k top-1 (distilled)."""
    model_args = dict(
        depths=(3, 3, 9, 3),
        widths=(48, 72, 160, 288),
        exp_ratios=(2, 3, 4, 4),
        dim_heads=(None, None, 32, 32),
        window_size=8,
    )
    return _create_emo2('emo2_5m_512', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def emo2_20m(pretrained: bool = False, **kwargs) -> EMO2:
    """EMOv2-20M: 20.2M params, 4.02 GFLOPs; no released ImageNet weights (a detection/segmentation backbone)."""
    model_args = dict(
        depths=(3, 3, 13, 3), widths=(64, 128, 320, 448), exp_ratios=(2, 3, 4, 4), dim_heads=(None, None, 32, 32)
    )
    return _create_emo2('emo2_20m', pretrained=pretrained, **dict(model_args, **kwargs))
