"""Reading EMO and EMOv2 checkpoints and converting the official layouts to this project's.

Accepted inputs, in any combination:

* the official release layouts: EMO's (``stage0.0.convs.0.0.weight``, ``stage3.1.qk.conv.weight``, ...), as in
  ``resources/EMO_*/net.pth`` of github.com/zhangzjn/EMO, and EMOv2's (``stage0.0.conv.weight``,
  ``stage3.1.eops.0.qk.conv.weight``, ``stage3.1.ls.gamma``, ...), as in ``resources/Cls/EMOv2_*.pth`` of
  github.com/zhangzjn/EMOv2;
* this project's layout (``stem.conv.weight``, ``stages.2.blocks.1.attn.qk.weight``, ...), from a
  ``.pth``/``.pt`` file or a ``.safetensors`` file;
* training wrappers: ``{'net': ..., 'net_E': ...}`` (the official trainer; ``net_E`` is the EMA copy and is
  preferred), and timm's ``state_dict_ema`` / ``model_ema`` / ``state_dict`` / ``model``;
* a ``module.`` prefix (DataParallel / DistributedDataParallel) or ``_orig_mod.`` (torch.compile).

Files are read with ``torch.load(weights_only=True)``: a checkpoint can never run code.
"""

import logging
import os
import pickle
import zipfile
from typing import Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch
from timm.models import clean_state_dict

from .errors import CheckpointError, first_line
from .manifest import families
from .official_layout import TIMM_BLOCK, family_of, is_official_layout, to_official_layout, to_timm_layout

__all__ = [
    'CheckpointError',
    'read_checkpoint',
    'check_finite',
    'check_classifier_checkpoint',
    'unwrap',
    'to_timm_state_dict',
    'is_official_layout',
    'to_timm_layout',
    'to_official_layout',
    'arch_of',
    'family_of',
    'check_matches_model',
    'load_into',
    'check_variant',
    'save_safetensors',
]

# one key only: safetensors writes its metadata map in a random order, and conversion must give the same bytes
# every time (the source's blob id is in the model card instead)
SAFETENSORS_METADATA = {'format': 'pt'}

_logger = logging.getLogger(__name__)

# the first conv's weight (EMO, EMOv2) and the classifier: timm adapts these to in_chans / num_classes
FIRST_CONV_KEYS = ('stem.conv.weight', 'stem.conv1.conv.weight')
ADAPTED_KEYS = (*FIRST_CONV_KEYS, 'head.weight', 'head.bias')

# wrapper keys, in order of preference: EMA weights first
_WRAPPER_KEYS = ('net_E', 'state_dict_ema', 'model_ema', 'net', 'state_dict', 'model')


