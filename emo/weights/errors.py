"""The errors of getting weights, and the one-line messages for what huggingface_hub and safetensors raise."""

import importlib
from pathlib import Path
from typing import Any, List, Tuple

from .manifest import HUB_WEIGHTS_FILE, hub_org

__all__ = [
    'CheckpointError',
    'WeightsUnavailableError',
    'HubUploadError',
    'first_line',
    'hub_errors',
    'hub_unavailable',
    'unreadable_weights',
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the model asked for; the message says why and what to do."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be had: no network and no cached copy, a failed download, a missing hub repo."""


class HubUploadError(RuntimeError):
    """A hub folder could not be uploaded: the Hub was unreachable, or refused the login, the repo or the commit."""


def first_line(error: BaseException, after: str = '') -> str:
    """The first non-empty line of an error's message (after ``after``, when it occurs), else its type's name.

    huggingface_hub's and torch's messages run over several lines (request ids, URLs, advice); emo reports one.
    """
    text = str(error)
    if after and after in text:
        text = text.split(after, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


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
        reason = f'{type(error).__name__}: {first_line(error)}'
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


def unreadable_weights(pretrained_cfg: Any, error: BaseException) -> CheckpointError:
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
    return CheckpointError(f'{path} is not a readable safetensors file ({error}); it is truncated or corrupt: {fix}')
