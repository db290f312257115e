#!/usr/bin/env python3
"""Head-only training against fine-tuning, and embedding throughput
(issue 25's rows).

    PYTHONPATH=. python benchmarks/embed.py [--clips 2000] [--arch cnn14]
        [--finetune_clips 48] [--seconds 5] [--json out.json]

One synthetic dataset of ``--clips`` clips (``--seconds`` long, 4 classes,
ESC-50 layout, 5 folds). In separate processes, one after the other:

1. the first head-only run: every clip through the frozen backbone once
   (the embedding pass, cached), then one epoch of the head;
2. a second head-only run on the cache: the epoch alone (no embedding);
3. one fine-tuning epoch of the whole network on the first
   ``--finetune_clips`` training clips (a full epoch of ``--clips`` on 2
   cores takes too long; the epoch time is clips x its per-clip time);
4. embeddings per second of the checkpoint (dynamic graph), its fp32
   export and its INT8 export (``open_model(...).embeddings``), batch 8.

Target: a head-only epoch on the cached embeddings >= 100x faster than a
fine-tuning epoch on the same clips. Prints a markdown table under the
machine's CPU and flags.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, THREADS, machine

TARGET_RATIO = 100.0

TRAIN = r'''
import json, sys, time
from paddlespeech.cls.runtime import prepare_process
prepare_process()
from paddlespeech.cls.config import load_config
from paddlespeech.cls.trainer import Trainer
overrides = json.loads(sys.argv[1])
t0 = time.perf_counter()
trainer = Trainer(load_config(None, overrides))
built = time.perf_counter() - t0
t1 = time.perf_counter()
if sys.argv[2:] == ['fit']:
    trainer.fit()
else:
    trainer.train_epoch(1)
epoch = time.perf_counter() - t1
print(json.dumps({'build_s': built, 'epoch_s': epoch,
                  'train_clips': len(trainer.train_set)}))
'''

EMBED = r'''
import json, sys, time
from paddlespeech.cls.runtime import prepare_process
prepare_process()
import numpy as np
from paddlespeech.cls import open_model
kwargs, seconds, threads = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
model = open_model(device='cpu', cpu_threads=threads, **kwargs)
sr = model.feature.sample_rate
rng = np.random.default_rng(0)
batch = [(0.1 * rng.standard_normal(int(sr * seconds))).astype('float32')
         for _ in range(8)]
model.embeddings(batch)
times = []
for _ in range(3):
    t = time.perf_counter(); model.embeddings(batch)
    times.append(time.perf_counter() - t)
print(json.dumps({'clips_per_s': 8 / float(np.median(times))}))
'''


def child(code, *args):
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    proc = subprocess.run([sys.executable, '-c', code, *map(str, args)],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export_model(checkpoint, out, *flags):
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    subprocess.run([sys.executable, str(ROOT / 'paddlespeech' / 'cls' / 'exps'
                                        / 'panns' / 'export_model.py'),
                    '--checkpoint', str(checkpoint), '--output_dir', str(out),
                    *map(str, flags)], env=env, check=True,
                   capture_output=True)


def dataset(folder, clips, seconds):
    from paddlespeech.cls.datasets.synthetic import generate
    return generate(folder, classes=4, clips_per_fold=clips // 20, folds=5,
                    seconds=seconds)


def subset(data, folder, clips):
    """A manifest of the first ``clips`` training clips (folds 2-5) and
    the dev fold."""
    import csv
    rows = list(csv.DictReader(open(Path(data) / 'meta' / 'esc50.csv')))
    train = [r for r in rows if r['fold'] != '1'][:clips]
    dev = [r for r in rows if r['fold'] == '1']
    lines = ['path,label,fold'] + [
        f'{Path(data) / "audio" / r["filename"]},{r["category"]},{r["fold"]}'
        for r in train + dev]
    out = Path(folder) / 'subset.csv'
    out.write_text('\n'.join(lines) + '\n')
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--clips', type=int, default=2000)
    p.add_argument('--finetune_clips', type=int, default=48)
    p.add_argument('--arch', default='cnn14')
    p.add_argument('--seconds', type=float, default=5.0)
    p.add_argument('--json')
    a = p.parse_args()
    m = machine()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = dataset(tmp / 'data', a.clips, a.seconds)
        base = {'data_dir': str(data), 'backbone': a.arch,
                'pretrained': False, 'clip_seconds': a.seconds,
                'batch_size': 16, 'device': 'cpu', 'cpu_threads': THREADS,
                'epochs': 1, 'checkpoint_dir': str(tmp / 'head')}
        first = child(TRAIN, json.dumps({**base, 'head_only': True}))
        cached = child(TRAIN, json.dumps({**base, 'head_only': True}))
        tune = child(TRAIN, json.dumps({
            **base, 'data_dir': str(subset(data, tmp, a.finetune_clips)),
            'checkpoint_dir': str(tmp / 'tune')}))
        clips = cached['train_clips']
        tune_epoch = tune['epoch_s'] / tune['train_clips'] * clips
        # a checkpoint of the architecture, and its fp32 and INT8 exports
        ckpt_dir = tmp / 'head'  # its embeddings are cached already
        child(TRAIN, json.dumps({**base, 'head_only': True, 'save_freq': 1}),
              'fit')
        ckpt = ckpt_dir / 'epoch_1' / 'model.pdparams'
        fp32, int8 = tmp / 'fp32', tmp / 'int8'
        export_model(ckpt, fp32)
        export_model(ckpt, int8, '--quantize', 'int8', '--data_dir', data,
                     '--calib_clips', 32, '--force')
        embed = {name: child(EMBED, json.dumps(kwargs), a.seconds, THREADS)
                 for name, kwargs in (
                     ('checkpoint (dynamic graph)',
                      {'checkpoint': str(ckpt)}),
                     ('fp32 export', {'model_dir': str(fp32)}),
                     ('INT8 export', {'model_dir': str(int8)}))}
    embed_pass = first['build_s'] - cached['build_s']
    ratio = tune_epoch / cached['epoch_s']
    print(f"CPU: {m['cpu']}; flags: {' '.join(m['cpu_flags'])}; cores "
          f"{m['affinity']}/{m['cores']}; load {m['load_avg_1min']:.2f}; "
          f"{a.arch}, {a.seconds:g} s clips, {THREADS} threads")
    print('\n| what | value | target |\n|---|---|---|')
    print(f'| fine-tuning epoch, {clips} clips (from '
          f'{tune["train_clips"]} clips: {tune["epoch_s"]:.1f} s) | '
          f'{tune_epoch:.1f} s | |')
    print(f'| head-only epoch on the cache, {clips} clips | '
          f'{cached["epoch_s"]:.3f} s | |')
    print(f'| ratio fine-tuning / head-only epoch | {ratio:.0f}x | >= '
          f'{TARGET_RATIO:g}x {"met" if ratio >= TARGET_RATIO else "missed"}'
          f' |')
    print(f'| first head-only run: embedding pass (train + dev clips) | '
          f'{embed_pass:.1f} s | one pass |')
    for name, r in embed.items():
        print(f'| embeddings, {name}, batch 8 | '
              f'{r["clips_per_s"]:.1f} clips/s | |')
    if a.json:
        Path(a.json).write_text(json.dumps(
            {'machine': m, 'first': first, 'cached': cached, 'tune': tune,
             'embed': embed, 'ratio': ratio}, indent=2))


if __name__ == '__main__':
    main()
