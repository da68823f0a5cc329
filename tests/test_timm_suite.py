"""timm's own model tests (tests/test_models.py of the installed timm release) run against emo_* and emo2_*.

The test file ships in timm's source distribution: TIMM_TESTS_DIR names an unpacked one (its tests/ folder
inside), else it is fetched with pip into .cache/. The pretrained-weight tests of that file need the internet;
their local equivalents are in test_checkpoint.py.
"""

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import timm

ROOT = Path(__file__).resolve().parents[1]


def _timm_sdist_dir() -> Path:
    env = os.environ.get('TIMM_TESTS_DIR')
    if env:
        return Path(env)
    cache = ROOT / '.cache'
    unpacked = cache / f'timm-{timm.__version__}'
    if not (unpacked / 'tests' / 'test_models.py').is_file():
        cache.mkdir(exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                '-m',
                'pip',
                'download',
                '--no-deps',
                '--no-binary',
                ':all:',
                '-q',
                '-d',
                str(cache),
                f'timm=={timm.__version__}',
            ],
            check=True,
        )
        with tarfile.open(cache / f'timm-{timm.__version__}.tar.gz') as tar:
            tar.extractall(cache, filter='data')
    return unpacked


@pytest.mark.slow
def test_timm_test_models_pass_for_emo_and_emo2():
    sdist = _timm_sdist_dir()
    result = subprocess.run(
        [
            sys.executable,
            '-m',
            'pytest',
            '-p',
            'emo',
            'tests/test_models.py',
            '-k',
            '(emo_ or emo2_) and not pretrained',
            '-q',
            '-p',
            'no:cacheprovider',
        ],
        cwd=sdist,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    # forward, backward, torchscript, features, fx forward/backward and fx+torchscript: 7 tests x 9 models (4 EMO,
    # 5 EMOv2); default cfgs once per pretrained tag (4 + 7) and for emo2_20m, which has none: 63 + 12, all passed:
    # nothing failed, errored, skipped or expected to fail
    assert re.fullmatch(r'75 passed, \d+ deselected(, \d+ warnings?)? in [\d.]+s( \([\d:]+\))?', summary), summary
