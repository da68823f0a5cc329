"""Hugging Face Hub folders: ``emo convert`` writes one (weights, config, model card), ``emo push`` uploads it.

Importing this module also makes timm's ``local-dir:`` loader report a config.json it cannot parse as one
:class:`~emo.weights.CheckpointError` naming the file (see :func:`_guard_local_dir_config`).
"""

import functools
import json
import os
from pathlib import Path
from typing import Callable, Mapping, Optional, Union

import torch

from ..files import scratch_folder
from . import checkpoint as ckpt
from .download import git_blob_sha1
from .errors import CheckpointError, HubUploadError, first_line, hub_errors
from .manifest import HUB_WEIGHTS_FILE, ReleasedWeights, default_weights, official_figures, released_weights

__all__ = [
    'HUB_FILES',
    'HUB_WEIGHTS_FILE',
    'model_card',
    'hub_config',
    'write_hub_folder',
    'convert_official',
    'push_folder',
]

HUB_FILES = (HUB_WEIGHTS_FILE, 'config.json', 'README.md')  # what write_hub_folder writes: all that push uploads


# each family's citation, as its official repository gives it (EMOv2's author list is shortened to the first author:
# the release this project read names no full list)
_CITATIONS = {
    'emo': """@inproceedings{zhang2023rethinking,
  title={Rethinking Mobile Block for Efficient Attention-based Models},
  author={Zhang, Jiangning and Li, Xiangtai and Li, Jian and Liu, Liang and Xue, Zhucun and Zhang, Boshen and
          Jiang, Zhengkai and Huang, Tianxin and Wang, Yabiao and Wang, Chengjie},
  booktitle={ICCV},
  year={2023}
}""",
    'emo2': """@article{zhang2025emov2,
  title={EMOv2: Pushing 5M Vision Model Frontier},
  author={Zhang, Jiangning and others},
  journal={IEEE Transactions on Pattern Analysis and Machine Intelligence},
  year={2025},
  doi={10.1109/TPAMI.2025.3596776}
}""",
}
_INTENDED_USE = (
    'Image classification on the 1000 ImageNet classes, and a feature backbone (strides 4/8/16/32) for detection\n'
    'and segmentation, fine-tuning included. The weights were trained on ImageNet-1k only and inherit its biases;\n'
    'they are not meant for decisions about people.'
)
# a file that is not an official release: its training data and classes are whatever its author used
_INTENDED_USE_CUSTOM = (
    'A feature backbone (strides 4/8/16/32) and classifier whose training data and classes are those its author\n'
    'used; this card cannot say what they were. Not meant for decisions about people.'
)
_BLOCKS = {
    'emo': 'built only from Inverted Residual Mobile Blocks (iRMB)',
    'emo2': 'built from improved Inverted Residual Mobile Blocks (i2RMB: hybrid window attention, layer scale)',
}


def model_card(
    entry: Optional[ReleasedWeights], variant: str, source_name: str, source_blob: str, repo_id: Optional[str] = None
) -> str:
    """The README.md of a hub folder: what the weights are, where they come from, how to load them."""
    from .. import __version__
    from ..models.variants import VARIANTS

    spec = VARIANTS[variant]
    family = spec.family_info
    official = entry is not None and source_blob == entry.git_blob_sha1
    name = entry.name if official else f'{variant}.custom'
    load_id = repo_id or f'ORG/{name}'
    provenance = (
        f'the official release `{entry.path}` of {family.repository.removeprefix("https://")} at commit '
        f'`{family.commit}`, git blob `{source_blob}` (verified)'
        if official
        else f'`{source_name}`, git blob `{source_blob}`; this is not the official release file of {variant}'
    )
    metrics = ''
    if official:
        top5 = '' if entry.top5 is None else f' / {entry.top5}'
        metrics = f'| ImageNet-1k top-1{" / top-5" if top5 else ""} (official) | {entry.top1}{top5} |\n'
        if entry.distilled:
            metrics += f'| training | knowledge distillation: {entry.distilled} |\n'
    size = spec.img_size
    resize = round(size / 0.875)
    return f"""---
tags:
- image-classification
- timm
- {spec.family}
library_name: timm
license: other
datasets:
- imagenet-1k
---
# Model card for {name}

{spec.title}, an {family.title} image classifier and backbone {_BLOCKS[spec.family]},
from "{family.paper}" (Zhang et al., {family.venue}, arXiv:{family.arxiv}), converted to the layout of the
`emo` timm implementation.

## Details

| | |
|---|---|
| parameters | {spec.params:,} |
| GFLOPs at {size}x{size} (fvcore) | {spec.gflops} |
{metrics}| input | 3x{size}x{size}, ImageNet mean/std, resize {resize} bicubic + center crop {size} |
| weights | {provenance} |
| converted by | emo {__version__} |

## Intended use

{_INTENDED_USE if official else _INTENDED_USE_CUSTOM}

## How to load

```python
import emo, timm  # importing emo registers the architecture with timm

model = timm.create_model('hf-hub:{load_id}', pretrained=True).eval()
backbone = timm.create_model('hf-hub:{load_id}', pretrained=True, features_only=True)
```

## License

The official repository has no license file; ask its authors before using these weights beyond research.

## Citation

```bibtex
{_CITATIONS[spec.family]}
```
"""


