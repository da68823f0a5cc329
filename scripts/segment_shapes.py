"""Write the generated segmentation data set of emo.segmentation.shapes (ADE20K layout, 3 classes):
python scripts/segment_shapes.py OUT [--train N] [--val N] [--min-size PX] [--max-size PX]"""

from emo.segmentation.shapes import write_dataset
from emo.shapes import script_main

if __name__ == '__main__':
    script_main(write_dataset, 'segment_shapes', train=128, val=32, sizes=(64, 96))
