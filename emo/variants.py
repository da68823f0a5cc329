"""The four EMO variants: architecture, and the size figures each is checked against.

The released weights (origin, blob ids, accuracy) are in weights/manifest.json, read by :mod:`emo.hub`.
"""

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

__all__ = ['EmoVariant', 'VARIANTS', 'variant_for_arch']


@dataclass(frozen=True)
class EmoVariant:
    """One EMO variant: its architecture and its official size figures."""

    name: str
    depths: Tuple[int, int, int, int]
    widths: Tuple[int, int, int, int]
    exp_ratios: Tuple[float, float, float, float]
    dim_heads: Tuple[Optional[int], Optional[int], Optional[int], Optional[int]]  # None: no attention
    drop_path_rate: float  # the official training value (timm's default here is 0, as for all models)
    params: int
    gflops: float  # fvcore, 224x224

    @property
    def title(self) -> str:
        return 'EMO-' + self.name.split('_')[1].upper()

    def model_args(self) -> dict:
        return dict(depths=self.depths, widths=self.widths, exp_ratios=self.exp_ratios, dim_heads=self.dim_heads)


VARIANTS: Dict[str, EmoVariant] = {
    v.name: v
    for v in (
        EmoVariant(
            name='emo_1m', depths=(2, 2, 8, 3), widths=(32, 48, 80, 168), exp_ratios=(2, 2.5, 3, 3.5),
            dim_heads=(None, None, 20, 21), drop_path_rate=0.04036,
            params=1_361_168, gflops=0.261,
        ),
        EmoVariant(
            name='emo_2m', depths=(3, 3, 9, 3), widths=(32, 48, 120, 200), exp_ratios=(2, 2.5, 3, 3.5),
            dim_heads=(None, None, 20, 20), drop_path_rate=0.05,
            params=2_377_472, gflops=0.439,
        ),
        EmoVariant(
            name='emo_5m', depths=(3, 3, 9, 3), widths=(48, 72, 160, 288), exp_ratios=(2, 3, 4, 4),
            dim_heads=(None, None, 32, 32), drop_path_rate=0.05,
            params=5_108_848, gflops=0.903,
        ),
        EmoVariant(
            name='emo_6m', depths=(3, 3, 9, 3), widths=(48, 72, 160, 320), exp_ratios=(2, 3, 4, 5),
            dim_heads=(None, None, 20, 32), drop_path_rate=0.05,
            params=6_168_496, gflops=0.961,
        ),
    )
}  # fmt: skip


def variant_for_arch(depths: Tuple[int, ...], widths: Tuple[int, ...]) -> Optional[EmoVariant]:
    """The released variant with these stage depths and widths, if any."""
    for v in VARIANTS.values():
        if tuple(v.depths) == tuple(depths) and tuple(v.widths) == tuple(widths):
            return v
    return None
