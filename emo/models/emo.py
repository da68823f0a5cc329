"""EMO: Rethinking Mobile Block for Efficient Attention-based Models (ICCV 2023).

Paper: https://arxiv.org/abs/2301.01146 (Zhang et al.). Official code and weights:
https://github.com/zhangzjn/EMO. This is a from-scratch, timm-native implementation whose arithmetic
matches the released weights: ``import emo`` registers ``emo_1m``, ``emo_2m``, ``emo_5m`` and ``emo_6m``
(and their ``.in1k`` pretrained tags) with timm.

Layout: stem (3x3 conv + BN, then a stem iRMB with squeeze-excite) at stride 2, four ``stages.N`` at
strides 4/8/16/32 whose first block downsamples, a LayerNorm over channels, average pooling and a linear
classifier. Official checkpoints are converted on load by :func:`checkpoint_filter_fn`.

EMOv2 (:mod:`emo.models.emo2`) builds on this file's plan: its model is :class:`EMO` with its own stem, the
:class:`IRMB` with ``attn_layer='hybrid'`` and a layer scale (the i2RMB), and the same :class:`EmoStage`; the timm
contract below (features, intermediates, pruning, classifier, grad checkpointing, fusing) serves both families.
"""

import warnings
from typing import Dict, List, Optional, Tuple, Type, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    ConvNormAct,
    DropPath,
    LayerScale2d,
    SelectAdaptivePool2d,
    SEModule,
    calculate_drop_path_rates,
    get_act_layer,
    get_device_dtype,
    get_norm_layer,
    register_notrace_function,
    trunc_normal_,
)
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint_seq

from ..layers import FusedConv, GridAttention, HybridWindowAttention, fold_bn_after, fold_bn_before, run_in_slices
from ..weights import checkpoint as ckpt
from ..weights.manifest import released_weights
from ..weights.pretrained import load_errors_explained, prepare_pretrained

__all__ = ['EMO', 'IRMB', 'EmoStage', 'Stem', 'StemBase', 'checkpoint_filter_fn']

MIN_INPUT_SIZE = 32  # one stage-4 pixel at stride 32
GLOBAL_POOL_TYPES = ('', 'avg', 'max', 'avgmax')
_NORM_LAYERS = {'bn': 'batchnorm2d', 'ln': 'layernorm2d'}  # the short names EMO's arguments and YAMLs use
ACT_LAYERS = ('silu', 'gelu')  # names for timm's get_act_layer
ATTN_LAYERS = ('grid', 'hybrid')  # EMO's strided-grid attention before the expansion; EMOv2's, after it


