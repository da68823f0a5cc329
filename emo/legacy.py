"""Module paths of emo 0.1.0, kept so that files pickled by it still load.

Whole pickled models (``torch.save(model)``, a fused model, an Ultralytics ``best.pt``) name their classes by module
path: ``emo.irmb.IRMB``, ``emo.irmb.GridAttention``, ``emo.irmb.ConvBnAct``, ``emo.model.EMO``, ``emo.model.Stem``,
``emo.model.EmoStage`` and ``emo.inference.FusedConv``. ``import emo`` makes those three module names point here,
where each class is found under its old name (unpickling imports ``emo`` first, so no import of this module is
needed). New code should import from :mod:`emo.models` and :mod:`emo.layers`.
"""

import sys

import torch.nn as nn
from timm.layers import ConvNormAct
from timm.layers.norm_act import BatchNormAct2d

from .layers.fused_conv import FusedConv
from .layers.grid_attention import GridAttention
from .models.emo import EMO, IRMB, EmoStage, Stem
from .weights import create_with_weights  # emo.model.create_with_weights, as 0.1.0's docs named it

__all__ = [
    'ConvBnAct',
    'EMO',
    'EmoStage',
    'FusedConv',
    'GridAttention',
    'IRMB',
    'Stem',
    'LEGACY_MODULES',
    'create_with_weights',
]

LEGACY_MODULES = ('emo.irmb', 'emo.model', 'emo.inference')


class ConvBnAct(nn.Module):
    """emo 0.1.0's depthwise conv + BatchNorm + activation; unpickled, it becomes timm's ``ConvNormAct``.

    0.1.0 kept the activation beside the BatchNorm (``conv``, ``bn``, ``act``); ``ConvNormAct`` keeps it inside a
    ``BatchNormAct2d`` with the same state-dict keys, so the module is rebuilt in place with the same tensors.
    """

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        old_bn, act = self._modules['bn'], self._modules.pop('act')
        bn = BatchNormAct2d(old_bn.num_features, eps=old_bn.eps, momentum=old_bn.momentum, act_layer=nn.Identity)
        bn.act = act
        bn.load_state_dict(old_bn.state_dict())
        bn.to(device=old_bn.weight.device, dtype=old_bn.weight.dtype)
        bn.train(old_bn.training)
        self._modules['bn'] = bn
        self.__class__ = ConvNormAct


def install() -> None:
    """Point emo 0.1.0's module names at this module (idempotent)."""
    module = sys.modules[__name__]
    package = sys.modules[__name__.rpartition('.')[0]]
    for name in LEGACY_MODULES:
        sys.modules.setdefault(name, module)
        setattr(package, name.rpartition('.')[2], module)  # `import emo.irmb; emo.irmb.IRMB` as before
