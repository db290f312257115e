#!/usr/bin/env python3
"""Train a config twice on a reduced copy of its synthetic data set, with
and without its ``augment:`` section, and print both dev accuracies.

The check behind "augmentation on by default only where it helps": the
augmented run should reach at least the plain run's accuracy.
"""
import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from paddlespeech.cls.runtime import prepare_process

prepare_process()

import yaml

from paddlespeech.cls.config import load_config
from paddlespeech.cls.datasets.synthetic import generate
from paddlespeech.cls.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
PLAIN = {'mixup_alpha': 0, 'spec_time_masks': 0, 'spec_freq_masks': 0,
         'time_shift_frames': 0, 'gain_db': 0}


def run(conf, data_dir, ckpt_dir, epochs, augment, threads):
    """Dev accuracy of the final and of the best evaluation of one run."""
    overrides = {'data_dir': str(data_dir), 'checkpoint_dir': str(ckpt_dir),
                 'device': 'cpu', 'cpu_threads': threads, 'resume': True,
                 **{f'augment.{k}': v for k, v in augment.items()}}
    if epochs:
        overrides['epochs'] = epochs
    with contextlib.redirect_stdout(io.StringIO()):
        Trainer(load_config(conf, overrides)).fit()
    records = [json.loads(line) for line in
               (ckpt_dir / 'metrics.jsonl').read_text().splitlines()]
    return records[-1]['dev_acc'], max(r['dev_acc'] for r in records)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default=str(ROOT / 'conf' / 'demo.yaml'))
    p.add_argument('--work_dir', default='exp/compare_augment')
    p.add_argument('--clips_per_fold', type=int, default=4)
    p.add_argument('--classes', type=int, help='default: the config\'s')
    p.add_argument('--seconds', type=float, help='default: the config\'s')
    p.add_argument('--epochs', type=int, help='default: the config\'s')
    p.add_argument('--cpu_threads', type=int, default=2)
    a = p.parse_args()
    if not yaml.safe_load(Path(a.config).read_text()).get('augment'):
        sys.exit(f'error: {a.config} has no augment: section to compare')
    synthetic = dict(load_config(a.config).data.synthetic)
    synthetic['clips_per_fold'] = a.clips_per_fold
    for key in ('classes', 'seconds'):
        if getattr(a, key) is not None:
            synthetic[key] = getattr(a, key)
    work = Path(a.work_dir)
    data_dir = work / 'data'
    if not (data_dir / 'meta' / 'esc50.csv').is_file():
        generate(data_dir, **synthetic)
    results = {}
    for name, augment in (('plain', PLAIN), ('augmented', {})):
        results[name] = run(a.config, data_dir, work / name, a.epochs,
                            augment, a.cpu_threads)
        final, best = results[name]
        print(f'{name:9s}  dev_acc final {final:.4f}  best {best:.4f}',
              flush=True)
    return 0 if results['augmented'][1] >= results['plain'][1] else 1


if __name__ == '__main__':
    sys.exit(main())
