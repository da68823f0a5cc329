"""Weights: reading checkpoints safely, the official layout, the manifest, the verified download and cache,
Hugging Face Hub folders (``emo convert``, ``emo push``), and what ``pretrained=True`` resolves to."""

from .checkpoint import arch_of, check_matches_model, load_into, read_checkpoint, unwrap
from .download import cached_path, digest_path, fetch_official, file_sha256, git_blob_sha1
from .errors import CheckpointError, HubUploadError, WeightsUnavailableError
from .hub_folder import HUB_FILES, convert_official, model_card, push_folder, write_hub_folder
from .manifest import ReleasedWeights, hub_org, origin_url, released_weights
from .official_layout import is_official_layout, to_official_layout, to_timm_layout
from .pretrained import create_with_weights

__all__ = [
    'CheckpointError',
    'HUB_FILES',
    'HubUploadError',
    'ReleasedWeights',
    'WeightsUnavailableError',
    'arch_of',
    'cached_path',
    'check_matches_model',
    'convert_official',
    'create_with_weights',
    'digest_path',
    'fetch_official',
    'git_blob_sha1',
    'file_sha256',
    'hub_org',
    'is_official_layout',
    'load_into',
    'model_card',
    'origin_url',
    'push_folder',
    'read_checkpoint',
    'released_weights',
    'to_official_layout',
    'to_timm_layout',
    'unwrap',
    'write_hub_folder',
]
