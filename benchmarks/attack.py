#!/usr/bin/env python3
"""Hostile clients against deploy/serve.py: what each attack gets back and
what it costs the server.

    PYTHONPATH=. python benchmarks/attack.py --model_dir exp/demo/export \
        [--slow_sockets 500] [--json out]
    PYTHONPATH=. python benchmarks/attack.py --arch cnn6     (random weights)

serve.py runs on a free 127.0.0.1 port with its default flags but short
socket timeouts (``--header_timeout``, ``--body_timeout``, so the run
takes seconds). Each attack is replayed in turn; a row gives the status
codes it got (``closed``: the server closed the socket without an answer,
``timeout``: no answer within the client's limit, ``499``: counted from
the server's log, where a client gone mid-body is one line), the time it
took, the server process's RSS before and after (the HTTP process; the
inference processes are a column of their own), new inference processes
(restarts) and the server's log lines with a traceback. After each attack
one normal request must be answered 200 (column ``then``). The last row
kills the inference process with requests in flight and reports what
happens, whatever it is.
"""
import argparse
import base64
import collections
import datetime
import io
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import (busy_cpu_seconds, machine, proc_status_mb,
                               waves)
from benchmarks.load import Server, children, wav_bytes

import numpy as np


def rss_mb(pid):
    rss = proc_status_mb(pid)
    return float('nan') if rss is None else rss


def inference_processes(pid):
    """The server's inference processes (multiprocessing spawns them;
    its resource tracker is left out)."""
    found = []
    for child in children(pid):
        try:
            cmd = Path(f'/proc/{child}/cmdline').read_bytes()
        except OSError:
            continue
        if b'spawn_main' in cmd:
            found.append(child)
    return found


def connect(port, timeout=30):
    s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    s.settimeout(timeout)
    return s


def answer_of(sock):
    """The status of what the server sent before closing, or ``closed``
    (nothing), ``timeout``, ``reset``."""
    data = b''
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return 'timeout'
    except ConnectionResetError:
        return 'reset' if not data else data.split(b' ', 2)[1].decode()
    finally:
        sock.close()
    return data.split(b' ', 2)[1].decode() if data else 'closed'


def raw_request(port, head, body=b'', timeout=120):
    try:
        s = connect(port, timeout)
    except ConnectionRefusedError:
        return 'refused'
    try:
        s.sendall(head + body)
    except OSError as e:
        s.close()
        return type(e).__name__
    return answer_of(s)


def post_json(port, body, extra=b''):
    return raw_request(port, b'POST /paddlespeech/cls HTTP/1.1\r\n'
                       b'Host: 127.0.0.1\r\nConnection: close\r\n' + extra +
                       b'Content-Length: %d\r\n\r\n' % len(body), body)


def multipart(port, files, fields=(), extra=b''):
    boundary = b'attackboundary'
    parts = [b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s'
             b'\r\n' % (boundary, k, v) for k, v in fields]
    parts += [b'--%s\r\nContent-Disposition: form-data; name="files"; '
              b'filename="%s"\r\nContent-Type: application/octet-stream'
              b'\r\n\r\n%s\r\n' % (boundary, name, data)
              for name, data in files]
    body = b''.join(parts) + b'--%s--\r\n' % boundary
    return raw_request(port, b'POST /v1/classify HTTP/1.1\r\nHost: '
                       b'127.0.0.1\r\nConnection: close\r\n' + extra +
                       b'Content-Type: multipart/form-data; boundary=%s\r\n'
                       b'Content-Length: %d\r\n\r\n' % (boundary, len(body)),
                       body)


def good_request(port, clip, timeout=120):
    body = json.dumps({'audio': base64.b64encode(clip).decode(),
                       'topk': 1}).encode()
    return raw_request(port, b'POST /paddlespeech/cls HTTP/1.1\r\nHost: '
                       b'127.0.0.1\r\nConnection: close\r\nContent-Length: '
                       b'%d\r\n\r\n' % len(body), body, timeout)


def one_hz_wav():
    """600 samples declared at 1 Hz: 10 minutes of audio to resample."""
    buf = io.BytesIO()
    import soundfile as sf
    sf.write(buf, np.zeros(600, np.float32), 1, format='WAV',
             subtype='PCM_16')
    return buf.getvalue()