def hub_config(variant: str, tag: Optional[str]) -> dict:
    """The config.json of a hub folder, as timm's ``hf-hub:`` and ``local-dir:`` loaders read it (``tag`` None: a
    variant without released weights, such as emo2_20m)."""
    import timm
    from timm.data import ImageNetInfo

    model = timm.create_model(f'{variant}.{tag}' if tag else variant, device='meta')
    cfg = model.pretrained_cfg
    keep = (
        'tag',
        'input_size',
        'interpolation',
        'crop_pct',
        'crop_mode',
        'mean',
        'std',
        'num_classes',
        'pool_size',
        'first_conv',
        'classifier',
        'license',
        'paper_ids',
        'paper_name',
        'origin_url',
    )
    pretrained_cfg = {k: cfg[k] for k in keep if cfg.get(k) is not None}
    pretrained_cfg['custom_load'] = False
    info = ImageNetInfo()
    return {
        'architecture': variant,
        'num_classes': model.num_classes,
        'num_features': model.num_features,
        'global_pool': model.global_pool,
        'pretrained_cfg': pretrained_cfg,
        'label_names': info.label_names(),
        'label_descriptions': info.label_descriptions(as_dict=True),
    }


def write_hub_folder(
    state_dict: Mapping[str, torch.Tensor],
    out_dir: Union[str, Path],
    variant: str,
    source_name: str,
    source_blob: str,
    tag: Optional[str] = 'in1k',
    repo_id: Optional[str] = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md``; the same input gives the same bytes.

    An existing non-empty folder is refused unless ``overwrite``; files are written beside the folder first and
    moved in last, so an interrupted run leaves the previous contents (or nothing) behind, never a half folder.

    Not ``timm.models.save_for_hf``: that saves a live model's state dict and its factory arguments into the
    folder itself, while this converts a checkpoint file, byte-identical for the same input, in a scratch folder.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f'{out_dir} exists and is not a folder')
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f'{out_dir} is not empty; choose a new folder or pass --overwrite')
    state_dict = dict(state_dict)
    ckpt.check_variant(state_dict, variant)
    entry = released_weights().get(f'{variant}.{tag}')
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with scratch_folder(out_dir.parent, f'.{out_dir.name}-') as scratch:
        ckpt.save_safetensors(state_dict, scratch / HUB_WEIGHTS_FILE)
        config = json.dumps(hub_config(variant, tag), indent=2, sort_keys=False) + '\n'
        (scratch / 'config.json').write_text(config)
        (scratch / 'README.md').write_text(model_card(entry, variant, source_name, source_blob, repo_id))
        out_dir.mkdir(exist_ok=True)
        for file in (HUB_WEIGHTS_FILE, 'config.json', 'README.md'):
            os.replace(scratch / file, out_dir / file)
    return out_dir


def convert_official(
    src: Union[str, Path],
    out_dir: Union[str, Path],
    variant: Optional[str] = None,
    repo_id: Optional[str] = None,
    overwrite: bool = False,
) -> Path:
    """Turn any accepted checkpoint file (an official ``net.pth`` above all) into a hub folder.

    ``variant`` defaults to the one the checkpoint's widths and depths identify.
    """
    from ..models.variants import get_variant, variant_for_arch

    state_dict = ckpt.to_timm_state_dict(ckpt.read_checkpoint(src))
    blob = git_blob_sha1(src)
    # a released file names its variant and tag (emo2_5m_512 differs from emo2_5m in its window only, which the
    # weights do not show); another file is the variant its family, widths and depths identify, or --model
    released = next((e for e in released_weights().values() if e.git_blob_sha1 == blob), None)
    if variant is not None:
        variant = get_variant(variant).name
    elif released is not None:
        variant = released.variant
    else:
        found = variant_for_arch(*ckpt.arch_of(state_dict), ckpt.family_of(state_dict) or 'emo')
        if found is None:
            raise CheckpointError(f'{src} is not one of the registered EMO / EMOv2 variants; name one with --model')
        variant = found.name
    if released is not None and released.variant == variant:
        tag = released.tag
    else:
        # not this variant's release (its card says so and names it '.custom'): the config takes the variant's
        # default tag, the preprocessing timm's loaders need
        default = default_weights(variant)
        tag = default.tag if default else None
    return write_hub_folder(
        state_dict, out_dir, variant, Path(src).name, blob, tag=tag, repo_id=repo_id, overwrite=overwrite
    )


