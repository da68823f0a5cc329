"""Inference-only layers that ``fuse()`` puts in place of conv + BatchNorm + activation.

:class:`FusedConv` holds one ordinary conv (BatchNorm already folded into its weight and bias) and the name of
the activation after it. On CPU in eager mode it runs through oneDNN's fused convolution, the kernel that
``torch.compile`` itself emits for CPU convs: the weight is reordered once into oneDNN's blocked layout (not
on every call, as plain ``F.conv2d`` does) and the activation is applied while the output is still in cache.
Everywhere else (GPU, half precision, TorchScript, tracing, ``torch.export``, ONNX export, ``torch.compile``)
it is a plain ``F.conv2d`` followed by the activation, so fused models export and compile like any other.
"""

import weakref
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import GELU

__all__ = ['FusedConv', 'is_eager', 'onednn_available', 'pointwise_on_tokens']

_ACTIVATIONS = ('', 'silu', 'gelu')
# oneDNN post-op names (and GELU's algorithm: 'none' is the exact erf form nn.GELU() computes)
_ONEDNN_ATTR = {'': ('none', ''), 'silu': ('swish', ''), 'gelu': ('gelu', 'none')}


def onednn_available() -> bool:
    """True when this torch build has oneDNN's fused CPU convolution."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, '_convolution_pointwise')


# FusedConv -> (what identifies its weight's values, {input shape: oneDNN copy}); weak, so the copies go with their
# layers, and outside the module, so deepcopy, pickling and state_dict never meet oneDNN tensors. oneDNN picks
# the weight layout for an input shape; a copy packed for another shape would be re-packed on every call.
_PACKED: 'weakref.WeakKeyDictionary[nn.Module, tuple]' = weakref.WeakKeyDictionary()
_MAX_SHAPES = 8


def _weight_key(weight: torch.Tensor) -> tuple:
    # the version counter sees in-place ops on the parameter; the storage address sees `.data = ...`, `.to()`
    # and load_state_dict; `.data.mul_()`-style edits bypass both, and `FusedConv.repack()` covers them
    # inference tensors (a model fused inside torch.inference_mode) keep no version counter: there only the
    # storage address is seen, and an in-place edit made under inference_mode needs repack() too
    version = 0 if weight.is_inference() else weight._version
    return (weight.data_ptr(), version, weight.dtype, weight.device)


def _packed_weight(conv: 'FusedConv', x: torch.Tensor) -> torch.Tensor:
    key = _weight_key(conv.weight)
    cached = _PACKED.get(conv)
    if cached is None or cached[0] != key:
        cached = (key, {})
        _PACKED[conv] = cached
    by_shape = cached[1]
    shape = tuple(x.shape)
    packed = by_shape.get(shape)
    if packed is None:
        if len(by_shape) >= _MAX_SHAPES:
            by_shape.pop(next(iter(by_shape)))
        packed = torch.ops.mkldnn._reorder_convolution_weight(
            conv.weight.detach(), list(conv.padding), list(conv.stride), [1, 1], conv.groups, list(shape)
        )
        by_shape[shape] = packed
    return packed


def is_eager() -> bool:
    """True outside every tracer (TorchScript, torch.fx, dynamo / torch.export, the ONNX exporters)."""
    if torch.jit.is_tracing():  # torch.jit.trace, the TorchScript-based ONNX exporter
        return False
    if torch.compiler.is_compiling():  # dynamo, torch.export
        return False
    return not torch.fx._symbolic_trace.is_fx_symbolic_tracing()


def _activate(x: torch.Tensor, act: str) -> torch.Tensor:
    if act == 'silu':
        return F.silu(x, inplace=not torch.is_grad_enabled())
    if act == 'gelu':
        return F.gelu(x)
    return x


def pointwise_on_tokens(conv: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv (``nn.Conv2d``, or :class:`FusedConv` with its activation) applied to channels-last tokens
    ``(..., C)`` as one matmul: the same arithmetic, with the output channels-last too."""
    y = F.linear(tokens, conv.weight.flatten(1), conv.bias)
    return _activate(y, conv.act) if isinstance(conv, FusedConv) else y


