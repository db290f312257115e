"""K-fold cross-validation (stage 5): train and evaluate each fold, then
report.

Each fold trains (:class:`..trainer.Trainer`, resuming an interrupted fold)
into ``<cv_dir>/fold_k/`` and is evaluated on fold k with its ``best``
checkpoint (the latest when the run wrote none). A finished fold keeps its
``result.json`` and is not redone. The report ``<cv_dir>/RESULTS.md`` has
per-fold accuracy, top-5 accuracy and macro F1, their mean ± std,
per-class accuracy and the confusion matrix summed over folds
(``confusion.png``); for a multi-label dataset, per-fold dev mAP and its
mean ± std.
"""
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import paddle

from . import atomic
from .checkpoint import best_checkpoint
from .curves import plot_confusion
from .datasets import ESC50Dataset, collate, dataset_root, read_meta
from .errors import UserError
from .features import FrontEnd
from .metrics import confusion_matrix, per_class_accuracy
from .models import load_classifier
from .trainer import Trainer, evaluate


def cross_validate(cfg):
    """Run the folds ``cfg.folds`` (all when None); returns the mean and
    std of the headline metric over the folds done."""
    data_dir = dataset_root(cfg)
    rows, labels = read_meta(data_dir)
    all_folds = sorted({int(r['fold']) for r in rows})
    folds = ([int(f) for f in str(cfg.folds).split(',')] if cfg.folds else
             all_folds)
    unknown = sorted(set(folds) - set(all_folds))
    if unknown:
        raise UserError(f'folds {unknown} are not in {data_dir} '
                        f'(folds: {all_folds})')
    cv_dir = Path(cfg.cv_dir or Path(cfg.checkpoint_dir).parent / 'cv')
    results = []
    for fold in folds:
        fold_dir = cv_dir / f'fold_{fold}'
        result_file = fold_dir / 'result.json'
        if result_file.is_file():
            print(f'[cv] fold {fold}: done before, skipping ({result_file})')
        else:
            train_fold(cfg, fold, fold_dir, data_dir)
            result = evaluate_fold(fold, fold_dir, data_dir, cfg.batch_size)
            atomic.write_text(result_file, json.dumps(result))
        results.append(json.loads(result_file.read_text()))
        name, value = headline(results[-1])
        print(f'[cv] fold {fold}: {name} {value:.4f}', flush=True)
    mean, std = write_report(cv_dir, results, labels)
    print(f'[cv] {len(results)} folds: {name} {mean:.4f} ± {std:.4f}; '
          f'report: {cv_dir / "RESULTS.md"}')
    return mean, std


def train_fold(cfg, fold, fold_dir, data_dir):
    """Train one fold in this process; resumes if it was interrupted."""
    fold_cfg = SimpleNamespace(**{**vars(cfg), 'split': fold,
                                  'data_dir': str(data_dir),
                                  'checkpoint_dir': str(fold_dir /
                                                        'checkpoint'),
                                  'resume': True})
    print(f'[cv] fold {fold}: training into {fold_dir}', flush=True)
    if Trainer(fold_cfg).fit() != 0:
        raise UserError(f'training of fold {fold} stopped; rerun to resume '
                        f'it')


def evaluate_fold(fold, fold_dir, data_dir, batch_size):
    """Metrics and predictions of the fold's best checkpoint on its fold."""
    chosen = best_checkpoint(fold_dir / 'checkpoint')
    model, labels, feature = load_classifier(chosen)
    frontend = FrontEnd(feature, 'numpy')
    dev = ESC50Dataset(data_dir, 'dev', fold, feature, frontend.per_clip)
    loader = paddle.io.DataLoader(
        dev, batch_size=batch_size, shuffle=False,
        collate_fn=lambda b: collate(b, frontend.pad_value))
    metrics, scores, target = evaluate(model, loader, model.task)
    result = {'fold': fold, 'checkpoint': str(chosen),
              'files': [str(p) for p, _ in dev.items]}
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


def write_map_report(cv_dir, results):
    """Per-fold dev mAP and its mean ± std (multi-label data)."""
    maps = np.array([r['map'] for r in results])
    lines = ['# Cross-validation results', '', '| fold | clips | mAP |',
             '|---|---|---|']
    lines += [f'| {r["fold"]} | {len(r["files"])} | {r["map"]:.4f} |'
              for r in results]
    lines += ['', f'**Mean mAP: {maps.mean():.4f} ± {maps.std():.4f}** '
              f'(std over {len(maps)} folds)', '',
              'Multi-label data: no per-class accuracy or confusion matrix '
              '(they need one label per clip).', '']
    (cv_dir / 'RESULTS.md').write_text('\n'.join(lines))
    return maps.mean(), maps.std()


def write_report(cv_dir, results, labels):
    if 'map' in results[0]:
        return write_map_report(cv_dir, results)
    accs = np.array([r['accuracy'] for r in results])
    conf = sum(confusion_matrix(r['predicted'], r['target'], len(labels))
               for r in results)
    per_class = per_class_accuracy(conf)
    extra = [k for k in ('top5', 'macro_f1')  # absent from older results
             if all(k in r for r in results)]
    title = {'top5': 'top-5 accuracy', 'macro_f1': 'macro F1'}
    lines = ['# Cross-validation results', '',
             '| fold | clips | accuracy |' + ''.join(
                 f' {title[k]} |' for k in extra),
             '|---|---|---|' + '---|' * len(extra)]
    lines += [f'| {r["fold"]} | {len(r["target"])} | {r["accuracy"]:.4f} |'
              + ''.join(f' {r[k]:.4f} |' for k in extra) for r in results]
    lines += ['', f'**Mean accuracy: {accs.mean():.4f} ± {accs.std():.4f}** '
              f'(std over {len(accs)} folds)']
    for k in extra:
        v = np.array([r[k] for r in results])
        lines += ['', f'Mean {title[k]}: {v.mean():.4f} ± {v.std():.4f}']
    lines += ['', '| class | accuracy | clips |', '|---|---|---|']
    lines += [f'| {name} | {acc:.4f} | {n} |' for name, acc, n in
              zip(labels, per_class, conf.sum(axis=1))]
    lines += ['', '![confusion matrix](confusion.png)', '']
    (cv_dir / 'RESULTS.md').write_text('\n'.join(lines))
    plot_confusion(conf, labels, cv_dir / 'confusion.png')
    return accs.mean(), accs.std()