def read_checkpoint(path: str) -> dict:
    """Read a checkpoint file (``.pth``/``.pt`` or ``.safetensors``) safely, with a clear error for a missing,
    truncated, foreign or unsafe file. Returns what the file holds (a state dict or a wrapper of one)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist')
    if os.path.isdir(path):
        raise CheckpointError(
            f'{path!r} is a folder, not a checkpoint file; for a converted hub folder use '
            f"timm.create_model('local-dir:{path}', pretrained=True)"
        )
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f'checkpoint file {path!r} is empty; download or save it again')
    with open(path, 'rb') as f:
        head = f.read(16)

    if path.endswith('.safetensors') or _looks_like_safetensors(head, size):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(path, device='cpu')
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(
                f'{path!r} is not a readable safetensors file ({e}); it may be truncated: download or save it again'
            ) from e
        check_finite(state, path)
        return state

    if head.startswith(b'PK'):
        try:
            whole_zip = zipfile.is_zipfile(path)
        except Exception:  # noqa: BLE001 - a damaged directory can make the check itself raise
            whole_zip = False
        if not whole_zip:
            raise CheckpointError(
                f'checkpoint file {path!r} ({size} bytes) is truncated or corrupt: its zip directory is missing; '
                'download or save it again'
            )
    elif not _is_legacy_torch_file(path):
        # a pickle opcode stream that is not torch.save's: a plain pickle, or random bytes that start like one
        raise CheckpointError(
            f'{path!r} is not a checkpoint: it is neither a PyTorch file (torch.save) nor a safetensors file'
            + (' (it is a plain Python pickle, which emo never unpickles)' if _opcodes(path) is not None else '')
        )
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        # a reference to a Python object (a class, or a function such as os.system), refused by the weights-only
        # unpickler as 'Unsupported global: GLOBAL x.y' or 'unsupported GLOBAL x.y ... is blocked'; other refusals
        # ('Unsupported operand 175') are bytes that do not parse
        if 'global' in str(e).lower():
            raise CheckpointError(
                f'{path!r} holds Python objects besides tensors, and unpickling them could run code, so it is '
                'refused. If you trust the file and where it came from, re-save only its tensors: load it once in '
                'a Python session you trust, take the state dict (names to tensors) out of what it holds, and '
                'save that with torch.save or safetensors; then load the new file'
            ) from e
        # the safe loader cannot parse it: damaged bytes, or a way of saving it does not read (legacy files of
        # pickle protocol 4 and 5); which one cannot be told without unpickling, so the message names both
        # torch's message is a page of advice that includes re-running with weights_only=False; keep its diagnosis
        reason = first_line(e, after='WeightsUnpickler error:')
        raise CheckpointError(
            f'the safe loader cannot read {path!r} ({reason}): it is truncated or corrupt (download '
            'or save it again), or saved in a form the safe loader does not read, such as torch.save with '
            '_use_new_zipfile_serialization=False and pickle protocol 4 or 5 (re-save it in the default format, in '
            'a session where you trust it)'
        ) from e
    except Exception as e:  # noqa: BLE001 - damaged bytes surface as any of a dozen exception types
        raise CheckpointError(
            f'checkpoint file {path!r} is truncated or corrupt ({type(e).__name__}: {e}); download or save it again'
        ) from e
    check_finite(state, path)
    return state


def check_classifier_checkpoint(checkpoint: object, path: str) -> None:
    """Refuse a checkpoint of ``emo segment train`` where a classifier's is expected, naming the commands that
    take it (its keys are a whole segmenter's, which would otherwise be called 'not an EMO checkpoint')."""
    if isinstance(checkpoint, Mapping) and 'segmenter' in checkpoint:
        raise CheckpointError(
            f'{path} is a checkpoint of emo segment train ({checkpoint["segmenter"]} on {checkpoint.get("arch")}), '
            f'not of a classifier: evaluate it with emo segment validate --checkpoint {path}, predict with emo '
            f'predict --task segment --weights {path}, export it with emo segment export --checkpoint {path}'
        )


def _weight_tensors(checkpoint: object) -> Iterator[Tuple[str, torch.Tensor]]:
    """The model weights a checkpoint holds: its top-level tensors and those of its model wrappers (not the
    optimizer's moments, which may be anything)."""
    if not isinstance(checkpoint, Mapping):
        return
    for key, value in checkpoint.items():
        if isinstance(value, torch.Tensor):
            yield str(key), value
        elif key in _WRAPPER_KEYS and isinstance(value, Mapping):
            for name, tensor in value.items():
                if isinstance(tensor, torch.Tensor):
                    yield f'{key}.{name}', tensor


def check_finite(checkpoint: object, path: str) -> None:
    """Refuse weights with NaN or inf: they come from a training that diverged, and a model made of them predicts
    one class for everything, which evaluation would report as a score (a constant prediction scores chance)."""
    bad = [
        name
        for name, tensor in _weight_tensors(checkpoint)
        if tensor.is_floating_point() and not tensor.isfinite().all()
    ]
    if bad:
        raise CheckpointError(
            f'{path!r} holds non-finite weights (NaN or inf in {len(bad)} tensor(s), first {bad[0]}): the training '
            'that wrote it diverged, so it can be neither evaluated nor exported; train again with a lower --lr'
        )


def _opcodes(path: str, limit: int = 64) -> Optional[list]:
    """The arguments of the first ``limit`` opcodes of the file's first pickle, or None when they do not parse.

    Read as opcodes only (nothing is executed), and only the start: a large file costs no more than a small one.
    """
    import itertools
    import pickletools

    try:
        with open(path, 'rb') as f:
            return [arg for _, arg, _ in itertools.islice(pickletools.genops(f), limit)]  # genops stops at STOP
    except Exception:  # noqa: BLE001 - any parse error means: not a pickle
        return None


def _is_legacy_torch_file(path: str) -> bool:
    """torch.save's non-zip files (any pickle protocol) start with a pickle of torch's magic number."""
    from torch.serialization import MAGIC_NUMBER

    args = _opcodes(path, limit=8)
    return args is not None and MAGIC_NUMBER in args


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    # 8-byte little-endian header length, then a JSON object
    if len(head) < 9 or head[8:9] != b'{':
        return False
    return int.from_bytes(head[:8], 'little') < size


def unwrap(checkpoint: Mapping) -> Dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: picks the EMA copy of a wrapper, strips ``module.`` and ``_orig_mod.``."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f'a checkpoint must be a dict of tensors, got {type(checkpoint).__name__}')
    present = [k for k in _WRAPPER_KEYS if isinstance(checkpoint.get(k), Mapping)]
    if present:
        chosen = present[0]
        _logger.info(
            'checkpoint holds %s: using %r%s',
            present,
            chosen,
            ' (the EMA weights)' if chosen in ('net_E', 'state_dict_ema', 'model_ema') else '',
        )
        checkpoint = checkpoint[chosen]
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f'checkpoint entry {key!r} is a {type(value).__name__}, not a tensor: this is not a state dict '
                f'(top-level keys: {sorted(checkpoint)[:8]})'
            )
    return clean_state_dict(dict(checkpoint))  # strips DDP's module. and torch.compile's _orig_mod.


