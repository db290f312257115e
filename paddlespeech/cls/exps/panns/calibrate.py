"""Per-class thresholds for a target precision (or recall), stored in the
model for detect.py --threshold auto.

Scores the labelled clips of --data (any layout train.py reads; --folds
picks some of its folds) with --checkpoint or --model_dir, as predict.py
scores a file (the model's windows, averaged), and picks per class the
lowest threshold whose precision on them reaches --target_precision (or
the highest whose recall reaches --target_recall). Clips that trained the
model are refused (--allow_training_data: a warning): the model records
them; a copy elsewhere, or a model trained before this was recorded, is
not recognised.
"""
import sys

from paddlespeech.cls.runtime import prepare_process

prepare_process()

from pathlib import Path  # noqa: E402

from paddlespeech.cls.calibration import (  # noqa: E402
    DEFAULT_PRECISION, calibrate, check_not_training, label_targets,
    plot_pr_curves, score_clips, store_thresholds, thresholds_csv,
    thresholds_of)
from paddlespeech.cls import atomic  # noqa: E402
from paddlespeech.cls.config import ConfigArgumentParser, parse_bool  # noqa
from paddlespeech.cls.datasets import load_table  # noqa: E402
from paddlespeech.cls.datasets.layouts import HELP, LAYOUTS  # noqa: E402
from paddlespeech.cls.errors import UserError  # noqa: E402
from paddlespeech.cls.opener import open_model  # noqa: E402
from paddlespeech.cls.runtime import run  # noqa: E402

OUTPUT_HELP = """\
Output in --output_dir: thresholds.csv (class,threshold,precision,recall,
support; an empty threshold: no threshold reaches the target) and
pr_curves.png (each class's precision-recall curve, its threshold
marked). The thresholds are also written into the model: the checkpoint's
metadata, or the export's model.json."""


def get_parser():
    p = ConfigArgumentParser(description=__doc__, epilog=OUTPUT_HELP)
    p.add('--checkpoint', help='model.pdparams written by train.py (or its '
          'directory)')
    p.add('--model_dir', key='calibrate_model_dir', help='an export '
          '(export_model.py)')
    p.add('--data', key='data_dir', help=f'labelled clips: {HELP}')
    p.add('--dataset', choices=LAYOUTS + ('synthetic',),
          help='layout of --data (auto: detected)')
    p.add('--folds', key='calibrate_folds', nargs='+',
          help='only the clips of these folds of --data (e.g. the model\'s '
          'dev fold)')
    p.add('--target_precision', type=float,
          help=f'per class, the lowest threshold with this precision '
          f'(default {DEFAULT_PRECISION} unless --target_recall is given)')
    p.add('--target_recall', type=float,
          help='per class, the highest threshold with this recall')
    p.add('--allow_training_data', type=parse_bool,
          help='warn instead of refusing clips that trained the model')
    p.add('--output_dir', key='calibrate_dir',
          help='where thresholds.csv and pr_curves.png go')
    p.add('--batch_size', key='infer_batch_size', type=int,
          help='windows per model run')
    p.add('--device', help='cpu, gpu or gpu:N (default: gpu if available)')
    p.add('--cpu_threads', type=int, help='CPU threads (default: all cores)')
    return p


def targets_of(cfg):
    """``{'target_precision': x}`` or ``{'target_recall': x}``."""
    if cfg.target_precision is not None and cfg.target_recall is not None:
        raise UserError('give --target_precision or --target_recall, not '
                        'both')
    name, value = (('target_recall', cfg.target_recall)
                   if cfg.target_recall is not None else
                   ('target_precision', DEFAULT_PRECISION
                    if cfg.target_precision is None else
                    cfg.target_precision))
    if not 0 < value <= 1:
        raise UserError(f'--{name} must be in (0, 1], got {value}')
    return {name: value}


def check_args(cfg):
    given = [f for f, v in (('--checkpoint', cfg.checkpoint),
                            ('--model_dir', cfg.calibrate_model_dir)) if v]
    if len(given) != 1:
        raise UserError('give exactly one model: --checkpoint or --model_dir'
                        f' (got {", ".join(given) or "none"})')
    if not cfg.data_dir:
        raise UserError('give --data: the labelled clips to calibrate on')
    if not cfg.calibrate_dir:
        raise UserError('give --output_dir: where thresholds.csv and '
                        'pr_curves.png go')
    if cfg.infer_batch_size < 1:
        raise UserError(f'--batch_size must be at least 1, got '
                        f'{cfg.infer_batch_size}')


def selected_folds(value):
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    try:
        return {int(f) for item in items for f in str(item).split(',') if f}
    except ValueError:
        raise UserError(f'--folds takes fold numbers, got {value}') from None


def main(argv):
    cfg = get_parser().parse_config(argv)
    check_args(cfg)
    target = targets_of(cfg)
    table = load_table(cfg.data, cfg.train)
    folds = selected_folds(cfg.calibrate_folds)
    keep = [i for i, f in enumerate(table.folds)
            if folds is None or f in folds]
    if not keep:
        raise UserError(f'{table.source} has no clips in folds '
                        f'{sorted(folds)} (its folds: {table.fold_ids})')
    paths = [table.paths[i] for i in keep]
    model = open_model(checkpoint=cfg.checkpoint,
                       model_dir=cfg.calibrate_model_dir,
                       device=cfg.device, cpu_threads=cfg.cpu_threads)
    check_not_training(model, paths, table.source, cfg.allow_training_data,
                       warn=lambda line: print(line, file=sys.stderr))
    targets = label_targets(table, model.labels)[keep]
    scores = score_clips(model, paths, cfg.infer_batch_size)
    rows = calibrate(scores, targets, model.labels, **target)
    out = Path(cfg.calibrate_dir)
    atomic.write_text(out / 'thresholds.csv', thresholds_csv(rows))
    plot_pr_curves(out / 'pr_curves.png', scores, targets, rows, **target)
    thresholds = thresholds_of(rows)
    stored = store_thresholds(thresholds, cfg.checkpoint,
                              cfg.calibrate_model_dir)
    missing = [r['class'] for r in rows if not r['support']]
    unreached = [r['class'] for r in rows
                 if r['support'] and r['threshold'] is None]
    name, value = next(iter(target.items()))
    for r in rows:
        if r['threshold'] is not None:
            print(f'{r["class"]}\t{r["threshold"]:.4f}\tprecision '
                  f'{r["precision"]:.3f}\trecall {r["recall"]:.3f}\t'
                  f'support {r["support"]}')
    if unreached:
        print(f'warning: no threshold reaches {name} {value} for '
              f'{unreached}: detect --threshold auto never reports them',
              file=sys.stderr)
    if missing:
        print(f'warning: no clips of {missing} in {table.source}: they '
              f'keep the default threshold', file=sys.stderr)
    print(f'{len(thresholds) - len(unreached)} of {len(rows)} classes '
          f'calibrated for {name} {value} on {len(paths)} clips -> '
          f'{out / "thresholds.csv"}, {out / "pr_curves.png"}; stored in '
          f'{stored}', flush=True)
    return 0


if __name__ == '__main__':
    run(main)
