"""``emo yolo compare``: train YOLO models with Ultralytics' own trainer on one data set and compare them.

The experiment the iRMB posts run by hand: each model is trained from its YAML on the same data, with the same seed,
epochs, image size, batch and optimizer; each ``best.pt`` is validated with the same settings (square letterboxing,
``rect=False``: rectangular batches give EMO backbones another mAP than square ones, and the exported ONNX model
is square); each is exported to ONNX by Ultralytics and timed with ONNX Runtime on the CPU, all models in one
interleaved timing loop. The result is one table (``compare.md``, ``compare.csv``) and a plot of mAP50-95
against latency (``compare.png``) in the output folder.

A killed or failed run loses nothing: every model trains in its own folder (``OUT/runs/NAME``); a rerun with the
same settings skips models whose training finished and resumes those Ultralytics left a ``last.pt`` for, and a
rerun with other settings is refused rather than mixing them. A resumed training is not the training of an
uninterrupted run (Ultralytics' resume does not reproduce it), so it is recorded in ``OUT/runs/NAME/emo-resumed.json``
and marked as resumed in the tables. The three result files are written atomically, and one run at a time owns
``OUT`` (:func:`emo.files.folder_lock`): a second one on the same folder is refused in one line.
"""

import csv
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch

from ..files import atomic_write_text, folder_lock, pyplot, remove_stale_temporaries, save_png
from ..timing import summary, time_interleaved
from .configs import shipped_cfg

__all__ = ['TrainSettings', 'compare', 'resolve_model', 'format_markdown']

RESULT_FILES = ('compare.md', 'compare.csv', 'compare.png')
# in OUT/runs/NAME, written when a killed training is resumed: after which epochs (1-based, as in results.csv)
RESUMED_FILE = 'emo-resumed.json'


@dataclass(frozen=True)
class TrainSettings:
    """What every model of one comparison is trained and validated with (Ultralytics' argument names)."""

    data: str
    epochs: int
    imgsz: int
    batch: int = 16
    seed: int = 0
    # explicit, because optimizer='auto' picks different optimizers in different Ultralytics releases
    optimizer: str = 'AdamW'
    lr0: float = 0.001
    device: str = 'cpu'
    workers: int = 0


def resolve_model(name: str) -> str:
    """What to give ``YOLO()`` for a model name: an existing file, a shipped YAML (``yolo11n-sppf-irmb``) or one of
    Ultralytics' own (``yolo11n``, ``yolo26s.yaml``); anything else is a ValueError that says what is accepted."""
    if os.path.isfile(name):
        return str(Path(name).resolve())  # the same file from any working directory, for a rerun's check
    shipped = shipped_cfg(name)
    if shipped is not None:
        return shipped
    from ultralytics.nn.tasks import yaml_model_load

    yaml_name = name if name.endswith('.yaml') else f'{name}.yaml'
    try:
        yaml_model_load(yaml_name)
    except (FileNotFoundError, OSError):
        raise ValueError(
            f'no model {name!r}: give a YAML or .pt file, a shipped name (python -c "import emo.ultralytics as e; '
            f'print(e.configs())") or an Ultralytics model such as yolo11n'
        ) from None
    return yaml_name


def _resolve_data(data: str) -> str:
    from ultralytics.utils import ROOT

    if os.path.isfile(data):
        return str(Path(data).resolve())  # the same data set from any working directory, for a rerun's check
    if (ROOT / 'cfg' / 'datasets' / data).is_file():
        return str(ROOT / 'cfg' / 'datasets' / data)  # the path Ultralytics' trainer records for it
    raise ValueError(f'no data set file {data!r}: give the path of a YOLO data.yaml or an Ultralytics one (coco8.yaml)')


def _label(name: str) -> str:
    return Path(name).name.removesuffix('.yaml').removesuffix('.pt')


def _checkpoint(path: Path) -> dict:
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file: whatever torch.load raises, one line
        raise ValueError(
            f'{path} is unreadable ({type(e).__name__}), e.g. cut short by a kill while Ultralytics wrote it: delete '
            f'{path.parents[1]} to train that model again'
        ) from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f'{path} is not an Ultralytics checkpoint: delete {path.parents[1]} to train that model again')
    return checkpoint


def _same_model(trained: object, model: str, run: Path) -> bool:
    """Whether a run's recorded model is ``model``; after a resume Ultralytics records the run's own last.pt."""
    return isinstance(trained, str) and (trained == model or Path(trained) == run / 'weights' / 'last.pt')


