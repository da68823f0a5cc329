"""Write the generated YOLO data set of emo.ultralytics.shapes: python scripts/yolo_shapes.py OUT [--train N] ..."""

from emo.shapes import script_main
from emo.ultralytics.shapes import write_dataset

if __name__ == '__main__':
    script_main(write_dataset, 'yolo_shapes', train=256, val=64, sizes=(96, 160))
