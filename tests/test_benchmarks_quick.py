"""benchmarks/run.py --quick runs and reports every section with sane figures."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ('infer', 'folder', 'train', 'frontend', 'limit', 'rss')

pytest.importorskip('torch')
pytest.importorskip('panns_inference')
pytest.importorskip('librosa')
pytest.importorskip('torchlibrosa')


def _numbers(obj):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)


def test_quick_benchmark(tmp_path):
    out = tmp_path / 'bench.json'
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(ROOT)] + [p for p in [env.get('PYTHONPATH')] if p])
    env.setdefault('MKL_DEBUG_CPU_TYPE', '5')
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'run.py'), '--quick',
         '--json', str(out)], capture_output=True, text=True, env=env,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert '| section |' in proc.stdout

    result = json.loads(out.read_text())
    assert result['machine']['mode'] == 'quick'
    assert set(result['sections']) == set(SECTIONS)
    for name in SECTIONS:
        rows = result['sections'][name]['rows']
        assert rows, name
        for r in rows:
            for key in ('value', 'ref', 'ratio'):
                if key in r:
                    v = r[key]
                    assert isinstance(v, (int, float)) and math.isfinite(v) \
                        and v > 0, (name, r['what'], key, v)
            if 'target' in r:
                assert isinstance(r['met'], bool)
        # raw figures: all finite (growth in MB may be <= 0)
        for v in _numbers(result['sections'][name]['raw']):
            assert math.isfinite(v), (name, v)
    # the rows the targets are checked on are present
    whats = ' '.join(r['what'] for s in result['sections'].values()
                     for r in s['rows'])
    for needle in ('incl. front end: deploy Predictor, oneDNN',
                   'network only: dynamic graph', 'train step',
                   'epoch 2 (feature cache)', 'paddle_logmel',
                   'matmul', 'peak RSS'):
        assert needle in whats, needle
