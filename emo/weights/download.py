"""The verified download of released weights from their origin, and the cache of converted weights.

:func:`fetch_official` downloads a released ``net.pth`` from its origin (the official repository pinned to its release
commit), checks its git blob id, converts it to this project's layout and caches it as
``<cache>/emo_2m.in1k-<blob id prefix>.safetensors``, where ``<cache>`` is timm's ``cache_dir`` if given, else
``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``). A cached file makes later calls work offline.

Environment: ``EMO_ORIGIN_URL`` replaces the origin's base URL (a mirror); ``EMO_DOWNLOAD_TIMEOUT``,
``EMO_DOWNLOAD_MIN_RATE`` and ``EMO_DOWNLOAD_GRACE`` bound a download.

The download is written here rather than taken from ``torch.hub.download_url_to_file`` or huggingface_hub: the
origin is a GitHub raw URL (not a Hub repo), and torch's helper has no deadline or minimum rate, so a server
trickling bytes would hold a user's ``create_model`` forever; the blob-id check then runs on the finished file.
"""

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional, Union

import torch
from tqdm import tqdm

from ..files import atomic_write, scratch_folder, sigterm_raises
from . import checkpoint as ckpt
from .errors import CheckpointError, WeightsUnavailableError
from .manifest import origin_url, released_entry

__all__ = ['fetch_official', 'cached_path', 'digest_path', 'git_blob_sha1']

_logger = logging.getLogger(__name__)
DIGEST_SUFFIX = '.sha256'  # beside each cached .safetensors: its sha256, in sha256sum's format
# limits of one download from the origin, each overridable by its environment variable (read at each download):
# the socket timeout alone bounds each read, so a server that trickles a few bytes at a time could stall forever
DOWNLOAD_TIMEOUT = 900.0  # EMO_DOWNLOAD_TIMEOUT: seconds for the whole download
DOWNLOAD_MIN_RATE = 10 * 1024.0  # EMO_DOWNLOAD_MIN_RATE: bytes/s averaged since the start; 0 turns the check off
DOWNLOAD_GRACE = 30.0  # EMO_DOWNLOAD_GRACE: seconds before the minimum rate applies (connection set-up, slow start)
_READ_TIMEOUT = 60.0  # the longest a single read may wait for data, whatever the limits above leave


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
    entry = released_entry(name)
    folder = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / 'checkpoints'
    return folder / f'{entry.name}-{entry.git_blob_sha1[:10]}.safetensors'


def digest_path(path: Union[str, Path]) -> Path:
    """The file beside a cached ``.safetensors`` that records its sha256 (``sha256sum -c`` reads it too)."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def file_sha256(path: Union[str, Path]) -> str:
    """The hex sha256 of a file's bytes (the cache's digests, an OpenVINO IR's record of its checkpoint)."""
    return _hash_file(hashlib.sha256(), path)


def _digest_line(path: Path, name: Optional[str] = None) -> bytes:
    return f'{file_sha256(path)}  {name or path.name}\n'.encode()


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
        actual = file_sha256(final)
        return None if actual == recorded else f'its sha256 is {actual}, not the {recorded} recorded when it was cached'
    with open(final, 'rb'):  # a permission error here, before read_checkpoint could call it unreadable weights
        pass
    try:
        ckpt.check_variant(ckpt.read_checkpoint(final), variant)
    except CheckpointError as e:
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
    entry = released_entry(name)
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
    # a stop signal unwinds through the scratch folder's removal instead of killing the process
    with sigterm_raises(), scratch_folder(final.parent, '.emo-download-') as scratch:
        raw = scratch / 'net.pth'
        file_name = Path(entry.path).name  # net.pth, EMOv2_1M_224.pth, ...
        try:
            _download(url, raw, progress)
        except WeightsUnavailableError as e:
            raise WeightsUnavailableError(
                f'{corrupt}could not download the {entry.name} weights: {e}. Offline? Fetch {entry.url} '
                f"elsewhere, then load it with timm.create_model('{entry.name}', pretrained=True, "
                f"pretrained_cfg_overlay=dict(file='{file_name}')), or "
                f"'emo predict --model {entry.name} --weights {file_name}'"
            ) from e
        blob = git_blob_sha1(raw)
        if blob != entry.git_blob_sha1:
            raise WeightsUnavailableError(
                f'{url} served a file whose git blob id is {blob}, not the released {entry.git_blob_sha1} of '
                f'{entry.name}: refused (nothing was cached). Check EMO_ORIGIN_URL or the mirror.'
            )
        state_dict = ckpt.to_timm_state_dict(ckpt.read_checkpoint(raw))
        ckpt.check_variant(state_dict, entry.variant)
        converted = scratch / 'model.safetensors'
        ckpt.save_safetensors(state_dict, converted)
        digest = scratch / 'model.safetensors.sha256'
        digest.write_bytes(_digest_line(converted, final.name))
        os.replace(converted, final)
        os.replace(digest, sidecar)  # after the weights: a digest never stands beside a file it does not describe
        _logger.info('cached %s (git blob %s) as %s', url, blob, final)
    return final