def _check_same_run(run: Path, checkpoint: dict, model: str, settings: TrainSettings) -> None:
    trained = checkpoint.get('train_args') or {}
    differing = [
        f'{key} {trained.get(key)!r} there, {value!r} now'
        for key, value in asdict(settings).items()
        if key not in ('device', 'workers') and trained.get(key) != value
    ]
    if not _same_model(trained.get('model'), model, run):
        differing.insert(0, f'model {trained.get("model")!r} there, {model!r} now')
    if differing:
        raise ValueError(
            f'{run} was trained with other settings ({"; ".join(differing)}): give another --out-dir, or the same '
            'settings to finish that comparison'
        )


def _refuse_a_removed_best(run: Path) -> None:
    """A ``last.pt`` without its ``best.pt`` is refused: for a finished training Ultralytics would not resume but
    start a new one with its own defaults (coco8.yaml, 100 epochs) in ./runs, and a resumed one may never write a
    best.pt again (only an epoch better than the recorded best does)."""
    last, best = run / 'weights' / 'last.pt', run / 'weights' / 'best.pt'
    if last.is_file() and not best.is_file():
        raise ValueError(
            f'{best} is missing but its last.pt is there (removed, or a kill between Ultralytics writing the two): '
            f'delete {run} to train that model again'
        )


def resumed_after(run: Path) -> List[int]:
    """The epochs (1-based) after which the training in ``run`` was killed and resumed; [] for one in one go."""
    path = run / RESUMED_FILE
    if not path.is_file():
        return []
    try:
        epochs = json.loads(path.read_text())['resumed_after_epochs']
        if not isinstance(epochs, list) or not all(isinstance(e, int) and not isinstance(e, bool) for e in epochs):
            raise TypeError
    except (ValueError, KeyError, TypeError, OSError):
        raise ValueError(f'{path} is unreadable: delete {run} to train that model again') from None
    return epochs


def _record_resume(run: Path, epoch: int) -> None:
    epochs = resumed_after(run)
    if epoch not in epochs:  # killed again before its first new checkpoint: the same resume
        atomic_write_text(run / RESUMED_FILE, json.dumps({'resumed_after_epochs': [*epochs, epoch]}) + '\n')


def _head_args(yolo: Any) -> dict:
    """``nms=False`` for a model with YOLO26's NMS-free (one-to-one) head, so it trains, validates and exports with
    that head, as Ultralytics 8.4.0 does by default and later 8.4 releases only with the flag; nothing for the
    others (on them the flag only makes Ultralytics warn at every validation batch)."""
    return {'nms': False} if getattr(yolo.model.model[-1], 'one2one_cv2', None) is not None else {}


def train_one(name: str, model: str, settings: TrainSettings, runs: Path) -> Path:
    """Train ``model`` into ``runs/name`` (or finish that training) and return its ``best.pt``."""
    from ultralytics import YOLO

    run = runs / name
    last, best = run / 'weights' / 'last.pt', run / 'weights' / 'best.pt'
    if last.is_file():  # with its best.pt: compare() refused a last.pt without one before any training
        checkpoint = _checkpoint(last)
        _check_same_run(run, checkpoint, model, settings)
        epoch = checkpoint.get('epoch', -1)
        # -1: Ultralytics marks a finished training's checkpoints so; the last epoch saved but the final validation
        # killed leaves epoch = epochs - 1, which Ultralytics refuses to resume: its best.pt is final too
        if epoch == -1 or epoch + 1 >= settings.epochs:
            print(f'{name}: trained already ({best})', flush=True)
            return best
        # recorded before Ultralytics resumes: from here on it is not the training of an uninterrupted run
        _record_resume(run, epoch + 1)
        print(f'{name}: resuming {last} after epoch {epoch + 1} of {settings.epochs} (marked as resumed)', flush=True)
        YOLO(str(last)).train(resume=True, device=settings.device, workers=settings.workers)
    else:
        print(f'{name}: training {model}', flush=True)
        (run / RESUMED_FILE).unlink(missing_ok=True)  # a folder whose weights were deleted: a new training
        yolo = YOLO(model)
        yolo.train(
            **asdict(settings),
            **_head_args(yolo),
            deterministic=True,
            project=str(runs),
            name=name,
            exist_ok=True,  # our own folder: a try killed before its first checkpoint left nothing to keep
            plots=False,
            verbose=False,
        )
    if not best.is_file():
        raise RuntimeError(f'{name}: Ultralytics finished without writing {best}')
    return best


