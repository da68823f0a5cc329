"""The official release's key layout (github.com/zhangzjn/EMO ``net.pth``) and this project's, both ways.

Official keys look like ``stage0.0.convs.0.0.weight`` (the stem conv), ``stage3.1.qk.conv.weight`` and
``norm.norm.weight``; ours like ``stem.conv.weight``, ``stages.2.blocks.1.attn.qk.weight`` and ``norm.weight``. Each
renaming is written once, in :data:`_PREFIXES` and :data:`_BLOCK_PARTS`, and read in either direction.
"""

import re
from typing import Dict, Mapping, Optional

import torch

from .errors import CheckpointError

__all__ = ['is_official_layout', 'to_timm_layout', 'to_official_layout']

# (official, ours) prefixes of the keys outside the stages
_PREFIXES = (
    ('stage0.0.convs.0.0.', 'stem.conv.'),
    ('stage0.0.convs.0.1.', 'stem.bn.'),
    ('stage0.1.', 'stem.block.'),  # its part below goes through _BLOCK_PARTS
    ('norm.norm.', 'norm.'),  # the official LayerNorm2d wraps nn.LayerNorm one level deeper
    ('head.', 'head.'),
)
# (official, ours) for the part of a key below a block ('stage3.1.' / 'stages.2.blocks.1.'); the input norm is
# handled apart, since only the official LayerNorm (stages 3-4) has the extra level
_BLOCK_PARTS = (
    ('qk.conv.', 'attn.qk.'),
    ('v.conv.', 'v.'),
    ('conv_local.conv.', 'conv_local.conv.'),
    ('conv_local.norm.', 'conv_local.bn.'),
    ('se.conv_reduce.', 'se.fc1.'),
    ('se.conv_expand.', 'se.fc2.'),
    ('proj.conv.', 'proj.'),
)
_OFFICIAL_BLOCK = re.compile(r'^stage([1-4])\.(\d+)\.(.*)$')
TIMM_BLOCK = re.compile(r'^stages\.([0-3])\.blocks\.(\d+)\.(.*)$')


def is_official_layout(state_dict: Mapping) -> bool:
    return any(k.startswith('stage0.') for k in state_dict)


def _convert_block_part(part: str, reverse: bool, layer_norm: bool = False) -> Optional[str]:
    """Rename the part of a key below a block; ``layer_norm`` says the block's input norm is a LayerNorm."""
    if not reverse and part.startswith('norm.'):
        return 'norm.' + part[len('norm.norm.' if part.startswith('norm.norm.') else 'norm.') :]
    if reverse and part.startswith('norm.'):
        return ('norm.norm.' if layer_norm else 'norm.') + part[len('norm.') :]
    for official, ours in _BLOCK_PARTS:
        src, dst = (ours, official) if reverse else (official, ours)
        if part.startswith(src):
            return dst + part[len(src) :]
    return None


def _convert_prefix(key: str, reverse: bool) -> Optional[str]:
    for official, ours in _PREFIXES:
        src, dst = (ours, official) if reverse else (official, ours)
        if key.startswith(src):
            rest = key[len(src) :]
            if dst in ('stem.block.', 'stage0.1.'):
                rest = _convert_block_part(rest, reverse)
                if rest is None:
                    return None
            return dst + rest
    return None


def to_timm_layout(state_dict: Mapping) -> Dict[str, torch.Tensor]:
    """Rename official keys to this project's layout; a state dict already in it is returned unchanged."""
    if not is_official_layout(state_dict):
        return dict(state_dict)
    out, unknown = {}, []
    for key, value in state_dict.items():
        m = _OFFICIAL_BLOCK.match(key)
        if m:
            part = _convert_block_part(m.group(3), reverse=False)
            new = f'stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.{part}' if part else None
        else:
            new = _convert_prefix(key, reverse=False)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise CheckpointError(
            f'{len(unknown)} keys of this official-layout checkpoint are not part of EMO: {unknown[:5]}; '
            'is it an EMO checkpoint from github.com/zhangzjn/EMO?'
        )
    return out


def to_official_layout(state_dict: Mapping) -> Dict[str, torch.Tensor]:
    """Rename this project's keys to the official layout (the inverse of :func:`to_timm_layout`)."""
    out = {}
    for key, value in state_dict.items():
        m = TIMM_BLOCK.match(key)
        if m:
            stage, block, part = int(m.group(1)), m.group(2), m.group(3)
            # a LayerNorm has no running stats: stages 3-4 use one, stages 1-2 a BatchNorm
            layer_norm = f'stages.{stage}.blocks.{block}.norm.running_mean' not in state_dict
            new = f'stage{stage + 1}.{block}.{_convert_block_part(part, reverse=True, layer_norm=layer_norm)}'
        else:
            new = _convert_prefix(key, reverse=True) or key
        out[new] = value
    return out
