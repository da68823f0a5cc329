"""The official releases' key layouts (github.com/zhangzjn/EMO ``net.pth``, github.com/zhangzjn/EMOv2
``EMOv2_*.pth``) and this project's, both ways.

EMO's official keys look like ``stage0.0.convs.0.0.weight`` (the stem conv), ``stage3.1.qk.conv.weight`` and
``norm.norm.weight``; EMOv2's like ``stage0.0.conv.weight``, ``stage3.1.eops.0.qk.conv.weight`` and
``stage3.1.ls.gamma``; ours like ``stem.conv.weight`` / ``stem.conv1.conv.weight``,
``stages.2.blocks.1.attn.qk.weight`` and ``norm.weight``. Each renaming is written once, in the :class:`Layout` of
its family, and read in either direction.
"""

import re
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import torch

from .errors import CheckpointError
from .manifest import families

__all__ = ['LAYOUTS', 'Layout', 'family_of', 'is_official_layout', 'to_timm_layout', 'to_official_layout']


@dataclass(frozen=True)
class Layout:
    """One family's official key layout, against this project's."""

    family: str
    official_marker: str  # a key prefix only this family's official files have
    timm_markers: Tuple[str, ...]  # key parts only this family's models have, in this project's layout
    prefixes: Tuple[Tuple[str, str], ...]  # (official, ours) outside the stages
    # (official, ours) for the part of a key below a block ('stage3.1.' / 'stages.2.blocks.1.'); the input norm is
    # handled apart, since only the official LayerNorm (stages 3-4) has the extra level
    block_parts: Tuple[Tuple[str, str], ...]
    block_prefix: Optional[str] = None  # the ours-prefix whose rest is a block part (EMO's stem block)


EMO_LAYOUT = Layout(
    family='emo',
    official_marker='stage0.0.convs.',
    timm_markers=('stem.bn.', 'stem.block.'),
    prefixes=(
        ('stage0.0.convs.0.0.', 'stem.conv.'),
        ('stage0.0.convs.0.1.', 'stem.bn.'),
        ('stage0.1.', 'stem.block.'),  # its part below goes through block_parts
        ('norm.norm.', 'norm.'),  # the official LayerNorm2d wraps nn.LayerNorm one level deeper
        ('head.', 'head.'),
    ),
    block_parts=(
        ('qk.conv.', 'attn.qk.'),
        ('v.conv.', 'v.'),
        ('conv_local.conv.', 'conv_local.conv.'),
        ('conv_local.norm.', 'conv_local.bn.'),
        ('se.conv_reduce.', 'se.fc1.'),
        ('se.conv_expand.', 'se.fc2.'),
        ('proj.conv.', 'proj.'),
    ),
    block_prefix='stem.block.',
)
EMO2_LAYOUT = Layout(
    family='emo2',
    official_marker='stage0.0.conv.',
    timm_markers=('stem.conv1.', '.layer_scale.', '.attn.v.'),
    prefixes=(
        ('stage0.0.conv.', 'stem.conv1.conv.'),
        ('stage0.0.norm.', 'stem.conv1.bn.'),
        ('stage0.1.conv.', 'stem.conv2.conv.'),
        ('stage0.1.norm.', 'stem.conv2.bn.'),
        ('stage0.2.conv.', 'stem.conv3.'),
        ('norm.norm.', 'norm.'),
        ('head.', 'head.'),
    ),
    block_parts=(
        ('eops.0.net.conv.', 'v.'),  # the 1x1 expansion of blocks without attention
        ('eops.0.qk.conv.', 'attn.qk.'),
        ('eops.0.v.conv.', 'attn.v.'),
        ('conv_local.conv.', 'conv_local.conv.'),
        ('conv_local.norm.', 'conv_local.bn.'),
        ('proj.conv.', 'proj.'),
        ('ls.', 'layer_scale.'),  # gamma: (1, C, 1, 1) there, timm's LayerScale2d (C,) here
    ),
)
LAYOUTS = (EMO_LAYOUT, EMO2_LAYOUT)

_OFFICIAL_BLOCK = re.compile(r'^stage([1-4])\.(\d+)\.(.*)$')
TIMM_BLOCK = re.compile(r'^stages\.([0-3])\.blocks\.(\d+)\.(.*)$')


def is_official_layout(state_dict: Mapping) -> bool:
    return any(k.startswith('stage0.') for k in state_dict)


def _layout(state_dict: Mapping, official: bool) -> Optional[Layout]:
    for layout in LAYOUTS:
        if official and any(k.startswith(layout.official_marker) for k in state_dict):
            return layout
        # ours: the stem's keys, or block parts only this family has (a pruned or partial state dict may lack one)
        if not official and any(m in k for k in state_dict for m in layout.timm_markers):
            return layout
    return None