@register_notrace_function
def check_input(x: torch.Tensor, in_chans: int, min_size: int = 32) -> None:
    """Reject inputs EMO cannot take with one message that says what to do instead."""
    if x.dim() != 4:
        raise ValueError(
            f'EMO takes a 4-D batch of images (N, C, H, W), got a {x.dim()}-D tensor of shape {x.shape}; '
            'for a single image use x.unsqueeze(0)'
        )
    if x.shape[1] != in_chans:
        raise ValueError(
            f'this EMO was built for {in_chans}-channel images, got {x.shape[1]} channels (shape {x.shape}); '
            f'convert the images to {in_chans} channels or build the model with in_chans={x.shape[1]}'
        )
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(
            f'image {x.shape[2]}x{x.shape[3]} is too small: EMO downsamples by 32 and needs at least '
            f'{min_size}x{min_size} pixels; resize or pad the images'
        )


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
        attn_layer: 'grid' (EMO: :class:`~emo.layers.GridAttention` on the input, then the 1x1 ``v`` expansion) or
            'hybrid' (EMOv2's i2RMB: :class:`~emo.layers.HybridWindowAttention`, which expands ``v`` itself).
        se_ratio: squeeze-excite after the depthwise conv (reduction ratio), 0 for none.
        layer_scale_init: initial value of a per-channel scale after ``proj`` (EMOv2: in every block, shortcut or
            not), None for none.
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
        act_layer: Union[str, Type[nn.Module]] = 'silu',
        dim_head: Optional[int] = None,
        window_size: int = 7,
        qk_bias: bool = True,
        attn_layer: str = 'grid',
        se_ratio: float = 0.0,
        layer_scale_init: Optional[float] = None,
        skip: bool = True,
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        mid_chs = int(in_chs * exp_ratio)
        self.has_skip = skip and in_chs == out_chs and stride == 1

        if norm_layer is None:
            self.norm = nn.Identity()
        elif norm_layer in _NORM_LAYERS:
            self.norm = get_norm_layer(_NORM_LAYERS[norm_layer])(in_chs, eps=1e-6, **dd)
        else:
            raise ValueError(f"norm_layer must be 'bn', 'ln' or None, got {norm_layer!r}")

        if attn_layer not in ATTN_LAYERS:
            raise ValueError(f'attn_layer must be one of {ATTN_LAYERS}, got {attn_layer!r}')
        hybrid = dim_head is not None and attn_layer == 'hybrid'
        if hybrid:
            self.attn = HybridWindowAttention(
                in_chs, mid_chs, dim_head, window_size=window_size, qk_bias=qk_bias, act_layer=act_layer, **dd
            )
        elif dim_head is not None:
            self.attn = GridAttention(in_chs, dim_head, window_size=window_size, qk_bias=qk_bias, **dd)
        else:
            self.attn = nn.Identity()

        if not hybrid and (dim_head is not None or mid_chs != in_chs):
            self.v = nn.Conv2d(in_chs, mid_chs, kernel_size=1, bias=True, **dd)
            self.act = get_act_layer(act_layer)()
        else:
            self.v = nn.Identity()
            self.act = nn.Identity()

        self.conv_local = ConvNormAct(
            mid_chs, mid_chs, kernel_size, stride, groups=mid_chs, act_layer=nn.SiLU, norm_kwargs=dict(eps=1e-6), **dd
        )
        if se_ratio > 0:
            self.se = SEModule(mid_chs, rd_channels=int(mid_chs * se_ratio), act_layer=nn.SiLU, **dd)
        else:
            self.se = nn.Identity()
        self.proj = nn.Conv2d(mid_chs, out_chs, kernel_size=1, bias=False, **dd)
        if layer_scale_init is not None:
            self.layer_scale = LayerScale2d(out_chs, layer_scale_init, **dd)
        else:
            self.layer_scale = nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.fused = False  # set by fuse()

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if 'layer_scale' not in self._modules:  # a block pickled by emo 0.1.0, before EMOv2's layer scale
            self.layer_scale = nn.Identity()
            self.layer_scale.train(self.training)

    def fuse(self) -> 'IRMB':
        """Fuse for inference (idempotent; returns ``self``, as ``timm.utils.reparameterize_model`` expects).

        The input BatchNorm folds into the 1x1 ``v`` conv of blocks without attention (attention blocks use
        LayerNorm, which does not fold), EMOv2's attention takes its scale into the queries, the depthwise conv
        takes in its BatchNorm, the layer scale folds into the ``proj`` weights, and every conv outside the
        attention becomes a :class:`~emo.layers.FusedConv` that applies its activation itself. Outputs match the
        unfused block to fp32 rounding.
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
        if isinstance(self.attn, HybridWindowAttention):
            self.attn.fuse()
        if isinstance(self.conv_local, ConvNormAct):
            local = self.conv_local
            self.conv_local = FusedConv.from_conv(fold_bn_after(local.conv, local.bn), local.bn.act)
        if isinstance(self.proj, nn.Conv2d):
            self.proj = FusedConv.from_conv(self.proj)
            if isinstance(self.layer_scale, LayerScale2d):  # gamma * (W x) == (gamma W) x
                with torch.no_grad():
                    self.proj.weight.mul_(self.layer_scale.gamma.reshape(-1, 1, 1, 1))
                self.layer_scale = nn.Identity()
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
        x = self.layer_scale(self.proj(x))
        if self.has_skip:
            x = self.drop_path(x)
            x = x.add_(shortcut) if inplace else shortcut + x
        return x


class StemBase(nn.Module):
    """What both families' stems do around their layers (``_forward``): check the input, and once fused run the
    network channels-last, large batches in slices."""

    def __init__(self, in_chans: int, out_chs: int):
        super().__init__()
        self.in_chans = in_chans
        self.out_chs = out_chs
        self.min_input_size = MIN_INPUT_SIZE
        self.channels_last = False  # set by fuse()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():  # a trace would bake the checks in as constants, with warnings
            check_input(x, self.in_chans, self.min_input_size)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            if not torch.jit.is_scripting():
                # three half-resolution maps of out_chs floats live at once: 4 bytes for every 4 input pixels
                return run_in_slices(self._forward, x, 3 * self.out_chs)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Stem(StemBase):
    """Stride-2 3x3 conv (with bias) + BN, then an iRMB with squeeze-excite and no norm, expansion or shortcut."""

    def __init__(self, in_chans: int, out_chs: int = 24, device=None, dtype=None):
        super().__init__(in_chans, out_chs)
        dd = {'device': device, 'dtype': dtype}
        self.conv = nn.Conv2d(in_chans, out_chs, kernel_size=3, stride=2, padding=1, bias=True, **dd)
        self.bn = nn.BatchNorm2d(out_chs, eps=1e-6, **dd)
        self.block = IRMB(
            out_chs, out_chs, exp_ratio=1.0, kernel_size=3, norm_layer=None, se_ratio=1.0, skip=False, **dd
        )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.bn(self.conv(x)))

    def fuse(self) -> 'Stem':
        """Fold the BatchNorm into the stem conv and run the network channels-last (idempotent).

        On CPU, oneDNN's 1x1 and depthwise convs are several times faster on NHWC maps; every later layer
        keeps the layout it is given.
        """
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = FusedConv.from_conv(fold_bn_after(self.conv, self.bn))
            self.bn = nn.Identity()
        self.channels_last = True
        return self


class EmoStage(nn.Module):
    """A stride-2 iRMB (expansion ``2 * exp_ratio`` of the incoming width, no attention) then ``depth - 1``
    width-keeping iRMBs with shortcuts (and attention when ``dim_head`` is set); the plan of both families.
    ``block_kwargs`` go to every block (EMOv2: ``attn_layer='hybrid'``, ``layer_scale_init``)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        depth: int,
        exp_ratio: float,
        kernel_size: int,
        norm_layer: str,
        act_layer: Union[str, Type[nn.Module]],
        dim_head: Optional[int],
        window_size: int = 7,
        qk_bias: bool = True,
        drop_path_rates: Optional[List[float]] = None,
        device=None,
        dtype=None,
        **block_kwargs,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        drop_path_rates = drop_path_rates or [0.0] * depth
        self.grad_checkpointing = False
        common = dict(
            kernel_size=kernel_size,
            norm_layer=norm_layer,
            act_layer=act_layer,
            window_size=window_size,
            qk_bias=qk_bias,
            **block_kwargs,
            **dd,
        )
        blocks = [
            IRMB(
                in_chs,
                out_chs,
                exp_ratio=exp_ratio * 2,
                stride=2,
                dim_head=None,
                drop_path=drop_path_rates[0],
                **common,
            )
        ]
        for i in range(1, depth):
            blocks.append(
                IRMB(out_chs, out_chs, exp_ratio=exp_ratio, dim_head=dim_head, drop_path=drop_path_rates[i], **common)
            )
        self.blocks = nn.Sequential(*blocks)
        # bytes per input pixel of the widest map inside the stage (the first block's expansion); set by fuse()
        self.split_bytes_per_pixel = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        if not torch.jit.is_scripting() and self.split_bytes_per_pixel:
            return run_in_slices(self.blocks, x, self.split_bytes_per_pixel)
        return self.blocks(x)

    def fuse(self) -> 'EmoStage':
        """Let eager CPU inference run large batches through the stage in slices (idempotent).

        The blocks themselves are fused by their own ``fuse()``; see :func:`emo.layers.run_in_slices`.
        """
        # the widest map is the first block's expansion, the input of its 1x1 projection, fused or not
        self.split_bytes_per_pixel = 4 * self.blocks[0].proj.weight.shape[1]
        return self


class EMO(nn.Module):
    """EMO backbone and classifier.

    Args:
        depths: blocks per stage.
        widths: output width of each stage.
        exp_ratios: iRMB expansion per stage (the downsampling block uses twice this, of its input width).
        dim_heads: attention head width per stage, ``None`` for a stage without attention.
        kernel_sizes: depthwise kernel per stage.
        norm_layers: 'bn' or 'ln' per stage (input norm of each block).
        act_layers: 'silu' or 'gelu' per stage (after the 1x1 expansion).
        stem_chs: stem width.
        window_size: attention window side.
        qk_bias: bias of the query/key conv.
        stem_layer: the stem class (EMO's :class:`Stem`; EMOv2's in :mod:`emo.models.emo2`).
        attn_layer: 'grid' (EMO) or 'hybrid' (EMOv2), see :class:`IRMB`.
        layer_scale_init: initial per-channel scale at the end of every block, None for none (EMO).
        in_chans: image channels.
        num_classes: classifier outputs, 0 for none.
        global_pool: 'avg', 'max', 'avgmax', or '' for none (the classifier then runs at every position).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth, linear from 0 over all stage blocks.
    """

    def __init__(
        self,
        depths: Tuple[int, ...] = (3, 3, 9, 3),
        widths: Tuple[int, ...] = (32, 48, 120, 200),
        exp_ratios: Tuple[float, ...] = (2, 2.5, 3, 3.5),
        dim_heads: Tuple[Optional[int], ...] = (None, None, 20, 20),
        kernel_sizes: Tuple[int, ...] = (3, 3, 5, 5),
        norm_layers: Tuple[str, ...] = ('bn', 'bn', 'ln', 'ln'),
        act_layers: Tuple[str, ...] = ('silu', 'silu', 'gelu', 'gelu'),
        stem_chs: int = 24,
        window_size: int = 7,
        qk_bias: bool = True,
        stem_layer: Type[StemBase] = Stem,
        attn_layer: str = 'grid',
        layer_scale_init: Optional[float] = None,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = 'avg',
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        _check_head_args(num_classes, global_pool)
        if not set(act_layers) <= set(ACT_LAYERS):
            raise ValueError(f'act_layers must each be one of {ACT_LAYERS}, got {tuple(act_layers)}')
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.drop_rate = drop_rate

        self.stem = stem_layer(in_chans, stem_chs, **dd)
        self.depths, self.widths, self.exp_ratios, self.dim_heads = (
            tuple(a) for a in (depths, widths, exp_ratios, dim_heads)
        )
        self.window_size = window_size
        dpr = calculate_drop_path_rates(drop_path_rate, sum(depths))  # linear from 0 over all blocks, as the official
        stages = []
        self.feature_info = []
        in_chs, stride, block_idx = stem_chs, 2, 0
        for i, depth in enumerate(depths):
            stages.append(
                EmoStage(
                    in_chs,
                    widths[i],
                    depth,
                    exp_ratio=exp_ratios[i],
                    kernel_size=kernel_sizes[i],
                    norm_layer=norm_layers[i],
                    act_layer=act_layers[i],
                    dim_head=dim_heads[i],
                    window_size=window_size,
                    qk_bias=qk_bias,
                    drop_path_rates=dpr[block_idx : block_idx + depth],
                    attn_layer=attn_layer,
                    layer_scale_init=layer_scale_init,
                    **dd,
                )
            )
            stride *= 2
            self.feature_info.append(dict(num_chs=widths[i], reduction=stride, module=f'stages.{i}'))
            in_chs, block_idx = widths[i], block_idx + depth
        self.stages = nn.Sequential(*stages)

        self.num_features = self.head_hidden_size = widths[-1]
        self.norm = get_norm_layer('layernorm2d')(self.num_features, eps=1e-6, **dd)
        self.pool = _pool(global_pool)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault('window_size', 7)  # emo 0.1.0 did not store it
        if 'pool' not in self._modules:  # a whole model pickled by emo 0.1.0, which pooled in forward_head
            self.pool = _pool(self.global_pool)
            self.pool.train(self.training)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)' if coarse else [(r'^stages\.(\d+)\.blocks\.(\d+)', None), (r'^norm', (99999,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return set()

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None, device=None, dtype=None) -> None:
        dd = get_device_dtype(self, device=device, dtype=dtype)
        global_pool = self.global_pool if global_pool is None else global_pool
        _check_head_args(num_classes, global_pool)
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.pool = _pool(global_pool)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        _init_weights(self.head)
        self.pool.train(self.training)
        self.head.train(self.training)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward that also returns stage outputs (strides 4/8/16/32, before the final norm).

        Args:
            x: input images.
            indices: the last n stages if an int, all if None, else the stage indices to return.
            norm: apply the final norm to the last stage's output when it is returned.
            stop_early: stop after the last stage asked for.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the stage outputs.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"EMO returns intermediates as 'NCHW' only, got output_fmt={output_fmt!r}")
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_idx = len(self.stages) - 1

        x = self.stem(x)
        if torch.jit.is_scripting() or not stop_early:  # TorchScript cannot slice a Sequential
            stages = self.stages
        else:
            stages = self.stages[: max_index + 1]
        feat_idx = 0
        for feat_idx, stage in enumerate(stages):
            x = stage(x)
            if feat_idx in take_indices:
                intermediates.append(self.norm(x) if norm and feat_idx == last_idx else x)

        if intermediates_only:
            return intermediates
        if feat_idx == last_idx:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
        self,
        indices: Union[int, List[int]] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages (and norm/head) that the given intermediates do not need; returns their indices."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[: max_index + 1]
        if prune_norm or prune_end:
            # the final norm is sized for the last stage: it cannot follow an earlier one
            self.norm = nn.Identity()
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stages(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pool(x))
        if pre_logits:
            return x
        if not self.global_pool:  # no pooling: classify every position, (N, num_classes, H, W)
            return self.head(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _pool(global_pool: str) -> SelectAdaptivePool2d:
    # 'fast' pooling is a mean / amax over H and W; without pooling the classifier runs at every position
    return SelectAdaptivePool2d(pool_type='fast' + global_pool if global_pool else '', flatten=bool(global_pool))


def _check_head_args(num_classes: int, global_pool: str) -> None:
    if global_pool not in GLOBAL_POOL_TYPES:
        raise ValueError(f'global_pool must be one of {GLOBAL_POOL_TYPES}, got {global_pool!r}')
    if num_classes < 0:
        raise ValueError(f'num_classes must be >= 0, got {num_classes}')


def _check_out_indices(out_indices, num_stages: int = 4):
    """``out_indices`` as timm takes them (stage indices, negatives from the end, or an int: the last n), checked.

    Repeated or unordered indices are refused: the features come back in network order, once each, so
    ``feature_info`` would describe other tensors than the ones returned.
    """
    example = f'e.g. out_indices=(1, 2, 3) or out_indices=2 (the last two); EMO has {num_stages} stages'
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        if not 1 <= out_indices <= num_stages:
            raise ValueError(f'out_indices={out_indices} asks for the last {out_indices} stages; {example}')
        return out_indices
    indices = tuple(out_indices) if isinstance(out_indices, (list, tuple)) else None
    if not indices or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise ValueError(f'out_indices must be a non-empty tuple of stage indices, got {out_indices!r}; {example}')
    bad = [i for i in indices if not -num_stages <= i < num_stages]
    if bad:
        raise ValueError(f'out_indices {bad} are not stages: use 0..{num_stages - 1} or -{num_stages}..-1; {example}')
    positions = [i % num_stages for i in indices]
    if positions != sorted(set(positions)):
        raise ValueError(f'out_indices={out_indices!r} must name each stage once, in increasing order; {example}')
    return indices


def _init_weights(module: nn.Module) -> None:
    # the official init: classifier trunc_normal(0.02) with zero bias; convs and norms keep PyTorch's defaults
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> Dict[str, torch.Tensor]:
    """Turn any accepted checkpoint into this model's layout, or fail with one clear message.

    Accepts the official release layout (``stage0.0.convs...``), this project's layout, ``{'net', 'net_E'}``
    wrappers (the EMA copy ``net_E`` is preferred) and a ``module.`` prefix; see :mod:`emo.weights.checkpoint`.
    """
    state_dict = ckpt.to_timm_state_dict(state_dict)
    ckpt.check_matches_model(state_dict, model)
    return state_dict


def _cfg(url: str = '', **kwargs) -> dict:
    return {
        'url': url,
        'num_classes': 1000,
        'input_size': (3, 224, 224),
        'pool_size': (7, 7),
        'crop_pct': 0.875,
        'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN,
        'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv',
        'classifier': 'head',
        'paper_ids': 'arXiv:2301.01146',
        'paper_name': 'Rethinking Mobile Block for Efficient Attention-based Models',
        'origin_url': 'https://github.com/zhangzjn/EMO',
        'license': 'unknown (the official repository has no license file)',
        **kwargs,
    }


# one cfg per released checkpoint of weights/manifest.json: url is the origin, hf_hub_id set once published
default_cfgs = generate_default_cfgs({
    name: _cfg(url=entry.url, hf_hub_id=entry.hf_hub_id) for name, entry in released_weights('emo').items()
})  # fmt: skip


def _create_model(model_cls: Type[EMO], variant: str, pretrained: bool = False, **kwargs) -> EMO:
    """Build ``variant`` of either family with timm's builder: pretrained weights prepared, out_indices checked."""
    if pretrained:
        prepare_pretrained(variant, kwargs)
    out_indices = _check_out_indices(kwargs.pop('out_indices', (0, 1, 2, 3)))
    with load_errors_explained(variant, pretrained, kwargs):
        return build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            pretrained_filter_fn=checkpoint_filter_fn,
            feature_cfg=dict(flatten_sequential=True, out_indices=out_indices),
            **kwargs,
        )


