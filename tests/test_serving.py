"""deploy/serve.py and paddlespeech.cls.serving: PaddleSpeech's client API,
multipart uploads, bad inputs, micro-batching, API key, SIGTERM, the page
in a real browser. Results are checked against deploy/predict.py run on
the same files."""
import base64
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.browser import browser  # noqa: F401  (the fixture)
from tests.conftest import ROOT, run_script, script_env
from paddlespeech.cls.export import export
from paddlespeech.cls.inference import Predictor
from paddlespeech.cls.serving import MicroBatcher, Service, create_app
from paddlespeech.cls.serving.batcher import Closed, GaveUp, Unavailable
from paddlespeech.cls.serving.process import ProcessPredictor
from paddlespeech.cls.serving.protocol import parse_server_timing
from tests.test_recipe import parse_blocks

MAX_SECONDS = 20
MAX_UPLOAD_MB = 1


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class ThreadServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread of this process."""

    def __init__(self, app):
        import uvicorn
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.server = uvicorn.Server(uvicorn.Config(
            app, host='127.0.0.1', port=self.port, access_log=False,
            log_level='warning'))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_ready(self.url)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)


def wait_ready(url, proc=None, timeout=60, headers=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc is None or proc.poll() is None, proc.communicate()
        try:
            if httpx.get(url + '/readyz', headers=headers).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f'{url} not ready after {timeout} s')


def tone(path, seconds, sr=32000, freq=440.0, channels=1, subtype=None):
    t = np.arange(int(seconds * sr)) / sr
    wav = 0.3 * np.sin(2 * np.pi * freq * t)
    wav = np.stack([wav] * channels, axis=1) if channels > 1 else wav
    sf.write(str(path), wav.astype(np.float32), sr, subtype=subtype)
    return path


@pytest.fixture(scope='module')
def model(trained_checkpoint, tmp_path_factory):
    return export(trained_checkpoint, tmp_path_factory.mktemp('serve') /
                  'export')


@pytest.fixture(scope='module')
def clips(tiny_dataset, tmp_path_factory):
    """Dataset clips (0.5 s, 44.1 kHz) plus other formats and lengths."""
    tmp = tmp_path_factory.mktemp('serve_clips')
    files = sorted((tiny_dataset / 'audio').glob('*.wav'))[:6]
    data, sr = sf.read(str(files[1]))
    sf.write(str(tmp / 'stereo.flac'), np.stack([data, 0.5 * data], 1), sr)
    files.append(tmp / 'stereo.flac')
    files.append(tone(tmp / 'long_12s.wav', 12.0, freq=150))  # 2 windows
    return files


@pytest.fixture(scope='module')
def expected(model, clips):
    """``{path: {label: score}}`` printed by deploy/predict.py (top 3)."""
    out = run_script('deploy/predict.py', '--model_dir', model, '--wav',
                     *clips, '--top_k', 3, '--device', 'cpu',
                     '--window_seconds', 10, '--cpu_threads', 1)
    return parse_blocks(out.stdout)


def service(model, **kw):
    return Service(model, lambda: Predictor(str(model), device='cpu',
                                            cpu_threads=1), **kw)


@pytest.fixture(scope='module')
def server(model):
    """One in-process server for the fast tests: no API key, a 1 MB
    upload limit, 20 s of audio at most, 10 s windows; batches wait up to
    1 s for requests being read (only then)."""
    app = create_app(service(model, max_batch_size=8, max_wait_ms=1000,
                             max_seconds=MAX_SECONDS, window_seconds=10),
                     max_upload_mb=MAX_UPLOAD_MB)
    with ThreadServer(app) as s:
        yield s


def b64(path):
    return base64.b64encode(open(path, 'rb').read()).decode('utf8')


def upstream_post(url, audio, topk=1):
    """Exactly what ``paddlespeech_client cls`` sends:
    ``requests.post(url, data=json.dumps({"audio": ..., "topk": ...}))``
    (a JSON body without a Content-Type header)."""
    return httpx.post(url + '/paddlespeech/cls',
                      content=json.dumps({'audio': audio, 'topk': topk}))


def best(scores):
    return max(scores, key=scores.get)


def test_upstream_client_request(server, clips, expected):
    for path in clips:
        r = upstream_post(server.url, b64(path), topk=2)
        assert r.status_code == 200, r.text
        body = r.json()
        want = sorted(expected[str(path)].items(), key=lambda kv: -kv[1])[:2]
        assert body == {'success': True, 'code': 200,
                        'message': {'description': 'success'},
                        'result': {'topk': 2, 'results': [
                            {'class_name': label, 'prob': prob}
                            for label, prob in want]}}, path
    r = httpx.get(server.url + '/paddlespeech/cls/help')
    assert r.json() == {'success': 'True', 'code': 200,
                        'message': {'global': 'success'},
                        'result': {'description': 'cls server',
                                   'input': 'base64 string of wavfile',
                                   'output': 'classification result'}}


def server_timing(response):
    return parse_server_timing(response.headers['server-timing'])


def test_server_timing_shows_no_wait_when_idle(server, clips, caplog):
    """A lone request is not held for max_wait_ms (1 s here): its queue
    time is the hand-over between threads, and the stages add up to no
    more than the time until the response started."""
    caplog.set_level(logging.INFO, 'paddlespeech.cls.serving')
    caplog.clear()
    t = time.perf_counter()
    r = upstream_post(server.url, b64(clips[0]))
    client_ms = 1000 * (time.perf_counter() - t)
    assert r.status_code == 200, r.text
    ms = server_timing(r)
    assert list(ms) == ['decode', 'queue', 'inference', 'total']
    assert 0 <= ms['queue'] < 100, ms
    assert ms['inference'] > 0 and ms['decode'] > 0, ms
    assert ms['decode'] + ms['queue'] + ms['inference'] <= ms['total'] + 0.05
    assert ms['total'] <= client_ms
    (line,) = [x for x in access_lines(caplog, 1) if 'POST' in x]
    assert '"POST /paddlespeech/cls" 200' in line
    logged = re.search(r'\(decode ([\d.]+), queue ([\d.]+), inference '
                       r'([\d.]+)\)$', line)
    assert logged, line
    np.testing.assert_allclose([float(x) for x in logged.groups()],
                               [ms['decode'], ms['queue'], ms['inference']],
                               atol=0.051)
    files = [('files', (p.name, open(p, 'rb').read())) for p in clips[:2]]
    r = httpx.post(server.url + '/v1/classify', files=files)
    assert set(server_timing(r)) == {'decode', 'queue', 'inference', 'total'}
    assert 'server-timing' not in httpx.get(server.url + '/v1/model').headers


def test_multipart_several_files(server, clips, expected, tmp_path):
    bad = tmp_path / 'notes.wav'
    bad.write_text('not audio')
    names = [clips[0], bad, clips[-2], clips[-1]]  # wav, bad, flac, 12 s
    r = httpx.post(server.url + '/v1/classify', data={'top_k': '3'},
                   files=[('files', (p.name, open(p, 'rb').read()))
                          for p in names])
    assert r.status_code == 200, r.text
    results = r.json()['results']
    assert [x['file'] for x in results] == [p.name for p in names]
    assert results[1] == {'file': 'notes.wav', 'status': 422, 'error':
                          'notes.wav: cannot read audio (Format not '
                          'recognised)'}
    for x, path in zip(results[::2] + results[3:], names[::2] + names[3:]):
        assert dict(zip(x['labels'], x['scores'])) == expected[str(path)]
        assert x['duration'] == pytest.approx(sf.info(str(path)).duration)
    assert results[3]['duration'] == 12.0


def test_model_health_ready(server, model):
    assert httpx.get(server.url + '/healthz').json() == {'status': 'alive'}
    assert httpx.get(server.url + '/readyz').json() == {'status': 'ready'}
    info = httpx.get(server.url + '/v1/model').json()
    meta = json.loads((model / 'model.json').read_text())
    assert info['labels'] == meta['label_list'] == [
        'Low hum', 'High beeps', 'White noise']
    assert info['feature'] == meta['feature']
    assert info['multi_label'] is False and info['input'] == 'logmel'
    assert info['backbone'] == meta['backbone'] == 'cnn6'
    assert info['thresholds'] is None  # not calibrated
    page = httpx.get(server.url + '/')
    assert page.status_code == 200 and 'id="file"' in page.text
    assert 'src="http' not in page.text and 'href="http' not in page.text


def _nan_wav(path):
    wav = np.full(16000, 0.1, np.float32)
    wav[100] = np.nan
    sf.write(str(path), wav, 16000, subtype='FLOAT')
    return path


def access_lines(caplog, count):
    """The server's log lines, once ``count`` are there (it writes each
    just after sending its answer)."""
    end = time.monotonic() + 5
    while True:
        lines = [r.getMessage() for r in caplog.records
                 if r.name == 'paddlespeech.cls.serving']
        if len(lines) >= count or time.monotonic() > end:
            return lines
        time.sleep(0.01)


def test_bad_inputs_are_4xx_and_the_next_request_is_served(
        server, clips, expected, tmp_path, caplog):
    url, good = server.url, clips[0]
    too_long = tone(tmp_path / 'long.wav', MAX_SECONDS + 1, sr=8000)
    nan = _nan_wav(tmp_path / 'nan.wav')
    big = b'\0' * (MAX_UPLOAD_MB * 2**20 + 1)

    def chunks():
        for _ in range(MAX_UPLOAD_MB * 4 + 1):  # no Content-Length
            yield b'\0' * 2**18

    def v1(*files, **kw):
        return httpx.post(url + '/v1/classify', files=[
            ('files', f) for f in files], **kw)

    cases = {
        'empty body': (lambda: httpx.post(url + '/paddlespeech/cls'),
                       400, 'empty request body'),
        'wrong JSON': (lambda: httpx.post(url + '/paddlespeech/cls',
                                          content=b'{"audio": '),
                       400, 'not JSON'),
        'JSON not an object': (lambda: httpx.post(
            url + '/paddlespeech/cls', content=b'[1]'), 400,
            'must be a JSON object'),
        'no audio field': (lambda: httpx.post(
            url + '/paddlespeech/cls', json={'wav': 'x'}), 400,
            '"audio" must be a string'),
        'bad base64': (lambda: upstream_post(url, 'abc$'), 400,
                       'not valid base64'),
        'empty audio': (lambda: upstream_post(url, ''), 400,
                        '"audio" is empty'),
        'bad topk': (lambda: upstream_post(url, b64(good), topk=0), 400,
                     'topk must be a positive integer'),
        'undecodable': (lambda: upstream_post(
            url, base64.b64encode(b'hello').decode()), 422,
            'audio: cannot read audio'),
        'NaN samples': (lambda: upstream_post(url, b64(nan)), 422,
                        'audio: contains NaN or infinite samples'),
        'too long': (lambda: upstream_post(url, b64(too_long)), 413,
                     f'21.0 s of audio; this service takes at most '
                     f'{MAX_SECONDS} s'),
        'too large': (lambda: httpx.post(url + '/paddlespeech/cls',
                                         content=big), 413,
                      'request body over 1 MB'),
        'too large, streamed': (lambda: httpx.post(
            url + '/paddlespeech/cls', content=chunks()), 413,
            'request body over 1 MB'),
        'v1 empty file': (lambda: v1(('a.wav', b'')), 422,
                          'a.wav: empty file (0 bytes)'),
        'v1 NaN': (lambda: v1(('nan.wav', nan.read_bytes())), 422,
                   'nan.wav: contains NaN'),
        'v1 no files': (lambda: httpx.post(url + '/v1/classify',
                                           files={'other': b'x'}), 400,
                        'no files'),
        'v1 not multipart': (lambda: httpx.post(url + '/v1/classify',
                                                json={}), 400,
                             'multipart/form-data'),
        'v1 bad top_k': (lambda: v1(('a.wav', good.read_bytes()),
                                    data={'top_k': 'x'}), 400,
                         'top_k must be a positive integer'),
        'v1 too large': (lambda: v1(('big.wav', big)), 413,
                         'request body over 1 MB'),
    }
    want = best(expected[str(good)])
    caplog.set_level(logging.INFO, 'paddlespeech.cls.serving')
    for name, (send, status, message) in cases.items():
        caplog.clear()
        r = send()
        assert r.status_code == status, (name, r.text)
        body = r.json()
        if r.url.path == '/paddlespeech/cls':
            assert body['success'] is False and body['code'] == status
            text = body['message']['description']
        else:
            text = body.get('error') or body['results'][0]['error']
        assert message in text, (name, text)
        ok = upstream_post(url, b64(good))
        assert ok.status_code == 200, (name, ok.text)
        assert ok.json()['result']['results'][0]['class_name'] == want
        # one access line each, the refused one naming the problem
        bad_line, ok_line = access_lines(caplog, 2)
        assert f' {status} ' in bad_line, bad_line
        assert re.search(r' ms( \(decode [^)]*\))? error: ', bad_line)
        assert bad_line.endswith(f' error: {text}'), bad_line
        assert ok_line.startswith('127.0.0.1 "POST /paddlespeech/cls" 200 ')
        assert 'error' not in ok_line


def test_concurrent_requests_are_batched_and_scored_alike(
        server, clips, expected):
    """Eight clips of 0.5 s sent at once (and one of 12 s among them):
    batches of more than one clip run, and every score equals the one
    deploy/predict.py prints for the file alone."""
    equal = [p for p in clips if sf.info(str(p)).duration == 0.5]
    assert len(equal) >= 6
    paths = equal * 2
    def batches():  # the debug counter: {batch size: batches run}
        return {int(k): n for k, n in httpx.get(
            server.url + '/v1/stats').json()['batches'].items()}

    before = batches()
    start = threading.Barrier(len(paths) + 1)

    def post(path):
        start.wait()
        r = httpx.post(server.url + '/v1/classify', params={'top_k': 3},
                       files={'files': (path.name, path.read_bytes())},
                       timeout=120)  # a busy machine: not a latency test
        return path, r

    with ThreadPoolExecutor(len(paths) + 1) as pool:
        futures = [pool.submit(post, p) for p in paths + [clips[-1]]]
        for f in futures:
            path, r = f.result()
            assert r.status_code == 200, r.text
            (x,) = r.json()['results']
            assert dict(zip(x['labels'], x['scores'])) == expected[str(path)]
    after = batches()
    new = {k: after[k] - before.get(k, 0) for k in after}
    assert sum(k * n for k, n in new.items()) == len(paths) + 2  # 12 s: 2
    assert max(k for k, n in new.items() if n) > 1, new


def _fake_predictor(waves):
    return np.stack([[float(w.sum()), float(len(w))] for w in waves])


def test_batcher_groups_equal_lengths_and_does_not_wait_idle():
    batcher = MicroBatcher(lambda: _fake_predictor, max_batch_size=4,
                           max_wait_ms=60_000).start()
    try:
        while not batcher.ready:
            time.sleep(0.01)
        rng = np.random.default_rng(0)
        waves = [rng.standard_normal(n).astype(np.float32)
                 for n in (100, 100, 100, 100, 100, 70)]
        alone = time.monotonic()
        batcher.score(waves[:1])  # no request being read: no wait
        assert time.monotonic() - alone < 30
        tickets = [batcher.incoming() for _ in waves]
        opened = [t.__enter__() for t in tickets]

        def one(i):
            try:
                return batcher.score([waves[i]], opened[i])
            finally:
                tickets[i].__exit__(None, None, None)

        with ThreadPoolExecutor(len(waves)) as pool:
            scores = list(pool.map(one, range(len(waves))))
        for w, s in zip(waves, scores):
            np.testing.assert_array_equal(s, _fake_predictor([w]))
        # 4 of 100 samples (full), then the fifth alone, the 70 alone
        assert batcher.batches_run() == {1: 3, 4: 1}
    finally:
        batcher.close()


def test_process_predictor_runs_beside_the_server_threads(model):
    """Paddle Inference keeps the GIL during a run; in a child process the
    server's threads go on meanwhile. Same scores as in-process; errors
    come back as exceptions; SIGTERM is left to the server; a dead child
    stops the batcher (and the server) instead of failing every batch."""
    rng = np.random.default_rng(1)
    waves = [0.1 * rng.standard_normal(10 * 32000).astype(np.float32)
             for _ in range(8)]
    local = Predictor(str(model), device='cpu', cpu_threads=1)
    child = ProcessPredictor(model_dir=str(model), device='cpu',
                             cpu_threads=1)
    try:
        assert child.labels == local.labels and child.meta == local.meta
        assert child.feature == local.feature
        ticks, done = [], threading.Event()

        def tick():
            while not done.is_set():
                ticks.append(time.monotonic())
                time.sleep(0.002)

        ticker = threading.Thread(target=tick)
        ticker.start()
        start = time.monotonic()
        scores = child(waves)
        end = time.monotonic()
        done.set()
        ticker.join()
        during = np.array([t for t in ticks if start <= t <= end])
        assert len(during) >= 5 and np.diff(during).max() < 0.5 * (
            end - start), (end - start, len(during))
        np.testing.assert_allclose(scores, local(waves), atol=1e-6)
        with pytest.raises(ValueError, match='same shape'):
            child([waves[0], waves[1][:1000]])
        child.process.terminate()  # SIGTERM: ignored
        np.testing.assert_allclose(child(waves[:1]), local(waves[:1]),
                                   atol=1e-6)

        # a dead child is replaced by make_predictor(): here the same dead
        # one again, so the one restart allowed fails and the batcher stops
        fatal = []
        batcher = MicroBatcher(lambda: child, on_fatal=fatal.append,
                               max_restarts=1, backoff_s=0.01).start()
        while not batcher.ready:
            time.sleep(0.01)
        child.process.kill()
        child.process.join()
        with pytest.raises(Unavailable):
            batcher.score(waves[:1])
        _until(lambda: fatal)
        batcher.close(30)
        (error,) = fatal
        assert isinstance(error, GaveUp) and not batcher.ready
        assert str(error).startswith(
            'the inference process died and could not be restarted '
            '(2 attempts, --max_restarts 1): the inference process ended '
            'while starting (exit code -9)'), error
        assert batcher.restarts == 1
        with pytest.raises(Closed):
            batcher.score(waves[:1])
    finally:
        child.close()
    assert not child.process.is_alive()


def test_api_key_on_and_off(model):
    import asyncio
    app = create_app(service(model), api_key='s3cret')  # not started

    async def requests():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport,
                                     base_url='http://test') as client:
            key = {'Authorization': 'Bearer s3cret'}
            wrong = {'Authorization': 'Bearer nope'}
            return [
                (await client.get('/healthz')).status_code,
                (await client.get('/')).status_code,
                (await client.get('/readyz')).status_code,
                (await client.get('/v1/model', headers=wrong)).status_code,
                (await client.post('/paddlespeech/cls')).json(),
                (await client.get('/readyz', headers=key)).status_code,
                (await client.get('/v1/stats', headers=key)).status_code]

    health, page, ready, wrong, upstream, ready_key, stats = \
        asyncio.run(requests())
    assert (health, page, ready, wrong) == (200, 200, 401, 401)
    assert upstream['code'] == 401 and 'API key' in upstream['message'][
        'description']
    assert (ready_key, stats) == (503, 200)  # through: loading, counters


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight(model, clips, expected,
                                                tmp_path):
    """Stage 6 (local/serve.sh, which execs serve.py), API key from the
    environment: SIGTERM while a 30 s file is being scored; that request
    completes, exit status 0."""
    port = free_port()
    env = script_env()
    env['PADDLESPEECH_CLS_API_KEY'] = 'k'
    key = {'Authorization': 'Bearer k'}
    proc = subprocess.Popen(
        ['bash', str(ROOT / 'local' / 'serve.sh'), str(ROOT / 'conf' /
                                                      'demo.yaml'),
         '--model_dir', str(model), '--port', str(port), '--device', 'cpu',
         '--cpu_threads', '1'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f'http://127.0.0.1:{port}'
    try:
        wait_ready(url, proc, headers=key)
        assert httpx.get(url + '/v1/model').status_code == 401
        long = tone(tmp_path / 'long.wav', 30, freq=150)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, url + '/v1/classify',
                                  headers=key, timeout=60, files={
                                      'files': ('long.wav',
                                                long.read_bytes())})
            while not httpx.get(url + '/v1/stats', headers=key).json()[
                    'requests_in_flight']:
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            r = pending.result()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert r.status_code == 200, r.text
    (x,) = r.json()['results']
    alone = parse_blocks(run_script(
        'deploy/predict.py', '--model_dir', model, '--wav', long, '--device',
        'cpu', '--cpu_threads', 1).stdout)[str(long)]
    assert x['duration'] == 30.0
    assert dict(zip(x['labels'], x['scores'])) == alone
    assert proc.returncode == 0, err
    assert 'POST /v1/classify" 200 ' in err and ' ms' in err


@pytest.mark.slow
def test_page_in_headless_chromium(browser, server, clips, expected):
    """The page in Debian's chromium (system chromedriver): a file chosen
    through it shows the bar chart with deploy/predict.py's top label."""
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver_path, chromium = browser
    options = webdriver.ChromeOptions()
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu',
                '--disable-dev-shm-usage', '--use-fake-ui-for-media-stream',
                '--use-fake-device-for-media-stream'):  # a beeping mic
        options.add_argument(arg)
    options.binary_location = chromium
    driver = webdriver.Chrome(service=webdriver.ChromeService(driver_path),
                              options=options)
    try:
        driver.get(server.url + '/')
        WebDriverWait(driver, 30).until(
            lambda d: 'classes' in d.find_element(By.ID, 'model').text)
        path = clips[-1]
        driver.find_element(By.ID, 'file').send_keys(str(path))
        bars = WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '#result .bar'))
        labels = [b.find_element(By.CLASS_NAME, 'label').text for b in bars]
        scores = [float(b.find_element(By.CLASS_NAME, 'score').text)
                  for b in bars]
        width = bars[0].find_element(By.CLASS_NAME, 'fill').value_of_css_property
        want = expected[str(path)]
        assert labels[0] == best(want)
        assert len(labels) == 3  # every class (top-k 5 of 3)
        assert scores[0] == pytest.approx(want[labels[0]], abs=5e-4)
        assert width('width') != '0px'
        # recording: the page's own WAV encoder, decoded by the server
        record = driver.find_element(By.ID, 'record')
        record.click()
        WebDriverWait(driver, 10).until(lambda d: record.text == 'Stop')
        time.sleep(1.5)
        record.click()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(
            By.ID, 'status').text.startswith('recording.wav: '))
        status = driver.find_element(By.ID, 'status').text
        assert 1.0 < float(status.split(': ')[1].split(' s')[0]) < 10, status
        assert len(driver.find_elements(By.CSS_SELECTOR, '#result .bar')) == 3
    finally:
        driver.quit()