def push_folder(
    folder: Union[str, Path],
    repo_id: str,
    token: Optional[str] = None,
    private: bool = False,
    endpoint: Optional[str] = None,
    report: Callable[[str], None] = print,
) -> str:
    """Upload the hub folder files made by :func:`write_hub_folder` to ``repo_id``; returns the commit URL.

    Only :data:`HUB_FILES` go up, after they are checked: anything else in the folder (a pickled
    ``pytorch_model.bin``, notes) stays out, and ``report`` is given one line naming it. A Hub that cannot be
    reached, or that refuses the login, repo or commit, raises :class:`HubUploadError`.

    Not ``timm.models.push_to_hf_hub``: that saves the model anew and uploads what it wrote; this uploads the
    folder the user made and checked, and only its :data:`HUB_FILES`.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    missing = [name for name in HUB_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f'{folder} is not a hub folder (needs {", ".join(HUB_FILES)}; missing {", ".join(missing)}); '
            "make one with 'emo convert'"
        )
    config_path = folder / 'config.json'
    try:
        architecture = json.loads(config_path.read_text()).get('architecture')
    except (ValueError, AttributeError) as e:  # not JSON, or JSON that is not an object
        raise _config_error(config_path, _shape_error(config_path) or e) from e
    if not isinstance(architecture, str) or architecture not in official_figures():
        raise ValueError(f'{config_path} names architecture {architecture!r}, not an EMO or EMOv2 variant')
    ckpt.check_variant(ckpt.read_checkpoint(folder / HUB_WEIGHTS_FILE), architecture)
    left_out = sorted(p.name + ('/' if p.is_dir() else '') for p in folder.iterdir() if p.name not in HUB_FILES)
    if left_out:
        report(f'left out of the upload (emo convert does not write them): {", ".join(left_out)}')
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type='model', private=private, exist_ok=True)
        commit = api.create_commit(
            repo_id=repo_id,
            repo_type='model',
            operations=[
                CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in HUB_FILES
            ],
            commit_message=f'Upload {architecture} (converted by emo)',
        )
    except hub_errors() as e:
        raise HubUploadError(
            f'could not upload {folder} to {repo_id} on {api.endpoint} ({type(e).__name__}: {first_line(e)}); '
            'check the network, HF_ENDPOINT, the repo id and your token (hf auth login, or HF_TOKEN)'
        ) from e
    return str(getattr(commit, 'commit_url', commit))


def _config_error(path: Path, error: BaseException) -> CheckpointError:
    if isinstance(error, json.JSONDecodeError):
        reason = f'not valid JSON: {error}'
    elif isinstance(error, KeyError):
        reason = f'no {error} entry'
    else:
        reason = str(error)
    return CheckpointError(
        f'{path} cannot be read as a timm model config ({reason}); re-create the folder with emo convert '
        f'(emo convert net.pth {path.parent} --overwrite)'
    )


def _shape_error(config: Path) -> Optional[ValueError]:
    # timm indexes into the JSON without looking at its type: say what the file holds instead of the symptom
    try:
        parsed = json.loads(config.read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None
    if not isinstance(parsed, dict):
        return ValueError(f'it holds a JSON {type(parsed).__name__}, not an object')
    if 'pretrained_cfg' in parsed and not isinstance(parsed['pretrained_cfg'], dict):
        return ValueError('its pretrained_cfg is not an object')
    return None


def _guard_local_dir_config() -> None:
    """Make timm's ``local-dir:`` loader fail on a config.json it cannot parse with one error naming the file.

    timm parses config.json in ``load_model_config_from_path`` before any emo code runs, and an empty object,
    invalid JSON or an architecture that is not a name surface as a bare ``KeyError`` / ``JSONDecodeError`` /
    ``AttributeError``. The wrapper replaces only the name ``timm.models._factory`` calls; a config that
    parses is returned untouched, so valid folders (of any model) load exactly as before.
    """
    from timm.models import _factory

    original = _factory.load_model_config_from_path
    if getattr(original, '_emo_guarded', False):  # importlib.reload(emo.weights.hub_folder) must not wrap it twice
        return

    @functools.wraps(original)
    def load_model_config_from_path(model_path, *args, **kwargs):
        config = Path(model_path) / 'config.json'
        try:
            pretrained_cfg, model_name, model_args = original(model_path, *args, **kwargs)
        except (KeyError, TypeError, AttributeError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
            raise _config_error(config, _shape_error(config) or e) from e
        if not isinstance(model_name, str) or not model_name:
            raise _config_error(config, ValueError(f'architecture is {model_name!r}, not a model name'))
        if not isinstance(pretrained_cfg, dict) or not isinstance(model_args, dict):
            raise _config_error(config, ValueError('pretrained_cfg and model_args must be JSON objects'))
        return pretrained_cfg, model_name, model_args

    load_model_config_from_path._emo_guarded = True
    _factory.load_model_config_from_path = load_model_config_from_path


_guard_local_dir_config()
