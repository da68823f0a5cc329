"""Pretrained weights: the manifest, the verified download from the release origin, hub folders, pushing.

* :func:`fetch_official` downloads a released ``net.pth`` from its origin (the official repository pinned to
  its release commit), checks its git blob id, converts it to this project's layout and caches it as
  ``<cache>/emo_2m.in1k-<blob id prefix>.safetensors``, where ``<cache>`` is timm's ``cache_dir`` if given, else
  ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``). ``timm.create_model(..., pretrained=True)``
  calls it; a cached file makes later calls work offline.
* :func:`write_hub_folder` / :func:`convert_official` make a timm-style Hugging Face Hub folder (``model.safetensors``,
  ``config.json``, ``README.md``) and :func:`push_folder` uploads one with huggingface_hub.

Environment: ``EMO_ORIGIN_URL`` replaces the origin's base URL (a mirror); ``EMO_HUB_ORG`` makes
``pretrained=True`` load ``<org>/<variant>.<tag>`` from the Hugging Face Hub instead of the origin.
"""

import functools
import hashlib
import http.client
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from . import checkpoint as ckpt
from .variants import VARIANTS

__all__ = [
    'ReleasedWeights',
    'WeightsUnavailableError',
    'released_weights',
    'origin_url',
    'hub_org',
    'git_blob_sha1',
    'fetch_official',
    'cached_path',
    'write_hub_folder',
    'convert_official',
    'push_folder',
    'model_card',
]

_logger = logging.getLogger(__name__)
MANIFEST = Path(__file__).with_name('manifest.json')  # a link to weights/manifest.json, packaged as a copy
HUB_WEIGHTS_FILE = 'model.safetensors'
# one key only: safetensors writes its metadata map in a random order, and conversion must give the same bytes
# every time (the source's blob id is in the model card instead)
_SAFETENSORS_METADATA = {'format': 'pt'}


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be had: no network and no cached copy, a failed download, a missing hub repo."""


@dataclass(frozen=True)
class ReleasedWeights:
    """One manifest entry: a released checkpoint of one variant."""

    name: str  # 'emo_2m.in1k': the timm model name with its pretrained tag
    variant: str
    path: str  # inside the origin repository
    url: str
    git_blob_sha1: str
    dataset: str
    top1: float
    top5: float
    hf_hub_id: Optional[str]  # once published

    @property
    def tag(self) -> str:
        return self.name.split('.', 1)[1]


@functools.cache
def _read_manifest(path: Path) -> dict:
    return json.loads(path.read_text())


def _manifest() -> dict:
    return _read_manifest(MANIFEST)


def released_weights() -> Dict[str, ReleasedWeights]:
    """The manifest's entries by name (``'emo_2m.in1k'``)."""
    return {name: ReleasedWeights(name=name, **entry) for name, entry in _manifest()['weights'].items()}


def _entry(name: str) -> ReleasedWeights:
    entries = released_weights()
    if name in VARIANTS:  # a bare variant name means its default (first) tag
        name = next(n for n, e in entries.items() if e.variant == name)
    if name not in entries:
        raise KeyError(f'no released weights named {name!r}; known: {sorted(entries)}')
    return entries[name]


def origin_url(name: str) -> str:
    """Download URL of released weights, honouring ``EMO_ORIGIN_URL`` (read at each call)."""
    entry = _entry(name)
    base = os.environ.get('EMO_ORIGIN_URL')
    return f'{base.rstrip("/")}/{entry.path}' if base else entry.url


def hub_org() -> Optional[str]:
    """The Hugging Face Hub organisation that ``pretrained=True`` loads from, if ``EMO_HUB_ORG`` names one."""
    return os.environ.get('EMO_HUB_ORG') or None


def git_blob_sha1(path: Union[str, Path]) -> str:
    """The git blob id of a file: ``sha1(b'blob <size>\\0' + content)``."""
    sha = hashlib.sha1(f'blob {os.path.getsize(path)}\0'.encode())
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha.update(chunk)
    return sha.hexdigest()


def cached_path(name: str, cache_dir: Optional[Union[str, Path]] = None) -> Path:
    """Where :func:`fetch_official` keeps the converted weights."""
    entry = _entry(name)
    folder = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / 'checkpoints'
    return folder / f'{entry.name}-{entry.git_blob_sha1[:10]}.safetensors'