@pytest.mark.slow
def test_load_benchmark_quick(model, tmp_path):
    """benchmarks/load.py with tiny numbers: its figures are the counts
    and timings it measured, its top-1s deploy/predict.py's."""
    out = tmp_path / 'load.json'
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'load.py'), '--model_dir',
         model, '--concurrency', '1,2', '--requests', '6', '--mixed', '20',
         '--clips', '3', '--seconds', '1', '--reps', '1', '--json', out,
         '--work_dir', tmp_path / 'work'],
        capture_output=True, text=True, env=script_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result['rows']
    assert [(r['concurrency'], r['requests'], r['bad'], r['mixed'])
            for r in rows] == [(1, 6, 0, False), (2, 6, 0, False),
                               (2, 20, 2, True)]  # every 10th is bad
    # each good 1 s request is windows of the model's clip length
    clip = json.loads((Path(model) / 'model.json').read_text())['clip_seconds']
    windows = int(np.ceil(1.0 / clip - 1e-9))
    for r in rows:
        assert r['errors'] == 0, r['error_samples']
        assert sum(int(k) * n for k, n in r['batches'].items()) == \
            windows * (r['requests'] - r['bad'] + r.get('uncounted', 0))
        assert r['throughput'] == pytest.approx(r['requests'] / r['wall_s'])
        assert 0 < r['p50_ms'] <= r['p95_ms'] <= r['p99_ms']
        assert r['p99_ms'] <= 1000 * r['wall_s']
        # the latency split by the server's Server-Timing, and the rest
        for k in ('queue', 'inference', 'decode', 'rest'):
            assert 0 <= r[f'{k}_50_ms'] <= r[f'{k}_99_ms'] <= r['p99_ms'], k
        assert r['inference_50_ms'] > 0 and r['rest_50_ms'] > 0
    clips = sorted((tmp_path / 'work' / 'clips').glob('*.wav'))
    printed = parse_blocks(run_script(
        'deploy/predict.py', '--model_dir', model, '--wav', *clips,
        '--device', 'cpu').stdout)
    off = result['offline']
    assert off['passes'] == 2  # --reps before the served runs, and after
    assert {p: best(s) for p, s in printed.items()} == {
        p: label for p, (label, _) in off['top1'].items()}
    goals = {t['what'].split(' vs ')[0].split(' over ')[0]: t
             for t in result['targets']}
    t = goals['throughput at concurrency 2']
    assert (t['value'], t['ref']) == (rows[1]['throughput'],
                                      rows[1]['offline_clips_per_s'])
    assert t['met'] == (t['ratio'] >= 0.8)
    t, same = [g for g in result['targets']
               if g['what'].startswith('p99 latency at concurrency 1')]
    assert (t['value'], t['ref']) == (rows[0]['p99_ms'], off['latency_ms'])
    assert t['ratio'] == pytest.approx(t['value'] / t['ref'])
    assert t['met'] == (t['ratio'] <= 1.3)
    assert (same['value'], same['ref']) == (rows[0]['p99_ms'],
                                            off['latency_p99_ms'])
    assert 'met' not in same and 'target' not in same
    assert goals['errors']['value'] == 0 and goals['errors']['met']
    m = result['mixed']
    assert (m['after'], m['requests']) == (20, 20)
    table = [line for line in proc.stdout.splitlines()
             if line.startswith('| ')]
    # each table's header row; offline rows (before/after, interleaved at
    # concurrency 1, between the bursts at 2), served rows; where their
    # latency went; targets
    assert len(table) == (1 + 3 + len(rows) + 1 + len(rows) + 1 +
                          len(result['targets']))
    assert 'CPU flags:' in proc.stdout


