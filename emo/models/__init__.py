"""The model families, one file each, registered with timm on import: :mod:`emo.models.emo` (EMO, ICCV 2023) and
:mod:`emo.models.emo2` (EMOv2, TPAMI 2025, built on EMO's stages)."""

from .emo import EMO, IRMB, checkpoint_filter_fn
from .emo2 import EMO2
from .variants import VARIANTS, EmoVariant, variant_for_arch

__all__ = ['EMO', 'EMO2', 'IRMB', 'VARIANTS', 'EmoVariant', 'checkpoint_filter_fn', 'variant_for_arch']
