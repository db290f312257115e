#!/usr/bin/env python3
"""Speed and memory of the recipe, measured side by side with PyTorch PANNs.

    PYTHONPATH=. python benchmarks/run.py \
        [--quick] [--json out.json] [--only SECTION[,SECTION]]

Sections: infer, folder, train, frontend, limit, rss, data, lowp, detect,
analyze (see README.md).
Prints a markdown table; --json writes the same figures (plus the raw
measurements). Every figure comes from this one invocation: each
measurement runs in its own worker process (benchmarks/worker.py), one
framework per process, sequentially, 2 threads for both frameworks.
Rows named ``lever: ...`` come from the LEVERS table: one setting changed
in a default measurement.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from benchmarks.common import (AMD, ROOT, THREADS, busy_cpu_seconds, machine,
                               model_flops, proc_status_mb)

HERE = Path(__file__).resolve().parent
SCRIPTS = ROOT / 'paddlespeech' / 'cls' / 'exps' / 'panns'
SECTIONS = ('infer', 'folder', 'train', 'frontend', 'limit', 'rss', 'data',
            'lowp', 'detect', 'analyze')

QUICK = {
    'archs': ['cnn6'], 'seconds': 1.0, 'batches': [1, 8], 'warmup': 1,
    'reps': 2, 'levers': 'quick',
    'folder_files': 8, 'folder_seconds': 1.0, 'folder_arch': 'cnn6',
    'train_archs': ['cnn6'], 'train_batch': 4, 'train_seconds': 1.0,
    'train_warmup': 1, 'train_reps': 2,
    'epoch': {'arch': 'cnn6', 'classes': 2, 'clips_per_fold': 2,
              'seconds': 1.0, 'batch': 8},
    'fe_clips': 16, 'fe_seconds': 1.0, 'fe_reps': 2,
    'matmul_n': 1024, 'matmul_reps': 3,
    'rss': {'arch': 'cnn6', 'clips': 40, 'min_s': 0.5, 'max_s': 2.0,
            'window': 10},
    'listing': {'files': 10000, 'classes': 50, 'folds': 5},
    'lowp': {'archs': ['cnn6'], 'seconds': 1.0, 'batch': 8, 'warmup': 1,
             'reps': 2, 'calib_clips': 4,
             'kinds': ['paddle_fp32', 'onnx_fp32', 'paddle_int8']},
    'detect': {'archs': ['cnn6'], 'seconds': 20, 'window': 1.0, 'reps': 1,
               'rss_arch': 'cnn6', 'rss_seconds': 20, 'rss_short': 5},
    'analyze': {'arch': 'cnn6', 'files': 8, 'seconds': 1.0, 'workers': 2,
                'reps': 1, 'ray': False, 'long_seconds': 60, 'long_window': 1.0,
                'many_arch': 'cnn6', 'many_files': 300,
                'many_seconds': 0.2, 'rss_early': 100},
}
FULL = {
    'archs': ['cnn14', 'cnn10', 'cnn6'], 'seconds': 5.0, 'batches': [1, 8],
    'warmup': 2, 'reps': 5, 'levers': 'all',
    'folder_files': 200, 'folder_seconds': 5.0, 'folder_arch': 'cnn14',
    'train_archs': ['cnn6', 'cnn14'], 'train_batch': 16,
    'train_seconds': 5.0, 'train_warmup': 2, 'train_reps': 4,
    'epoch': {'arch': 'cnn6', 'classes': 6, 'clips_per_fold': 3,
              'seconds': 5.0, 'batch': 16, 'third_epoch': True},
    'fe_clips': 64, 'fe_seconds': 5.0, 'fe_reps': 5,
    'matmul_n': 4096, 'matmul_reps': 7,
    'conv': {'batch': 16, 'cin': 64, 'cout': 128, 'k': 5, 'h': 250,
             'w': 32, 'warmup': 2, 'reps': 3},
    'rss': {'arch': 'cnn14', 'clips': 1000, 'min_s': 0.5, 'max_s': 5.0,
            'window': 100},
    'listing': {'files': 100000, 'classes': 50, 'folds': 5},
    'folder_int8': True,
    'lowp': {'archs': ['cnn14', 'cnn10', 'cnn6'], 'seconds': 5.0,
             'batch': 8, 'warmup': 2, 'reps': 5, 'calib_clips': 32,
             'kinds': ['paddle_fp32', 'onnx_fp32', 'paddle_int8',
                       'onnx_int8', 'paddle_bf16'],
             # a trained CNN6 (run.sh --conf conf/demo.yaml) and its data
             'accuracy': {'checkpoint': 'exp/demo/checkpoint/best',
                          'data_dir': 'data/synthetic_esc50', 'split': 1,
                          'calib_clips': 200, 'heldout_seed': 7,
                          'heldout': {'classes': 6, 'clips_per_fold': 8,
                                      'folds': 5, 'seconds': 1.0}}},
    'detect': {'archs': ['cnn6', 'cnn14'], 'seconds': 300, 'window': 5.0,
               'reps': 2, 'rss_arch': 'cnn6', 'rss_seconds': 3600,
               'rss_short': 5},
    'analyze': {'arch': 'cnn14', 'files': 200, 'seconds': 5.0, 'workers': 2,
                'reps': 3, 'ray': True, 'long_seconds': 3600, 'long_window': 5.0,
                'many_arch': 'cnn6', 'many_files': 10000,
                'many_seconds': 0.2, 'rss_early': 100},
}


def env():
    e = dict(os.environ)
    e['PYTHONPATH'] = os.pathsep.join(
        [str(ROOT)] + [p for p in [e.get('PYTHONPATH')] if p])
    e.setdefault('MPLBACKEND', 'Agg')
    return e


def worker(task, extra_env=None, **args):
    """Result of ``worker.py task args`` run in a new process; a worker
    that fails raises RuntimeError with its whole stderr."""
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE / 'worker.py'), task, json.dumps(args)],
        capture_output=True, text=True, env={**env(), **(extra_env or {})})
    if proc.returncode:
        raise RuntimeError(f'worker {task} {json.dumps(args)} failed (exit '
                           f'{proc.returncode}):\n{proc.stderr}')
    print(f'  [{task} {args.get("arch", "")}] {time.perf_counter() - t:.1f} s',
          file=sys.stderr, flush=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wall(cmd, extra_env=None):
    """Wall time of a command (s) and its stdout; it must succeed."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**env(), **(extra_env or {})})
    elapsed = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f'{cmd} failed (exit {proc.returncode}):\n'
                           f'{proc.stderr}')
    return elapsed, proc.stdout


def run_rss(cmd):
    """Wall time (s), stdout and peak RSS (MB, the kernel's accounting of
    the process tree's largest) of a command; it must succeed."""
    with tempfile.TemporaryFile('w+') as out, \
            tempfile.TemporaryFile('w+') as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env())
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status):
            raise RuntimeError(f'{cmd} failed:\n{err.read()}')
        return elapsed, out.read(), usage.ru_maxrss / 1024


def deploy_folder(model_dir, folder, files, cli=(), extra_env=None, **_):
    """deploy/predict.py --batch_size 8 over a folder, from interpreter
    start: {'wall_s', 'per_s' = 1 / wall_s}."""
    s, out = wall([sys.executable, str(SCRIPTS / 'deploy' / 'predict.py'),
                   '--model_dir', model_dir, '--wav', folder,
                   '--batch_size', '8', '--device', 'cpu', '--cpu_threads',
                   str(THREADS), *cli], extra_env)
    assert out.count('[') >= files, out[-500:]
    return {'wall_s': s, 'per_s': 1 / s}