def test_unusable_export_is_one_error_line_and_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'paddlespeech' / 'cls' / 'exps' / 'panns' /
                             'deploy' / 'serve.py'), '--model_dir', tmp_path,
         '--port', str(free_port()), '--device', 'cpu'],
        capture_output=True, text=True, env=script_env(), timeout=120)
    assert proc.returncode == 2, proc.stderr
    # the inference process ends cleanly, without Paddle's signal report
    assert 'Traceback' not in proc.stderr, proc.stderr
    assert 'FatalError' not in proc.stderr, proc.stderr
    # model.json and the graph files are read before any child starts
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f'error: export directory {tmp_path} is '
                           f'incomplete: missing '), last


@pytest.mark.parametrize('flag,value,reason', [
    ('--port', '70000', '--port must be at most 65535, got 70000'),
    ('--max_seconds', 'inf', '--max_seconds must be a finite number, got inf'),
    ('--max_wait_ms', 'nan', '--max_wait_ms must be at least 0, got nan'),
    ('--window_seconds', '-1', '--window_seconds must be positive, got -1.0'),
    ('--graceful_timeout', 'inf',
     '--graceful_timeout must be a finite number, got inf'),
    ('--max_restarts', '-1', '--max_restarts must be at least 0, got -1'),
    ('--max_inflight_seconds', '60', '--max_inflight_seconds (60) must be '
     'at least --max_seconds (600): a longest file must fit'),
])
def test_bad_flags_are_refused_before_the_model_loads(tmp_path, flag, value,
                                                      reason):
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'paddlespeech' / 'cls' / 'exps' / 'panns' /
                             'deploy' / 'serve.py'), '--model_dir', tmp_path,
         flag, value, '--device', 'cpu'],
        capture_output=True, text=True, env=script_env(), timeout=120)
    # tmp_path holds no export: a check after loading would say so instead
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f'error: {reason}']


