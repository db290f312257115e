#!/usr/bin/env python3
"""Print paths the stage scripts chain on, derived from a config.

checkpoint      best/model.pdparams (highest dev accuracy) when training
                wrote one, else the latest epoch_N/model.pdparams
                (empty if none)
checkpoint_dir  the configured checkpoint directory
dev_clips       the first --limit clips of the dev fold
export_dir      the configured export directory
detect_dir      where detect.py writes (stage 7)

Imports no Paddle, so each call takes a fraction of a second.
"""
import argparse

from paddlespeech.cls.runtime import prepare_process

prepare_process()

from paddlespeech.cls.checkpoint import best_checkpoint
from paddlespeech.cls.config import load_config
from paddlespeech.cls.datasets import FoldDataset, load_table


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--config', required=True, help='conf/*.yaml')
    p.add_argument('what', choices=['checkpoint', 'checkpoint_dir',
                                    'dev_clips', 'export_dir', 'detect_dir'])
    p.add_argument('--limit', type=int, default=1,
                   help='number of dev clips to print')
    a = p.parse_args()
    cfg = load_config(a.config)
    if a.what == 'checkpoint':
        found = best_checkpoint(cfg.checkpoint_dir)
        print(found / 'model.pdparams' if found else '')
    elif a.what in ('checkpoint_dir', 'export_dir', 'detect_dir'):
        print(getattr(cfg, a.what))
    else:
        dev = FoldDataset(load_table(cfg, verbose=False), 'dev', cfg.split,
                          cfg.feature)
        print('\n'.join(str(path) for path, _ in dev.items[:a.limit]))


if __name__ == '__main__':
    main()