def lying_flac(seconds=599, rate=384000, channels=8):
    """0.2 s of FLAC at ``rate`` x ``channels`` whose STREAMINFO claims
    ``seconds``: the header check's test (the data ends early)."""
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(0.2 * rate), channels), np.float32), rate,
             format='FLAC', subtype='PCM_16')
    data = bytearray(buf.getvalue())
    assert data[:4] == b'fLaC' and data[4] & 0x7f == 0  # STREAMINFO first
    # bytes 8+10 .. 8+17: rate (20 bits), channels (3), bits (5), total (36)
    at = 8 + 10
    field = int.from_bytes(data[at:at + 8], 'big')
    field = (field & ~((1 << 36) - 1)) | (seconds * rate)
    data[at:at + 8] = field.to_bytes(8, 'big')
    return bytes(data)


def runs(codes):
    """``503 x4, 200``: equal codes in a row counted, order kept."""
    out = []
    for code in codes:
        if out and out[-1][0] == code:
            out[-1][1] += 1
        else:
            out.append([code, 1])
    return ', '.join(f'{c} x{n}' if n > 1 else str(c) for c, n in out)


def counted(codes):
    return ', '.join(f'{k} x{n}' if n > 1 else str(k)
                     for k, n in sorted(collections.Counter(codes).items()))


