"""The four released EMO variants: architecture and the official figures each is checked against."""

import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

__all__ = ['EmoVariant', 'VARIANTS', 'OFFICIAL_COMMIT', 'official_url', 'variant_for_arch']

# the commit of github.com/zhangzjn/EMO whose resources/EMO_*/net.pth are the released weights
OFFICIAL_COMMIT = '27d9b40fea9c2a12a2fe7acc51032184852a99d8'


@dataclass(frozen=True)
class EmoVariant:
    """One released EMO variant: its architecture and the official numbers it is checked against."""

    name: str
    depths: Tuple[int, int, int, int]
    widths: Tuple[int, int, int, int]
    exp_ratios: Tuple[float, float, float, float]
    dim_heads: Tuple[Optional[int], Optional[int], Optional[int], Optional[int]]  # None: no attention
    drop_path_rate: float  # the official training value (timm's default here is 0, as for all models)
    params: int
    gflops: float  # fvcore, 224x224
    top1: float  # official ImageNet-1k
    top5: float

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
            params=1_361_168, gflops=0.261, top1=71.498, top5=90.368,
        ),
        EmoVariant(
            name='emo_2m', depths=(3, 3, 9, 3), widths=(32, 48, 120, 200), exp_ratios=(2, 2.5, 3, 3.5),
            dim_heads=(None, None, 20, 20), drop_path_rate=0.05,
            params=2_377_472, gflops=0.439, top1=75.134, top5=92.184,
        ),
        EmoVariant(
            name='emo_5m', depths=(3, 3, 9, 3), widths=(48, 72, 160, 288), exp_ratios=(2, 3, 4, 4),
            dim_heads=(None, None, 32, 32), drop_path_rate=0.05,
            params=5_108_848, gflops=0.903, top1=78.422, top5=93.970,
        ),
        EmoVariant(
            name='emo_6m', depths=(3, 3, 9, 3), widths=(48, 72, 160, 320), exp_ratios=(2, 3, 4, 5),
            dim_heads=(None, None, 20, 32), drop_path_rate=0.05,
            params=6_168_496, gflops=0.961, top1=78.988, top5=94.162,
        ),
    )
}  # fmt: skip


OFFICIAL_BASE_URL = f'https://github.com/zhangzjn/EMO/raw/{OFFICIAL_COMMIT}'


def official_url(name: str) -> str:
    """Where the official ``net.pth`` of a variant is published (pinned to the release commit).

    The environment variable ``EMO_ORIGIN_URL`` replaces the base (a mirror, or a local server in tests); it is
    read when ``emo`` is imported.
    """
    base = os.environ.get('EMO_ORIGIN_URL', OFFICIAL_BASE_URL).rstrip('/')
    folder = 'EMO_' + name.split('_')[1].upper()
    return f'{base}/resources/{folder}/net.pth'


def variant_for_arch(depths: Tuple[int, ...], widths: Tuple[int, ...]) -> Optional[EmoVariant]:
    """The released variant with these stage depths and widths, if any."""
    for v in VARIANTS.values():
        if tuple(v.depths) == tuple(depths) and tuple(v.widths) == tuple(widths):
            return v
    return None