def measure(task, args, extra_env=None):
    """A worker task, or deploy_folder (a script run, not a worker)."""
    if task == 'deploy_folder':
        return deploy_folder(extra_env=extra_env, **args)
    return worker(task, extra_env, **args)


def row(section, what, value, unit, ref=None, ref_what=None, target=None,
        note=''):
    """One table line. ``ratio`` = value / ref (higher is better for every
    row that has one); ``target`` is a minimum ratio."""
    r = {'section': section, 'what': what, 'value': value, 'unit': unit}
    if ref is not None:
        r.update(ref=ref, ref_what=ref_what, ratio=value / ref)
    if target is not None:
        r.update(target=target, met=bool(r['ratio'] >= target))
    if note:
        r['note'] = note
    return r


# -------------------------------------------------------------------- levers

# glibc's own default for M_MMAP_MAX: undoes runtime.keep_large_buffers
GLIBC_MALLOC = {'MALLOC_MMAP_MAX_': '65536'}
# runtime.keep_large_buffers as environment, for the PyTorch side
HEAP_MALLOC = {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(512 << 20)}
OPENBLAS = {'OPENBLAS_NUM_THREADS': str(THREADS)}
# the MKL hint the recipe does not set on this CPU: (row name, environment,
# what the default is)
MKL_FLIP = (('MKL_DEBUG_CPU_TYPE unset', {'MKL_DEBUG_CPU_TYPE': ''},
             'MKL_DEBUG_CPU_TYPE=5 (AMD)') if AMD else
            ('MKL_DEBUG_CPU_TYPE=5', {'MKL_DEBUG_CPU_TYPE': '5'},
             'unset (the recipe, on this Intel CPU)'))


@dataclass(frozen=True)
class Lever:
    """A default measurement of ``section`` re-run with ``args`` (worker
    arguments) and ``env`` (environment variables) changed; one row
    ``lever: <name>`` per lever (per batch if ``value`` contains ``{b}``).

    ``value`` and ``ref`` are '/'-separated paths: ``lever/...`` into this
    run's result, ``<name>/...`` into the section's default results for
    the same architecture (``paddle``, ``torch``, ``default``). ``name``
    and ``ref_what`` may use ``{A}`` (architecture), ``{b}`` (batch) and
    ``{lever[key]}``; ``note(get)`` formats a note from paths. Levers run
    on the section's first architecture unless ``all_archs``; runs with
    identical task, arguments and environment are measured once.
    ``quick``: also measured by --quick (the full run measures all).
    """
    section: str
    name: str
    task: str
    args: dict
    env: dict
    value: str
    ref: str
    ref_what: str
    note: Optional[Callable] = None
    all_archs: bool = False
    quick: bool = False


def _ours_over_this(ours):
    return lambda g: f"ours / this: {g(ours) / g('value'):.2f}x"


def _wall(g):
    return f"wall {g('lever/wall_s'):.1f} s"


def _growth(g):
    return (f"growth {g('lever/growth_mb'):+.1f} MB, "
            f"{g('lever/clips_per_s'):.1f} clips/s")


B8, ONEDNN = {'batches': [8]}, {'modes': ['deploy_onednn']}
WAVE = {**B8, 'modes': ['deploy_onednn_wave', 'dygraph'],
        'paddle_frontend_row': True}
NO_MKL = {**B8, 'modes': ['deploy_plain', 'dygraph']}
E2E8 = 'paddle/deploy_onednn/e2e/8/clips_per_s'
LEVERS = [
    Lever('infer', '{A} deploy oneDNN batch 16 incl. front end',
          'infer_paddle', {**ONEDNN, 'batches': [16]}, {},
          'lever/deploy_onednn/e2e/16/clips_per_s', E2E8, 'same, batch 8'),
    Lever('infer', '{A} deploy oneDNN b8, front end inside the graph '
          '(export --include_frontend)', 'infer_paddle', WAVE, {},
          'lever/deploy_onednn_wave/e2e/8/clips_per_s', E2E8,
          'numpy front end + graph'),
    Lever('infer', '{A} dynamic graph b8 with paddle front end (predict.py '
          '--feat_backend paddle)', 'infer_paddle', WAVE, {},
          'lever/dygraph_paddle_fe/e2e/8/clips_per_s',
          'lever/dygraph/e2e/8/clips_per_s', 'numpy front end'),
    Lever('infer', '{A} deploy oneDNN b8 incl. front end, 1 thread',
          'infer_paddle', {**ONEDNN, **B8, 'threads': 1}, {},
          'lever/deploy_onednn/e2e/8/clips_per_s', E2E8, '2 threads'),
    Lever('infer', '{A} deploy oneDNN b8 incl. front end, glibc default '
          'malloc', 'infer_paddle', {**ONEDNN, **B8}, GLIBC_MALLOC,
          'lever/deploy_onednn/e2e/8/clips_per_s', E2E8, 'heap (the recipe)'),
    Lever('infer', "{A} PyTorch b8 incl. front end with the recipe's malloc "
          'settings', 'torch_infer', B8, HEAP_MALLOC,
          'lever/e2e/8/clips_per_s', 'torch/e2e/8/clips_per_s',
          'PyTorch default', note=_ours_over_this(E2E8)),
    Lever('infer', '{A} PyTorch b8 incl. front end, 1 thread', 'torch_infer',
          {**B8, 'threads': 1}, {}, 'lever/e2e/8/clips_per_s',
          'torch/e2e/8/clips_per_s', '2 threads'),
    Lever('infer', f'{{A}} dynamic graph b8 network, {MKL_FLIP[0]}',
          'infer_paddle', NO_MKL, MKL_FLIP[1],
          'lever/dygraph/net/8/clips_per_s',
          'paddle/dygraph/net/8/clips_per_s', MKL_FLIP[2]),
    Lever('infer', f'{{A}} deploy no oneDNN b8 network, {MKL_FLIP[0]}',
          'infer_paddle', NO_MKL, MKL_FLIP[1],
          'lever/deploy_plain/net/8/clips_per_s',
          'paddle/deploy_plain/net/8/clips_per_s', MKL_FLIP[2]),
    *[Lever('infer', f'{{A}} {what} b{{b}} incl. front end, '
            f'OPENBLAS_NUM_THREADS={THREADS}', 'infer_paddle',
            {'modes': ['deploy_onednn', 'dygraph']}, OPENBLAS,
            f'lever/{mode}/e2e/{{b}}/clips_per_s',
            f'paddle/{mode}/e2e/{{b}}/clips_per_s',
            'default (numpy BLAS 1 thread)')
      for mode, what in (('deploy_onednn', 'deploy oneDNN'),
                         ('dygraph', 'dynamic graph'))],
    Lever('infer', '{A} deploy oneDNN b{b} incl. front end, KMP_BLOCKTIME=0',
          'infer_paddle', ONEDNN, {'KMP_BLOCKTIME': '0'},
          'lever/deploy_onednn/e2e/{b}/clips_per_s',
          'paddle/deploy_onednn/e2e/{b}/clips_per_s', 'default', quick=True),

    Lever('folder', 'deploy/predict.py --enable_mkldnn false',
          'deploy_folder', {'cli': ['--enable_mkldnn', 'false']}, {},
          'lever/per_s', 'torch/per_s', 'PyTorch script', note=_wall,
          quick=True),
    Lever('folder', f'deploy/predict.py with OpenBLAS at {THREADS} threads '
          '(numpy default; the recipe sets 1)', 'deploy_folder', {}, OPENBLAS,
          'lever/per_s', 'torch/per_s', 'PyTorch script', note=_wall),

    *[Lever('train', f'{{A}} {what}', 'train_paddle', {'lever': key}, {},
            'lever/clips_per_s', 'paddle/clips_per_s',
            'dynamic graph, 2 threads', quick=key == 'threads1')
      for key, what in (
          ('threads1', 'dynamic graph, 1 thread'),
          ('onednn_flag', 'dynamic graph with FLAGS_use_onednn=1'),
          ('to_static', 'paddle.jit.to_static forward (full graph), '
           '2 threads'))],
    Lever('train', '{A} glibc default malloc (large buffers mmapped per '
          'step)', 'train_paddle', {}, GLIBC_MALLOC, 'lever/clips_per_s',
          'paddle/clips_per_s', 'heap (the recipe)', all_archs=True),
    Lever('train', "{A} PyTorch with the recipe's malloc settings",
          'torch_train', {}, HEAP_MALLOC, 'lever/clips_per_s',
          'torch/clips_per_s', 'PyTorch default',
          note=_ours_over_this('paddle/clips_per_s'), all_archs=True),

    Lever('rss', 'without the heap limit (runtime.HeapLimit; last '
          '{lever[window]} vs first {lever[window]})', 'rss_predictor',
          {'release': False}, {}, 'lever/rss_last_mb', 'lever/rss_first_mb',
          'first {lever[window]} clips', note=_growth, quick=True),
    Lever('rss', 'oneDNN cache of 10 input shapes instead of 2 (peak RSS)',
          'rss_predictor', {'cache_capacity': 10}, {}, 'lever/peak_rss_mb',
          'default/peak_rss_mb', 'cache of 2 (the default)', note=_growth),
]
UNITS = {'infer': 'clips/s', 'folder': '1/s', 'train': 'clips/s',
         'rss': 'MB'}


