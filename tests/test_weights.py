"""pretrained=True from the release origin: download, blob-id check, conversion, cache, offline reuse, faults.

A local server stands in for the origin (EMO_ORIGIN_URL); it serves official-format files regenerated from the
reference rule, and the test's manifest carries their blob ids.
"""

import builtins
import hashlib
import logging
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import timm
import torch
from origin_server import OriginServer, closed_port_url
from reference import expected, reference_inputs

import emo
import emo.weights as weights
from emo.weights import WeightsUnavailableError, manifest

X = reference_inputs()['1x3x256x192']


def _logits(model):
    with torch.no_grad():
        return model.eval()(X)


def _cache_files(tmp_path):
    folder = tmp_path / 'torch' / 'hub' / 'checkpoints'
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verify_convert_cache_then_offline(release, tmp_path, monkeypatch):
    with OriginServer(release) as origin:
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        model = timm.create_model('emo_1m', pretrained=True)
        assert origin.requests == ['resources/EMO_1M/net.pth']
    torch.testing.assert_close(_logits(model), expected('emo_1m')['logits_1x3x256x192'], rtol=0, atol=1e-4)
    blob = weights.released_weights()['emo_1m.in1k'].git_blob_sha1
    cached = f'emo_1m.in1k-{blob[:10]}.safetensors'
    assert _cache_files(tmp_path) == [cached, f'{cached}.sha256']  # converted, its digest, no scratch left
    assert model.pretrained_cfg['file'].endswith(f'emo_1m.in1k-{blob[:10]}.safetensors')

    monkeypatch.setenv('EMO_ORIGIN_URL', closed_port_url())  # the origin is gone: the cache serves
    torch.testing.assert_close(_logits(timm.create_model('emo_1m.in1k', pretrained=True)), _logits(model))
    features = timm.create_model('emo_1m', pretrained=True, features_only=True).eval()
    with torch.no_grad():
        maps, taps = features(X), model.forward_intermediates(X, intermediates_only=True)
    assert len(maps) == len(taps) == 4
    for got, want in zip(maps, taps):  # the cached weights, offline, in the backbone too
        torch.testing.assert_close(got, want)


def test_tampered_file_is_refused_and_not_cached(release, tmp_path, monkeypatch):
    release['resources/EMO_1M/net.pth'] = release['resources/EMO_2M/net.pth']
    with OriginServer(release) as origin:
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        with pytest.raises(WeightsUnavailableError, match='git blob id .* not the released'):
            timm.create_model('emo_1m', pretrained=True)
    assert _cache_files(tmp_path) == []


def test_interrupted_download_leaves_nothing(release, tmp_path, monkeypatch):
    with OriginServer(release) as origin:
        origin.truncate = True
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        with pytest.raises(WeightsUnavailableError, match='interrupted'):
            timm.create_model('emo_2m', pretrained=True)
    assert _cache_files(tmp_path) == []


def test_no_network_and_missing_file_say_what_to_do(release, tmp_path, monkeypatch):
    monkeypatch.setenv('EMO_ORIGIN_URL', closed_port_url())
    with pytest.raises(WeightsUnavailableError) as info:
        timm.create_model('emo_5m', pretrained=True)
    assert 'could not reach' in str(info.value) and "pretrained_cfg_overlay=dict(file='net.pth')" in str(info.value)
    with OriginServer({}) as origin:
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        with pytest.raises(WeightsUnavailableError, match='HTTP 404'):
            timm.create_model('emo_5m', pretrained=True)
    assert _cache_files(tmp_path) == []


def test_cache_dir_and_url_override(release, tmp_path, monkeypatch):
    monkeypatch.setenv('EMO_ORIGIN_URL', closed_port_url())
    with OriginServer({'mirror/emo6.pth': release['resources/EMO_6M/net.pth']}) as mirror:
        model = timm.create_model(
            'emo_6m',
            pretrained=True,
            cache_dir=tmp_path / 'cache',
            pretrained_cfg_overlay=dict(url=f'{mirror.url}/mirror/emo6.pth'),
        )
    torch.testing.assert_close(_logits(model), expected('emo_6m')['logits_1x3x256x192'], rtol=0, atol=1e-4)
    cached = weights.cached_path('emo_6m').name
    assert sorted(p.name for p in (tmp_path / 'cache').iterdir()) == [cached, f'{cached}.sha256']
    assert _cache_files(tmp_path) == []


