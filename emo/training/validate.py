"""``emo validate``: accuracy of a checkpoint on a class-folder set, per-class accuracy CSV, confusion matrix PNG."""

import argparse
import csv
import io
import os
from pathlib import Path
from typing import Dict, List, Optional

import timm
import torch
from timm.data import create_transform, resolve_data_config

from ..files import atomic_write_text, pyplot, save_png
from ..models.variants import model_names
from ..weights import load_into, read_checkpoint
from ..weights.checkpoint import check_classifier_checkpoint
from .data import SkippedImages, SkippingImageFolder, check_image_folders, readable_loader
from .evaluate import evaluate

# not skipped_images.txt: validate writes beside the checkpoint by default, where the training run keeps its own
SKIPPED_FILE = 'validate_skipped_images.txt'

__all__ = ['main', 'build_parser']


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='emo validate', description='Evaluate a checkpoint on CLASS/*.jpg folders.')
    p.add_argument('--data', required=True, type=Path, help='folder of class folders, e.g. DIR/val')
    p.add_argument('--checkpoint', required=True, type=Path, help='best.pth/last.pth of emo train, or any weights')
    p.add_argument('--model', default=None, choices=model_names(), metavar='MODEL', help="default: the checkpoint's")
    p.add_argument('--img-size', type=int, default=None, help="default: the checkpoint's training size")
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--workers', type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument(
        '--output', type=Path, default=None, help="where the CSV and PNG go (default: the checkpoint's folder)"
    )
    p.add_argument(
        '--openvino',
        type=Path,
        default=None,
        metavar='XML',
        help='evaluate this OpenVINO IR of the checkpoint (emo export openvino, f32 or int8) instead of the checkpoint '
        "itself; classes and preprocessing are still the checkpoint's. Only an IR exported from this checkpoint "
        '(its model and sha256, recorded in the IR) is evaluated',
    )
    return p


def _plot_confusion(confusion: torch.Tensor, class_names: List[str], path: Path) -> None:
    plt = pyplot()

    n = len(class_names)
    size = min(4 + 0.35 * n, 40)
    fig, ax = plt.subplots(figsize=(size, size))
    rows = confusion.float() / confusion.sum(1, keepdim=True).clamp(min=1)
    ax.imshow(rows.numpy(), cmap='Blues', vmin=0, vmax=1)
    if n <= 50:
        ax.set_xticks(range(n), class_names, rotation=90)
        ax.set_yticks(range(n), class_names)
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(
                        j,
                        i,
                        int(confusion[i, j]),
                        ha='center',
                        va='center',
                        fontsize=8,
                        color='white' if rows[i, j] > 0.5 else 'black',
                    )
    ax.set(xlabel='predicted', ylabel='true', title='confusion matrix (rows normalised)')
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def _check_ir_fits(ir, args, arch: str, num_classes: int, size: tuple) -> None:
    """Refuse an IR that is not the checkpoint's, or cannot be evaluated as the checkpoint is: another class count,
    another fixed size, or exported from another model or checkpoint file (or recording none: an older emo's)."""
    from ..deploy.openvino import check_ir_source

    if ir.num_classes is not None and ir.num_classes != num_classes:
        raise ValueError(
            f'{args.openvino} gives {ir.num_classes} logits, but {args.checkpoint} has {num_classes} classes: export '
            f'the IR from this checkpoint (emo export openvino --model {arch.split(".")[0]} --weights '
            f'{args.checkpoint})'
        )
    ir_size = ir.input_shape[2:]
    if None not in ir_size and tuple(ir_size) != size:
        raise ValueError(
            f'{args.openvino} takes {ir_size[0]}x{ir_size[1]} images, but this evaluation runs at {size[0]}x{size[1]}: '
            'export the IR at that size (--img-size) or with --dynamic'
        )
    # the graph fits; is it this checkpoint's? no number is reported for another model's IR
    check_ir_source(ir.record, args.openvino, args.checkpoint, arch)


def main(argv: Optional[List[str]] = None) -> Dict:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise ValueError(f'--batch-size must be at least 1, got {args.batch_size}')
    state = read_checkpoint(args.checkpoint)
    check_classifier_checkpoint(state, str(args.checkpoint))
    folder_classes = check_image_folders(None, args.data)
    class_names = list(state['class_names']) if 'class_names' in state else folder_classes
    if len(class_names) < 2:
        source = f'{args.checkpoint} was trained on' if 'class_names' in state else f'{args.data} has'
        raise ValueError(
            f'{source} one class ({class_names[0]!r}): top-1 would be 100% on any image, so there is nothing to measure'
        )
    unknown = sorted(set(folder_classes) - set(class_names))
    if unknown:
        raise ValueError(f'class folder(s) {unknown} in {args.data} are not classes of the checkpoint {class_names}')
    arch = args.model or state.get('arch')
    if arch is None:
        raise ValueError('the checkpoint does not say its architecture: pass --model')
    model = timm.create_model(arch, num_classes=len(class_names))
    load_into(model, state)
    data_cfg = resolve_data_config(model=model)
    img_size = args.img_size or state.get('img_size')
    if img_size:
        data_cfg['input_size'] = (3, int(img_size), int(img_size))
    output = args.output or args.checkpoint.parent
    output.mkdir(parents=True, exist_ok=True)
    dataset = SkippingImageFolder(
        args.data,
        create_transform(**data_cfg, is_training=False),
        class_map={c: i for i, c in enumerate(class_names)},
    )
    loader = readable_loader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=args.workers)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    prefix = ''  # an IR's results go beside the checkpoint's own, not over them
    if args.openvino is not None:
        from ..deploy.openvino import IRClassifier

        model, device = IRClassifier(args.openvino), torch.device('cpu')
        _check_ir_fits(model, args, arch, len(class_names), tuple(data_cfg['input_size'][1:]))
        prefix = f'{args.openvino.stem}_'
    skipped = SkippedImages()
    metrics = evaluate(model.to(device), loader, device, len(class_names), skipped=skipped)
    metrics['skipped'] = len(skipped)

    rows = [['class', 'images', 'top1']]
    for name, count, acc in zip(class_names, metrics['per_class_count'], metrics['per_class_top1']):
        rows.append([name, count, '' if acc is None else round(acc, 4)])  # no image, no accuracy
    text = io.StringIO(newline='')
    csv.writer(text).writerows(rows)
    atomic_write_text(output / f'{prefix}per_class_accuracy.csv', text.getvalue())
    _plot_confusion(metrics['confusion'], class_names, output / f'{prefix}confusion_matrix.png')
    skipped.write(output / f'{prefix}{SKIPPED_FILE}')
    print(
        f'{args.openvino or args.checkpoint}: top-1 {metrics["top1"]:.2f}  top-5 {metrics["top5"]:.2f}  '
        f'loss {metrics["loss"]:.4f}  '
        f'({metrics["count"]} images; per-class accuracy and confusion matrix in {output})'
    )
    if skipped:
        print(
            f'skipped {len(skipped)} unreadable image(s), left out of every number above and listed in '
            f'{output / f"{prefix}{SKIPPED_FILE}"}'
        )
    return metrics