def run_levers(section, P, defaults, base_args):
    """Rows of ``section``'s levers and their raw runs.

    ``defaults``: {arch: {name: result}}, the section's default
    measurements (first key = first architecture); ``base_args``:
    {task: arguments} of the default measurement each lever changes.
    """
    runs, rows = {}, []
    for lv in LEVERS:
        if lv.section != section or not (P['levers'] == 'all' or lv.quick):
            continue
        for arch in list(defaults)[:None if lv.all_archs else 1]:
            args = {**base_args[lv.task], 'arch': arch, **lv.args}
            key = json.dumps([lv.task, args, lv.env], sort_keys=True)
            if key not in runs:
                runs[key] = {'task': lv.task, 'args': args, 'env': lv.env,
                             'result': measure(lv.task, args, lv.env)}
            res = runs[key]['result']
            for b in (args['batches'] if '{b}' in lv.value else [None]):
                ns = {**defaults[arch], 'lever': res}

                def get(path, ns=ns, b=b):
                    v = ns
                    for k in path.format(b=b).split('/'):
                        v = v[k]
                    return v
                ns['value'] = get(lv.value)
                fields = dict(A=arch.upper(), b=b, lever=res)
                rows.append(row(
                    section, 'lever: ' + lv.name.format(**fields),
                    ns['value'], UNITS[section], get(lv.ref),
                    lv.ref_what.format(**fields),
                    note=lv.note(get) if lv.note else ''))
    return rows, list(runs.values())


# ------------------------------------------------------------------ sections

def section_infer(P, work):
    raw, rows = {}, []
    common = dict(out_dir=str(work), seconds=P['seconds'],
                  batches=P['batches'], warmup=P['warmup'], reps=P['reps'])
    for arch in P['archs']:
        pd = worker('infer_paddle', arch=arch, **common)
        th = worker('torch_infer', arch=arch, **common)
        raw[arch] = {'paddle': pd, 'torch': th}
        A = arch.upper()
        for b in map(str, P['batches']):
            for kind, label in (('e2e', 'incl. front end'),
                                ('net', 'network only')):
                ref = th[kind][b]['clips_per_s']
                for mode, name in (('deploy_onednn', 'deploy Predictor, oneDNN'),
                                   ('deploy_plain', 'deploy Predictor, no oneDNN'),
                                   ('dygraph', 'dynamic graph')):
                    v = pd[mode][kind][b]['clips_per_s']
                    target = None
                    if (arch, b, kind, mode) == ('cnn14', '8', 'e2e',
                                                 'deploy_onednn'):
                        target = 1.4
                    rows.append(row('infer', f'{A} b{b} {label}: {name}', v,
                                    'clips/s', ref, 'PyTorch reference',
                                    target))
            if b == '1':
                for mode in ('deploy_onednn', 'deploy_plain', 'dygraph'):
                    rows.append(row(
                        'infer', f'{A} b1 latency incl. front end: {mode}',
                        pd[mode]['e2e']['1']['latency_ms'], 'ms',
                        note=f"PyTorch {th['e2e']['1']['latency_ms']:.1f} ms"))
        # predict.py's dynamic graph (batch 1, numpy front end) vs deployed
        if '1' in map(str, P['batches']):
            rows.append(row(
                'infer', f'{A} b1 incl. front end: dynamic graph (predict.py) '
                'vs deploy oneDNN', pd['dygraph']['e2e']['1']['clips_per_s'],
                'clips/s', pd['deploy_onednn']['e2e']['1']['clips_per_s'],
                'deploy Predictor oneDNN b1',
                0.8 if arch == 'cnn14' or len(P['archs']) == 1 else None))
        rows.append(row('infer', f'{A} Predictor creation, oneDNN',
                        pd['deploy_onednn']['create_s'], 's',
                        note=f"no oneDNN {pd['deploy_plain']['create_s']:.2f} s"))
    lever_rows, raw['levers'] = run_levers(
        'infer', P, raw, {'infer_paddle': common, 'torch_infer': common})
    return {'raw': raw, 'rows': rows + lever_rows}


