"""Folding an eval-mode BatchNorm into the conv next to it, for inference."""

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ['fold_bn_after', 'fold_bn_before']


@torch.no_grad()
def fold_bn_after(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv (with bias) computing ``bn(conv(x))`` with ``bn``'s running statistics, whatever mode either is in.

    torch's ``fuse_conv_bn_weights`` does the arithmetic; ``fuse_conv_bn_eval`` would refuse modules in training
    mode, where ``IRMB.fuse`` folds anyway (after a warning).
    """
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    fused = _conv_like(conv)
    fused.weight.copy_(weight)
    fused.bias.copy_(bias)
    return fused


@torch.no_grad()
def fold_bn_before(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """A conv computing ``conv(bn(x))`` with ``bn``'s running statistics; ``conv`` must be an ungrouped 1x1 conv,
    so no padding sees the BatchNorm's shift.

    Written here because torch folds only a BatchNorm that follows its conv; EMO's blocks normalise their input,
    and in blocks without attention that norm is followed by the 1x1 expansion.
    """
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ValueError(f'a BatchNorm folds forward only into an ungrouped 1x1 conv, got {conv}')
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    weight = conv.weight.flatten(1)
    fused = _conv_like(conv)
    fused.weight.copy_((weight * scale).reshape_as(conv.weight))
    fused.bias.copy_(weight @ shift if conv.bias is None else conv.bias + weight @ shift)
    return fused


def _conv_like(conv: nn.Conv2d) -> nn.Conv2d:
    return nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
