#!/usr/bin/env python3
"""K-fold cross-validation: train and evaluate each fold, then report.

Each fold trains into ``<cv_dir>/fold_k/`` and is evaluated on fold k with
its ``best`` checkpoint; a finished fold is not redone and an interrupted
one resumes. The report is ``<cv_dir>/RESULTS.md`` (with
``confusion.png``); see :mod:`paddlespeech.cls.crossval`.
"""
from paddlespeech.cls.runtime import prepare_process, run

prepare_process()

from paddlespeech.cls.config import ConfigArgumentParser
from paddlespeech.cls.crossval import cross_validate


def get_parser():
    p = ConfigArgumentParser(description=__doc__)
    p.add('--folds', help='comma-separated folds to run, e.g. 1,3 '
          '(default: every fold of the dataset)')
    p.add('--cv_dir', help='experiment directory of the cross-validation '
          '(default: <checkpoint_dir>/../cv)')
    p.add('--data_dir', help='dataset root in ESC-50 layout')
    p.add('--val_fraction', type=float,
          help='choose each fold\'s best/ on this stratified share of its '
          'training folds, and score best/ (0: score the last epoch, or '
          'avg_N/ with average_last)')
    p.add('--device', help='cpu, gpu or gpu:N (default: gpu if available)')
    p.add('--cpu_threads', type=int, help='CPU threads (default: all cores)')
    return p


def main(argv):
    cross_validate(get_parser().parse_config(argv))
    return 0


if __name__ == '__main__':
    run(main)
