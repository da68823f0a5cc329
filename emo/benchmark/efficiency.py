"""Work per millisecond: each model's multiply-accumulates, and the GMAC/s each runtime achieves on it.

Latency alone says which model is faster; GMAC/s says how well a runtime executes the operations a model does,
whatever their number: the architecture sets the count, the deployed graph sets how fast each runs. A variant's
efficiency is its GMAC/s over that of the best peer of its accuracy tier (:data:`EFFICIENCY_TIERS`), in the same
runtime, batch and run.
"""

from typing import Dict, Optional

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..layers import explicit_attention

__all__ = ['EFFICIENCY_TIERS', 'count_gmacs', 'efficiency_table']

# variant -> the peers of its ImageNet top-1 tier (timm's results tables): EMO-1M / EMOv2-1M (71.5 / 72.3) next to
# EdgeNeXt-XXS (71.1) and MobileNetV4-Conv-S (73.8), the 2M variants (75.1 / 75.8) next to EdgeNeXt-XS,
# MobileViT-XS and MobileNetV3-L (74.6-75.8), the 5M and 6M ones (78.4-79.4) next to RepViT-M0.9 and MobileViT-S
EFFICIENCY_TIERS = {
    'emo_1m': ('edgenext_xx_small', 'mobilenetv4_conv_small'),
    'emo2_1m': ('edgenext_xx_small', 'mobilenetv4_conv_small'),
    'emo_2m': ('edgenext_x_small', 'mobilevit_xs', 'mobilenetv3_large_100'),
    'emo2_2m': ('edgenext_x_small', 'mobilevit_xs', 'mobilenetv3_large_100'),
    'emo_5m': ('repvit_m0_9', 'mobilevit_s'),
    'emo_6m': ('repvit_m0_9', 'mobilevit_s'),
    'emo2_5m': ('repvit_m0_9', 'mobilevit_s'),
}


def count_gmacs(model: nn.Module, img_size: int) -> float:
    """Multiply-accumulates (10^9) of one ``img_size`` image through ``model``: convolutions, linear layers and
    attention matmuls, as torch's FlopCounterMode counts them (FLOPs / 2). Attention is counted as the explicit
    ``softmax(q k^T) v``, since the counter does not count every fused attention kernel; the count is the same for
    a fused and an unfused model, whose folded BatchNorms do no multiply-accumulates."""
    was_training = model.training
    model.eval()
    try:
        # autograd on: a fused model then takes plain convs, not the oneDNN kernels the counter does not see
        with torch.enable_grad(), explicit_attention(model), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, img_size, img_size))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2e9


def efficiency_table(table: Dict[str, Dict], gmacs: Dict[str, float], batch: int) -> Dict[str, Dict]:
    """For one runtime and batch: every model's GMAC/s, and for each variant with tier peers in ``table`` its
    ratio to the best of them (``vs_best_peer``, and which peer that was)."""
    rates = {
        name: gmacs[name.split('/')[0]] * batch / (entry['median_ms'] / 1000)
        for name, entry in table.items()
        if name.split('/')[0] in gmacs
    }
    out: Dict[str, Dict] = {name: {'gmacs_per_s': rate} for name, rate in rates.items()}
    for variant, peers in EFFICIENCY_TIERS.items():
        if variant not in rates:
            continue
        best: Optional[str] = max((p for p in peers if p in rates), key=rates.get, default=None)
        if best is not None:
            out[variant].update(best_peer=best, vs_best_peer=rates[variant] / rates[best])
    return out