def section_folder(P, work):
    import numpy as np
    import soundfile as sf
    arch, n, secs = P['folder_arch'], P['folder_files'], P['folder_seconds']
    ex = worker('export', arch=arch, out_dir=str(work))
    folder = work / 'folder'
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    sr = 44100
    t = np.arange(int(secs * sr)) / sr
    for i in range(n):
        x = 0.1 * rng.standard_normal(len(t)) + 0.3 * np.sin(
            2 * np.pi * rng.uniform(100, 4000) * t)
        sf.write(folder / f'clip_{i:04d}.wav', x.clip(-1, 1), sr,
                 subtype='PCM_16')
    args = {'model_dir': ex['export_dir'], 'folder': str(folder), 'files': n}
    deploy = deploy_folder(**args)
    torch_s, out = wall([sys.executable,
                         str(HERE / 'torch_classify_folder.py'),
                         '--wav', str(folder), '--arch', arch,
                         '--batch_size', '8', '--threads', str(THREADS)])
    assert len(out.splitlines()) == n, out[-500:]
    dyn_s, _ = wall([sys.executable, str(SCRIPTS / 'predict.py'),
                     '--checkpoint', ex['checkpoint'], '--wav', str(folder),
                     '--device', 'cpu', '--cpu_threads', str(THREADS)])
    deploy_s = deploy['wall_s']
    raw = {'files': n, 'seconds': secs, 'sample_rate': sr, 'arch': arch,
           'deploy_s': deploy_s, 'torch_s': torch_s,
           'predict_dygraph_s': dyn_s}
    A = arch.upper()
    rows = [row('folder', f'{n} x {secs:g} s 44.1 kHz wav, {A}: deploy/'
                'predict.py --batch_size 8 (speed = 1 / wall time)',
                1 / deploy_s, '1/s', 1 / torch_s, 'PyTorch script', 1.5,
                note=f'wall {deploy_s:.1f} s vs {torch_s:.1f} s'),
            row('folder', 'predict.py (dynamic graph, batch 1)', 1 / dyn_s,
                '1/s', 1 / deploy_s, 'deploy/predict.py', 0.8,
                note=f'wall {dyn_s:.1f} s')]
    if P.get('folder_int8'):
        int8 = worker('lowp_build', arch=arch, out_dir=str(work),
                      seconds=secs, calib_clips=P['lowp']['calib_clips'],
                      kinds=['paddle_int8'])['paddle_int8']
        q = deploy_folder(int8, str(folder), n)
        raw['deploy_int8_s'] = q['wall_s']
        rows.append(row('folder', f'{n} x {secs:g} s 44.1 kHz wav, {A} INT8 '
                        '(Paddle PTQ + oneDNN): deploy/predict.py '
                        '--batch_size 8', q['per_s'], '1/s', 1 / torch_s,
                        'PyTorch script', 2.5,
                        note=f"wall {q['wall_s']:.1f} s; {lowp_flags()}"))
    lever_rows, raw['levers'] = run_levers(
        'folder', P, {arch: {'deploy': deploy, 'torch': {'per_s': 1 / torch_s,
                                                        'wall_s': torch_s}}},
        {'deploy_folder': args})
    return {'raw': raw, 'rows': rows + lever_rows}


def section_train(P, work):
    raw, rows = {}, []
    args = dict(batch=P['train_batch'], seconds=P['train_seconds'],
                warmup=P['train_warmup'], reps=P['train_reps'])
    for arch in P['train_archs']:
        pd = worker('train_paddle', arch=arch, **args)
        th = worker('torch_train', arch=arch, **args)
        raw[arch] = {'paddle': pd, 'torch': th}
        A = arch.upper()
        rows.append(row('train', f'{A} train step b{args["batch"]} '
                        '(dynamic graph)', pd['clips_per_s'], 'clips/s',
                        th['clips_per_s'], 'PyTorch reference', 1.0))
        rows.append(row('train', f'{A} training peak RSS', pd['peak_rss_mb'],
                        'MB', th['peak_rss_mb'], 'PyTorch reference',
                        note='ratio > 1: we use more memory'))
    lever_rows, levers = run_levers(
        'train', P, {a: raw[a] for a in P['train_archs']},
        {'train_paddle': args, 'torch_train': args})
    rows += lever_rows
    raw['levers'] = levers
    if 'conv' in P:
        pc = worker('conv_paddle', **P['conv'])
        tc = worker('torch_conv', **P['conv'])
        raw['conv'] = {'paddle': pc, 'torch': tc}
        c = P['conv']
        rows.append(row('train', f"why: one conv layer forward + backward "
                        f"({c['batch']}x{c['cin']}x{c['h']}x{c['w']} -> "
                        f"{c['cout']} ch, {c['k']}x{c['k']})",
                        pc['gflops'], 'GFLOP/s', tc['gflops'],
                        'PyTorch (oneDNN)', note='Paddle CPU dygraph conv = '
                        'im2col + MKL GEMM, no oneDNN'))
    ep = worker('epoch_cache', **P['epoch'])
    raw['epoch_cache'] = ep
    rows.append(row('train', f"{P['epoch']['arch'].upper()} epoch 2 (feature "
                    f"cache) vs epoch 1, {ep['clips']} clips of "
                    f"{P['epoch']['seconds']:g} s (speed = 1 / time)",
                    1 / ep['epoch2_s'], '1/s', 1 / ep['epoch1_s'], 'epoch 1',
                    1.5, note=f"{ep['epoch1_s']:.1f} s -> "
                    f"{ep['epoch2_s']:.1f} s; read+resample+log-mel "
                    f"{ep['features_ms_per_clip']:.1f} ms/clip"))
    return {'raw': raw, 'rows': rows}


def section_frontend(P, work):
    import numpy as np
    args = dict(clips=P['fe_clips'], batch=8, seconds=P['fe_seconds'],
                reps=P['fe_reps'])
    # numpy's BLAS gets the same threads on both sides (librosa's process
    # keeps numpy's default); the recipe itself runs it on one thread.
    ours, theirs = work / 'frontend_paddle.npz', work / 'frontend_torch.npz'
    pd = worker('frontend_paddle', OPENBLAS, save=str(ours), **args)
    pd1 = worker('frontend_paddle', **args)
    th = worker('torch_frontend', save=str(theirs), **args)
    # the same clips through every front end, compared in dB with librosa
    with np.load(ours) as a, np.load(theirs) as b:
        assert np.array_equal(a['waves'], b['waves'])
        lib_db = b['librosa']
        diff = {k: float(np.abs(f[k] - lib_db).max())
                for f, k in ((a, 'numpy'), (a, 'paddle'),
                             (b, 'torchlibrosa'))}
    lib = th['librosa']

    def same(k):
        return f'max |dB - librosa| {diff[k]:.1e}'
    rows = [
        row('frontend', f'numpy NumpyLogMel (per clip), OpenBLAS {THREADS} '
            'threads', pd['numpy'], 'clips/s', lib, 'librosa', 0.9,
            note='target: within 10 %; ' + same('numpy')),
        row('frontend', 'numpy NumpyLogMel (per clip), OpenBLAS 1 thread '
            '(the recipe\'s setting)', pd1['numpy'], 'clips/s', lib,
            'librosa'),
        row('frontend', 'paddle paddle_logmel (batch 8)',
            pd['paddle_batched'], 'clips/s', lib, 'librosa', 3.0,
            note=same('paddle')),
        row('frontend', 'torchlibrosa (batch 8)', th['torchlibrosa_batched'],
            'clips/s', lib, 'librosa', note=same('torchlibrosa')),
        row('frontend', 'librosa melspectrogram + power_to_db (per clip)',
            lib, 'clips/s'),
    ]
    return {'raw': {'paddle': pd, 'paddle_openblas1': pd1, 'torch': th,
                    'max_abs_db_vs_librosa': diff, **args}, 'rows': rows}


def section_limit(P, work, infer=None):
    peak = worker('peak', n=P['matmul_n'], reps=P['matmul_reps'])
    best_peak = max(v for v in (peak['numpy_gflops'], peak['paddle_gflops'],
                                peak.get('onednn_gflops')) if v)
    frames = 1 + int(P['seconds'] * 32000) // 320
    raw, rows = {'peak': peak, 'frames': frames}, []
    b = str(max(P['batches']))
    for arch in P['archs']:
        flops = model_flops(arch, frames)
        if infer and arch in infer['raw']:
            pd = infer['raw'][arch]['paddle']
        else:
            pd = worker('infer_paddle', arch=arch, out_dir=str(work),
                        seconds=P['seconds'], batches=[int(b)],
                        warmup=P['warmup'], reps=P['reps'],
                        modes=['deploy_onednn'])
        rate = pd['deploy_onednn']['net'][b]['clips_per_s']
        gflops = flops * rate / 1e9
        raw[arch] = {'gflop_per_clip': flops / 1e9, 'clips_per_s': rate,
                     'gflops': gflops}
        rows.append(row('limit', f'{arch.upper()} deploy oneDNN b{b} network '
                        f'({flops / 1e9:.2f} GFLOP/clip)', gflops, 'GFLOP/s',
                        best_peak, 'float32 matmul peak', 0.8))
    rows += [row('limit', f"numpy SGEMM {peak['n']}x{peak['n']}",
                 peak['numpy_gflops'], 'GFLOP/s'),
             row('limit', f"paddle.matmul {peak['n']}x{peak['n']}",
                 peak['paddle_gflops'], 'GFLOP/s')]
    if peak.get('onednn_gflops'):
        rows.append(row('limit', f"paddle.inference oneDNN matmul (Linear) "
                        f"{peak['n']}x{peak['n']}", peak['onednn_gflops'],
                        'GFLOP/s'))
    return {'raw': raw, 'rows': rows}