def _flac_claiming(path, seconds, rate=384000, channels=8):
    """A 120-byte FLAC whose STREAMINFO claims ``seconds`` of audio at
    ``rate`` x ``channels`` (its 36-bit total-samples field rewritten)."""
    sf.write(str(path), np.zeros((4096, channels), np.int16), rate)
    data = bytearray(path.read_bytes())
    assert data[:4] == b'fLaC'
    packed = int.from_bytes(data[18:26], 'big') & ~((1 << 36) - 1)
    data[18:26] = (packed | int(seconds * rate)).to_bytes(8, 'big')
    path.write_bytes(bytes(data))
    assert sf.info(str(path)).frames == int(seconds * rate)
    return path


def test_headers_over_the_decode_budget_are_refused_undecoded(
        server, clips, tmp_path, monkeypatch, caplog):
    """A 600-sample WAV declared at 1 Hz, 33 channels, a tiny FLAC
    claiming 384 kHz x 8 channels x 19 s (under --max_seconds, far over
    its samples): 422/413 with one line, and not one sample decoded."""
    from paddlespeech.cls import audio
    decoded = []
    real = audio.read_windows
    monkeypatch.setattr(audio, 'read_windows', lambda path, *a, **kw: (
        decoded.append(str(path)), real(path, *a, **kw))[1])
    one_hz = tmp_path / 'slow.wav'
    sf.write(str(one_hz), np.zeros(600, np.int16), 1)
    many = tmp_path / 'many.wav'
    sf.write(str(many), np.zeros((100, 33), np.int16), 16000)
    huge = _flac_claiming(tmp_path / 'huge.flac', MAX_SECONDS - 1)
    cases = [(one_hz, 422, 'slow.wav: sample rate 1 Hz is outside the '
              '1000-384000 Hz taken'),
             (many, 422, 'many.wav: 33 channels; at most 32 are taken'),
             (huge, 413, 'huge.flac: 19.0 s x 8 channel(s) at 384000 Hz is '
              'over the 1920000 samples decoded per file (--max_seconds at '
              '48 kHz x 2 channels)')]
    for path, status, message in cases:
        r = httpx.post(server.url + '/v1/classify',
                       files={'files': (path.name, path.read_bytes())})
        assert r.status_code == status, r.text
        assert r.json()['results'][0]['error'] == message
        r = httpx.post(server.url + '/paddlespeech/cls', content=json.dumps(
            {'audio': b64(path)}))
        assert r.status_code == status, r.text
    assert decoded == []
    r = upstream_post(server.url, b64(clips[0]))
    assert r.status_code == 200 and len(decoded) == 1


