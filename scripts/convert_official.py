#!/usr/bin/env python
"""Same as ``emo convert SRC OUT_DIR [--model emo_2m]``: an official net.pth -> a Hugging Face Hub folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(['convert', *sys.argv[1:]]))
