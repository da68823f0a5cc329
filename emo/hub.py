"""Pretrained weights: the manifest, the verified download from the release origin, hub folders, pushing.

* :func:`fetch_official` downloads a released ``net.pth`` from its origin (the official repository pinned to
  its release commit), checks its git blob id, converts it to this project's layout and caches it as
  ``<cache>/emo_2m.in1k-<blob id prefix>.safetensors``, where ``<cache>`` is timm's ``cache_dir`` if given, else
  ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``). ``timm.create_model(..., pretrained=True)``
  calls it; a cached file makes later calls work offline.
* :func:`write_hub_folder` / :func:`convert_official` make a timm-style Hugging Face Hub folder (``model.safetensors``,
  ``config.json``, ``README.md``) and :func:`push_folder` uploads one with huggingface_hub.

Environment: ``EMO_ORIGIN_URL`` replaces the origin's base URL (a mirror); ``EMO_HUB_ORG`` makes
``pretrained=True`` load ``<org>/<variant>.<tag>`` from the Hugging Face Hub instead of the origin;
``EMO_DOWNLOAD_TIMEOUT``, ``EMO_DOWNLOAD_MIN_RATE`` and ``EMO_DOWNLOAD_GRACE`` bound a download from the origin.

Importing this module also makes timm's ``local-dir:`` loader report a config.json it cannot parse as one
:class:`~emo.checkpoint.CheckpointError` naming the file (see :func:`_guard_local_dir_config`).
"""

import functools
import hashlib
import http.client
import importlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from . import checkpoint as ckpt
from .files import atomic_write, sigterm_raises
from .variants import VARIANTS

__all__ = [
    'ReleasedWeights',
    'WeightsUnavailableError',
    'HubUploadError',
    'released_weights',
    'origin_url',
    'hub_org',
    'git_blob_sha1',
    'fetch_official',
    'cached_path',
    'digest_path',
    'write_hub_folder',
    'convert_official',
    'push_folder',
    'model_card',
    'hub_errors',
    'hub_unavailable',
    'unreadable_weights',
]

_logger = logging.getLogger(__name__)
MANIFEST = Path(__file__).with_name('manifest.json')  # a link to weights/manifest.json, packaged as a copy
HUB_WEIGHTS_FILE = 'model.safetensors'
HUB_FILES = (HUB_WEIGHTS_FILE, 'config.json', 'README.md')  # what write_hub_folder writes: all that push uploads
DIGEST_SUFFIX = '.sha256'  # beside each cached .safetensors: its sha256, in sha256sum's format
# limits of one download from the origin, each overridable by its environment variable (read at each download):
# the socket timeout alone bounds each read, so a server that trickles a few bytes at a time could stall forever
DOWNLOAD_TIMEOUT = 900.0  # EMO_DOWNLOAD_TIMEOUT: seconds for the whole download
DOWNLOAD_MIN_RATE = 10 * 1024.0  # EMO_DOWNLOAD_MIN_RATE: bytes/s averaged since the start; 0 turns the check off
DOWNLOAD_GRACE = 30.0  # EMO_DOWNLOAD_GRACE: seconds before the minimum rate applies (connection set-up, slow start)
_READ_TIMEOUT = 60.0  # the longest a single read may wait for data, whatever the limits above leave
# one key only: safetensors writes its metadata map in a random order, and conversion must give the same bytes
# every time (the source's blob id is in the model card instead)
_SAFETENSORS_METADATA = {'format': 'pt'}


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be had: no network and no cached copy, a failed download, a missing hub repo."""


class HubUploadError(RuntimeError):
    """A hub folder could not be uploaded: the Hub was unreachable, or refused the login, the repo or the commit."""


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
    return _hash_file(hashlib.sha1(f'blob {os.path.getsize(path)}\0'.encode()), path)


def _hash_file(sha: Any, path: Union[str, Path]) -> str:
    """``sha`` updated with the file's bytes, read in 1 MiB chunks; its hex digest."""
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            sha.update(chunk)
    return sha.hexdigest()