def section_rss(P, work):
    r = worker('rss_predictor', out_dir=str(work), **P['rss'])
    k = r['window']
    rng = f"{r['seconds_range'][0]:g}-{r['seconds_range'][1]:g} s"
    A = P['rss']['arch'].upper()
    rows = [
        row('rss', f"{A} deploy/predict.py path peak RSS, {r['clips']} "
            f"files of {rng}", r['peak_rss_mb'], 'MB',
            note=f"{r['clips_per_s']:.1f} clips/s"),
        row('rss', f'RSS mean over last {k} clips vs first {k} (1.00 = '
            'flat)', r['rss_last_mb'], 'MB', r['rss_first_mb'],
            f'first {k} clips', note=f"growth {r['growth_mb']:+.1f} MB"),
    ]
    lever_rows, levers = run_levers(
        'rss', P, {P['rss']['arch']: {'default': r}},
        {'rss_predictor': dict(out_dir=str(work), **P['rss'])})
    return {'raw': {'release': r, 'levers': levers}, 'rows': rows + lever_rows}


# Your own data: listing + fold assignment of 100,000 files in
# under 10 s on 2 cores, i.e. at least 10,000 files/s.
LISTING_FILES_PER_S = 10000


def section_data(P, work):
    r = worker('listing', out_dir=str(work), **P['listing'])
    rows = [row('data', f"listing + {r['folds']} stratified folds of "
                f"{r['files']} files in {r['classes']} class folders "
                f"(load_table; speed = files / time)", r['files_per_s'],
                'files/s', LISTING_FILES_PER_S, '100,000 files in 10 s', 1.0,
                note=f"{r['first_s']:.2f} s; rerun (folds file checked) "
                f"{r['rerun_s']:.2f} s")]
    return {'raw': r, 'rows': rows}


# INT8 CNN14 at batch 8, front end included, >= 3x PyTorch fp32
INT8_TARGET = 3.0
LOWP_NAMES = {'paddle_fp32': 'paddle.inference fp32 (oneDNN)',
              'onnx_fp32': 'ONNX Runtime fp32',
              'paddle_int8': 'INT8 Paddle PTQ + oneDNN',
              'onnx_int8': 'INT8 ONNX Runtime QDQ',
              'paddle_bf16': 'BF16 paddle.inference oneDNN'}
LOWP_FLAGS = ('avx512_vnni', 'avx512_bf16', 'amx_int8', 'amx_bf16')


def lowp_flags():
    have = [f for f in LOWP_FLAGS if f in machine()['cpu_flags']]
    return 'CPU ' + ('/'.join(have) if have else 'without VNNI/BF16/AMX')


def section_lowp(P, work, infer=None):
    """INT8, BF16 and ONNX Runtime against paddle.inference fp32 and the
    PyTorch reference (reused from the infer section when it ran), then
    the accuracy INT8/BF16 cost on a trained model."""
    L, rows, raw = P['lowp'], [], {}
    flags = lowp_flags()
    kinds = [k for k in L['kinds'] if k != 'paddle_bf16' or
             'avx512_bf16' in machine()['cpu_flags'] or
             'amx_bf16' in machine()['cpu_flags']]
    b = str(L['batch'])
    for arch in L['archs']:
        A = arch.upper()
        dirs = worker('lowp_build', arch=arch, out_dir=str(work),
                      seconds=L['seconds'], calib_clips=L['calib_clips'],
                      kinds=kinds)
        res = {k: worker('lowp_infer', arch=arch, model_dir=dirs[k],
                         batch=L['batch'], seconds=L['seconds'],
                         warmup=L['warmup'], reps=L['reps']) for k in kinds}
        if infer and arch in infer['raw'] and \
                infer['raw'][arch]['torch']['e2e'].get(b):
            th = infer['raw'][arch]['torch']
        else:
            th = worker('torch_infer', arch=arch, seconds=L['seconds'],
                        batches=[L['batch']], warmup=L['warmup'],
                        reps=L['reps'])
        torch = th['e2e'][b]['clips_per_s']
        raw[arch] = {'exports': dirs, 'runs': res, 'torch_e2e': torch}
        for k in kinds:
            r = res[k]
            rows.append(row(
                'lowp', f'{A} b{b} incl. front end: {LOWP_NAMES[k]}',
                r['e2e_clips_per_s'], 'clips/s', torch, 'PyTorch fp32',
                INT8_TARGET if (arch, k) == ('cnn14', 'paddle_int8') else
                None, note=f"created in {r['create_s']:.1f} s"
                + (f'; {flags}' if not k.endswith('fp32') else '')))
        fp32 = res['paddle_fp32']
        if 'onnx_fp32' in res:
            rows.append(row(
                'lowp', f'{A} b{b} network only: ONNX Runtime fp32 vs '
                'paddle.inference fp32', res['onnx_fp32']['net_clips_per_s'],
                'clips/s', fp32['net_clips_per_s'], 'paddle.inference fp32'))
        for k in kinds:
            if k.endswith('fp32'):
                continue
            base = res[k.split('_')[0] + '_fp32'] if \
                k.split('_')[0] + '_fp32' in res else fp32
            rows.append(row(
                'lowp', f'{A} b{b} network only: {LOWP_NAMES[k]} vs its fp32',
                res[k]['net_clips_per_s'], 'clips/s',
                base['net_clips_per_s'], 'same backend fp32', note=flags))
    if 'accuracy' in L and (ROOT / L['accuracy']['checkpoint']).exists():
        acc = dict(L['accuracy'])
        acc['checkpoint'] = str(ROOT / acc['checkpoint'])
        acc['data_dir'] = str(ROOT / acc['data_dir'])
        r = worker('lowp_accuracy', out_dir=str(work), **acc)
        raw['accuracy'] = r
        rows += accuracy_rows(r, flags)
    return {'raw': raw, 'rows': rows}


def accuracy_rows(r, flags):
    """Per route: dev-fold and held-out accuracy (target: at most 0.5
    point below fp32) and top-1 agreement (target: 98 %)."""
    rows = []
    for k in ('paddle_int8', 'onnx_int8', 'paddle_bf16'):
        if k not in r:
            continue
        dev, name = r[k]['dev'], LOWP_NAMES[k]
        for where, value, ref, agree, n in (
                (f"demo dev fold ({r['dev_clips']} clips)", dev['quantised'],
                 dev['fp32'], dev['top1_agreement'], r['dev_clips']),
                (f"generated held-out set ({r['heldout_clips']} clips)",
                 r[k]['heldout_acc'], r['heldout_fp32_acc'],
                 r[k]['heldout_agreement'], r['heldout_clips'])):
            rows.append(row('lowp', f'accuracy, {where}: {name}', value, '%',
                            ref - 0.5, 'fp32 accuracy minus 0.5 point', 1.0,
                            note=f'fp32 {ref:.2f} %; {flags}'))
            rows.append(row('lowp', f'top-1 agreement with fp32, {where}: '
                            f'{name}', agree, '%', 98.0, 'target 98 %', 1.0))
    return rows


