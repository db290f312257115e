#!/usr/bin/env python3
"""Load test of deploy/serve.py against the offline deploy path, side by side.

    PYTHONPATH=. python benchmarks/load.py --model_dir exp/demo/export \
        [--concurrency 1,8,32] [--requests 200] [--mixed 2000] [--json out]
    PYTHONPATH=. python benchmarks/load.py --arch cnn14 ...   (random weights)

1. Offline, in its own process: deploy/predict.py's path (Predictor +
   predict_files) over the clips at batch 8 (throughput: ``--reps`` passes
   before the served runs and as many after, median), and each clip's
   top-1.
2. serve.py on 127.0.0.1 (a free port), then per concurrency ``--requests``
   PaddleSpeech-shaped requests of the clips from a bounded async client
   (httpx; one connection per concurrent request), after a warm-up. Served
   and offline runs alternate, so that both see the same background load:
   at concurrency 1 blocks of 10 requests follow the same clips scored
   offline one at a time (single-clip latency); higher concurrencies send
   ``--reps`` bursts, each after an offline batch-8 pass (the throughput
   reference).
3. ``--mixed`` requests at the highest concurrency with ``--bad_fraction``
   bad inputs (bad JSON, bad base64, undecodable, NaN samples, too long, too
   large): an error is a bad input not answered with a 4xx, or a good one
   not answered 200 with the offline top-1 and score. Server RSS (its
   process and its inference process) is read after the first 200 of
   them and at the end.
4. The server is stopped (SIGTERM; it must exit 0) and the tables
   printed, one of them splitting the good answers' latency by the
   server's ``Server-Timing`` header (queue, inference, decoding, rest).
"""
import argparse
import asyncio
import base64
import datetime
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from paddlespeech.cls.runtime import prepare_process

prepare_process()

import numpy as np

from benchmarks.common import ROOT, busy_cpu_seconds, machine, waves


SERVE = ROOT / 'paddlespeech' / 'cls' / 'exps' / 'panns' / 'deploy' / \
    'serve.py'
MAX_SECONDS, MAX_UPLOAD_MB = 30, 4  # the server's limits in this test
STAGES = ('queue', 'inference', 'decode', 'rest')  # of a served latency
BLOCK = 10  # concurrency 1: requests per block alternating with offline


def env():
    e = dict(os.environ)
    e['PYTHONPATH'] = os.pathsep.join(
        [str(ROOT)] + [p for p in [e.get('PYTHONPATH')] if p])
    return e


def wav_bytes(wave, sr=32000, subtype='PCM_16'):
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format='WAV', subtype=subtype)
    return buf.getvalue()


def make_clips(folder, count, seconds):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, w in enumerate(waves(count, seconds, seed=1)):
        paths.append(folder / f'clip_{i:03d}.wav')
        paths[-1].write_bytes(wav_bytes(w))
    return paths


# ----------------------------------------------------------------- offline

def offline_worker(model_dir, threads):
    """deploy/predict.py's path (Predictor + predict_files) in its own
    process, answering one JSON line per request line on stdin: ``batch8``
    (one pass over the files at --batch_size 8: seconds, top-1s) or
    ``single`` (one file alone: seconds)."""
    from paddlespeech.cls.audio import Windowing
    from paddlespeech.cls.inference import Predictor
    from paddlespeech.cls.prediction import predict_files
    p = Predictor(model_dir, device='cpu', cpu_threads=threads)
    windowing = Windowing.of_model(p.clip_seconds)
    for line in sys.stdin:
        ask = json.loads(line)
        batch = 8 if ask['op'] == 'batch8' else 1
        t = time.perf_counter()
        results = list(predict_files(ask['files'], p.feature, p, windowing,
                                     batch))
        seconds = time.perf_counter() - t
        print(json.dumps({'seconds': seconds, 'top1': {
            str(path): (p.labels[int(np.argmax(s))], float(np.max(s)))
            for path, s, _ in results}}), flush=True)