def to_timm_state_dict(checkpoint: Mapping) -> Dict[str, torch.Tensor]:
    """The state dict of any accepted checkpoint (see the module doc), in this project's layout."""
    return to_timm_layout(unwrap(checkpoint))


def arch_of(state_dict: Mapping) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Stage depths and widths of a state dict in this project's layout."""
    blocks: Dict[int, Dict[int, int]] = {}
    for key, value in state_dict.items():
        m = TIMM_BLOCK.match(key)
        if m and m.group(3) == 'proj.weight':
            blocks.setdefault(int(m.group(1)), {})[int(m.group(2))] = value.shape[0]
    stages = [blocks[s] for s in sorted(blocks)]
    return tuple(len(s) for s in stages), tuple(s[max(s)] for s in stages)


def _describe(depths: Tuple[int, ...], widths: Tuple[int, ...], family: str) -> str:
    from ..models.variants import variant_for_arch

    variant = variant_for_arch(depths, widths, family)
    arch = f'stage widths {",".join(map(str, widths))}, depths {",".join(map(str, depths))}'
    title = families()[family].title
    return f'{variant.title} ({arch})' if variant else f'an {title} with {arch}, not a registered variant'


def check_matches_model(state_dict: Mapping, model: torch.nn.Module) -> None:
    """Raise one clear :class:`CheckpointError` if ``state_dict`` (this project's layout) cannot fill ``model``.

    The classifier and the first conv are left to timm, which adapts them to ``num_classes`` / ``in_chans``.
    """
    expected = model.state_dict()
    got_arch, want_arch = arch_of(state_dict), arch_of(expected)
    got_family, want_family = family_of(state_dict) or 'emo', family_of(expected) or 'emo'
    if not got_arch[0]:
        raise CheckpointError(
            f'this is not an EMO or EMOv2 checkpoint: none of its {len(state_dict)} keys is a block '
            f'(first keys: {list(state_dict)[:4]})'
        )
    if (got_family, got_arch) != (want_family, want_arch):
        name = getattr(model, 'pretrained_cfg', {}).get('architecture', type(model).__name__)
        from ..models.variants import variant_for_arch

        variant = variant_for_arch(*got_arch, got_family)
        hint = f"build '{variant.name}' for it" if variant else 'build a model with the same widths and depths'
        raise CheckpointError(
            f'this checkpoint is {_describe(*got_arch, got_family)}; you built {name}, '
            f'{_describe(*want_arch, want_family)}: {hint}, or load weights made for your model'
        )
    missing = [k for k in expected if k not in state_dict and not k.startswith('head.')]
    unexpected = [k for k in state_dict if k not in expected and not k.startswith('head.')]
    if missing or unexpected:
        raise CheckpointError(
            f'checkpoint does not fit the model: {len(missing)} weights missing (e.g. {missing[:3]}), '
            f'{len(unexpected)} unexpected (e.g. {unexpected[:3]}); the file may be incomplete or edited'
        )
    for key, value in state_dict.items():
        if key in expected and key not in ADAPTED_KEYS and tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f'{key} has shape {tuple(value.shape)} in the checkpoint and {tuple(expected[key].shape)} in the '
                'model; the checkpoint is not from this variant'
            )


def load_into(model: torch.nn.Module, checkpoint: Mapping, strict: bool = True) -> List[str]:
    """Load any accepted checkpoint (see module doc) into ``model`` (not wrapped by timm's features_only).

    A classifier of another size than the model's is an error; returns the missing keys when not strict.
    """
    state_dict = to_timm_state_dict(checkpoint)
    check_matches_model(state_dict, model)
    expected = model.state_dict()
    first_conv = next(k for k in FIRST_CONV_KEYS if k in state_dict)
    for key in ADAPTED_KEYS:
        if key in state_dict and key in expected and state_dict[key].shape != expected[key].shape:
            raise CheckpointError(
                f'{key} has shape {tuple(state_dict[key].shape)} in the checkpoint and '
                f'{tuple(expected[key].shape)} in the model: build the model with num_classes='
                f'{state_dict["head.weight"].shape[0] if "head.weight" in state_dict else 0} and in_chans='
                f'{state_dict[first_conv].shape[1]} to match the checkpoint'
            )
    result = model.load_state_dict(state_dict, strict=strict)
    return list(result.missing_keys)


def check_variant(state_dict: Mapping[str, torch.Tensor], variant: str) -> None:
    """Raise a :class:`CheckpointError` unless ``state_dict`` (this project's layout) is ``variant``'s weights."""
    import timm

    check_matches_model(state_dict, timm.create_model(variant, device='meta'))


def save_safetensors(state_dict: Mapping[str, torch.Tensor], path: Union[str, os.PathLike]) -> None:
    """Write ``state_dict`` as safetensors, the same bytes for the same tensors (keys in order, contiguous)."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sorted(state_dict.items())}, path, metadata=SAFETENSORS_METADATA)
