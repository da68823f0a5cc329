"""The generated YOLO data set for short Ultralytics runs, offline (also used by data/legacy/make_legacy.py)."""

import shutil
from pathlib import Path

from emo.ultralytics.shapes import write_dataset

__all__ = ['write_dataset', 'offline_font']


def offline_font(config_dir: Path) -> None:
    """Ultralytics checks for Arial.ttf (downloading it if missing) when it reads a data set: give it a local font."""
    import matplotlib

    font = Path(matplotlib.get_data_path()) / 'fonts' / 'ttf' / 'DejaVuSans.ttf'
    config_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(font, config_dir / 'Arial.ttf')