# ImageNet-1k top-1 as the papers (arXiv:2301.01146, arXiv:2412.06674) and the official READMEs print them, to 0.1
PAPER_TOP1 = {
    'emo_1m.in1k': 71.5,
    'emo_2m.in1k': 75.1,
    'emo_5m.in1k': 78.4,
    'emo_6m.in1k': 79.0,
    'emo2_1m.in1k': 72.3,
    'emo2_1m.dist_in1k': 73.5,
    'emo2_2m.in1k': 75.8,
    'emo2_2m.dist_in1k': 76.7,
    'emo2_5m.in1k': 79.4,
    'emo2_5m.dist_in1k': 80.9,
    'emo2_5m_512.dist_in1k': 82.9,
}


def test_manifest_is_the_source_of_truth():
    entries = weights.released_weights()
    assert sorted(entries) == sorted(PAPER_TOP1)
    assert sorted(weights.released_weights('emo2')) == sorted(n for n in PAPER_TOP1 if n.startswith('emo2_'))
    for name, entry in entries.items():
        cfg = timm.create_model(name).pretrained_cfg
        family = weights.manifest.families()[emo.VARIANTS[entry.variant].family]
        assert cfg['url'] == entry.url and entry.url.endswith(entry.path)
        assert entry.url == f'{family.repository}/raw/{family.commit}/{entry.path}'
        assert cfg['origin_url'] == family.repository and cfg['paper_ids'] == f'arXiv:{family.arxiv}'
        assert len(entry.git_blob_sha1) == 40
        assert entry.top1 == pytest.approx(PAPER_TOP1[name], abs=0.05), name
        assert bool(entry.distilled) == ('dist' in entry.tag)
    assert entries['emo_2m.in1k'].git_blob_sha1 == '9ec7138d292ca9b2d07923aec05762f547db8cf2'
    assert entries['emo2_5m_512.dist_in1k'].git_blob_sha1 == 'e1235b440edd1517bacd30fc6ff0c476098b2847'
    # a bare name loads the first tag: the plain ImageNet-1k weights, as in the papers' main tables
    assert timm.create_model('emo2_1m').pretrained_cfg['tag'] == 'in1k'


def _fill_cache(release, monkeypatch):
    """Download emo_1m into the (test) cache; returns the cached file's path and bytes."""
    with OriginServer(release) as origin:
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        timm.create_model('emo_1m', pretrained=True)
    path = weights.cached_path('emo_1m')
    return path, path.read_bytes()