# Sound-event detection: streaming and event logic cost under
# 10 % of classifying the same windows as separate clips.
DETECT_VS_CLIPS = 0.9


def detect_run(model_dir, wav, window, out_dir, *cli):
    """detect.py on one recording, from interpreter start, batch 8 as
    deploy_folder: (wall s, stdout, peak RSS MB)."""
    return run_rss([sys.executable, str(SCRIPTS / 'detect.py'),
                    '--model_dir', model_dir, '--wav', wav,
                    '--window_seconds', str(window), '--batch_size', '8',
                    '--device', 'cpu', '--cpu_threads', str(THREADS),
                    '--output_dir', str(out_dir), *cli])


def section_detect(P, work):
    D = P['detect']
    window, hop = D['window'], D['window'] / 2  # detect.py's default hop
    raw, rows = {}, []
    for arch in D['archs']:
        ex = worker('export', arch=arch, out_dir=str(work))
        data = worker('detect_data', out_dir=str(work), seconds=D['seconds'],
                      window=window, hop=hop)
        # alternating runs, the best of each: predictor creation alone
        # (CNN14, oneDNN) varies by seconds between runs
        det, dep = [], []
        for _ in range(D['reps']):
            det.append(detect_run(ex['export_dir'], data['recording'],
                                  window, work / f'detect_{arch}'))
            dep.append(deploy_folder(ex['export_dir'], data['clips_dir'],
                                     data['clips'],
                                     ['--window_seconds', str(window)]))
        out = det[0][1]
        windows = int(out.split(' windows of ')[0].rsplit('(', 1)[1])
        assert windows == data['clips'], (windows, data)
        det_s = min(d[0] for d in det)
        dep = min(dep, key=lambda d: d['wall_s'])
        secs = data['seconds']
        raw[arch] = {'seconds': secs, 'windows': windows, 'detect_s': det_s,
                     'deploy_s': dep['wall_s'],
                     'detect_runs_s': [d[0] for d in det],
                     'detect_peak_rss_mb': max(d[2] for d in det)}
        rows.append(row(
            'detect', f'{arch.upper()} export, {secs:g} s 44.1 kHz '
            f'recording in {window:g} s windows every {hop:g} s, batch 8: '
            'detect.py (speed = audio s / wall s, best of '
            f"{D['reps']})", secs / det_s, 'audio s/s',
            secs / dep['wall_s'], f'deploy/predict.py on the same {windows} '
            'windows as clips', DETECT_VS_CLIPS if arch == 'cnn14' else None,
            note=f'real-time factor {det_s / secs:.3f} (deploy '
            f"{dep['wall_s'] / secs:.3f}); wall {det_s:.1f} s vs "
            f"{dep['wall_s']:.1f} s"))
    ex = worker('export', arch=D['rss_arch'], out_dir=str(work))
    peaks = {}
    for secs in (D['rss_short'], D['rss_seconds']):
        if secs == D['seconds'] and D['rss_arch'] in raw:  # measured above
            peaks[secs] = raw[D['rss_arch']]['detect_peak_rss_mb']
            continue
        data = worker('detect_data', out_dir=str(work), seconds=secs)
        wall_s, _, peaks[secs] = detect_run(
            ex['export_dir'], data['recording'], window,
            work / f'detect_rss_{secs:g}')
        raw[f'rss_{secs:g}s'] = {'peak_rss_mb': peaks[secs],
                                 'wall_s': wall_s}
    long, short = peaks[D['rss_seconds']], peaks[D['rss_short']]
    rows.append(row(
        'detect', f"{D['rss_arch'].upper()} detect.py peak RSS, "
        f"{D['rss_seconds']:g} s 44.1 kHz recording", long, 'MB', short,
        f"{D['rss_short']:g} s recording", note=f'{long - short:+.0f} MB '
        '(bound: +300 MB)'))
    return {'raw': raw, 'rows': rows}


def make_folder(folder, n, secs, sr=44100):
    """``n`` clips of noise and a tone, ``secs`` long, 16-bit WAV."""
    import numpy as np
    import soundfile as sf
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(secs * sr)) / sr
    for i in range(n):
        x = 0.1 * rng.standard_normal(len(t)) + 0.3 * np.sin(
            2 * np.pi * rng.uniform(100, 4000) * t)
        sf.write(folder / f'clip_{i:04d}.wav', x.clip(-1, 1), sr,
                 subtype='PCM_16')
    return folder


def analyze_cmd(model_dir, inputs, out_dir, *cli):
    return [sys.executable, str(SCRIPTS / 'analyze.py'), '--model_dir',
            model_dir, '--input', str(inputs), '--output_dir', str(out_dir),
            '--device', 'cpu', '--quiet', 'true', *cli]


def analyze_run(model_dir, inputs, out_dir, *cli):
    """analyze.py over a folder (or file), from interpreter start, into a
    new output directory: (wall s, stdout)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    return wall(analyze_cmd(model_dir, inputs, out_dir, *cli))


def _spawned_children(pid):
    """Pids of ``pid``'s multiprocessing (spawn) workers: the local
    engine's pool, not its resource tracker."""
    found = []
    for d in Path('/proc').iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / 'stat').read_text().rsplit(')', 1)[1].split()[1])
            if ppid == pid and b'spawn_main' in (d / 'cmdline').read_bytes():
                found.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _journal_files(journal):
    """Files an analysis journal has committed so far."""
    try:
        lines = Path(journal).read_bytes().splitlines()
    except OSError:
        return 0
    n = 0
    for line in lines:
        try:
            n += len(json.loads(line).get('files', ()))
        except ValueError:  # the line being appended
            pass
    return n


def analyze_worker_peaks(cmd, out_dir, workers, early, every=0.2):
    """Run analyze.py (local engine, ``workers`` >= 2 pool processes) and
    sample each worker's peak RSS from outside, so nothing in the library
    changes for it: (wall s, stdout, {pid: MB} when the journal first holds
    ``early`` files, that count, {pid: MB} at the last sample before the
    workers end)."""
    journal = Path(out_dir) / '.analyze' / 'journal.jsonl'
    pids, peak, first, first_n = [], {}, None, None
    with tempfile.TemporaryFile('w+') as out, \
            tempfile.TemporaryFile('w+') as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env())
        while proc.poll() is None:
            done = _journal_files(journal) if first is None else None
            if len(pids) < workers:
                pids = _spawned_children(proc.pid)
            for pid in pids:
                mb = proc_status_mb(pid, 'VmHWM')
                if mb is not None:  # None: ended (a zombie has no VmHWM)
                    peak[pid] = mb
            if first is None and done >= early and len(peak) == workers:
                first, first_n = dict(peak), done
            time.sleep(every)
        elapsed = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f'{cmd} failed:\n{err.read()}')
        text = out.read()
    assert first is not None and len(peak) == workers, (first, peak, text)
    return elapsed, text, first, first_n, peak