class FusedConv(nn.Module):
    """``act(conv2d(x, weight, bias))`` for inference, built by :meth:`from_conv`.

    Args:
        in_chs, out_chs, kernel_size, stride, groups: the conv's shape; padding is ``kernel_size // 2``.
        act: '' (none), 'silu' or 'gelu' (exact erf form).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: str = '',
        device=None,
        dtype=None,
    ):
        super().__init__()
        if act not in _ACTIVATIONS:
            raise ValueError(f'act must be one of {_ACTIVATIONS}, got {act!r}')
        dd = {'device': device, 'dtype': dtype}
        self.in_chs = in_chs
        self.out_chs = out_chs
        self.stride = (stride, stride)
        self.padding = (kernel_size // 2, kernel_size // 2)
        self.groups = groups
        self.act = act
        self.weight = nn.Parameter(torch.empty(out_chs, in_chs // groups, kernel_size, kernel_size, **dd))
        self.bias = nn.Parameter(torch.zeros(out_chs, **dd))
        self.use_onednn = onednn_available()

    @classmethod
    @torch.no_grad()
    def from_conv(cls, conv: nn.Conv2d, act: Optional[nn.Module] = None) -> 'FusedConv':
        """The conv (symmetric 'same' padding) and the activation module after it as one layer."""
        k = conv.kernel_size[0]
        if conv.kernel_size != (k, k) or conv.padding != (k // 2, k // 2) or conv.dilation != (1, 1):
            raise ValueError(f'FusedConv takes square convs with padding kernel_size // 2, got {conv}')
        if act is None or isinstance(act, nn.Identity):
            act_name = ''
        elif isinstance(act, nn.SiLU):
            act_name = 'silu'
        elif isinstance(act, GELU) or (isinstance(act, nn.GELU) and act.approximate == 'none'):
            act_name = 'gelu'  # timm's GELU (get_act_layer('gelu')) is the exact form too
        else:
            raise ValueError(f'FusedConv takes SiLU, exact GELU or no activation, got {act}')
        fused = cls(
            conv.in_channels,
            conv.out_channels,
            k,
            conv.stride[0],
            conv.groups,
            act_name,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        fused.weight.copy_(conv.weight)
        if conv.bias is not None:
            fused.bias.copy_(conv.bias)
        return fused

    def repack(self) -> None:
        """Forget the oneDNN copies of the weight; needed only after editing it through ``.data`` in place."""
        _PACKED.pop(self, None)

    def extra_repr(self) -> str:
        k = self.weight.shape[-1]
        return (
            f'{self.in_chs}, {self.out_chs}, kernel_size={k}, stride={self.stride[0]}, groups={self.groups}, '
            f'act={self.act!r}'
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and self._onednn_applies(x):
            return self._forward_onednn(x)
        return _activate(F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups), self.act)

    @torch.jit.unused
    def _onednn_applies(self, x: torch.Tensor) -> bool:
        # tracer checks first: under torch.fx, x is a proxy whose device cannot be branched on
        return (
            self.use_onednn
            and not torch.is_grad_enabled()
            and is_eager()
            and x.device.type == 'cpu'
            and x.dtype == torch.float32
        )

    @torch.jit.unused
    def _forward_onednn(self, x: torch.Tensor) -> torch.Tensor:
        # oneDNN runs channels-last; EMO's fused stem hands every layer NHWC maps, so this is a no-op there
        x = x.contiguous(memory_format=torch.channels_last)
        attr, algorithm = _ONEDNN_ATTR[self.act]
        return torch.ops.mkldnn._convolution_pointwise(
            x,
            _packed_weight(self, x),
            self.bias,
            list(self.padding),
            list(self.stride),
            [1, 1],
            self.groups,
            attr,
            [],
            algorithm,
        )
