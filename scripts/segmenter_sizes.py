#!/usr/bin/env python
"""Print the parameter counts and GFLOPs at 512x512 of the EMO and EMOv2 segmenters next to the papers'
(docs/segmentation.md): python scripts/segmenter_sizes.py"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo.segmentation import deeplabv3, segmentation_gflops, semantic_fpn  # noqa: E402

# (params M, GFLOPs at 512x512, ADE20K mIoU) of the official READMEs; EMO's params include the auxiliary head,
# EMOv2's leave it out; neither FLOP count runs it
PAPER = {
    'deeplabv3': {
        'emo_1m': (5.6, 2.4, 33.5), 'emo_2m': (6.9, 3.5, 35.3), 'emo_5m': (10.3, 5.8, 37.8),
        'emo2_1m': (5.6, 3.3, 34.6), 'emo2_2m': (6.6, 5.0, 36.8), 'emo2_5m': (9.9, 9.1, 39.8),
        'emo2_20m': (26.0, 31.6, 43.3),
    },
    'semantic_fpn': {
        'emo2_1m': (5.3, 23.4, 37.1), 'emo2_2m': (6.2, 25.1, 39.9), 'emo2_5m': (8.9, 29.1, 42.4),
        'emo2_20m': (23.9, 51.5, 46.8),
    },
}  # fmt: skip
VARIANTS = ('emo_1m', 'emo_2m', 'emo_5m', 'emo_6m', 'emo2_1m', 'emo2_2m', 'emo2_5m', 'emo2_20m')


def _millions(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def main() -> None:
    print(
        '| model | backbone | window | params (M) | + aux head (M) | torchvision head (M) | paper params (M) '
        '| GFLOPs | paper GFLOPs | paper ADE20K mIoU |'
    )
    print('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    for name, build in (('DeepLabv3', deeplabv3), ('Semantic FPN', semantic_fpn)):
        for variant in VARIANTS:
            model = build(variant, num_classes=150)
            window = {m.window_size for m in model.backbone.modules() if hasattr(m, 'window_size')}.pop()
            total = _millions(model)
            aux = getattr(model, 'aux_classifier', None)
            plain = total - (_millions(aux) if aux is not None else 0)
            tv = _millions(deeplabv3(variant, 150, aux_loss=False, head='torchvision')) if build is deeplabv3 else None
            paper = PAPER['deeplabv3' if build is deeplabv3 else 'semantic_fpn'].get(variant, ('-', '-', '-'))
            cells = [
                name, variant, window, f'{plain:.3f}', f'{total:.3f}' if aux is not None else '-',
                f'{tv:.3f}' if tv else '-', paper[0], f'{segmentation_gflops(model):.2f}', paper[1], paper[2],
            ]  # fmt: skip
            print('| ' + ' | '.join(map(str, cells)) + ' |')


if __name__ == '__main__':
    main()
