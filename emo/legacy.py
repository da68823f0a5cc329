"""Module paths of emo 0.1.0, kept so that files pickled by it, and code written against its docs, still work.

Whole pickled models (``torch.save(model)``, a fused model, an Ultralytics ``best.pt``) name their classes by module
path: ``emo.irmb.IRMB``, ``emo.irmb.GridAttention``, ``emo.irmb.ConvBnAct``, ``emo.model.EMO``, ``emo.model.Stem``,
``emo.model.EmoStage`` and ``emo.inference.FusedConv``. ``import emo`` makes those three module names point here,
where each class is found under its old name (unpickling imports ``emo`` first, so no import of this module is
needed). Two classes changed meaning and are brought up to date as they are unpickled: see :class:`ConvBnAct` and
:class:`GridAttention`. The modules 0.1.0's docs named (``emo.hub``, ``emo.checkpoint``, ``emo.export``) point at
their successors (:data:`MOVED_MODULES`). New code should import from :mod:`emo.models`, :mod:`emo.layers`,
:mod:`emo.weights` and :mod:`emo.deploy`.
"""

import importlib
import sys

import torch.nn as nn
from timm.layers import ConvNormAct, use_fused_attn
from timm.layers.norm_act import BatchNormAct2d, FrozenBatchNormAct2d

from .layers import grid_attention
from .layers.fused_conv import FusedConv
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
    'MOVED_MODULES',
    'create_with_weights',
]

LEGACY_MODULES = ('emo.irmb', 'emo.model', 'emo.inference')  # their classes, here
MOVED_MODULES = {
    'emo.hub': 'emo.weights',
    'emo.checkpoint': 'emo.weights.checkpoint',
    'emo.export': 'emo.deploy.export',
}


class ConvBnAct(nn.Module):
    """emo 0.1.0's depthwise conv + BatchNorm + activation; unpickled, it becomes timm's ``ConvNormAct``.

    0.1.0 kept the activation beside the BatchNorm (``conv``, ``bn``, ``act``); ``ConvNormAct`` keeps it inside a
    ``BatchNormAct2d`` with the same state-dict keys, so the module is rebuilt in place with the same tensors. A
    BatchNorm frozen by 0.1.0's ``emo.detection.freeze_batch_norm`` (torchvision's ``FrozenBatchNorm2d``) becomes
    timm's ``FrozenBatchNormAct2d``, what ``freeze_batch_norm`` makes of a ``ConvNormAct`` today.
    """

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        old_bn, act = self._modules['bn'], self._modules.pop('act')
        num_features = old_bn.weight.numel()
        if isinstance(old_bn, nn.BatchNorm2d):
            bn = BatchNormAct2d(num_features, eps=old_bn.eps, momentum=old_bn.momentum, act_layer=nn.Identity)
        else:
            bn = FrozenBatchNormAct2d(num_features, eps=old_bn.eps, act_layer=nn.Identity)
        bn.act = act
        bn.load_state_dict(old_bn.state_dict(), strict=isinstance(old_bn, nn.BatchNorm2d))
        bn.to(device=old_bn.weight.device, dtype=old_bn.weight.dtype)
        bn.train(old_bn.training)
        self._modules['bn'] = bn
        self.__class__ = ConvNormAct


class GridAttention(grid_attention.GridAttention):
    """emo 0.1.0's window attention; unpickled, it becomes today's ``GridAttention``.

    In 0.1.0 ``fused_attn`` meant "the token-major path, after ``fuse()``"; today every model computes token-major
    and ``fused_attn`` chooses ``scaled_dot_product_attention``, from timm's ``use_fused_attn()`` as a new model
    does. The outputs are the same either way.
    """

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.fused_attn = use_fused_attn()
        self.__class__ = grid_attention.GridAttention


def install() -> None:
    """Point emo 0.1.0's module names at this module and at the moved modules (idempotent)."""
    module = sys.modules[__name__]
    package = sys.modules[__name__.rpartition('.')[0]]
    for name in LEGACY_MODULES:
        sys.modules.setdefault(name, module)
        setattr(package, name.rpartition('.')[2], module)  # `import emo.irmb; emo.irmb.IRMB` as before
    for name, successor in MOVED_MODULES.items():
        sys.modules.setdefault(name, importlib.import_module(successor))
        setattr(package, name.rpartition('.')[2], sys.modules[name])