def _create_emo(variant: str, pretrained: bool = False, **kwargs) -> EMO:
    return _create_model(EMO, variant, pretrained, **kwargs)


@register_model
def emo_1m(pretrained: bool = False, **kwargs) -> EMO:
    """EMO-1M: 1.36M params, 0.26 GFLOPs, 71.5% ImageNet-1k top-1 (official weights)."""
    model_args = dict(
        depths=(2, 2, 8, 3), widths=(32, 48, 80, 168), exp_ratios=(2, 2.5, 3, 3.5), dim_heads=(None, None, 20, 21)
    )
    return _create_emo('emo_1m', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def emo_2m(pretrained: bool = False, **kwargs) -> EMO:
    """EMO-2M: 2.38M params, 0.44 GFLOPs, 75.1% ImageNet-1k top-1 (official weights)."""
    model_args = dict(
        depths=(3, 3, 9, 3), widths=(32, 48, 120, 200), exp_ratios=(2, 2.5, 3, 3.5), dim_heads=(None, None, 20, 20)
    )
    return _create_emo('emo_2m', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def emo_5m(pretrained: bool = False, **kwargs) -> EMO:
    """EMO-5M: 5.11M params, 0.90 GFLOPs, 78.4% ImageNet-1k top-1 (official weights)."""
    model_args = dict(
        depths=(3, 3, 9, 3), widths=(48, 72, 160, 288), exp_ratios=(2, 3, 4, 4), dim_heads=(None, None, 32, 32)
    )
    return _create_emo('emo_5m', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def emo_6m(pretrained: bool = False, **kwargs) -> EMO:
    """EMO-6M: 6.17M params, 0.96 GFLOPs, 79.0% ImageNet-1k top-1 (official weights)."""
    model_args = dict(
        depths=(3, 3, 9, 3), widths=(48, 72, 160, 320), exp_ratios=(2, 3, 4, 5), dim_heads=(None, None, 20, 32)
    )
    return _create_emo('emo_6m', pretrained=pretrained, **dict(model_args, **kwargs))