class _GatedPredictor:
    """A predictor whose runs wait for ``gate`` once ``armed``; records the
    batch sizes it ran."""

    def __init__(self, model):
        self.inner = Predictor(str(model), device='cpu', cpu_threads=1)
        self.armed, self.entered = False, threading.Event()
        self.gate, self.runs = threading.Event(), []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, waves):
        if self.armed:
            self.entered.set()
            self.gate.wait(60)
            self.runs.append(len(waves))
        return self.inner(waves)


def _raw_post(port, path, body, content_type):
    """A socket that sent a whole POST and has not read the answer."""
    s = socket.create_connection(('127.0.0.1', port))
    s.sendall(f'POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: '
              f'{content_type}\r\nContent-Length: {len(body)}\r\n\r\n'
              .encode() + body)
    return s


def _stats(url):
    return httpx.get(url + '/v1/stats').json()


def _until(condition, timeout=30):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, 'timed out'
        time.sleep(0.02)


def test_audio_in_flight_is_bounded_and_a_gone_client_costs_no_scoring(
        model, tmp_path, monkeypatch, caplog):
    """One request decoded at a time, 20 s of audio in flight at most.
    While a 12 s request is being scored, a 10 s one gets 503 with
    Retry-After undecoded; a 5 s one is admitted and waits its turn, its
    client disconnects, and it never reaches the predictor; two 12 s
    files in one request are 413."""
    from paddlespeech.cls import audio
    caplog.set_level(logging.INFO, 'paddlespeech.cls.serving')
    decoded = []
    real = audio.read_windows
    monkeypatch.setattr(audio, 'read_windows', lambda path, *a, **kw: (
        decoded.append(str(path)), real(path, *a, **kw))[1])
    gated = _GatedPredictor(model)
    svc = Service(model, lambda: gated, max_seconds=20, window_seconds=10,
                  max_inflight_seconds=20, max_decoding=1)
    files = {s: tone(tmp_path / f'{s}s.wav', s, sr=8000) for s in (12, 10, 5)}

    def post(seconds, *more):
        return httpx.post(server.url + '/v1/classify', timeout=60, files=[
            ('files', (p.name, p.read_bytes()))
            for p in [files[seconds], *more]])

    with ThreadServer(create_app(svc)) as server:
        gated.armed = True
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, 12)
            assert gated.entered.wait(30)
            assert _stats(server.url)['inflight_seconds'] == 12
            busy = post(10)
            assert busy.status_code == 503, busy.text
            assert busy.headers['retry-after'] == '2'
            assert 'busy: 12 s of audio in flight (--max_inflight_seconds ' \
                   '20)' in busy.json()['error']
            body = files[5].read_bytes()
            boundary = 'xyz'
            form = (f'--{boundary}\r\nContent-Disposition: form-data; '
                    f'name="files"; filename="5s.wav"\r\nContent-Type: '
                    f'audio/wav\r\n\r\n').encode() + body + \
                f'\r\n--{boundary}--\r\n'.encode()
            gone = _raw_post(server.port, '/v1/classify', form,
                             f'multipart/form-data; boundary={boundary}')
            _until(lambda: _stats(server.url)['inflight_seconds'] == 17)
            gone.close()
            time.sleep(0.5)  # the server sees the disconnect at once
            gated.gate.set()
            assert first.result().status_code == 200
        _until(lambda: _stats(server.url)['inflight_seconds'] == 0)
        assert gated.runs == [2]  # the 12 s file's two windows, nothing more
        assert decoded == [files[12].name]
        lines = access_lines(caplog, 3)
        assert any('"POST /v1/classify" 499 ' in x and x.endswith(
            'error: the client disconnected; its request was cancelled '
            'before scoring') for x in lines), lines
        r = post(12, files[12])
        assert r.status_code == 413, r.text
        assert r.json()['error'] == ('24.0 s of audio in one request; this '
                                     'service holds at most 20 s at once '
                                     '(--max_inflight_seconds)')
        assert decoded == [files[12].name]
        assert post(5).status_code == 200