def family_of(state_dict: Mapping) -> Optional[str]:
    """'emo' or 'emo2' for a state dict in either layout, None when it is neither family's."""
    layout = _layout(state_dict, official=is_official_layout(state_dict))
    return layout.family if layout else None


def _reshape_value(key: str, value: torch.Tensor, reverse: bool) -> torch.Tensor:
    if key.endswith('layer_scale.gamma') or key.endswith('ls.gamma'):
        return value.reshape(1, -1, 1, 1) if reverse else value.reshape(-1)
    return value


def _convert_block_part(layout: Layout, part: str, reverse: bool, layer_norm: bool = False) -> Optional[str]:
    """Rename the part of a key below a block; ``layer_norm`` says the block's input norm is a LayerNorm."""
    if not reverse and part.startswith('norm.'):
        return 'norm.' + part[len('norm.norm.' if part.startswith('norm.norm.') else 'norm.') :]
    if reverse and part.startswith('norm.'):
        return ('norm.norm.' if layer_norm else 'norm.') + part[len('norm.') :]
    for official, ours in layout.block_parts:
        src, dst = (ours, official) if reverse else (official, ours)
        if part.startswith(src):
            return dst + part[len(src) :]
    return None


def _convert_prefix(layout: Layout, key: str, reverse: bool) -> Optional[str]:
    for official, ours in layout.prefixes:
        src, dst = (ours, official) if reverse else (official, ours)
        if key.startswith(src):
            rest = key[len(src) :]
            if layout.block_prefix in (src, dst):
                rest = _convert_block_part(layout, rest, reverse)
                if rest is None:
                    return None
            return dst + rest
    return None


def to_timm_layout(state_dict: Mapping) -> Dict[str, torch.Tensor]:
    """Rename official keys (either family) to this project's layout; one already in it is returned unchanged."""
    if not is_official_layout(state_dict):
        return dict(state_dict)
    layout = _layout(state_dict, official=True)
    if layout is None:
        raise CheckpointError(
            f"this official-layout checkpoint has neither EMO's stem ({EMO_LAYOUT.official_marker}*) nor EMOv2's "
            f'({EMO2_LAYOUT.official_marker}*) (first keys: {list(state_dict)[:4]}); is it from '
            'github.com/zhangzjn/EMO or github.com/zhangzjn/EMOv2?'
        )
    out, unknown = {}, []
    for key, value in state_dict.items():
        m = _OFFICIAL_BLOCK.match(key)
        if m:
            part = _convert_block_part(layout, m.group(3), reverse=False)
            new = f'stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.{part}' if part else None
        else:
            new = _convert_prefix(layout, key, reverse=False)
        if new is None:
            unknown.append(key)
        else:
            out[new] = _reshape_value(new, value, reverse=False)
    if unknown:
        title = families()[layout.family].title  # also the name of its official repository
        raise CheckpointError(
            f'{len(unknown)} keys of this official-layout checkpoint are not part of {title}: {unknown[:5]}; '
            f'is it a {title} checkpoint from github.com/zhangzjn/{title}?'
        )
    return out


def to_official_layout(state_dict: Mapping) -> Dict[str, torch.Tensor]:
    """Rename this project's keys to the official layout of their family (the inverse of :func:`to_timm_layout`)."""
    layout = _layout(state_dict, official=False)
    if layout is None:
        raise CheckpointError(
            f"this state dict is neither an EMO nor an EMOv2 in this project's layout (first keys: "
            f'{list(state_dict)[:4]}): nothing to write in an official layout'
        )
    out, unknown = {}, []
    for key, value in state_dict.items():
        m = TIMM_BLOCK.match(key)
        if m:
            stage, block, part = int(m.group(1)), m.group(2), m.group(3)
            # a LayerNorm has no running stats: stages 3-4 use one, stages 1-2 a BatchNorm
            layer_norm = f'stages.{stage}.blocks.{block}.norm.running_mean' not in state_dict
            part = _convert_block_part(layout, part, reverse=True, layer_norm=layer_norm)
            new = f'stage{stage + 1}.{block}.{part}' if part else None
        else:
            new = _convert_prefix(layout, key, reverse=True)
        if new is None:
            unknown.append(key)
        else:
            out[new] = _reshape_value(new, value, reverse=True)
    if unknown:
        raise CheckpointError(f'{len(unknown)} keys have no place in the official layout: {unknown[:5]}')
    return out