def section_analyze(P, work):
    """analyze.py's local engine (one worker with every thread, the best
    on 2 cores: its reader process overlaps the model) against
    deploy/predict.py on the same folder, both with batch 8, run ``reps``
    times alternately (medians); a rerun of the finished run (all
    skipped); --embeddings; one long recording against detect.py; a
    folder of ``many_files`` tiny files (FULL: 10,000 x 0.2 s with CNN6,
    about 5 min on 2 cores for the first pass) with ``workers`` pool
    processes, each one's peak RSS after the first ~100 files and at the
    end, then its rerun; the Ray engine on this machine and its start-up
    (full run, when Ray is installed)."""
    Z = P['analyze']
    arch, n, secs, workers = Z['arch'], Z['files'], Z['seconds'], \
        Z['workers']
    ex = worker('export', arch=arch, out_dir=str(work))
    folder = make_folder(work / f'analyze_{n}x{secs:g}', n, secs)
    # one window per file, as deploy/predict.py scores a clip
    local = ['--workers', '1', '--cpu_threads', str(THREADS),
             '--window_seconds', str(secs), '--hop_seconds', str(secs),
             '--batch_size', '8']
    out = work / 'analysis'
    deploys, locals_ = [], []
    for _ in range(Z['reps']):
        deploys.append(deploy_folder(ex['export_dir'], str(folder),
                                     n)['wall_s'])
        local_s, text = analyze_run(ex['export_dir'], folder, out, *local)
        assert f'{n} files analysed, 0 failed' in text, text
        locals_.append(local_s)
    dep_s, local_s = statistics.median(deploys), statistics.median(locals_)
    rerun_s, text = wall(analyze_cmd(ex['export_dir'], folder, out, *local))
    assert f'0 files analysed, 0 failed, {n} already done' in text, text
    emb_s, _ = analyze_run(ex['export_dir'], folder, work / 'analysis_emb',
                           *local, '--embeddings', 'true')
    raw = {'files': n, 'seconds': secs, 'arch': arch, 'workers': 1,
           'deploy_s': deploys, 'analyze_s': locals_,
           'rerun_s': rerun_s, 'embeddings_s': emb_s}
    A = arch.upper()
    rows = [row('analyze', f'{n} x {secs:g} s 44.1 kHz wav, {A} export, '
                f'batch 8: analyze.py, 1 worker x {THREADS} threads '
                f'(speed = 1 / wall time, median of {Z["reps"]})',
                1 / local_s, '1/s', 1 / dep_s,
                'deploy/predict.py --batch_size 8',
                0.95 if arch == 'cnn14' else None,  # the targets: CNN14's
                note='wall ' + ', '.join(f'{x:.1f}' for x in locals_) +
                ' s vs ' + ', '.join(f'{x:.1f}' for x in deploys) + ' s'),
            row('analyze', 'analyze.py rerun of the finished run (every file '
                'skipped; bound 5 s)', rerun_s, 's',
                note=f'{n} files checked'),
            row('analyze', 'analyze.py --embeddings true (speed = 1 / wall '
                'time)', 1 / emb_s, '1/s', 1 / local_s, 'without',
                0.91 if arch == 'cnn14' else None,
                note=f'wall {emb_s:.1f} s vs {local_s:.1f} s')]
    long_raw, long_row = _analyze_long(Z, work, ex['export_dir'], A)
    raw['long'] = long_raw
    rows.append(long_row)
    many_raw, many_rows = _analyze_many(
        Z, work, workers, {arch: ex['export_dir']})
    raw['many'] = many_raw
    rows += many_rows
    if Z['ray']:
        ray_s, text = analyze_run(
            ex['export_dir'], folder, work / 'analysis_ray', *local,
            '--engine', 'ray')
        raw['ray_s'] = ray_s
        start = _ray_startup(work, ex['export_dir'], secs, local)
        raw['ray_startup'] = start
        rows.append(row('analyze', 'analyze.py --engine ray (a Ray started '
                        'on this machine, 1 actor; wall time includes Ray '
                        'and actor start-up)', 1 / ray_s, '1/s',
                        1 / local_s, 'local engine', 0.8,
                        note=f'wall {ray_s:.1f} s vs {local_s:.1f} s'))
        rows.append(row('analyze', 'the same without the start-up of '
                        'either (wall minus a one-file run\'s)',
                        1 / (ray_s - start['ray_s']), '1/s',
                        1 / (local_s - start['local_s']), 'local engine',
                        note=f"{ray_s - start['ray_s']:.1f} s vs "
                        f"{local_s - start['local_s']:.1f} s"))
        rows.append(row(
            'analyze', 'analyze.py --engine ray start-up (1 actor): '
            'wall time of a one-file run minus the local engine\'s',
            start['startup_s'], 's', note=f"one file: ray {start['ray_s']:.1f}"
            f" s, local {start['local_s']:.1f} s; ray.init and the model "
            f"described {start['ray_open_s']:.1f} s"))
    return {'raw': raw, 'rows': rows}


def _analyze_long(Z, work, model_dir, A):
    """analyze.py (one worker, all threads) and detect.py on one long
    recording with the same model, windows, hop and batch (detect.py
    without its plot, which analyze.py does not draw)."""
    secs, window = Z['long_seconds'], Z['long_window']
    hop = window / 2
    rec = worker('detect_data', out_dir=str(work), seconds=secs)['recording']
    det_s, det_out, _ = detect_run(model_dir, rec, window,
                                   work / 'analyze_detect', '--hop_seconds',
                                   str(hop), '--plot', 'false')
    ana_s, text = analyze_run(
        model_dir, rec, work / 'analysis_long', '--workers', '1',
        '--cpu_threads', str(THREADS), '--window_seconds', str(window),
        '--hop_seconds', str(hop), '--batch_size', '8')
    assert '1 files analysed, 0 failed' in text, text
    det_windows = int(det_out.split(' windows of ')[0].rsplit('(', 1)[1])
    det_events = int(det_out.split(' events of ')[0].rsplit(' ', 1)[1])
    ana_windows, ana_events = (int(x) for x in re.search(
        r'(\d+) windows, (\d+) events', text).groups())
    assert ana_windows == det_windows, (text, det_out)
    raw = {'seconds': secs, 'window': window, 'hop': hop, 'detect_s': det_s,
           'analyze_s': ana_s, 'windows': ana_windows,
           'detect_events': det_events, 'analyze_events': ana_events}
    return raw, row(
        'analyze', f'{A} export, one {secs:g} s 44.1 kHz recording in '
        f'{window:g} s windows every {hop:g} s, batch 8: analyze.py, 1 '
        f'worker x {THREADS} threads (speed = audio s / wall s)',
        secs / ana_s, 'audio s/s', secs / det_s, 'detect.py --plot false',
        0.9 if A == 'CNN14' else None,
        note=f'wall {ana_s:.1f} s vs {det_s:.1f} s; {ana_windows} windows')