SERVE = ROOT / 'paddlespeech/cls/exps/panns/deploy/serve.py'


class ServerProcess:
    """serve.py in a process of its own on 127.0.0.1, stopped by its pid."""

    def __init__(self, model, *flags, env=None):
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVE), '--model_dir', str(model), '--port',
             str(self.port), '--device', 'cpu', '--cpu_threads', '1',
             *map(str, flags)], env={**script_env(), **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __enter__(self):
        wait_ready(self.url, self.proc, timeout=120)
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()

    def child(self):
        """The pid of the inference process (its parent is the server)."""
        pids = [int(p.name) for p in Path('/proc').iterdir()
                if p.name.isdigit() and _parent(p) == self.proc.pid and
                b'spawn_main' in _cmdline(p)]
        assert len(pids) == 1, pids
        return pids[0]

    def rss_mb(self):
        for line in Path(f'/proc/{self.proc.pid}/status').read_text() \
                .splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024


def _parent(proc_dir):
    try:
        stat = (proc_dir / 'stat').read_text()
    except OSError:
        return None
    return int(stat.rpartition(')')[2].split()[1])


def _cmdline(proc_dir):
    try:
        return (proc_dir / 'cmdline').read_bytes()
    except OSError:
        return b''


@pytest.fixture(scope='module')
def served(model):
    with ServerProcess(model, '--max_restarts', 2) as s:
        yield s


def _sent_clip(clips):
    return b64(clips[0])


@pytest.mark.slow
def test_server_memory_returns_after_a_burst_of_large_uploads(served,
                                                              tmp_path):
    """The server's process never runs Paddle: it maps its large buffers
    and unmaps them when freed, so eight concurrent 19 MB uploads (150 s
    of float samples each) leave its RSS within 100 MB of what it was
    before them (measured: +4 MB; with the heap-only setting of the
    predictors, +134 MB)."""
    big = tone(tmp_path / 'big.wav', 150, subtype='FLOAT', freq=300)
    body = big.read_bytes()
    assert len(body) > 18 * 2**20

    def post(_):
        return httpx.post(served.url + '/v1/classify', timeout=300,
                          files={'files': ('big.wav', body)}).status_code

    assert post(0) == 200  # buffers of the first request's kind warmed
    before = served.rss_mb()
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(post, range(8))) == [200] * 8
    after = served.rss_mb()
    assert after < before + 100, (before, after)