def _damage(path, how):
    data = path.read_bytes()
    if how == 'truncated':
        path.write_bytes(data[: len(data) // 2])
    elif how == 'random':
        path.write_bytes(random.Random(0).randbytes(len(data)))
    elif how == 'empty':
        path.write_bytes(b'')
    elif how == 'digest':  # the weights are intact; the record of them is not
        weights.digest_path(path).write_text('0' * 64 + f'  {path.name}\n')


@pytest.mark.parametrize('how', ['truncated', 'random', 'empty', 'digest'])
def test_corrupt_cached_file_is_downloaded_again(release, tmp_path, monkeypatch, caplog, how):
    path, good = _fill_cache(release, monkeypatch)
    _damage(path, how)
    with OriginServer(release) as origin:
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        with caplog.at_level(logging.WARNING, logger='emo.weights.download'):
            model = timm.create_model('emo_1m', pretrained=True)
        assert origin.requests == ['resources/EMO_1M/net.pth']
    assert str(path) in caplog.text and 'corrupt' in caplog.text
    assert path.read_bytes() == good
    assert weights.digest_path(path).read_text() == f'{hashlib.sha256(good).hexdigest()}  {path.name}\n'
    torch.testing.assert_close(_logits(model), expected('emo_1m')['logits_1x3x256x192'], rtol=0, atol=1e-4)


def test_corrupt_cached_file_offline_says_it_was_removed(release, tmp_path, monkeypatch):
    path, _ = _fill_cache(release, monkeypatch)
    _damage(path, 'truncated')
    monkeypatch.setenv('EMO_ORIGIN_URL', closed_port_url())
    with pytest.raises(WeightsUnavailableError) as info:
        timm.create_model('emo_1m', pretrained=True)
    message = str(info.value)
    assert f'the cached copy {path} was corrupt' in message and 'was removed' in message
    assert 'could not reach' in message and '\n' not in message
    assert _cache_files(tmp_path) == []


def test_a_cached_file_that_cannot_be_read_this_once_is_kept(release, tmp_path, monkeypatch):
    path, good = _fill_cache(release, monkeypatch)
    real_open, refused = builtins.open, []

    def no_permission(file, *args, **kwargs):  # root reads any file here, so the OS's refusal is injected
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) == str(path.absolute()):
            refused.append(file)
            raise PermissionError(13, 'Permission denied', str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setenv('EMO_ORIGIN_URL', closed_port_url())
    with monkeypatch.context() as patch:
        patch.setattr(builtins, 'open', no_permission)
        with pytest.raises(WeightsUnavailableError, match='could not read the cached weights .* permissions'):
            timm.create_model('emo_1m', pretrained=True)
    assert refused  # the cached file itself was refused, not something else
    assert path.read_bytes() == good and weights.digest_path(path).is_file()  # not taken for corruption


def test_cached_file_without_digest_is_verified_and_adopted(release, tmp_path, monkeypatch):
    path, good = _fill_cache(release, monkeypatch)
    weights.digest_path(path).unlink()  # as an earlier version left its cache
    monkeypatch.setenv('EMO_ORIGIN_URL', closed_port_url())  # offline: the cached file must serve
    model = timm.create_model('emo_1m', pretrained=True)
    torch.testing.assert_close(_logits(model), expected('emo_1m')['logits_1x3x256x192'], rtol=0, atol=1e-4)
    assert weights.digest_path(path).read_text() == f'{hashlib.sha256(good).hexdigest()}  {path.name}\n'

    weights.digest_path(path).unlink()
    _damage(path, 'truncated')  # without a digest, a file that does not read is fetched again
    with OriginServer(release) as origin:
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        timm.create_model('emo_1m', pretrained=True)
        assert origin.requests == ['resources/EMO_1M/net.pth']
    assert path.read_bytes() == good


@pytest.mark.parametrize(
    'trickle, env, match',
    [
        pytest.param(
            (64, 0.05), {'EMO_DOWNLOAD_TIMEOUT': '1', 'EMO_DOWNLOAD_MIN_RATE': '0'}, 'within 1 s', id='deadline'
        ),
        # one write, then silence: the read itself must not wait past the deadline
        pytest.param(
            (64, 30.0), {'EMO_DOWNLOAD_TIMEOUT': '1', 'EMO_DOWNLOAD_MIN_RATE': '0'}, 'within 1 s', id='silent'
        ),
        pytest.param(
            (64, 0.05), {'EMO_DOWNLOAD_MIN_RATE': '10240', 'EMO_DOWNLOAD_GRACE': '1'}, 'too slow', id='min-rate'
        ),
    ],
)
def test_trickling_origin_is_given_up(release, tmp_path, monkeypatch, trickle, env, match):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with OriginServer(release) as origin:
        origin.trickle = trickle  # a few bytes, then a pause: each read gets data, the download never ends
        monkeypatch.setenv('EMO_ORIGIN_URL', origin.url)
        start = time.monotonic()
        with pytest.raises(WeightsUnavailableError, match=match) as info:
            timm.create_model('emo_1m', pretrained=True)
        assert time.monotonic() - start < 5
    assert '\n' not in str(info.value) and 'EMO_DOWNLOAD_' in str(info.value)
    assert _cache_files(tmp_path) == []


def test_download_limits_must_be_numbers(release, tmp_path, monkeypatch):
    monkeypatch.setenv('EMO_ORIGIN_URL', closed_port_url())
    monkeypatch.setenv('EMO_DOWNLOAD_TIMEOUT', 'soon')
    with pytest.raises(ValueError, match="EMO_DOWNLOAD_TIMEOUT='soon' is not a number"):
        timm.create_model('emo_1m', pretrained=True)
    assert _cache_files(tmp_path) == []


_CREATE = 'import pathlib, sys, timm, emo.weights.manifest as m; m.MANIFEST = pathlib.Path(sys.argv[1]); ' + (
    "timm.create_model('emo_1m', pretrained=True)"
)


@pytest.mark.parametrize(
    'sig, error',
    [
        pytest.param(signal.SIGTERM, 'Terminated', id='SIGTERM'),
        pytest.param(signal.SIGINT, 'KeyboardInterrupt', id='SIGINT'),
    ],
)
def test_stopped_download_leaves_no_scratch_folder(release, tmp_path, sig, error):
    cache = tmp_path / 'torch' / 'hub' / 'checkpoints'
    with OriginServer(release) as origin:
        origin.trickle = (64, 0.05)
        env = dict(
            os.environ, EMO_ORIGIN_URL=origin.url, EMO_DOWNLOAD_MIN_RATE='0', EMO_DOWNLOAD_TIMEOUT='120'
        )  # TORCH_HOME and the manifest: the release fixture's
        proc = subprocess.Popen(
            [sys.executable, '-c', _CREATE, str(manifest.MANIFEST)], env=env, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 120
            while not (origin.requests and list(cache.glob('.emo-download-*'))):
                assert proc.poll() is None and time.monotonic() < deadline, 'the download never started'
                time.sleep(0.1)
            proc.send_signal(sig)
            _, stderr = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode != 0 and error in stderr
    assert list(cache.iterdir()) == []