def _analyze_many(Z, work, workers, exports):
    """A folder of many tiny files analysed once (each worker's peak RSS
    sampled after the first ~``rss_early`` files and at the end), then
    rerun with every file skipped."""
    arch, n, secs = Z['many_arch'], Z['many_files'], Z['many_seconds']
    model_dir = exports.get(arch) or worker(
        'export', arch=arch, out_dir=str(work))['export_dir']
    folder = make_folder(work / f'analyze_{n}x{secs:g}', n, secs)
    # a 1 s window, the short files padded: CNN14 and CNN6 need that many
    # frames
    flags = ['--workers', str(workers), '--cpu_threads',
             str(max(1, THREADS // workers)), '--window_seconds', '1',
             '--hop_seconds', '1']
    out = work / f'analysis_{n}'
    shutil.rmtree(out, ignore_errors=True)
    first_s, text, early, early_n, end = analyze_worker_peaks(
        analyze_cmd(model_dir, folder, out, *flags), out, workers,
        Z['rss_early'])
    assert f'{n} files analysed, 0 failed' in text, text
    rerun_s, text = wall(analyze_cmd(model_dir, folder, out, *flags))
    assert f'0 files analysed, 0 failed, {n} already done' in text, text
    pids = sorted(end)
    growth = {p: end[p] - early[p] for p in pids}
    worst = max(pids, key=growth.get)
    raw = {'files': n, 'seconds': secs, 'arch': arch, 'first_s': first_s,
           'rerun_s': rerun_s, 'early_files': early_n,
           'early_peak_rss_mb': [early[p] for p in pids],
           'end_peak_rss_mb': [end[p] for p in pids]}
    A = arch.upper()
    return raw, [
        row('analyze', f'analyze.py rerun of a finished run of {n} x '
            f'{secs:g} s files (every file skipped; bound 5 s)', rerun_s, 's',
            note=f'first pass ({A}, {workers} workers) {first_s:.0f} s'),
        row('analyze', f'{A} analyze.py peak RSS of a worker after {n} '
            f'files (the worst of {workers})', end[worst], 'MB', early[worst],
            f'after {early_n} files', note=f'{growth[worst]:+.1f} MB (bound: '
            '+50 MB); per worker ' + ', '.join(
                f'{early[p]:.0f} -> {end[p]:.0f}' for p in pids))]


def _ray_startup(work, model_dir, secs, local):
    """A one-file run with --engine ray and with the local engine (the
    same flags): the difference is Ray's start-up (Ray itself, the actor
    pool, the models opened in it)."""
    one = make_folder(work / 'analyze_one', 1, secs)
    local_s, _ = analyze_run(model_dir, one, work / 'analysis_one_local',
                             *local)
    out = work / 'analysis_one_ray'
    ray_s, _ = analyze_run(model_dir, one, out, *local, '--engine', 'ray')
    timings = json.loads((out / 'run.json').read_text())['timings']
    return {'local_s': local_s, 'ray_s': ray_s, 'startup_s': ray_s - local_s,
            'ray_open_s': timings['model_open_seconds']}


# ------------------------------------------------------------------- output

def fmt(v):
    if v is None:
        return ''
    if abs(v) >= 100:
        return f'{v:.0f}'
    if abs(v) >= 10:
        return f'{v:.1f}'
    return f'{v:.2f}' if abs(v) >= 0.1 else f'{v:.3g}'


def markdown(result):
    lines = ['| section | measurement | value | unit | compared with | '
             'ratio | target / measured / met? | note |',
             '|---|---|---|---|---|---|---|---|']
    for name in SECTIONS:
        sec = result['sections'].get(name)
        if not sec:
            continue
        for r in sec['rows']:
            cmp_ = (f"{r['ref_what']} {fmt(r['ref'])}" if 'ref' in r else '')
            ratio = f"{r['ratio']:.2f}x" if 'ratio' in r else ''
            tgt = (f"≥ {r['target']:g}x / {r['ratio']:.2f}x / "
                   f"{'yes' if r['met'] else '**no**'}"
                   if 'target' in r else '')
            lines.append(f"| {name} | {r['what']} | {fmt(r['value'])} | "
                         f"{r['unit']} | {cmp_} | {ratio} | {tgt} | "
                         f"{r.get('note', '')} |")
    return '\n'.join(lines)


def versions():
    out = {}
    for mod in ('paddle', 'torch', 'numpy', 'librosa'):
        try:
            proc = subprocess.run(
                [sys.executable, '-c', f'import {mod}; print({mod}.__version__)'],
                capture_output=True, text=True, env=env(), timeout=120)
            out[mod] = proc.stdout.strip().splitlines()[-1]
        except Exception:
            out[mod] = 'unknown'
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true',
                   help='tiny repetitions, CNN6 only, short clips (< 60 s)')
    p.add_argument('--json', help='also write the figures to this file')
    p.add_argument('--only', help=f'comma-separated subset of {SECTIONS}')
    p.add_argument('--markdown', help='also write the header and table to '
                   'this file (e.g. benchmarks/RESULTS.md material)')
    p.add_argument('--work_dir', help='keep exports and generated audio here '
                   '(default: a temporary directory)')
    a = p.parse_args(argv)
    only = a.only.split(',') if a.only else list(SECTIONS)
    bad = set(only) - set(SECTIONS)
    if bad:
        p.error(f'unknown section(s) {sorted(bad)}; choose from {SECTIONS}')
    P = QUICK if a.quick else FULL
    t0 = time.perf_counter()
    busy0, own0 = busy_cpu_seconds()
    info = machine()
    info.update(versions() if not a.quick else {})
    info['date'] = datetime.datetime.now().isoformat(timespec='seconds')
    info['threads'] = THREADS
    info['mode'] = 'quick' if a.quick else 'full'
    result = {'machine': info, 'sections': {}}
    with tempfile.TemporaryDirectory(prefix='bench_') as tmp:
        work = Path(a.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in SECTIONS:
            if name not in only:
                continue
            print(f'== {name}', file=sys.stderr, flush=True)
            fn = globals()[f'section_{name}']
            if name in ('limit', 'lowp'):
                result['sections'][name] = fn(P, work,
                                              result['sections'].get('infer'))
            else:
                result['sections'][name] = fn(P, work)
            if a.json:  # partial results survive a later failure
                Path(a.json).write_text(json.dumps(result, indent=1))
    info['load_avg_1min_end'] = os.getloadavg()[0]
    info['elapsed_s'] = time.perf_counter() - t0
    busy1, own1 = busy_cpu_seconds()
    # CPU used by other processes while we ran, in cores on average (our
    # own run keeps ~2 cores busy, so the end load average says little)
    info['other_cpu_cores'] = max(0.0, (busy1 - busy0) - (own1 - own0)) \
        / info['elapsed_s']
    loaded = info['other_cpu_cores'] > 0.25
    head = (f"{info['cpu']} ({'/'.join(info['isa'])}), {info['cores']} cores, "
            f"{THREADS} threads per framework, MKL_DEBUG_CPU_TYPE="
            f"{info['MKL_DEBUG_CPU_TYPE']}, {info['mode']} run, "
            f"{info['date']}, {info['elapsed_s']:.0f} s"
            + (f", paddle {info['paddle']}, torch {info['torch']}"
               if 'paddle' in info else '')
            + f"\n\nCPU flags: {' '.join(info['cpu_flags'])}"
            + (f"\n\n**Measured under load** (1-min load average "
               f"{info['load_avg_1min']:.2f} at start, "
               f"{info['load_avg_1min_end']:.2f} at end; other processes "
               f"used {info['other_cpu_cores']:.2f} cores on average): "
               f"figures are unreliable." if loaded else
               f"\n\nQuiet machine: 1-min load average "
               f"{info['load_avg_1min']:.2f} at start; other processes used "
               f"{info['other_cpu_cores']:.2f} cores on average during the "
               f"run."))
    result['table'] = markdown(result)
    print(head + '\n\n' + result['table'])
    result['header'] = head
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    if a.markdown:
        Path(a.markdown).write_text(head + '\n\n' + result['table'] + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
