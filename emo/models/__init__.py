"""The model families, one file each, registered with timm on import: :mod:`emo.models.emo` (EMO, ICCV 2023)."""

from .emo import EMO, IRMB, checkpoint_filter_fn
from .variants import VARIANTS, EmoVariant, variant_for_arch

__all__ = ['EMO', 'IRMB', 'VARIANTS', 'EmoVariant', 'checkpoint_filter_fn', 'variant_for_arch']
