"""The registered EMO variants: each one's official figures (from the manifest) and its architecture.

The architecture is written once, in the ``model_args`` of each ``@register_model`` function of
:mod:`emo.models.emo`; a variant's depths, widths, expansion ratios and head widths are read from the model that
function builds on the 'meta' device (no memory, no weights) when the table is made, at import.
"""

import functools
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from ..weights.manifest import official_figures

__all__ = ['EmoVariant', 'VARIANTS', 'get_variant', 'variant_for_arch']


@functools.cache
def _architecture(name: str) -> Dict[str, tuple]:
    import timm

    model = timm.create_model(name, device='meta')
    return dict(depths=model.depths, widths=model.widths, exp_ratios=model.exp_ratios, dim_heads=model.dim_heads)


@dataclass(frozen=True)
class EmoVariant:
    """One EMO variant: its official size figures, and its architecture as registered (filled in from the model
    its ``@register_model`` function builds on 'meta')."""

    name: str
    params: int
    gflops: float  # fvcore, 224x224
    drop_path_rate: float  # the official training value (timm's default here is 0, as for all models)
    depths: Tuple[int, ...] = field(init=False)
    widths: Tuple[int, ...] = field(init=False)
    exp_ratios: Tuple[float, ...] = field(init=False)
    dim_heads: Tuple[Optional[int], ...] = field(init=False)  # None: a stage without attention

    def __post_init__(self) -> None:
        for key, value in _architecture(self.name).items():
            object.__setattr__(self, key, value)  # frozen: set once, here

    @property
    def title(self) -> str:
        return 'EMO-' + self.name.split('_')[1].upper()

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
        raise ValueError(f'unknown EMO variant {name!r}; choose one of {sorted(VARIANTS)}')
    return variant


def variant_for_arch(depths: Tuple[int, ...], widths: Tuple[int, ...]) -> Optional[EmoVariant]:
    """The released variant with these stage depths and widths, if any."""
    for v in VARIANTS.values():
        if tuple(v.depths) == tuple(depths) and tuple(v.widths) == tuple(widths):
            return v
    return None
