"""K-fold cross-validation (stage 5): train and evaluate each fold, then
report.

Each fold trains (:class:`..trainer.Trainer`, resuming an interrupted fold)
into ``<cv_dir>/fold_k/`` and is scored on fold k with a checkpoint chosen
without fold k's labels (:func:`fold_checkpoints`): the last epoch, the
``avg_N/`` average, or ``best/`` chosen on a validation split of the
training folds (``val_fraction``). ``best/`` chosen on fold k itself is
reported beside it, labelled optimistic. A finished fold keeps its
``result.json`` and is not redone. The report ``<cv_dir>/RESULTS.md`` has
per-fold accuracy, top-5 accuracy and macro F1, their mean ± std,
per-class accuracy and the confusion matrix summed over folds
(``confusion.png``); for a multi-label dataset, per-fold mAP and its
mean ± std.
"""
import json
from pathlib import Path

import numpy as np

from . import atomic
from .checkpoint import latest_checkpoint
from .curves import plot_confusion
from .datasets import load_table
from .datasets.loaders import build_loaders
from .errors import UserError
from .features import FrontEnd
from .logs import get_logger
from .metrics import confusion_matrix, per_class_accuracy
from .models import load_classifier
from .evaluation import evaluate
from .trainer import Trainer

log = get_logger(__name__)


def cross_validate(cfg):
    """Run the folds ``cfg.train.folds`` (all when None); returns the mean
    and std of the headline metric over the folds done."""
    train = cfg.train
    table = load_table(cfg.data, train)
    data_dir, labels, all_folds = table.root, table.label_list, \
        table.fold_ids
    folds = ([int(f) for f in str(train.folds).split(',')] if train.folds
             else all_folds)
    unknown = sorted(set(folds) - set(all_folds))
    if unknown:
        raise UserError(f'folds {unknown} are not in {data_dir} '
                        f'(folds: {all_folds})')
    cv_dir = Path(train.cv_dir or Path(train.checkpoint_dir).parent / 'cv')
    results = []
    for fold in folds:
        fold_dir = cv_dir / f'fold_{fold}'
        result_file = fold_dir / 'result.json'
        if result_file.is_file():
            log.info(f'[cv] fold {fold}: done before, skipping '
                     f'({result_file})')
        else:
            train_fold(cfg, fold, fold_dir, table)
            result = evaluate_fold(fold, fold_dir, table, cfg.data, train)
            atomic.write_text(result_file, json.dumps(result))
        results.append(json.loads(result_file.read_text()))
        name, value = headline(results[-1])
        log.info(f'[cv] fold {fold}: {name} {value:.4f}')
    mean, std = write_report(cv_dir, results, labels)
    log.info(f'[cv] {len(results)} folds: {name} {mean:.4f} ± {std:.4f}; '
             f'report: {cv_dir / "RESULTS.md"}')
    return mean, std


def train_fold(cfg, fold, fold_dir, table):
    """Train one fold in this process; resumes if it was interrupted.
    Assigned folds come from the folds file the table was read with."""
    fold_cfg = cfg.replace(split=fold, resume=True,
                           checkpoint_dir=str(fold_dir / 'checkpoint'))
    if table.folds_file is not None:
        fold_cfg.data.folds_file = str(table.folds_file)
    log.info(f'[cv] fold {fold}: training into {fold_dir}')
    if Trainer(fold_cfg).fit() != 0:
        raise UserError(f'training of fold {fold} stopped; rerun to resume '
                        f'it')


SELECTIONS = {
    'final': "the last epoch's checkpoint (`epoch_N/`)",
    'average': 'the average of the last epoch checkpoints (`avg_N/`)',
    'validation': '`best/`, chosen on a validation split carved from the '
                  'training folds (`val_fraction`)',
}
OPTIMISTIC = ('best/ on the test fold (optimistic: chosen on the clips it '
              'is scored on)')


def fold_checkpoints(ckpt_dir, val_fraction, average_last):
    """``(selection, checkpoint)`` scored as the fold's result: one chosen
    without the test fold's labels; and ``best/`` when it was chosen on the
    test fold itself (reported apart, as optimistic), else None."""
    best = ckpt_dir / 'best'
    best = best if (best / 'model.pdparams').is_file() else None
    if val_fraction and best is not None:
        return ('validation', best), None
    avg = ckpt_dir / f'avg_{average_last}'
    if average_last and (avg / 'model.pdparams').is_file():
        return ('average', avg), best
    return ('final', latest_checkpoint(ckpt_dir)), best


