#!/usr/bin/env python3
"""Print paths the stage scripts chain on, derived from a config.

checkpoint      best/model.pdparams (highest dev accuracy) when training
                wrote one, else the latest epoch_N/model.pdparams
                (empty if none)
checkpoint_dir  the configured checkpoint directory
dev_clips       the first --limit clips of the dev fold
dev_picks       a dev clip of each of the first --limit classes (that
                have one), tab-separated from its label(s): the clips
                stages 2 and 4 show, with the truth beside
export_dir      the configured export directory
detect_dir      where detect.py writes (stage 7; default: beside
                export_dir)
analysis_dir    where analyze.py writes (stage 8; default: beside
                export_dir)
data_dir        the configured data directory

Imports no Paddle, so each call takes a fraction of a second.
"""
import argparse

from paddlespeech.cls.runtime import prepare_process

prepare_process()

import numpy as np  # noqa: E402

from paddlespeech.cls import logs  # noqa: E402
from paddlespeech.cls.checkpoint import best_checkpoint
from paddlespeech.cls.config import load_config
from paddlespeech.cls.datasets import FoldDataset, load_table


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--config', required=True, help='conf/*.yaml')
    p.add_argument('what', choices=['checkpoint', 'checkpoint_dir',
                                    'dev_clips', 'dev_picks', 'export_dir',
                                    'detect_dir', 'analysis_dir',
                                    'data_dir'])
    p.add_argument('--limit', type=int, default=1,
                   help='number of dev clips (dev_picks: classes) to print')
    a = p.parse_args()
    logs.set_level('error')  # stdout is the answer, nothing else
    cfg = load_config(a.config)
    if a.what == 'checkpoint':
        found = best_checkpoint(cfg.checkpoint_dir)
        print(found / 'model.pdparams' if found else '')
    elif a.what in ('checkpoint_dir', 'export_dir', 'detect_dir',
                    'analysis_dir', 'data_dir'):
        print(getattr(cfg, a.what))
    else:
        dev = FoldDataset(load_table(cfg.data, cfg.train), 'dev', cfg.split, cfg.feature)
        if a.what == 'dev_clips':
            print('\n'.join(str(path) for path, _ in dev.items[:a.limit]))
            return
        for path, classes in one_per_class(dev.items, len(dev.label_list),
                                           a.limit):
            print(f'{path}\t{", ".join(dev.label_list[c] for c in classes)}')


def one_per_class(items, num_class, limit):
    """``[(path, class indices)]``: for each class in index order, its
    first clip among ``items`` (``(path, label)`` of a
    :class:`~paddlespeech.cls.datasets.FoldDataset`) not already taken,
    until ``limit`` clips. The first clips of a fold are often of one
    class; these show the model on several."""
    clips = [(path, [int(y)] if np.ndim(y) == 0 else
              np.flatnonzero(y).tolist()) for path, y in items]
    picks, taken = [], set()
    for target in range(num_class):
        if len(picks) == limit:
            break
        i = next((i for i, (_, c) in enumerate(clips)
                  if target in c and i not in taken), None)
        if i is not None:
            taken.add(i)
            picks.append(clips[i])
    return picks


if __name__ == '__main__':
    main()
