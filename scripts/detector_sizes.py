#!/usr/bin/env python
"""Print the parameter counts and GFLOPs of the EMO and EMOv2 detectors next to the papers' (docs/detection.md)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo.detection import detector_gflops, retinanet, ssdlite  # noqa: E402

# (params M, GFLOPs, AP). EMO: the official README's COCO tables, RetinaNet FLOPs at 1333x800, SSDLite at 320x320.
# EMOv2: the paper's tables as shared/design/emov2-spec.md gives them, params and mAP only (its SSDLite mAP is at
# 300x300, marked so)
PAPER = {
    'emo_1m': {'ssdlite': (2.3, 0.6, 22.0), 'retinanet': (10.4, 163, 34.4)},
    'emo_2m': {'ssdlite': (3.3, 0.9, 25.2), 'retinanet': (11.5, 167, 36.2)},
    'emo_5m': {'ssdlite': (6.0, 1.8, 27.9), 'retinanet': (14.4, 178, 38.9)},
    'emo2_1m': {'ssdlite': (2.4, '-', '22.3 (at 300)'), 'retinanet': (10.5, '-', 36.9)},
    'emo2_2m': {'ssdlite': (3.3, '-', '26.0 (at 300)'), 'retinanet': (11.5, '-', 39.3)},
    'emo2_5m': {'ssdlite': (6.0, '-', '29.6 (at 300)'), 'retinanet': (14.4, '-', 41.5)},
    'emo2_20m': {'ssdlite': (21.2, '-', '33.1 (at 300)'), 'retinanet': (29.8, '-', 43.8)},
}
VARIANTS = ('emo_1m', 'emo_2m', 'emo_5m', 'emo_6m', 'emo2_1m', 'emo2_2m', 'emo2_5m', 'emo2_20m')


def main() -> None:
    print('| detector | backbone | params (M) | paper params (M) | GFLOPs | paper GFLOPs | paper COCO AP |')
    print('|---|---|---:|---:|---:|---:|---:|')
    for name, build, size in (('SSDLite 320', ssdlite, (320, 320)), ('RetinaNet 1333x800', retinanet, (800, 1333))):
        for variant in VARIANTS:
            model = build(variant, num_classes=81 if build is ssdlite else 80)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            gflops = detector_gflops(model, *size)
            paper = PAPER.get(variant, {}).get('ssdlite' if build is ssdlite else 'retinanet')
            ref = [f'{v}' for v in paper] if paper else ['-', '-', '-']
            print(f'| {name} | {variant} | {params:.2f} | {ref[0]} | {gflops:.2f} | {ref[1]} | {ref[2]} |')


if __name__ == '__main__':
    main()
