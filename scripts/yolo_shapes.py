"""Write the generated YOLO data set of emo.ultralytics.shapes: python scripts/yolo_shapes.py OUT [--train N] ..."""

import argparse
import sys
from pathlib import Path

from emo.ultralytics.shapes import write_dataset

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('out', type=Path, help='new folder for the data set')
    parser.add_argument('--train', type=int, default=256, help='training images')
    parser.add_argument('--val', type=int, default=64, help='validation images')
    parser.add_argument('--min-size', type=int, default=96, help='smallest image side (px)')
    parser.add_argument('--max-size', type=int, default=160, help='largest image side (px)')
    args = parser.parse_args()
    try:
        print(write_dataset(args.out, args.train, args.val, (args.min_size, args.max_size)))
    except (OSError, ValueError) as e:
        sys.exit(f'yolo_shapes: error: {e}')