def evaluate_one(name: str, best: Path, settings: TrainSettings, out_dir: Path) -> dict:
    """Parameters and GFLOPs of the trained model, its square-letterbox validation and its ONNX export."""
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_flops, get_num_params

    model = YOLO(str(best))
    params, gflops = get_num_params(model.model), get_flops(model.model, imgsz=settings.imgsz)
    head = _head_args(model)
    metrics = YOLO(str(best)).val(
        **head,
        data=settings.data,
        imgsz=settings.imgsz,
        batch=settings.batch,
        rect=False,
        device=settings.device,
        workers=settings.workers,
        plots=False,
        project=str(out_dir / 'val'),
        name=name,
        exist_ok=True,
        verbose=False,
    )
    onnx = YOLO(str(best)).export(**head, format='onnx', imgsz=settings.imgsz, device='cpu')
    return {
        'model': name,
        'params': params,
        'gflops': round(gflops, 2) if gflops else None,  # 0.0: Ultralytics could not profile it (no thop)
        'map50': round(float(metrics.box.map50), 4),
        'map50_95': round(float(metrics.box.map), 4),
        'onnx': str(onnx),
    }


def time_onnx(rows: List[dict], imgsz: int, threads: int, runs: int, warmup: int) -> None:
    """Add each row's median ONNX Runtime latency (ms, batch 1), all models timed in one interleaved loop."""
    import numpy as np

    from ..deploy.export import onnx_session

    x = np.random.default_rng(0).random((1, 3, imgsz, imgsz), dtype=np.float32)
    runners = {}
    for row in rows:
        session = onnx_session(row['onnx'], threads, spinning=False)  # sessions take turns on the same cores
        feed = {session.get_inputs()[0].name: x}
        runners[row['model']] = lambda s=session, f=feed: s.run(None, f)
    times = time_interleaved(runners, runs, warmup)
    for row in rows:
        row['latency_ms'] = round(summary(times[row['model']])['median_ms'], 3)
    for row in rows:  # measured in the same loop: the ratio to the first model is what carries across machines
        row['latency_ratio'] = round(row['latency_ms'] / rows[0]['latency_ms'], 3)


def _resumed_label(row: dict) -> str:
    """``NAME``, or ``NAME (resumed after epoch 3)`` for a training that was killed and resumed."""
    epochs = str(row.get('resumed_from_epoch') or '').split(';')
    if epochs == ['']:
        return row['model']
    return f'{row["model"]} (resumed after epoch{"s" if len(epochs) > 1 else ""} {", ".join(epochs)})'


def format_markdown(rows: List[dict], settings: TrainSettings, context: Dict[str, str]) -> str:
    lines = [
        f'Trained with Ultralytics {context["ultralytics"]} on `{settings.data}`: epochs {settings.epochs}, imgsz '
        f'{settings.imgsz}, batch {settings.batch}, seed {settings.seed}, {settings.optimizer} lr0 {settings.lr0}. '
        f'mAP of `best.pt` on the val split, square letterbox (`rect=False`) at {settings.imgsz}; YOLO26 models with '
        'their NMS-free head (`nms=False`), the others with NMS after the model. Latency: the exported ONNX model '
        "(Ultralytics' export; no NMS in the graph), batch 1, ONNX Runtime "
        f'{context["onnxruntime"]} on '
        f'{context["cpu"]} (SIMD: {context["cpu_flags"] or "-"}), {context["threads"]} threads, median of '
        f"{context['runs']} interleaved runs. GFLOPs: Ultralytics' thop count at {settings.imgsz}.",
        '',
        '| model | params | GFLOPs | mAP50 | mAP50-95 | ONNX latency (ms) | latency / first |',
        '|---|---:|---:|---:|---:|---:|---:|',
    ]
    for r in rows:
        gflops = '-' if r['gflops'] is None else f'{r["gflops"]:.2f}'
        lines.append(
            f'| {_resumed_label(r)} | {r["params"]:,} | {gflops} | {r["map50"]:.4f} | {r["map50_95"]:.4f} '
            f'| {r["latency_ms"]:.2f} | {r["latency_ratio"]:.2f} |'
        )
    if any(r.get('resumed_from_epoch') for r in rows):
        lines += [
            '',
            "Resumed: killed during training and resumed from its `last.pt` after that epoch (Ultralytics' "
            '`resume`), which is not the training of an uninterrupted run (its losses and mAP need not be those of '
            'one); `compare.csv` has the epoch in `resumed_from_epoch`. To compare like with like, delete its folder '
            'in `runs/` and run the comparison again.',
        ]
    return '\n'.join(lines) + '\n'