class Offline:
    """The offline worker process; ``ask(op, files)`` -> its answer."""

    def __init__(self, model_dir, threads):
        self.log = tempfile.TemporaryFile('w+')
        self.proc = subprocess.Popen(
            [sys.executable, __file__, '--offline_worker', str(model_dir),
             str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, text=True, env=env())

    def ask(self, op, files):
        self.proc.stdin.write(json.dumps(
            {'op': op, 'files': [str(f) for f in files]}) + '\n')
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            raise RuntimeError(f'offline worker failed:\n{self.log.read()}')
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(60)


# ------------------------------------------------------------------ server

class Server:
    """serve.py in a process on a free 127.0.0.1 port; ``stop()`` sends
    SIGTERM and returns the exit status."""

    def __init__(self, model_dir, max_batch_size, max_wait_ms, threads,
                 extra=()):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            self.port = s.getsockname()[1]
        self.url = f'http://127.0.0.1:{self.port}'
        self.log = tempfile.TemporaryFile('w+')
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVE), '--model_dir', str(model_dir),
             '--host', '127.0.0.1', '--port', str(self.port), '--device',
             'cpu', '--cpu_threads', str(threads), '--max_batch_size',
             str(max_batch_size), '--max_wait_ms', str(max_wait_ms),
             '--max_seconds', str(MAX_SECONDS), '--max_upload_mb',
             str(MAX_UPLOAD_MB), *extra],
            env=env(), stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=300):
        import httpx
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f'serve.py exited: {self.output()}')
            try:
                if httpx.get(self.url + '/readyz').status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError('serve.py not ready')

    def memory_mb(self):
        """(current, peak) resident set size of the server: its process
        and its inference processes (the sum of their peaks)."""
        now = peak = 0.0
        for pid in [self.proc.pid] + children(self.proc.pid):
            fields = {}
            for line in Path(f'/proc/{pid}/status').read_text().splitlines():
                key, _, value = line.partition(':')
                fields[key] = value
            now += int(fields['VmRSS'].split()[0]) / 1024
            peak += int(fields['VmHWM'].split()[0]) / 1024
        return now, peak

    def own_mb(self):
        """Resident set size of the server's own process (no inference
        process): what the HTTP and WebSocket handling holds."""
        for line in Path(f'/proc/{self.proc.pid}/status').read_text() \
                .splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024

    def batches(self, since=None):
        """``{batch size: batches run}`` (minus those of ``since``)."""
        import httpx
        now = httpx.get(self.url + '/v1/stats').json()['batches']
        return {k: n - (since or {}).get(k, 0) for k, n in now.items()
                if n - (since or {}).get(k, 0)}

    def output(self):
        self.log.seek(0)
        return self.log.read()[-3000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def children(pid):
    """The processes started by ``pid`` (Linux /proc)."""
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rpartition(')')[2].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


# ------------------------------------------------------------------ client

def upstream_body(data):
    return json.dumps({'audio': base64.b64encode(data).decode(), 'topk': 1})


def bad_requests():
    """(name, body): each must be refused with a 4xx."""
    nan = np.full(8000, 0.1, np.float32)
    nan[10] = np.nan
    long = np.zeros(int((MAX_SECONDS + 1) * 8000), np.float32)
    return [
        ('bad JSON', '{"audio": '),
        ('bad base64', json.dumps({'audio': 'abc$', 'topk': 1})),
        ('undecodable', upstream_body(b'not audio at all')),
        ('NaN samples', upstream_body(wav_bytes(nan, 8000, 'FLOAT'))),
        ('too long', upstream_body(wav_bytes(long, 8000))),
        ('too large', 'x' * (MAX_UPLOAD_MB * 2**20 + 1)),
    ]


async def send_all(url, jobs, concurrency, on_done=None):
    """Send ``jobs`` [(body, expect)] with at most ``concurrency`` in
    flight; ``expect`` is (label, prob) for a good request, None for a
    bad one. Returns (wall seconds, [latency s], [error texts], [stages]):
    the server's ``Server-Timing`` of each good answer (:func:`stages`)."""
    import httpx
    queue = asyncio.Queue()
    for i, job in enumerate(jobs):
        queue.put_nowait((i, job))
    latencies, problems, timings, done = [], [], [], [0]
    limits = httpx.Limits(max_connections=concurrency,
                          max_keepalive_connections=concurrency)

    async def client(http):
        while not queue.empty():
            i, (body, expect) = queue.get_nowait()
            t, r = time.perf_counter(), None
            try:
                r = await http.post(url + '/paddlespeech/cls', content=body)
                problem = check(r, expect)
            except httpx.HTTPError as e:
                problem = f'{type(e).__name__}: {e}'
            latencies.append(time.perf_counter() - t)
            timings.extend(stages(r, latencies[-1]))
            if problem:
                problems.append(f'request {i}: {problem}')
            done[0] += 1
            if on_done is not None:
                on_done(done[0])

    async with httpx.AsyncClient(limits=limits, timeout=300) as http:
        t = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - t
    return wall, latencies, problems, timings


def stages(r, seconds):
    """``[{stage: ms}]`` of a good answer's ``Server-Timing`` (decode,
    queue, inference, total) plus ``latency`` (the client's); ``[]`` for
    other answers."""
    if r is None or r.status_code != 200:
        return []
    from paddlespeech.cls.serving.protocol import parse_server_timing
    return [{**parse_server_timing(r.headers.get('server-timing', '')),
             'latency': 1000 * seconds}]


def check(r, expect):
    if expect is None:
        return None if 400 <= r.status_code < 500 else \
            f'bad input answered {r.status_code}'
    if r.status_code != 200:
        return f'good input answered {r.status_code}: {r.text[:200]}'
    (got,) = r.json()['result']['results']
    if got['class_name'] != expect[0] or abs(got['prob'] - expect[1]) > 1e-5:
        return f'answered {got}, offline {expect}'
    return None


def summary(what, concurrency, wall, latencies, problems, timings, bad,
            peak_mb, mixed=False, batches=None):
    """A table row. The good answers' latency split by the server's
    ``Server-Timing`` (queue, inference, decode) and the rest: HTTP, the
    request's parsing and the client."""
    ms = 1000 * np.asarray(latencies)
    split = {}
    if timings:
        t = {k: np.array([x.get(k, np.nan) for x in timings])
             for k in ('latency', 'queue', 'inference', 'decode')}
        t['rest'] = t['latency'] - t['queue'] - t['inference'] - t['decode']
        split = {f'{k}_{q}_ms': float(np.nanpercentile(t[k], q))
                 for k in STAGES for q in (50, 99)}
    return {**split, 'what': what, 'concurrency': concurrency, 'mixed': mixed,
            'batches': batches,
            'requests': len(latencies), 'bad': bad, 'wall_s': wall,
            'throughput': len(latencies) / wall,
            'p50_ms': float(np.percentile(ms, 50)),
            'p95_ms': float(np.percentile(ms, 95)),
            'p99_ms': float(np.percentile(ms, 99)),
            'errors': len(problems), 'error_samples': problems[:5],
            'peak_rss_mb': peak_mb}


# ------------------------------------------------------------------- main

def measure(a, work):
    files = make_clips(work / 'clips', a.clips, a.seconds)
    print(f'offline: {len(files)} clips of {a.seconds:g} s', file=sys.stderr)
    off = Offline(a.model_dir, a.cpu_threads)
    server = None
    try:
        off.ask('batch8', files[:8])
        off.ask('single', files[:1])  # warm: both shapes
        passes = [off.ask('batch8', files) for _ in range(a.reps)]
        top1 = passes[0]['top1']
        good = [(upstream_body(f.read_bytes()), tuple(top1[str(f)]))
                for f in files]
        bad = [(body, None) for _, body in bad_requests()]
        server = Server(a.model_dir, a.max_batch_size, a.max_wait_ms,
                        a.cpu_threads)
        server.wait_ready()
        rows, single = [], None
        for c in a.concurrency:
            print(f'concurrency {c}: {a.requests} requests', file=sys.stderr)
            if c == 1:
                interleaved(server, off, files, good, 2)  # warm both
                before = server.batches()
                res, single = interleaved(server, off, files, good,
                                          a.requests)
            else:
                warm = [good[i % len(good)] for i in range(max(2 * c, 4))]
                asyncio.run(send_all(server.url, warm, c))
                before = server.batches()
                res, ref = alternated(server, off, files, good, a.requests,
                                      c, a.reps)
            rows.append(summary(f'serve.py, concurrency {c}', c, *res, 0,
                                server.memory_mb()[1],
                                batches=server.batches(before)))
            if c == 1:  # their first requests, not counted, were batches
                rows[-1]['uncounted'] = -(-a.requests // BLOCK)
            if c > 1:
                rows[-1]['offline_clips_per_s'] = ref
        passes += [off.ask('batch8', files) for _ in range(a.reps)]
        mixed = None
        if a.mixed:
            mixed, row = mixed_run(a, server, good, bad)
            rows.append(row)
    finally:
        off.close()
        status = server.stop() if server else 0
    if status != 0:
        raise RuntimeError(f'serve.py exited with {status} after SIGTERM:\n'
                           f'{server.output()}')
    offline = {'clips_per_s': len(files) / float(np.median(
        [p['seconds'] for p in passes])), 'top1': top1, 'passes': len(passes)}
    if single:
        offline.update(latency_ms=float(np.median(single)),
                       latency_p99_ms=float(np.percentile(single, 99)))
    return offline, rows, mixed


def interleaved(server, off, files, good, requests, block=BLOCK, rest=0.25):
    """Concurrency 1: blocks of ``block`` clips scored offline one at a
    time, then the same clips sent one request at a time, so that both see
    the same background load. A pause after each block lets the finished
    side's OpenMP threads stop spinning (KMP_BLOCKTIME, 200 ms) before the
    other side runs; each side's first clip after it (its threads asleep,
    caches cold: an artifact of alternating) is not counted. Returns
    send_all's figures (wall = the requests' own time) and the offline
    latencies (ms)."""
    import httpx
    latencies, problems, timings, single = [], [], [], []
    with httpx.Client(timeout=300) as http:
        for start in range(0, requests, block):
            clips = [i % len(files) for i in range(
                start, min(start + block, requests))]
            off.ask('single', [files[clips[0]]])
            single += [1000 * off.ask('single', [files[k]])['seconds']
                       for k in clips]
            time.sleep(rest)
            http.post(server.url + '/paddlespeech/cls',
                      content=good[clips[0]][0])
            for k in clips:
                t, r = time.perf_counter(), None
                try:
                    r = http.post(server.url + '/paddlespeech/cls',
                                  content=good[k][0])
                    problem = check(r, good[k][1])
                except httpx.HTTPError as e:
                    problem = f'{type(e).__name__}: {e}'
                latencies.append(time.perf_counter() - t)
                timings += stages(r, latencies[-1])
                if problem:
                    problems.append(f'request {start}+: {problem}')
            time.sleep(rest)
    return (sum(latencies), latencies, problems, timings), single


def alternated(server, off, files, good, requests, concurrency, rounds,
               rest=0.25):
    """``requests`` at ``concurrency`` in ``rounds`` bursts (a multiple of
    the concurrency each), each after one offline batch-8 pass over the
    files, so that both see the same background load; pauses as in
    :func:`interleaved`. Returns send_all's figures summed over the bursts
    and the offline clips/s of the passes between them."""
    per = -(-requests // (rounds * concurrency)) * concurrency
    wall, latencies, problems, timings = 0.0, [], [], []
    offline_s, done = 0.0, 0
    while done < requests:
        offline_s += off.ask('batch8', files)['seconds']
        time.sleep(rest)
        n = min(per, requests - done)
        w, lat, probs, tims = asyncio.run(send_all(
            server.url, [good[(done + i) % len(good)] for i in range(n)],
            concurrency))
        wall, done = wall + w, done + n
        latencies += lat
        problems += probs
        timings += tims
        time.sleep(rest)
    passes = -(-requests // per)
    return (wall, latencies, problems, timings), passes * len(files) / offline_s


def mixed_run(a, server, good, bad):
    c = max(a.concurrency)
    every = max(1, round(1 / a.bad_fraction)) if a.bad_fraction else 0
    jobs = [bad[(i // every) % len(bad)] if every and i % every == every - 1
            else good[i % len(good)] for i in range(a.mixed)]
    first = min(200, a.mixed)
    rss = {}

    def on_done(n):
        if n == first:
            rss['first'] = server.memory_mb()[0]

    print(f'mixed: {a.mixed} requests at concurrency {c}', file=sys.stderr)
    before = server.batches()
    res = asyncio.run(send_all(server.url, jobs, c, on_done))
    rss['last'] = server.memory_mb()[0]
    n_bad = sum(expect is None for _, expect in jobs)
    row = summary(f'serve.py, mixed ({n_bad} bad inputs)', c, *res, n_bad,
                  server.memory_mb()[1], mixed=True,
                  batches=server.batches(before))
    return {'rss_first_mb': rss['first'], 'after': first,
            'rss_last_mb': rss['last'], 'requests': a.mixed}, row


def targets(off, rows, mixed, concurrency):
    by_c = {r['concurrency']: r for r in rows if not r['mixed']}
    out = []
    c = max(concurrency)
    if c > 1 and c in by_c:
        out.append({'what': f'throughput at concurrency {c} vs offline '
                    f'deploy/predict.py --batch_size 8 (passes between its '
                    f'bursts)', 'value': by_c[c]['throughput'],
                    'ref': by_c[c]['offline_clips_per_s'],
                    'unit': 'req/s vs clips/s',
                    'target': '≥ 0.8x', 'ok': lambda r: r >= 0.8})
    if 1 in by_c:
        out.append({'what': 'p99 latency at concurrency 1 vs offline '
                    'single-clip latency (median)',
                    'value': by_c[1]['p99_ms'], 'ref': off['latency_ms'],
                    'unit': 'ms', 'target': '≤ 1.3x',
                    'ok': lambda r: r <= 1.3})
        out.append({'what': 'p99 latency at concurrency 1 vs offline p99 '
                    '(the same statistic)', 'value': by_c[1]['p99_ms'],
                    'ref': off['latency_p99_ms'], 'unit': 'ms'})
    if mixed:
        m = rows[-1]
        out.append({'what': f'errors over {m["requests"]} requests with '
                    f'{m["bad"]} bad inputs', 'value': m['errors'],
                    'unit': 'errors', 'target': '0',
                    'ok': lambda v: v == 0})
        out.append({'what': f'RSS after {mixed["requests"]} requests minus '
                    f'after the first {mixed["after"]}',
                    'value': mixed['rss_last_mb'] - mixed['rss_first_mb'],
                    'unit': 'MB', 'target': '≤ 50 MB',
                    'ok': lambda v: v <= 50})
    for t in out:
        t['ratio'] = t['value'] / t['ref'] if 'ref' in t else None
        if 'ok' in t:
            t['met'] = bool(t.pop('ok')(t['ratio'] if 'ref' in t
                                        else t['value']))
    return out


def table(off, rows, goals):
    clips = len(off['top1'])
    lines = ['| measurement | concurrency | requests | throughput (/s) | '
             'p50 ms | p95 ms | p99 ms | errors | server peak RSS MB | '
             'batches run (size: count) |', '|---' * 10 + '|',
             f"| offline deploy/predict.py path, --batch_size 8, before and "
             f"after the served runs | - | {off['passes']} x {clips} clips | "
             f"{off['clips_per_s']:.1f} | | | | | | |"]
    if 'latency_ms' in off:
        lines.append(f"| offline, one clip at a time, in blocks alternating "
                     f"with the concurrency 1 requests | 1 | "
                     f"{rows[0]['requests']} | "
                     f"{1000 / off['latency_ms']:.1f} | "
                     f"{off['latency_ms']:.1f} | | "
                     f"{off['latency_p99_ms']:.1f} | | | |")
    for r in rows:
        if 'offline_clips_per_s' in r:
            lines.append(f"| offline --batch_size 8, passes between the "
                         f"bursts of the next row | - | | "
                         f"{r['offline_clips_per_s']:.1f} | | | | | | |")
        batches = ' '.join(f'{k}: {n}' for k, n in sorted(
            r['batches'].items(), key=lambda kv: int(kv[0])))
        lines.append(f"| {r['what']} | {r['concurrency']} | {r['requests']} "
                     f"| {r['throughput']:.1f} | {r['p50_ms']:.1f} | "
                     f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} "
                     f"| {r['peak_rss_mb']:.0f} | {batches} |")
    lines += ['', 'Where the good answers\' latency went, p50 / p99 ms '
              '(the server\'s Server-Timing header; the rest is HTTP, the '
              'parsing of the request and the client):', '',
              '| measurement | queued in the batcher | predictor run (its '
              'batch) | reading the audio | the rest |', '|---|---|---|---|---|']
    for r in rows:
        if 'queue_50_ms' in r:
            lines.append(f"| {r['what']} | " + ' | '.join(
                f"{r[f'{k}_50_ms']:.1f} / {r[f'{k}_99_ms']:.1f}"
                for k in STAGES) + ' |')
    lines += ['', '| target | measured | compared with | ratio | target | '
              'met |', '|---|---|---|---|---|---|']
    for t in goals:
        ref = f"{t['ref']:.1f}" if 'ref' in t else ''
        ratio = f"{t['ratio']:.2f}x" if t['ratio'] is not None else ''
        met = {True: 'yes', False: '**no**', None: ''}[t.get('met')]
        lines.append(f"| {t['what']} | {t['value']:.1f} {t['unit']} | {ref} "
                     f"| {ratio} | {t.get('target', '')} | {met} |")
    return '\n'.join(lines)


async def _one_stream(url, wave, sr, seconds, chunk, latencies, start,
                      pace=1.0, on_sent=None):
    """One real-time stream of ``wave`` repeated for ``seconds``; appends
    each window's latency (its message's arrival minus the moment the
    end of its audio was sent) to ``latencies``. ``pace``: times real
    time (0: as fast as the server takes it); ``on_sent(seconds)`` after
    each chunk."""
    import websockets
    sent_at = {}  # audio seconds sent -> when
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({'sample_rate': sr, 'format': 'f32le',
                                  'top_k': 1}))

        async def receive():
            async for m in ws:
                m = json.loads(m)
                if m['type'] == 'start':
                    start.update(m)
                elif m['type'] == 'scores':
                    due = min((t for t in sent_at if t >= m['end'] - 1e-6),
                              default=None)
                    if due is not None:
                        latencies.append(time.monotonic() - sent_at[due])
        reader = asyncio.ensure_future(receive())
        began, at, step = time.monotonic(), 0, int(chunk * sr)
        total = int(seconds * sr)
        while at < total:
            piece = wave[np.arange(at, at + step) % len(wave)]
            await ws.send(piece.astype('<f4').tobytes())
            at += step
            sent_at[round(at / sr, 6)] = time.monotonic()
            if on_sent is not None:
                on_sent(at / sr)
            if pace:
                await asyncio.sleep(max(0.0, began + at / sr / pace -
                                        time.monotonic()))
        await ws.send(json.dumps({'type': 'end'}))
        await reader


def stream_rows(a):
    """``--streams``: for each count, that many concurrent real-time
    streams of ``--stream_seconds``; p95 latency of a window's message
    after its audio, and whether the streams kept up (the last tenth's
    median latency under a hop plus a second: no growing backlog)."""
    server = Server(a.model_dir, a.max_batch_size, a.max_wait_ms,
                    a.cpu_threads)
    rows = []
    try:
        server.wait_ready()
        import httpx
        info = httpx.get(server.url + '/v1/model').json()
        assert info['streaming'], 'the server cannot stream'
        sr, start = 32000, {}  # waves' rate; the server resamples
        url = server.url.replace('http://', 'ws://') + '/v1/stream'
        wave = waves(1, 5.0)[0]
        for n in a.streams:
            per = [[] for _ in range(n)]

            async def run_all():
                await asyncio.gather(*(_one_stream(
                    url, wave, sr, a.stream_seconds, 0.1, per[i], start)
                    for i in range(n)))
            asyncio.run(run_all())
            hop = start['hop_seconds']
            every = np.concatenate([np.array(p) for p in per])
            tail = np.concatenate([np.array(p[-max(1, len(p) // 10):])
                                   for p in per])
            rows.append({'streams': n, 'windows': int(every.size),
                         'p50_ms': 1000 * float(np.percentile(every, 50)),
                         'p95_ms': 1000 * float(np.percentile(every, 95)),
                         'hop_ms': 1000 * hop,
                         'kept_up': bool(np.median(tail) < hop + 1.0)})
            print(f"{n} streams: {rows[-1]['windows']} windows, p50 "
                  f"{rows[-1]['p50_ms']:.0f} ms, p95 {rows[-1]['p95_ms']:.0f}"
                  f" ms (hop {1000 * hop:.0f} ms), kept up: "
                  f"{rows[-1]['kept_up']}", flush=True)
    finally:
        status = server.stop()
    sustained = [r['streams'] for r in rows if r['kept_up']]
    return {'rows': rows, 'max_streams': max(sustained, default=0),
            'server_exit': status}


def stream_memory(a, opened=1000):
    """``--stream_memory``: the server's memory (its process and the
    inference process) over one stream of ``--memory_seconds`` of audio
    sent as fast as the server takes it, at audio minute 5 and at the end;
    then around ``opened`` short streams opened and closed (8 at a
    time)."""
    server = Server(a.model_dir, a.max_batch_size, a.max_wait_ms,
                    a.cpu_threads)
    out = {}
    try:
        server.wait_ready()
        sr, start = 32000, {}
        url = server.url.replace('http://', 'ws://') + '/v1/stream'
        wave = waves(1, 5.0)[0]
        marks = {}

        def sample(sent):
            for minute in (5, 30, 60):
                if sent >= 60 * minute and minute not in marks:
                    marks[minute] = server.memory_mb()[0]
        out['start_mb'] = server.memory_mb()[0]
        t = time.monotonic()
        asyncio.run(_one_stream(url, wave, sr, a.memory_seconds, 1.0, [],
                                start, pace=0, on_sent=sample))
        out['long_s'] = time.monotonic() - t
        out['end_mb'] = server.memory_mb()[0]
        out['minutes_mb'] = marks
        before, own_before = server.memory_mb()[0], server.own_mb()
        t = time.monotonic()

        async def short_ones(n):
            for _ in range(n):
                await _one_stream(url, wave, sr, 2.0, 0.5, [], {}, pace=0)

        async def all_short():
            await asyncio.gather(*(short_ones(opened // 8)
                                   for _ in range(8)))
        asyncio.run(all_short())
        out['opened'] = 8 * (opened // 8)
        out['opened_s'] = time.monotonic() - t
        out['before_opened_mb'], out['after_opened_mb'] = \
            before, server.memory_mb()[0]
        out['own_before_mb'], out['own_after_mb'] = own_before, \
            server.own_mb()
    finally:
        out['server_exit'] = server.stop()
    m = out['minutes_mb']
    print(f"one stream of {a.memory_seconds:.0f} s audio in "
          f"{out['long_s']:.0f} s: server RSS {out['start_mb']:.0f} MB at "
          f"start, " + ', '.join(f'{v:.0f} MB at minute {k}'
                                  for k, v in sorted(m.items())) +
          f", {out['end_mb']:.0f} MB at the end")
    print(f"{out['opened']} streams of 2 s opened and closed in "
          f"{out['opened_s']:.0f} s: {out['before_opened_mb']:.0f} -> "
          f"{out['after_opened_mb']:.0f} MB (the server's own process: "
          f"{out['own_before_mb']:.0f} -> {out['own_after_mb']:.0f} MB)")
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model_dir', help='an export (export_model.py)')
    p.add_argument('--arch', choices=['cnn6', 'cnn10', 'cnn14'],
                   help='instead of --model_dir: a random-weight export of '
                   'this backbone, made in --work_dir')
    p.add_argument('--concurrency', default='1,8,32',
                   help='comma-separated concurrent requests')
    p.add_argument('--requests', type=int, default=200,
                   help='requests per concurrency')
    p.add_argument('--mixed', type=int, default=2000,
                   help='requests of the mixed run (0: none)')
    p.add_argument('--bad_fraction', type=float, default=0.1)
    p.add_argument('--clips', type=int, default=16, help='distinct clips')
    p.add_argument('--seconds', type=float, default=5.0, help='clip length')
    p.add_argument('--reps', type=int, default=3,
                   help='offline batch-8 passes before the served runs, '
                   'and as many after (the median of all is the reference)')
    p.add_argument('--max_batch_size', type=int, default=8)
    p.add_argument('--max_wait_ms', type=float, default=10.0)
    p.add_argument('--cpu_threads', type=int, default=2)
    p.add_argument('--json', help='also write the figures to this file')
    p.add_argument('--markdown', help='also write header and table here')
    p.add_argument('--work_dir', help='default: a temporary directory')
    p.add_argument('--streams',
                   help='comma-separated counts of concurrent live streams '
                   '(WebSocket /v1/stream at real-time pace): run these '
                   'instead of the request load')
    p.add_argument('--stream_seconds', type=float, default=60.0,
                   help='audio per live stream')
    p.add_argument('--stream_memory', action='store_true',
                   help='instead: server memory over one long stream '
                   '(--memory_seconds, sent as fast as taken) and over '
                   '1,000 short streams opened and closed')
    p.add_argument('--memory_seconds', type=float, default=3600.0,
                   help='audio of --stream_memory\'s long stream')
    a = p.parse_args(argv)
    a.streams = sorted({int(c) for c in a.streams.split(',')}) \
        if a.streams else None
    if (a.model_dir is None) == (a.arch is None):
        p.error('give --model_dir or --arch')
    a.concurrency = sorted({int(c) for c in a.concurrency.split(',')})
    if min(a.concurrency) < 1 or a.requests < 1 or a.clips < 1:
        p.error('--concurrency, --requests and --clips must be positive')
    return a


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--offline_worker']:
        return offline_worker(argv[1], int(argv[2]))
    a = parse_args(argv)
    t0, (busy0, own0) = time.perf_counter(), busy_cpu_seconds()
    info = machine()
    with tempfile.TemporaryDirectory(prefix='load_') as tmp:
        work = Path(a.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if a.arch:
            from run import worker
            a.model_dir = worker('export', arch=a.arch,
                                 out_dir=str(work))['export_dir']
        if a.stream_memory:
            result = {'machine': info, 'stream_memory': stream_memory(a)}
            if a.json:
                Path(a.json).write_text(json.dumps(result, indent=1))
            return 0
        if a.streams:
            result = {'machine': info, 'streams': stream_rows(a)}
            print(f"max real-time streams: "
                  f"{result['streams']['max_streams']}")
            if a.json:
                Path(a.json).write_text(json.dumps(result, indent=1))
            return 0
        off, rows, mixed = measure(a, work)
    elapsed = time.perf_counter() - t0
    busy1, own1 = busy_cpu_seconds()
    other = max(0.0, (busy1 - busy0) - (own1 - own0)) / elapsed
    goals = targets(off, rows, mixed, a.concurrency)
    model = f'{a.arch} (random weights)' if a.arch else a.model_dir
    head = (f"{info['cpu']}, {info['affinity']} cores, "
            f"{datetime.datetime.now().isoformat(timespec='seconds')}, "
            f"{elapsed:.0f} s; model {model}; {a.clips} clips of "
            f"{a.seconds:g} s; serve.py --max_batch_size {a.max_batch_size} "
            f"--max_wait_ms {a.max_wait_ms:g} --cpu_threads {a.cpu_threads}; "
            f"the client runs on the same cores\n\n"
            f"CPU flags: {' '.join(info['cpu_flags'])}\n\n"
            f"Other processes used {other:.2f} cores on average during the "
            f"run{' (figures unreliable)' if other > 0.25 else ''}.")
    text = head + '\n\n' + table(off, rows, goals)
    print(text)
    if a.json:
        Path(a.json).write_text(json.dumps(
            {'machine': info, 'offline': off, 'rows': rows, 'mixed': mixed,
             'targets': goals, 'other_cpu_cores': other}, indent=1))
    if a.markdown:
        Path(a.markdown).write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
