"""The registered variants of both families: each one's official figures (from the manifest) and its architecture.

The architecture is written once, in the ``model_args`` of each ``@register_model`` function of
:mod:`emo.models.emo` and :mod:`emo.models.emo2`; a variant's depths, widths, expansion ratios, head widths and window
size are read from the model that function builds on the 'meta' device (no memory, no weights) when the table is
made, at import.
"""

import functools
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from ..weights.manifest import Family, families, official_figures, released_weights

__all__ = ['EmoVariant', 'VARIANTS', 'get_variant', 'model_names', 'variant_for_arch']


@functools.cache
def _architecture(name: str) -> Dict[str, tuple]:
    import timm

    model = timm.create_model(name, device='meta')
    return dict(
        depths=model.depths,
        widths=model.widths,
        exp_ratios=model.exp_ratios,
        dim_heads=model.dim_heads,
        window_size=model.window_size,
    )


@dataclass(frozen=True)
class EmoVariant:
    """One variant of EMO or EMOv2: its official size figures, and its architecture as registered (filled in from
    the model its ``@register_model`` function builds on 'meta')."""

    name: str
    family: str  # 'emo' or 'emo2', a key of the manifest's families
    params: int
    gflops: float  # fvcore, at img_size x img_size
    drop_path_rate: float  # the official training value (timm's default here is 0, as for all models)
    img_size: int = 224  # what the official figures and weights are for
    depths: Tuple[int, ...] = field(init=False)
    widths: Tuple[int, ...] = field(init=False)
    exp_ratios: Tuple[float, ...] = field(init=False)
    dim_heads: Tuple[Optional[int], ...] = field(init=False)  # None: a stage without attention
    window_size: int = field(init=False)

    def __post_init__(self) -> None:
        for key, value in _architecture(self.name).items():
            object.__setattr__(self, key, value)  # frozen: set once, here

    @property
    def title(self) -> str:
        """'EMO-2M', 'EMOv2-5M', 'EMOv2-5M-512'."""
        return '-'.join([self.family_info.title] + [part.upper() for part in self.name.split('_')[1:]])

    @property
    def family_info(self) -> Family:
        return families()[self.family]

    def model_args(self) -> Dict[str, tuple]:
        """depths, widths, exp_ratios and dim_heads, as registered."""
        return dict(depths=self.depths, widths=self.widths, exp_ratios=self.exp_ratios, dim_heads=self.dim_heads)


VARIANTS: Dict[str, EmoVariant] = {
    name: EmoVariant(name=name, **figures) for name, figures in official_figures().items()
}


def get_variant(name: str) -> EmoVariant:
    """The variant called ``name`` (a pretrained tag is accepted: ``'emo_2m.in1k'``), or one ValueError naming the
    variants there are: the one check behind every function that takes a variant name."""
    variant = VARIANTS.get(str(name).split('.')[0])
    if variant is None:
        raise ValueError(f'unknown EMO or EMOv2 variant {name!r}; choose one of {sorted(VARIANTS)}')
    return variant


def model_names() -> list:
    """Every name a command's ``--model`` takes: the variants and their pretrained tags (``emo2_1m.dist_in1k``)."""
    return sorted(set(VARIANTS) | set(released_weights()))


def variant_for_arch(depths: Tuple[int, ...], widths: Tuple[int, ...], family: str = 'emo') -> Optional[EmoVariant]:
    """The registered variant of ``family`` with these stage depths and widths, if any (the first of those that
    differ in window size only: ``emo2_5m`` before ``emo2_5m_512``)."""
    for v in VARIANTS.values():
        if v.family == family and tuple(v.depths) == tuple(depths) and tuple(v.widths) == tuple(widths):
            return v
    return None