def _format_csv(rows: List[dict]) -> str:
    columns = ['model', 'params', 'gflops', 'map50', 'map50_95', 'latency_ms', 'latency_ratio', 'resumed_from_epoch']
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _plot(rows: List[dict], path: Path, title: str) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        axes.scatter(r['latency_ms'], r['map50_95'])
        label = f'{r["model"]} (resumed)' if r.get('resumed_from_epoch') else r['model']
        axes.annotate(label, (r['latency_ms'], r['map50_95']), textcoords='offset points', xytext=(4, 4))
    axes.set_xlabel('ONNX Runtime latency, batch 1 (ms)')
    axes.set_ylabel('mAP50-95')
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    save_png(figure, path)


def compare(
    models: Sequence[str],
    settings: TrainSettings,
    out_dir: Path,
    threads: int = 0,
    runs: int = 50,
    warmup: int = 5,
) -> List[dict]:
    """Train, validate, export and time each of ``models``; write the table and plot into ``out_dir``.

    ``out_dir`` is locked for the whole run (:func:`emo.files.folder_lock`): while another process compares into
    it, this raises :class:`emo.files.FolderInUse` naming that process, before anything is written.
    """
    if not models:
        raise ValueError('--models is empty: name two or more models, e.g. yolo11n,yolo11n-sppf-irmb')
    if settings.epochs < 1 or settings.batch < 1 or runs < 1:
        raise ValueError('--epochs, --batch and --runs must be at least 1')
    if threads < 0:
        raise ValueError(f"--threads must be 0 (ONNX Runtime's default) or more, got {threads}")
    if warmup < 0:
        raise ValueError(f'--warmup must be 0 or more, got {warmup}')
    if settings.imgsz < 32 or settings.imgsz % 32:  # Ultralytics would round it up, and then train at another size
        raise ValueError(f'--imgsz must be a multiple of 32, the largest stride of the models, got {settings.imgsz}')
    if settings.optimizer == 'auto':  # Ultralytics picks by release and run length, and records what it picked
        raise ValueError('--optimizer auto picks different optimizers in different Ultralytics releases: name one')
    resolved = {_label(m): resolve_model(m) for m in models}  # every name checked before hours of training
    if len(resolved) != len(models):
        raise ValueError(f'two models in {list(models)} have the same name; give each model once')
    settings = TrainSettings(**{**asdict(settings), 'data': _resolve_data(settings.data)})
    out_dir = Path(out_dir).resolve()  # Ultralytics puts a relative project under its own runs folder
    with folder_lock(out_dir, 'emo yolo compare', option='--out-dir'):  # made here, before anything is written
        return _compare_locked(resolved, settings, out_dir, threads, runs, warmup)


def _compare_locked(
    resolved: Dict[str, str], settings: TrainSettings, out_dir: Path, threads: int, runs: int, warmup: int
) -> List[dict]:
    import ultralytics

    from ..benchmark.report import environment

    runs_dir = out_dir / 'runs'
    remove_stale_temporaries(out_dir, RESULT_FILES)  # ours alone: this run holds the folder
    for name in resolved:
        remove_stale_temporaries(runs_dir / name, [RESUMED_FILE])
        _refuse_a_removed_best(runs_dir / name)  # every run folder checked before hours of training

    rows = []
    for name, model in resolved.items():
        best = train_one(name, model, settings, runs_dir)
        row = evaluate_one(name, best, settings, out_dir)
        row['resumed_from_epoch'] = ';'.join(str(e) for e in resumed_after(runs_dir / name))  # '': in one go
        rows.append(row)
    time_onnx(rows, settings.imgsz, threads, runs, warmup)

    env = environment()
    context = {
        'ultralytics': ultralytics.__version__,
        'onnxruntime': env.get('onnxruntime', '-'),
        'cpu': env['cpu'],
        'cpu_flags': env['cpu_flags'],
        'threads': str(threads) if threads else "ONNX Runtime's default number of",
        'runs': str(runs),
    }
    markdown, table, plot = RESULT_FILES
    atomic_write_text(out_dir / markdown, format_markdown(rows, settings, context))
    atomic_write_text(out_dir / table, _format_csv(rows))
    title = f'{"/".join(Path(settings.data).parts[-2:])}: {settings.epochs} epochs at {settings.imgsz}'
    _plot(rows, out_dir / plot, f'{title}, seed {settings.seed}')
    return rows
