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


# timm's per-model tests (forward, backward, torchscript, features, fx forward/backward, fx+torchscript: 7 each) for
# the smallest of each family and the largest, and its default-cfg test for every pretrained tag (4 + 7) and for
# emo2_20m, which has none: 7 x 3 + 12 = 33; the other six variants (the same classes with other widths) are
# left to -m exhaustive, for CI's time: 7 x 6 = 42
MODELS = '(default_cfgs or emo_1m or emo2_1m or emo2_20m)'
SELECTIONS = [
    pytest.param(f'{MODELS}', 33, id='cfgs-and-3-models'),
    pytest.param(f'not {MODELS}', 42, id='other-models', marks=pytest.mark.exhaustive),
]


@pytest.mark.slow
@pytest.mark.parametrize('selection, expected', SELECTIONS)
def test_timm_test_models_pass_for_emo_and_emo2(selection, expected):
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
            f'(emo_ or emo2_) and not pretrained and {selection}',
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
    # all passed: nothing failed, errored, skipped or expected to fail
    assert re.fullmatch(rf'{expected} passed, \d+ deselected(, \d+ warnings?)? in [\d.]+s( \([\d:]+\))?', summary), (
        summary
    )