class Attacks:
    def __init__(self, server, clip, a):
        self.server, self.clip, self.a = server, clip, a
        self.port = server.port
        self.first_children = set(inference_processes(server.proc.pid))
        self.seen_children = set(self.first_children)
        self.log_at = 0
        self.rows = []

    def log_lines(self):
        """The server's log lines since the last call."""
        self.server.log.flush()
        self.server.log.seek(self.log_at)
        text = self.server.log.read()
        self.log_at += len(text)
        return text.splitlines()

    def inference_mb(self):
        pid = self.server.proc.pid
        return sum(rss_mb(p) for p in inference_processes(pid))

    def run(self, name, attack):
        pid = self.server.proc.pid
        before = rss_mb(pid)
        self.log_lines()
        t = time.perf_counter()
        try:
            codes = attack()
        except Exception as e:  # the row says what broke
            codes = [f'client error: {type(e).__name__}: {e}'[:120]]
        seconds = time.perf_counter() - t
        time.sleep(0.3)
        lines = self.log_lines()
        alive = self.server.proc.poll() is None
        then = 'server exited' if not alive else good_request(
            self.port, self.clip)
        lines += self.log_lines()
        now = set(inference_processes(pid)) if alive else set()
        self.seen_children |= now
        row = {'attack': name, 'codes': codes if isinstance(codes, str)
               else counted(codes), 'seconds': seconds,
               'rss_before_mb': before, 'rss_after_mb': rss_mb(pid),
               'inference_rss_mb': self.inference_mb() if alive else 0.0,
               'restarts': len(self.seen_children - self.first_children),
               'then': then,
               'tracebacks': sum('Traceback' in x for x in lines),
               'log_lines': len(lines),
               'exit': None if alive else self.server.proc.returncode}
        self.rows.append(row)
        print(f"{name}: {row['codes']} ({seconds:.1f} s), then {then}",
              file=sys.stderr)
        return row

    # ------------------------------------------------------------ attacks

    def slow_sockets(self):
        """Half the sockets send nothing, half drip header bytes; a normal
        request meanwhile; every socket must be closed by the server."""
        n = self.a.slow_sockets
        socks = [connect(self.port, 60) for _ in range(n)]
        stop = threading.Event()

        def drip():
            line = iter(b'GET /healthz HTTP/1.1\r\nX-Slow: ' + b'a' * 10**6)
            while not stop.wait(0.2):
                byte = bytes([next(line)])
                for s in socks[n // 2:]:
                    try:
                        s.send(byte)
                    except OSError:
                        pass
        dripper = threading.Thread(target=drip)
        dripper.start()
        try:
            meanwhile = good_request(self.port, self.clip)
            with ThreadPoolExecutor(64) as pool:
                codes = list(pool.map(answer_of, socks))
        finally:
            stop.set()
            dripper.join()
        return codes + [f'normal request meanwhile {meanwhile}']

    def drip_bodies(self):
        n = self.a.slow_sockets // 2
        socks = [connect(self.port, 60) for _ in range(n)]
        for s in socks:
            s.sendall(b'POST /paddlespeech/cls HTTP/1.1\r\nHost: 127.0.0.1'
                      b'\r\nContent-Length: 1000000\r\n\r\n{"audio": "')
        stop = threading.Event()

        def drip():
            while not stop.wait(0.2):
                for s in socks:
                    try:
                        s.send(b'A')
                    except OSError:
                        pass
        dripper = threading.Thread(target=drip)
        dripper.start()
        try:
            with ThreadPoolExecutor(64) as pool:
                codes = list(pool.map(answer_of, socks))
        finally:
            stop.set()
            dripper.join()
        return codes + self._logged_499()

    def _logged_499(self):
        time.sleep(0.3)
        self.server.log.flush()
        self.server.log.seek(self.log_at)
        text = self.server.log.read()
        return ['499 (log)'] * text.count('" 499 ')

    def disconnect_mid_body(self):
        for i in range(self.a.disconnects):
            s = connect(self.port)
            s.sendall(b'POST /paddlespeech/cls HTTP/1.1\r\nHost: 127.0.0.1'
                      b'\r\nContent-Length: 100000\r\n\r\n' + b'{' * 5000)
            time.sleep(0.02)
            s.close()
        return self._logged_499()

    def nested_json(self):
        return [post_json(self.port, b'[' * 100_000 + b']' * 100_000),
                post_json(self.port, b'{"a":' * 100_000 + b'1' +
                          b'}' * 100_000)]

    def huge_top_k(self):
        audio = base64.b64encode(self.clip)
        return [multipart(self.port, [(b'a.wav', self.clip)],
                          [(b'top_k', b'9' * 5000)]),
                post_json(self.port, b'{"audio": "%s", "topk": %s}' % (
                    audio, b'9' * 5000))]

    def one_hz(self):
        return [good_request(self.port, one_hz_wav())
                for _ in range(self.a.parallel)]

    def flac_header(self):
        return [multipart(self.port, [(b'lie.flac', lying_flac())])]

    def cross_origin(self):
        evil = b'Origin: https://evil.example\r\n'
        audio = json.dumps({'audio': base64.b64encode(self.clip).decode()})
        return [multipart(self.port, [(b'a.wav', self.clip)], extra=evil),
                post_json(self.port, audio.encode(),
                          evil + b'Content-Type: text/plain\r\n'),
                multipart(self.port, [(b'a.wav', self.clip)],
                          extra=b'Sec-Fetch-Site: cross-site\r\n')]

    def bad_host(self):
        return [raw_request(self.port, b'GET /v1/model HTTP/1.1\r\nHost: '
                            b'attacker.example:%d\r\nConnection: close\r\n'
                            b'\r\n' % self.port)]

    def kill_child(self):
        """SIGKILL of the inference process with requests in flight, then
        requests every 0.5 s for up to 30 s: what they get back, in
        order."""
        pool = ThreadPoolExecutor(self.a.parallel)
        long = wav_bytes(waves(1, 60.0, seed=3)[0])
        pending = [pool.submit(good_request, self.port, long, 30)
                   for _ in range(self.a.parallel)]
        import httpx
        end = time.monotonic() + 30
        while time.monotonic() < end and not httpx.get(
                f'{self.server.url}/v1/stats').json()['requests_in_flight']:
            time.sleep(0.01)
        kids = inference_processes(self.server.proc.pid)
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
        codes = [f'killed {len(kids)} inference process(es)', 'in flight: ' +
                 counted(f.result() for f in pending)]
        pool.shutdown()
        end, after = time.monotonic() + 30, []
        while time.monotonic() < end and self.server.proc.poll() is None:
            after.append(good_request(self.port, self.clip, 10))
            if after[-1] == '200':
                break
            time.sleep(0.5)
        codes.append('then every 0.5 s: ' + runs(after))
        if self.server.proc.poll() is not None:
            codes.append(f'server exited {self.server.proc.returncode}')
        return '; '.join(codes)


def table(rows):
    lines = ['| attack | status codes | time s | server RSS MB before -> '
             'after | inference RSS MB | child restarts | then a normal '
             'request | tracebacks in log |', '|---' * 8 + '|']
    for r in rows:
        lines.append(
            f"| {r['attack']} | {r['codes']} | {r['seconds']:.2f} | "
            f"{r['rss_before_mb']:.0f} -> {r['rss_after_mb']:.0f} | "
            f"{r['inference_rss_mb']:.0f} | {r['restarts']} | {r['then']} | "
            f"{r['tracebacks']} |")
    return '\n'.join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model_dir', help='an export (export_model.py)')
    p.add_argument('--arch', choices=['cnn6', 'cnn10', 'cnn14'],
                   help='instead of --model_dir: a random-weight export of '
                   'this backbone, made in --work_dir')
    p.add_argument('--slow_sockets', type=int, default=200,
                   help='sockets of the slow-socket attacks')
    p.add_argument('--disconnects', type=int, default=20)
    p.add_argument('--parallel', type=int, default=4,
                   help='parallel requests of the 1 Hz and kill attacks')
    p.add_argument('--header_timeout', type=float, default=2.0)
    p.add_argument('--body_timeout', type=float, default=4.0)
    p.add_argument('--no_kill', action='store_true',
                   help='leave out the kill -9 of the inference process')
    p.add_argument('--json', help='also write the rows to this file')
    p.add_argument('--work_dir', help='default: a temporary directory')
    a = p.parse_args(argv)
    if (a.model_dir is None) == (a.arch is None):
        p.error('give --model_dir or --arch')
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    t0, (busy0, own0) = time.perf_counter(), busy_cpu_seconds()
    info = machine()
    with tempfile.TemporaryDirectory(prefix='attack_') as tmp:
        work = Path(a.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if a.arch:
            from run import worker
            a.model_dir = worker('export', arch=a.arch,
                                 out_dir=str(work))['export_dir']
        # serve.py's default limits (load.py's Server sets lower ones)
        server = Server(a.model_dir, 8, 10.0, 2, extra=(
            '--max_seconds', '600', '--max_upload_mb', '20',
            '--header_timeout', str(a.header_timeout), '--body_timeout',
            str(a.body_timeout)))
        try:
            server.wait_ready()
            clip = wav_bytes(waves(1, 1.0, seed=2)[0])
            at = Attacks(server, clip, a)
            for name, attack in [
                    (f'{a.slow_sockets} slow sockets (half silent, half '
                     f'dripping headers)', at.slow_sockets),
                    (f'{a.slow_sockets // 2} sockets dripping a body',
                     at.drip_bodies),
                    (f'{a.disconnects} disconnects mid-body',
                     at.disconnect_mid_body),
                    ('JSON nested 100,000 deep (array, object)',
                     at.nested_json),
                    ('top_k of 5,000 digits (form field, JSON)',
                     at.huge_top_k),
                    (f'{a.parallel} x 600-sample wav declared at 1 Hz',
                     at.one_hz),
                    ('FLAC header claiming 384 kHz x 8 ch x 599 s (0.2 s '
                     'of data)', at.flac_header),
                    ('cross-origin POST (multipart, text/plain, '
                     'Sec-Fetch-Site)', at.cross_origin),
                    ('bad Host (DNS rebinding)', at.bad_host)]:
                at.run(name, attack)
            if not a.no_kill:
                at.run(f'kill -9 of the inference process, {a.parallel} '
                       f'requests in flight', at.kill_child)
        finally:
            status = server.stop()
    elapsed = time.perf_counter() - t0
    busy1, own1 = busy_cpu_seconds()
    other = max(0.0, (busy1 - busy0) - (own1 - own0)) / elapsed
    model = f'{a.arch} (random weights)' if a.arch else a.model_dir
    head = (f"{info['cpu']}, {info['affinity']} cores, "
            f"{datetime.datetime.now().isoformat(timespec='seconds')}, "
            f"{elapsed:.0f} s; model {model}; "
            f"serve.py defaults but --header_timeout {a.header_timeout:g} "
            f"--body_timeout {a.body_timeout:g}; server exit status after "
            f"SIGTERM: {status}\n\n"
            f"CPU flags: {' '.join(info['cpu_flags'])}\n\n"
            f"Other processes used {other:.2f} cores on average during the "
            f"run{' (figures unreliable)' if other > 0.25 else ''}.")
    print(head + '\n\n' + table(at.rows))
    if a.json:
        Path(a.json).write_text(json.dumps(
            {'machine': info, 'rows': at.rows, 'exit_status': status,
             'other_cpu_cores': other}, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