def cached_path(name: str, cache_dir: Optional[Union[str, Path]] = None) -> Path:
    """Where :func:`fetch_official` keeps the converted weights."""
    entry = _entry(name)
    folder = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / 'checkpoints'
    return folder / f'{entry.name}-{entry.git_blob_sha1[:10]}.safetensors'


def digest_path(path: Union[str, Path]) -> Path:
    """The file beside a cached ``.safetensors`` that records its sha256 (``sha256sum -c`` reads it too)."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def _sha256(path: Path) -> str:
    return _hash_file(hashlib.sha256(), path)


def _digest_line(path: Path, name: Optional[str] = None) -> bytes:
    return f'{_sha256(path)}  {name or path.name}\n'.encode()


def _cache_problem(final: Path, variant: str) -> Optional[str]:
    """Why the cached ``final`` must not be used, or None when it may.

    With a digest file the sha256 must match. Without one, the file was cached by an earlier version (or its
    digest was lost): it is used if it reads as ``variant``'s weights, and its digest is recorded then, so that
    caches filled before digests existed keep working offline.

    An OSError (no permission, a failing disk) is raised, not taken for corruption: a good file is never removed
    because it could not be read this once.
    """
    sidecar = digest_path(final)
    if sidecar.is_file():
        try:
            recorded = sidecar.read_text().split()[0]
        except (UnicodeDecodeError, IndexError):
            return f'its digest file {sidecar.name} is not text or empty'
        if not re.fullmatch('[0-9a-f]{64}', recorded):
            return f'its digest file {sidecar.name} holds no sha256'
        actual = _sha256(final)
        return None if actual == recorded else f'its sha256 is {actual}, not the {recorded} recorded when it was cached'
    with open(final, 'rb'):  # a permission error here, before read_checkpoint could call it unreadable weights
        pass
    try:
        _check_variant(ckpt.read_checkpoint(final), variant)
    except ckpt.CheckpointError as e:
        return str(e)
    try:
        atomic_write(sidecar, lambda f: f.write(_digest_line(final)))
    except OSError as e:  # a read-only cache still serves a file that reads; it is read in full again next time
        _logger.warning('could not record the sha256 of %s in %s (%s)', final, sidecar, e)
    return None


def _env_number(name: str, default: float, zero_allowed: bool) -> float:
    raw = os.environ.get(name, '').strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float('nan')
    if not (value >= 0 if zero_allowed else value > 0):  # also refuses nan
        raise ValueError(f'{name}={raw!r} is not a number {">=" if zero_allowed else ">"} 0')
    return value


def _socket_of(response: Any) -> Any:
    # http.client reads through a buffered reader over a SocketIO that holds the socket; another response type
    # (or a future layout) gives None, and then only urlopen's timeout bounds each read
    return getattr(getattr(getattr(response, 'fp', None), 'raw', None), '_sock', None)


def _download(url: str, dst: Path, progress: bool) -> None:
    timeout = _env_number('EMO_DOWNLOAD_TIMEOUT', DOWNLOAD_TIMEOUT, zero_allowed=False)
    min_rate = _env_number('EMO_DOWNLOAD_MIN_RATE', DOWNLOAD_MIN_RATE, zero_allowed=True)
    grace = _env_number('EMO_DOWNLOAD_GRACE', DOWNLOAD_GRACE, zero_allowed=False)
    start = time.monotonic()

    def too_slow_at(received: int) -> float:
        # seconds after the start at which the average rate falls below min_rate, never before the grace period ends
        return max(grace, received / min_rate) if min_rate else float('inf')

    def over_limit(received: int, slack: float = 0.0) -> Optional[str]:
        elapsed = time.monotonic() - start + slack
        if elapsed >= timeout:
            return f'did not finish within {timeout:g} s (EMO_DOWNLOAD_TIMEOUT), {received:,} bytes in'
        if elapsed >= too_slow_at(received):
            return (
                f'was too slow: {received / elapsed:,.0f} B/s on average over {elapsed:.1f} s, below '
                f'EMO_DOWNLOAD_MIN_RATE={min_rate:g} B/s'
            )
        return None

    try:
        response = urllib.request.urlopen(url, timeout=min(_READ_TIMEOUT, timeout))
    except urllib.error.HTTPError as e:
        raise WeightsUnavailableError(f'{url} answered HTTP {e.code} ({e.reason})') from e
    except (urllib.error.URLError, OSError) as e:
        raise WeightsUnavailableError(f'could not reach {url} ({getattr(e, "reason", e)})') from e
    with response:
        length = response.headers.get('Content-Length')
        expected = int(length) if length is not None else None
        received = 0
        sock = _socket_of(response)
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
                problem = over_limit(received)
                if problem:
                    raise WeightsUnavailableError(f'download from {url} {problem}')
                # no single read may outlast the deadline or the moment the rate would fall too low
                wait = min(_READ_TIMEOUT, min(timeout, too_slow_at(received)) - (time.monotonic() - start))
                if sock is not None:
                    sock.settimeout(max(wait, 1e-3))  # 0 would make the socket non-blocking
                try:
                    chunk = response.read1(1 << 16)  # what has arrived, up to 64 KiB: a trickle cannot block it
                except TimeoutError as e:  # a timed-out response cannot be read on, so this ends the download
                    problem = over_limit(received, slack=0.1) or f'stalled: no data for {wait:.0f} s'
                    raise WeightsUnavailableError(f'download from {url} {problem}') from e
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
    downloaded and converted in a scratch folder beside the cache and moved into place last, then its sha256
    (:func:`digest_path`). A cached file is checked against that digest at each use; a corrupt one is removed
    and downloaded again. SIGTERM and Ctrl-C remove the scratch folder too.
    """
    entry = _entry(name)
    final = cached_path(entry.name, cache_dir)
    sidecar = digest_path(final)
    corrupt = ''
    if final.is_file():
        try:
            problem = _cache_problem(final, entry.variant)
        except FileNotFoundError:  # removed while it was checked (another process): fetch it anew
            problem = 'it vanished while it was checked'
        except OSError as e:
            raise WeightsUnavailableError(
                f'could not read the cached weights {final} ({e}); check the permissions of that folder, or point '
                'cache_dir (or TORCH_HOME) at another one'
            ) from e
        if problem is None:
            return final
        _logger.warning('cached weights %s are corrupt (%s): removing them and downloading again', final, problem)
        corrupt = f'the cached copy {final} was corrupt ({problem}) and was removed; '
        try:
            final.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
        except OSError as e:
            raise WeightsUnavailableError(
                f'the cached weights {final} are corrupt ({problem}) and could not be removed ({e}): delete them, '
                'or point cache_dir (or TORCH_HOME) at another folder'
            ) from e
    elif sidecar.exists():
        sidecar.unlink(missing_ok=True)  # the digest of a file someone deleted
    url = url or origin_url(entry.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    with sigterm_raises():  # a stop signal unwinds through the finally below instead of killing the process
        scratch = Path(tempfile.mkdtemp(prefix='.emo-download-', dir=final.parent))
        try:
            raw = scratch / 'net.pth'
            try:
                _download(url, raw, progress)
            except WeightsUnavailableError as e:
                raise WeightsUnavailableError(
                    f'{corrupt}could not download the {entry.name} weights: {e}. Offline? Fetch {entry.url} '
                    f"elsewhere, then load it with timm.create_model('{entry.variant}', pretrained=True, "
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
            digest = scratch / 'model.safetensors.sha256'
            digest.write_bytes(_digest_line(converted, final.name))
            os.replace(converted, final)
            os.replace(digest, sidecar)  # after the weights: a digest never stands beside a file it does not describe
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


def _first_line(error: BaseException) -> str:
    # huggingface_hub's messages run over several lines (request ids, URLs); the CLI prints one line
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def hub_errors() -> Tuple[type, ...]:
    """What huggingface_hub raises when the Hub cannot be reached or refuses a request.

    Its own errors are OSErrors (``HfHubHTTPError``, ``LocalEntryNotFoundError``, ``OfflineModeIsEnabled``); a
    refused or timed-out connection comes through as its HTTP library's error (``httpx2`` in huggingface_hub
    2.x, ``httpx`` in 1.x; those of ``requests``, in older versions, are OSErrors).
    """
    errors: List[type] = [OSError]
    for module in ('httpx2', 'httpx'):
        try:
            errors.append(importlib.import_module(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def hub_unavailable(hub_id: str, variant: str, error: BaseException) -> WeightsUnavailableError:
    """One message for a failed download of weights from the Hub: what failed, which repo, what to do."""
    from huggingface_hub import constants
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    status = getattr(getattr(error, 'response', None), 'status_code', None)
    if isinstance(error, LocalEntryNotFoundError):
        reason = 'HF_HUB_OFFLINE is set' if constants.HF_HUB_OFFLINE else f'{constants.ENDPOINT} could not be reached'
        reason += ' and the Hugging Face cache has no copy'
    elif isinstance(error, EntryNotFoundError):
        reason = f'the repository has no {HUB_WEIGHTS_FILE}'
    elif isinstance(error, HfHubHTTPError) and status is not None:
        reason = f'{constants.ENDPOINT} answered HTTP {status}'
    else:
        reason = f'{type(error).__name__}: {_first_line(error)}'
    advice = []
    if hub_org():
        advice.append('unset EMO_HUB_ORG to download from the release origin')
    if not constants.HF_HUB_OFFLINE:
        advice.append('set HF_HUB_OFFLINE=1 once the Hugging Face cache has a copy (HF_HOME / HF_HUB_CACHE)')
    advice.append(
        f"load a local file with timm.create_model('{variant}', pretrained=True, "
        "pretrained_cfg_overlay=dict(file='model.safetensors'))"
    )
    return WeightsUnavailableError(
        f'could not download the weights of Hugging Face Hub repository {hub_id} ({reason}): {", or ".join(advice)}'
    )


def unreadable_weights(pretrained_cfg: Any, error: BaseException) -> ckpt.CheckpointError:
    """One message for a weights file that safetensors cannot read, naming the file and the fix.

    ``pretrained_cfg`` is timm's resolved config, which says where the weights came from.
    """
    source, file, hub_id = (getattr(pretrained_cfg, k, None) for k in ('source', 'file', 'hf_hub_id'))
    if source == 'local-dir':
        # timm takes model.safetensors first, else the first *.safetensors of the folder
        path = Path(file) / HUB_WEIGHTS_FILE if (Path(file) / HUB_WEIGHTS_FILE).is_file() else f'a file of {file}'
        fix = f're-create the folder with emo convert (emo convert net.pth {file} --overwrite)'
    elif file:
        path, fix = file, 'download or save it again'
    else:
        from huggingface_hub import try_to_load_from_cache

        filename = getattr(pretrained_cfg, 'hf_hub_filename', None) or HUB_WEIGHTS_FILE
        repo, _, revision = str(hub_id).partition('@')
        try:
            cached = try_to_load_from_cache(repo, filename, revision=revision or None)
        except Exception:  # only the message depends on it: an odd repo id must not hide the real error
            cached = None
        path = cached if isinstance(cached, str) else f'the Hugging Face cache copy of {hub_id}/{filename}'
        fix = 'delete that file and load again to download a fresh copy'
    return ckpt.CheckpointError(
        f'{path} is not a readable safetensors file ({error}); it is truncated or corrupt: {fix}'
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
    if not isinstance(architecture, str) or architecture not in VARIANTS:
        raise ValueError(f'{config_path} names architecture {architecture!r}, not an EMO variant')
    _check_variant(ckpt.read_checkpoint(folder / HUB_WEIGHTS_FILE), architecture)
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
            f'could not upload {folder} to {repo_id} on {api.endpoint} ({type(e).__name__}: {_first_line(e)}); '
            'check the network, HF_ENDPOINT, the repo id and your token (hf auth login, or HF_TOKEN)'
        ) from e
    return str(getattr(commit, 'commit_url', commit))


def _config_error(path: Path, error: BaseException) -> ckpt.CheckpointError:
    if isinstance(error, json.JSONDecodeError):
        reason = f'not valid JSON: {error}'
    elif isinstance(error, KeyError):
        reason = f'no {error} entry'
    else:
        reason = str(error)
    return ckpt.CheckpointError(
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
    if getattr(original, '_emo_guarded', False):  # importlib.reload(emo.hub) must not wrap it twice
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
