#!/usr/bin/env python
"""Same as the ``emo`` command (``python scripts/emo_cli.py zoo``), for checkouts that are not pip-installed."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
