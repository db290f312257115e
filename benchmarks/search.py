#!/usr/bin/env python3
"""Search speed and memory over generated indexes (issue 25's rows).

    PYTHONPATH=. python benchmarks/search.py [--sizes 100000,1000000]
        [--dim 2048] [--queries 5] [--work_dir DIR] [--json out.json]

For each size an analysis directory of that many windows of ``--dim``-d
random float16 embeddings is written (search.write_analysis: the Parquet
layout, parts of 20,000 windows), then a fresh process searches it: the
first search (which writes the float16 matrix beside the index once) and
the median of ``--queries`` more, top 50, 2 threads, and the process's
peak RSS. Targets: 1,000,000 windows <= 3 s per query and <= 1.5 GB peak
RSS; 100,000 <= 0.5 s. Prints a markdown table under the machine's CPU
and flags.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, machine

TARGETS = {100000: 0.5, 1000000: 3.0}
RSS_TARGET_MB = 1536
PART = 20000

CHILD = r'''
import json, resource, sys, time
import numpy as np
from paddlespeech.cls.search import search
index, dim, queries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(1)
t = time.perf_counter(); search(index, rng.standard_normal(dim), 50)
first = time.perf_counter() - t
times = []
for _ in range(queries):
    q = rng.standard_normal(dim)
    t = time.perf_counter(); hits = search(index, q, 50)
    times.append(time.perf_counter() - t)
print(json.dumps({'first_s': first, 'query_s': float(np.median(times)),
                  'peak_rss_mb': resource.getrusage(
                      resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def build(folder, n, dim, seed=0):
    import numpy as np
    from paddlespeech.cls.search import write_analysis
    rng = np.random.default_rng(seed)

    def parts():
        for a in range(0, n, PART):
            m = min(PART, n - a)
            yield {'path': [f'/archive/{(a + i) // 720:06d}.flac'
                            for i in range(m)],
                   'start': (np.arange(a, a + m) % 720) * 5.0,
                   'end': (np.arange(a, a + m) % 720) * 5.0 + 10.0,
                   'embedding': rng.standard_normal(
                       (m, dim), dtype=np.float32).astype(np.float16)}
    return write_analysis(folder, parts(), {'model': {}})


def measure(n, dim, queries, work):
    index = build(Path(work) / f'index_{n}', n, dim)
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    proc = subprocess.run([sys.executable, '-c', CHILD, str(index), str(dim),
                           str(queries)], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--sizes', default='100000,1000000')
    p.add_argument('--dim', type=int, default=2048)
    p.add_argument('--queries', type=int, default=5)
    p.add_argument('--work_dir')
    p.add_argument('--json')
    args = p.parse_args()
    m = machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or tmp
        for n in map(int, args.sizes.split(',')):
            r = measure(n, args.dim, args.queries, work)
            rows.append({'windows': n, **r, 'target_s': TARGETS.get(n)})
    print(f"CPU: {m['cpu']}; flags: {' '.join(m['cpu_flags'])}; cores "
          f"{m['affinity']}/{m['cores']}; load {m['load_avg_1min']:.2f}")
    print('\n| windows | query (s, median) | target | first search (s, '
          'writes the matrix) | peak RSS (MB) |')
    print('|---|---|---|---|---|')
    for r in rows:
        target = f"<= {r['target_s']:g} s" if r['target_s'] else ''
        met = ('met' if r['query_s'] <= r['target_s'] else 'missed') \
            if r['target_s'] else ''
        print(f"| {r['windows']:,} | {r['query_s']:.3f} | {target} {met} | "
              f"{r['first_s']:.2f} | {r['peak_rss_mb']:.0f} "
              f"(target <= {RSS_TARGET_MB}) |")
    if args.json:
        Path(args.json).write_text(json.dumps({'machine': m, 'rows': rows},
                                              indent=2))


if __name__ == '__main__':
    main()
