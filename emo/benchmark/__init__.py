"""``emo bench``: EMO and EMOv2 against the official arithmetic and against their timm peers, eager and ONNX Runtime.

Every number a ratio is made of is measured in the same run, interleaved: each round times every candidate
once, so a machine that slows down mid-run slows all of them alike. Per candidate and batch size the report
gives the median and the min-max of the rounds. Candidates:

- ``<variant>``: this package's model after ``timm.utils.reparameterize_model`` (the fused inference path);
- ``<variant>/unfused``: the same weights without fusing;
- ``<variant>/official``: :class:`emo.benchmark.official.OfficialEMO` (EMO) or
  :class:`emo.benchmark.official_emo2.OfficialEMO2` (EMOv2), the official computation rebuilt from the spec, on the
  same weights; its logits are checked against ours before anything is timed (with random weights, EMOv2's layer
  scales are set to 1 first, so that the check sees every block);
- ``<variant>/official-code`` with ``--official-code DIR``: the official EMO implementation itself, from a clone;
- every timm model named as a peer, reparameterized as timm's own benchmark does, run channels-first and
  channels-last, and reported with the faster layout (so the peers are never handicapped).

With ``--compile`` the fused EMO variants and the peers are also timed after ``torch.compile`` (inductor, with
weight freezing, the setting that makes it fast on CPU), in a section of their own: what a graph compiler makes
of each architecture, for EMO and its peers alike.

Memory: activation bytes (weights excluded) at their peak, counted exactly by :class:`ActivationMemory`, for a
training step with and without ``set_grad_checkpointing()`` and per image for inference.

The package, one file per concern: :mod:`.runner` (the candidates, the timed run, the ratios; timed by
:mod:`emo.timing`, the package's one timing loop), :mod:`.memory` (activation memory), :mod:`.official` (EMO's
official arithmetic and the official code, the baselines), :mod:`.official_emo2` (EMOv2's official arithmetic),
:mod:`.report` (JSON, Markdown, plot), :mod:`.cli` (``emo bench``) and :mod:`.tuning` (``python -m
emo.benchmark.tuning``: re-measure the constants tuned by timing).
"""

from ..timing import time_interleaved
from .cli import build_parser, main
from .memory import ActivationMemory, activation_peak, memory_report
from .report import format_markdown, write_report
from .runner import DEFAULT_PEERS, PEER_PAIRS, PEER_TOP1, BenchSettings, check_agreement, run_benchmark

__all__ = [
    'ActivationMemory',
    'BenchSettings',
    'DEFAULT_PEERS',
    'PEER_PAIRS',
    'PEER_TOP1',
    'activation_peak',
    'build_parser',
    'check_agreement',
    'format_markdown',
    'main',
    'memory_report',
    'run_benchmark',
    'time_interleaved',
    'write_report',
]