def evaluate_fold(fold, fold_dir, table, data, train):
    """Metrics and predictions on fold ``fold`` of the checkpoint that
    :func:`fold_checkpoints` selects, and the optimistic ``best/`` score;
    ``data`` and ``train``: the sections the fold was trained with."""
    (selection, chosen), optimistic = fold_checkpoints(
        fold_dir / 'checkpoint', data.val_fraction, train.average_last)
    model, labels, feature = load_classifier(chosen)
    loaders = build_loaders(table, data, train, FrontEnd(feature, 'numpy'),
                            split=fold,
                            clip_seconds=model.meta.get('clip_seconds'),
                            training=False)
    dev, loader = loaders.dev_set, loaders.dev
    metrics, scores, target = evaluate(model, loader, model.task)
    result = {'fold': fold, 'selection': selection, 'checkpoint': str(chosen),
              'files': [str(p) for p, _ in dev.items]}
    if optimistic is not None:
        best_metrics = evaluate(load_classifier(optimistic)[0], loader,
                                model.task)[0]
        result['optimistic'] = {'checkpoint': str(optimistic),
                                model.task.score: best_metrics[
                                    model.task.score]}
    if model.task.multi_label:
        return {**result, 'map': metrics['map']}
    return {**result, 'accuracy': metrics['acc'], 'top5': metrics['top5'],
            'macro_f1': metrics['macro_f1'],
            'predicted': scores.argmax(axis=1).tolist(),
            'target': target.tolist()}


def headline(result):
    """The metric a fold is summed up by: accuracy, or mAP (multi-label)."""
    if 'map' in result:
        return 'mAP', result['map']
    return 'accuracy', result['accuracy']


def write_report(cv_dir, results, labels):
    """``RESULTS.md`` (and ``confusion.png`` for single-label data); returns
    the mean and std of the headline metric over the folds."""
    name, _ = headline(results[0])
    key = {'mAP': 'map', 'accuracy': 'acc'}[name]
    columns = [(name, lambda r: r['map' if key == 'map' else 'accuracy'])]
    if key == 'acc':
        columns += [('top-5 accuracy', lambda r: r.get('top5')),
                    ('macro F1', lambda r: r.get('macro_f1'))]
    if all('optimistic' in r for r in results):
        columns.append((OPTIMISTIC, lambda r: r['optimistic'][key]))
    columns = [(t, get) for t, get in columns
               if all(get(r) is not None for r in results)]
    selections = sorted({r.get('selection', 'legacy') for r in results})
    what = '; '.join(SELECTIONS[s] for s in selections if s in SELECTIONS)
    lines = ['# Cross-validation results', '']
    if what:
        lines += [f'Folds are scored with {what}: a checkpoint chosen '
                  f'without the labels of the fold it is scored on.']
    if 'legacy' in selections:
        lines += ['Some folds were scored before this distinction, with '
                  '`best/` chosen on the fold itself (optimistic): delete '
                  'their result.json to score them again.']
    if columns[-1][0] == OPTIMISTIC:
        lines += [f'The last column, {OPTIMISTIC}, is not comparable with '
                  f'published 5-fold figures.']
    lines += ['', '| fold | clips | ' + ' | '.join(t for t, _ in columns)
              + ' |', '|---|---|' + '---|' * len(columns)]
    lines += [f'| {r["fold"]} | {len(r["files"])} | ' + ' | '.join(
        f'{get(r):.4f}' for _, get in columns) + ' |' for r in results]
    values = {t: np.array([get(r) for r in results]) for t, get in columns}
    head = values[name]
    lines += ['', f'**Mean {name}: {head.mean():.4f} ± {head.std():.4f}** '
              f'(std over {len(head)} folds)']
    lines += [f'\nMean {t}: {v.mean():.4f} ± {v.std():.4f}'
              for t, v in values.items() if t != name]
    if key == 'map':
        lines += ['', 'Multi-label data: no per-class accuracy or confusion '
                  'matrix (they need one label per clip).', '']
        atomic.write_text(cv_dir / 'RESULTS.md', '\n'.join(lines))
        return head.mean(), head.std()
    conf = sum(confusion_matrix(r['predicted'], r['target'], len(labels))
               for r in results)
    lines += ['', '| class | accuracy | clips |', '|---|---|---|']
    lines += [f'| {label} | {acc:.4f} | {n} |' for label, acc, n in
              zip(labels, per_class_accuracy(conf), conf.sum(axis=1))]
    lines += ['', '![confusion matrix](confusion.png)', '']
    atomic.write_text(cv_dir / 'RESULTS.md', '\n'.join(lines))
    plot_confusion(conf, labels, cv_dir / 'confusion.png')
    return head.mean(), head.std()