def _download(url: str, dst: Path, progress: bool) -> None:
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except urllib.error.HTTPError as e:
        raise WeightsUnavailableError(f'{url} answered HTTP {e.code} ({e.reason})') from e
    except (urllib.error.URLError, OSError) as e:
        raise WeightsUnavailableError(f'could not reach {url} ({getattr(e, "reason", e)})') from e
    with response:
        length = response.headers.get('Content-Length')
        expected = int(length) if length is not None else None
        received = 0
        with (
            open(dst, 'wb') as f,
            tqdm(
                total=expected,
                unit='B',
                unit_scale=True,
                disable=not progress,
                desc=f'downloading {os.path.basename(url)}',
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(1 << 16)
                except (http.client.IncompleteRead, OSError) as e:
                    raise WeightsUnavailableError(f'download from {url} was interrupted ({e})') from e
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if expected is not None and received != expected:
        raise WeightsUnavailableError(f'download from {url} was interrupted: got {received} of {expected} bytes')


def fetch_official(
    name: str,
    url: Optional[str] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    progress: bool = True,
) -> Path:
    """Download, verify, convert and cache released weights; returns the cached ``.safetensors`` path.

    ``name`` is ``'emo_2m'`` or ``'emo_2m.in1k'``; ``url`` overrides the origin (the blob id is still checked).
    Nothing is left in the cache unless the download was complete and its blob id matched: the file is
    downloaded and converted in a scratch folder beside the cache and moved into place last.
    """
    entry = _entry(name)
    final = cached_path(entry.name, cache_dir)
    if final.is_file():
        return final
    url = url or origin_url(entry.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix='.emo-download-', dir=final.parent))
    try:
        raw = scratch / 'net.pth'
        try:
            _download(url, raw, progress)
        except WeightsUnavailableError as e:
            raise WeightsUnavailableError(
                f'could not download the {entry.name} weights: {e}. Offline? Fetch {entry.url} elsewhere, then load '
                f"it with timm.create_model('{entry.variant}', pretrained=True, "
                f"pretrained_cfg_overlay=dict(file='net.pth')), or 'emo predict --weights net.pth'"
            ) from e
        blob = git_blob_sha1(raw)
        if blob != entry.git_blob_sha1:
            raise WeightsUnavailableError(
                f'{url} served a file whose git blob id is {blob}, not the released {entry.git_blob_sha1} of '
                f'{entry.name}: refused (nothing was cached). Check EMO_ORIGIN_URL or the mirror.'
            )
        state_dict = ckpt.to_timm_layout(ckpt.unwrap(ckpt.read_checkpoint(raw)))
        _check_variant(state_dict, entry.variant)
        converted = scratch / 'model.safetensors'
        save_file(_contiguous(state_dict), converted, metadata=_SAFETENSORS_METADATA)
        os.replace(converted, final)
        _logger.info('cached %s (git blob %s) as %s', url, blob, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def _contiguous(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in sorted(state_dict.items())}


def _check_variant(state_dict: Mapping[str, torch.Tensor], variant: str) -> None:
    import timm

    ckpt.check_matches_model(state_dict, timm.create_model(variant, device='meta'))


def model_card(
    entry: Optional[ReleasedWeights], variant: str, source_name: str, source_blob: str, repo_id: Optional[str] = None
) -> str:
    """The README.md of a hub folder: what the weights are, where they come from, how to load them."""
    from . import __version__

    spec = VARIANTS[variant]
    official = entry is not None and source_blob == entry.git_blob_sha1
    name = entry.name if entry else f'{variant}.custom'
    load_id = repo_id or f'ORG/{name}'
    provenance = (
        f'the official release `{entry.path}` of github.com/zhangzjn/EMO at commit '
        f'`{_manifest()["origin"]["commit"]}`, git blob `{source_blob}` (verified)'
        if official
        else f'`{source_name}`, git blob `{source_blob}`; this is not the official release file of {variant}'
    )
    metrics = f'| ImageNet-1k top-1 / top-5 (official) | {entry.top1} / {entry.top5} |\n' if official else ''
    return f"""---
tags:
- image-classification
- timm
- emo
library_name: timm
license: other
datasets:
- imagenet-1k
---
# Model card for {name}

{spec.title}, an EMO image classifier and backbone built only from Inverted Residual Mobile Blocks (iRMB),
from "Rethinking Mobile Block for Efficient Attention-based Models" (Zhang et al., ICCV 2023,
arXiv:2301.01146), converted to the layout of the `emo` timm implementation.

## Details

| | |
|---|---|
| parameters | {spec.params:,} |
| GFLOPs at 224x224 (fvcore) | {spec.gflops} |
{metrics}| input | 3x224x224, ImageNet mean/std, resize 256 bicubic + center crop 224 |
| weights | {provenance} |
| converted by | emo {__version__} |

## Intended use

Image classification on the 1000 ImageNet classes, and a feature backbone (strides 4/8/16/32) for detection
and segmentation, fine-tuning included. The weights were trained on ImageNet-1k only and inherit its biases;
they are not meant for decisions about people.

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
@inproceedings{{zhang2023rethinking,
  title={{Rethinking Mobile Block for Efficient Attention-based Models}},
  author={{Zhang, Jiangning and Li, Xiangtai and Li, Jian and Liu, Liang and Xue, Zhucun and Zhang, Boshen and
          Jiang, Zhengkai and Huang, Tianxin and Wang, Yabiao and Wang, Chengjie}},
  booktitle={{ICCV}},
  year={{2023}}
}}
```
"""


def hub_config(variant: str, tag: str) -> dict:
    """The config.json of a hub folder, as timm's ``hf-hub:`` and ``local-dir:`` loaders read it."""
    import timm
    from timm.data import ImageNetInfo

    model = timm.create_model(f'{variant}.{tag}', device='meta')
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
    tag: str = 'in1k',
    repo_id: Optional[str] = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md``; the same input gives the same bytes.

    An existing non-empty folder is refused unless ``overwrite``; files are written beside the folder first and
    moved in last, so an interrupted run leaves the previous contents (or nothing) behind, never a half folder.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f'{out_dir} exists and is not a folder')
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f'{out_dir} is not empty; choose a new folder or pass --overwrite')
    state_dict = dict(state_dict)
    _check_variant(state_dict, variant)
    name = f'{variant}.{tag}'
    entry = released_weights().get(name)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f'.{out_dir.name}-', dir=out_dir.parent))
    try:
        save_file(_contiguous(state_dict), scratch / HUB_WEIGHTS_FILE, metadata=_SAFETENSORS_METADATA)
        config = json.dumps(hub_config(variant, tag), indent=2, sort_keys=False) + '\n'
        (scratch / 'config.json').write_text(config)
        (scratch / 'README.md').write_text(model_card(entry, variant, source_name, source_blob, repo_id))
        out_dir.mkdir(exist_ok=True)
        for file in (HUB_WEIGHTS_FILE, 'config.json', 'README.md'):
            os.replace(scratch / file, out_dir / file)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
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
    from .variants import variant_for_arch

    state_dict = ckpt.to_timm_layout(ckpt.unwrap(ckpt.read_checkpoint(src)))
    if variant is None:
        found = variant_for_arch(*ckpt.arch_of(state_dict))
        if found is None:
            raise ckpt.CheckpointError(f'{src} is not one of the released EMO variants; name one with --model')
        variant = found.name
    elif variant not in VARIANTS:
        raise ValueError(f'unknown variant {variant!r}; choose one of {sorted(VARIANTS)}')
    return write_hub_folder(
        state_dict, out_dir, variant, Path(src).name, git_blob_sha1(src), repo_id=repo_id, overwrite=overwrite
    )


def push_folder(
    folder: Union[str, Path],
    repo_id: str,
    token: Optional[str] = None,
    private: bool = False,
    endpoint: Optional[str] = None,
) -> str:
    """Upload a hub folder made by :func:`write_hub_folder` to ``repo_id``; returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    config_path = folder / 'config.json'
    if not (folder / HUB_WEIGHTS_FILE).is_file() or not config_path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a hub folder (needs {HUB_WEIGHTS_FILE} and config.json); make one with 'emo convert'"
        )
    architecture = json.loads(config_path.read_text()).get('architecture')
    if architecture not in VARIANTS:
        raise ValueError(f'{config_path} names architecture {architecture!r}, not an EMO variant')
    _check_variant(ckpt.read_checkpoint(folder / HUB_WEIGHTS_FILE), architecture)
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, repo_type='model', private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type='model',
        commit_message=f'Upload {architecture} (converted by emo)',
    )
    return str(getattr(commit, 'commit_url', commit))
