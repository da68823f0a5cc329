#!/usr/bin/env python
"""Same as ``emo validate ...``, for checkouts that are not pip-installed (``python scripts/validate.py --help``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(['validate', *sys.argv[1:]]))
