"""Activation memory, counted exactly: the peak bytes of the tensor storages that ops create."""

import functools
import weakref
from typing import Callable, Dict, List, Optional

import timm
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ['ActivationMemory', 'activation_peak', 'memory_report']


class ActivationMemory(TorchDispatchMode):
    """Counts the bytes of every tensor storage that ops create while active, and their peak.

    Storages made before entering (parameters, buffers, inputs) are not counted, nor are views of them or
    in-place updates to them, so ``peak`` is the memory of activations, and of gradients in a backward pass.
    A storage counts until the last tensor on it is freed, autograd's saved tensors included; the count does
    not depend on the allocator's caching.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._storages: Dict[int, List[int]] = {}  # data_ptr -> [live tensors, bytes]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # storages that existed before (parameters, buffers, inputs): views of them and in-place ops on them
        # (BatchNorm statistics) allocate nothing
        before = {
            p for t in tree_leaves((args, kwargs)) if (p := _storage_ptr(t)) is not None and p not in self._storages
        }
        out = func(*args, **kwargs)
        for t in tree_leaves(out):
            ptr = _storage_ptr(t)
            if ptr is not None and ptr not in before:
                self._track(t, ptr)
        return out

    def _track(self, t: torch.Tensor, ptr: int) -> None:
        entry = self._storages.get(ptr)
        if entry is None:
            entry = self._storages[ptr] = [0, t.untyped_storage().nbytes()]
            self.current += entry[1]
            self.peak = max(self.peak, self.current)
        entry[0] += 1
        weakref.finalize(t, self._release, ptr)

    def _release(self, ptr: int) -> None:
        entry = self._storages.get(ptr)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self._storages[ptr]


def _storage_ptr(t: object) -> Optional[int]:
    if not isinstance(t, torch.Tensor) or t.layout != torch.strided:  # oneDNN's packed weights are opaque
        return None
    return t.untyped_storage().data_ptr() or None


def activation_peak(fn: Callable[[], object]) -> int:
    """Peak activation bytes while ``fn()`` runs (see :class:`ActivationMemory`)."""
    with ActivationMemory() as mem:
        fn()
    return mem.peak


def memory_report(variant: str, batch_size: int = 8, img_size: int = 224) -> Dict[str, float]:
    """Peak MiB of activations and gradients in one training step (forward + backward) with and without
    gradient checkpointing, and of activations per image in inference, unfused and fused, at batch 1 and at
    ``batch_size`` (where the fused model runs large batches in slices)."""
    from timm.utils import reparameterize_model

    torch.manual_seed(0)
    x = torch.randn(batch_size, 3, img_size, img_size)
    model = timm.create_model(variant)
    model.train()

    def step():
        model(x).sum().backward()

    out = {'batch_size': batch_size}
    for ckpt_on in (False, True):
        model.set_grad_checkpointing(ckpt_on)
        model.zero_grad(set_to_none=True)
        out['train_mib_checkpointing' if ckpt_on else 'train_mib'] = activation_peak(step) / 2**20
    model.set_grad_checkpointing(False)
    model.eval()
    fused = reparameterize_model(model)
    for name, m in (('infer_mib_per_image', model), ('infer_fused_mib_per_image', fused)):
        with torch.inference_mode():
            out[name] = activation_peak(functools.partial(m, x)) / 2**20 / batch_size
            out[name + '_batch1'] = activation_peak(functools.partial(m, x[:1])) / 2**20
    return out