@pytest.mark.slow
def test_killed_predictor_is_restarted_when_idle(served, clips):
    """SIGKILL of the idle inference process: /readyz turns 503 (with
    Retry-After), then 200 again with a new process, which answers the
    next request; /v1/stats counts the restart."""
    old, restarts = served.child(), _stats(served.url)['restarts']
    os.kill(old, signal.SIGKILL)
    states = []
    end = time.monotonic() + 120
    while time.monotonic() < end:
        r = httpx.get(served.url + '/readyz')
        states.append(r.status_code)
        if r.status_code == 503:
            assert r.json() == {'status': 'restarting'}
            assert r.headers['retry-after'] == '2'
        if 503 in states and r.status_code == 200:
            break
        time.sleep(0.05)
    assert states[-1] == 200 and 503 in states, states
    assert served.child() != old
    r = upstream_post(served.url, _sent_clip(clips))
    assert r.status_code == 200, r.text
    assert _stats(served.url)['restarts'] == restarts + 1


@pytest.mark.slow
def test_killed_predictor_under_load_costs_503s_not_the_service(served,
                                                                clips):
    """Six clients in a loop; the inference process is SIGKILLed while
    they run. Every request is answered, 200 or 503 with Retry-After
    (the lost batch and those sent while it restarts), none hangs; after
    the restart every client is served again."""
    audio, stop = _sent_clip(clips), threading.Event()
    killed = threading.Event()

    def client(_):
        answers = []
        while not stop.is_set():
            r = upstream_post_timeout(served.url, audio)
            answers.append((killed.is_set(), r.status_code,
                            r.headers.get('retry-after')))
            if r.status_code == 503:
                time.sleep(0.1)
        return answers

    with ThreadPoolExecutor(6) as pool:
        running = [pool.submit(client, i) for i in range(6)]
        _until(lambda: _stats(served.url)['batches'] and
               _stats(served.url)['requests_in_flight'] >= 3)
        os.kill(served.child(), signal.SIGKILL)
        killed.set()
        time.sleep(1)
        wait_ready(served.url, timeout=120)
        time.sleep(2)
        stop.set()
        answers = [f.result(timeout=120) for f in running]
    every = [a for one in answers for a in one]
    assert {(s, h) for _, s, h in every} <= {(200, None), (503, '2')}, every
    assert any(after and s == 503 for after, s, _ in every)
    for one in answers:  # each client's last answers: served again
        assert one[-1][1] == 200, one[-3:]


