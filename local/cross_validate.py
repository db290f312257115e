#!/usr/bin/env python3
"""5-fold cross-validation: train and evaluate each fold, then report.

Each fold trains with ``train.py --split k`` into ``<cv_dir>/fold_k/`` and
is evaluated on fold k with its ``best`` checkpoint (the latest when the
run wrote none). A finished fold keeps its ``result.json`` and is not
redone; an interrupted one resumes. The report ``<cv_dir>/RESULTS.md`` has
per-fold accuracy, top-5 accuracy and macro F1, their mean ± std,
per-class accuracy and the confusion matrix summed over folds
(``confusion.png``); for a multi-label dataset, per-fold dev mAP and its
mean ± std.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import paddlespeech.cls  # noqa: F401  (must precede paddle: MKL setup)

import numpy as np
import paddle

from paddlespeech.cls.checkpoint import best_checkpoint, load_classifier
from paddlespeech.cls.config import ConfigArgumentParser
from paddlespeech.cls.datasets.esc50 import (ESC50Dataset, dataset_root,
                                             read_meta)
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.features import NumpyLogMel
from paddlespeech.cls.metrics import (confusion_matrix, per_class_accuracy,
                                      predict_scores, summarize)
from paddlespeech.cls.runtime import run, select_device, set_cpu_threads
from paddlespeech.cls.training import collate

TRAIN = Path(__file__).resolve().parents[1] / 'paddlespeech' / 'cls' / \
    'exps' / 'panns' / 'train.py'


def get_parser():
    p = ConfigArgumentParser(description=__doc__.splitlines()[0])
    p.add('--folds', help='comma-separated folds to run, e.g. 1,3 '
          '(default: every fold of the dataset)')
    p.add('--cv_dir', help='experiment directory of the cross-validation '
          '(default: <checkpoint_dir>/../cv)')
    p.add('--data_dir', help='dataset root in ESC-50 layout')
    p.add('--device', help='cpu, gpu or gpu:N (default: gpu if available)')
    p.add('--cpu_threads', type=int, help='CPU threads (default: all cores)')
    return p


def train_fold(config_path, fold, fold_dir, data_dir, device):
    """Run train.py for one fold; resumes if the fold was interrupted."""
    cmd = [sys.executable, str(TRAIN), '--split', str(fold), '--data_dir',
           str(data_dir), '--checkpoint_dir', str(fold_dir / 'checkpoint'),
           '--resume']
    if config_path:
        cmd += ['--config', str(config_path)]
    if device:
        cmd += ['--device', device]
    print(f'[cv] fold {fold}: training into {fold_dir}', flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise UserError(f'training of fold {fold} failed (see above); rerun '
                        f'to resume it')


def evaluate_fold(fold, fold_dir, data_dir, batch_size):
    """Metrics and predictions of the fold's best checkpoint on its fold."""
    chosen = best_checkpoint(fold_dir / 'checkpoint')
    model, labels, feature = load_classifier(chosen)
    dev = ESC50Dataset(data_dir, 'dev', fold, feature, NumpyLogMel(feature))
    loader = paddle.io.DataLoader(dev, batch_size=batch_size, shuffle=False,
                                  collate_fn=lambda b: collate(b, feature.floor_db))
    scores, target = predict_scores(model, loader)
    metrics = summarize(scores, target)
    if dev.multi_label:
        return {'fold': fold, 'checkpoint': str(chosen),
                'map': metrics['map'],
                'files': [str(p) for p, _ in dev.items]}
    return {'fold': fold, 'checkpoint': str(chosen),
            'accuracy': metrics['acc'], 'top5': metrics['top5'],
            'macro_f1': metrics['macro_f1'],
            'files': [str(p) for p, _ in dev.items],
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


def plot_confusion(conf, labels, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    size = max(4, 0.25 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(conf, cmap='Blues')
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title('confusion matrix, summed over folds')
    if len(labels) <= 15:
        for (t, p), n in np.ndenumerate(conf):
            ax.text(p, t, int(n), ha='center', va='center', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv):
    cfg = get_parser().parse_config(argv)
    data_dir = dataset_root(cfg)
    rows, labels = read_meta(data_dir)
    all_folds = sorted({int(r['fold']) for r in rows})
    folds = [int(f) for f in cfg.folds.split(',')] if getattr(
        cfg, 'folds', None) else all_folds
    unknown = sorted(set(folds) - set(all_folds))
    if unknown:
        raise UserError(f'folds {unknown} are not in {data_dir} '
                        f'(folds: {all_folds})')
    cv_dir = Path(getattr(cfg, 'cv_dir', None) or
                  Path(cfg.checkpoint_dir).parent / 'cv')
    select_device(cfg.device)
    set_cpu_threads(cfg.cpu_threads)
    results = []
    for fold in folds:
        fold_dir = cv_dir / f'fold_{fold}'
        result_file = fold_dir / 'result.json'
        if result_file.is_file():
            print(f'[cv] fold {fold}: done before, skipping ({result_file})')
        else:
            train_fold(getattr(cfg, 'config', None), fold, fold_dir,
                       data_dir, cfg.device)
            result = evaluate_fold(fold, fold_dir, data_dir, cfg.batch_size)
            tmp = result_file.with_suffix('.tmp')
            tmp.write_text(json.dumps(result))
            os.replace(tmp, result_file)
        results.append(json.loads(result_file.read_text()))
        name, value = headline(results[-1])
        print(f'[cv] fold {fold}: {name} {value:.4f}', flush=True)
    mean, std = write_report(cv_dir, results, labels)
    print(f'[cv] {len(results)} folds: {name} {mean:.4f} ± {std:.4f}; '
          f'report: {cv_dir / "RESULTS.md"}')
    return 0


if __name__ == '__main__':
    run(main)