def upstream_post_timeout(url, audio):
    """A request that must be answered: a hang fails the test."""
    return httpx.post(url + '/paddlespeech/cls', timeout=60,
                      content=json.dumps({'audio': audio, 'topk': 1}))


@pytest.mark.slow
def test_predictor_that_cannot_restart_stops_the_server(model, tmp_path):
    """The export loses its weights while served, then the inference
    process is killed: the restarts fail (1 + --max_restarts 1 attempts),
    the server exits with status 2 and one line saying so, not that the
    model could not be loaded."""
    copy = tmp_path / 'export'
    shutil.copytree(model, copy)
    server = ServerProcess(copy, '--max_restarts', 1)
    with server:
        next(copy.glob('*.pdiparams')).unlink()
        os.kill(server.child(), signal.SIGKILL)
        out, err = server.proc.communicate(timeout=120)
    assert server.proc.returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        'error: the inference process died and could not be restarted '
        '(2 attempts, --max_restarts 1): export directory '), last
    assert 'is incomplete: missing' in last and 'Traceback' not in err
    assert 'cannot load' not in last


_MAPPED_CODE = '''
import ctypes, importlib.util, sys
if sys.argv[1] == 'server':
    spec = importlib.util.spec_from_file_location('serve', sys.argv[2])
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
else:  # what the inference process and the offline tools run
    from paddlespeech.cls.runtime import prepare_process
    prepare_process()

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks '
        'fordblks keepcost').split()]

libc = ctypes.CDLL('libc.so.6')
libc.mallinfo2.restype = Info
first = bytearray(8 << 20)  # glibc's default would now raise its
del first                   # threshold to 8 MB and keep what follows
second = bytearray(4 << 20)
print(libc.mallinfo2().hblkhd >= 4 << 20)
'''


@pytest.mark.parametrize('process,mapped', [('server', True),
                                            ('paddle', False)])
def test_only_processes_running_paddle_keep_large_buffers(process, mapped):
    """serve.py's process maps every block over 1 MB and unmaps it when
    freed (a 4 MB block after an 8 MB one was freed: glibc's default
    would take it from the heap and keep it); processes that run Paddle
    keep large blocks in the heap."""
    proc = subprocess.run([sys.executable, '-c', _MAPPED_CODE, process,
                           str(SERVE)], capture_output=True, text=True,
                          env=script_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(mapped)]


@pytest.mark.slow
def test_shutdown_is_bounded_when_the_predictor_hangs(model, clips):
    """The inference process is stopped (SIGSTOP) with a request in
    flight, then the server gets SIGTERM: after --graceful_timeout the
    request gets 503, the stuck process is killed, and the server exits
    0 instead of waiting for ever."""
    server = ServerProcess(model, '--graceful_timeout', 2)
    with server, ThreadPoolExecutor(1) as pool:
        child = server.child()
        os.kill(child, signal.SIGSTOP)
        pending = pool.submit(upstream_post_timeout, server.url,
                              _sent_clip(clips))
        _until(lambda: _stats(server.url)['requests_in_flight'] == 1)
        server.proc.send_signal(signal.SIGTERM)
        out, err = server.proc.communicate(timeout=30)  # the bound
        r = pending.result(timeout=30)
    assert r.status_code == 503 and r.headers['retry-after'] == '2'
    assert r.json()['message']['description'] == (
        'the service is shutting down; the request did not finish in time')
    assert server.proc.returncode == 0, err
    assert 'Traceback' not in err
    assert 'timeout graceful shutdown exceeded' in err
    assert 'the inference did not stop within' in err
    assert not Path(f'/proc/{child}').exists()


def test_process_predictor_that_does_not_load_in_time_is_killed(model):
    """A restart cannot hang the server: a child still loading after
    start_timeout is killed and the start fails."""
    with pytest.raises(RuntimeError, match='did not load the model within '
                                           '0.01 s'):
        ProcessPredictor(start_timeout=0.01, model_dir=str(model),
                         device='cpu', cpu_threads=1)
    children = multiprocessing.active_children()
    assert not [p for p in children if p.name == 'inference']
