"""Live detection: the incremental event tracker against detect_events,
chunked windows against a whole file's, raw PCM on detect.py's stdin
against the same file, --live without sounddevice, and the WebSocket
/v1/stream of a real server (scores and events as offline, each bad
input an error message and a close code, the server carrying on)."""
import csv
import json
import logging
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from tests.browser import browser  # noqa: F401  (the fixture)
from tests.conftest import SCRIPTS, script_env
from tests.test_detect import LABELS, WINDOW, HOP, model  # noqa: F401
from paddlespeech.cls.audio import WindowCutter, read_windows, window_samples
from paddlespeech.cls.datasets.esc50 import display_name
from paddlespeech.cls.datasets.synthetic import long_recording
from paddlespeech.cls.events import (EventTracker, Timeline, detect_events,
                                     top_k_mask)
from paddlespeech.cls.live import decode_pcm

CLIENT = SCRIPTS / 'deploy' / 'stream_client.py'


# ------------------------------------------------------------ tracker, fast

def _random_timeline(rng, trial):
    n = int(rng.integers(1, 40))
    scores = rng.random((n, 3))
    if trial % 2:  # runs of high scores, as sounds give
        scores = (scores > 0.5) * 0.6 + rng.random((n, 3)) * 0.3
    window = float(rng.choice([1.0, 0.5, 2.0]))
    hop = float(rng.choice([0.25, 0.5, window]))
    # the last window reaches the end, the one before does not
    low = 0.01 if n == 1 else (n - 2) * hop + window
    duration = rng.uniform(max(low, (n - 1) * hop + 1e-3),
                           (n - 1) * hop + window)
    return Timeline('x', ['a', 'b', 'c'], scores, np.ones(n), window, hop,
                    duration)


def test_tracker_finds_detect_events_window_by_window():
    """2000 random timelines (hysteresis, per-class thresholds, minimum
    length, gap merging, top-k): the closed events are detect_events',
    each announced open once before it closes, closes in time order."""
    rng = np.random.default_rng(0)
    nonempty = 0
    for trial in range(2000):
        tl = _random_timeline(rng, trial)
        t = rng.uniform(0.3, 0.7)
        on = np.array([t, 0.9 * t, 1.1 * t])
        off = None if trial % 3 == 0 else np.minimum(
            t * rng.uniform(0.5, 1), on)
        low, gap = rng.choice([0, 0.5, 1.5]), rng.choice([0, 0.5, 1, 3])
        active = top_k_mask(tl.scores, int(rng.integers(0, 3)))
        want = detect_events(tl, on, off, low, gap, active)
        tracker = EventTracker(tl.labels, tl.window_seconds, tl.hop_seconds,
                               on, off, low, gap)
        messages = []
        for k in range(len(tl.scores)):
            messages += [(k, *m) for m in tracker.push(tl.scores[k],
                                                       active[k])]
        messages += [(len(tl.scores), *m) for m in
                     tracker.finish(tl.duration)]
        closed = [e for _, state, e in messages if state == 'close']
        assert sorted(closed, key=lambda e: (e.onset, e.offset, e.label)) \
            == want, trial
        opened = {}
        for k, state, e in messages:
            key = (e.label, e.onset)
            if state == 'open':
                assert key not in opened and e.offset is None
                opened[key] = k
            else:
                assert opened.pop(key) <= k
                # it closes once its class's gap to the next run is past
                assert e.offset <= tracker.bound(k) + 1e-9 or \
                    k == len(tl.scores)
        assert not opened
        nonempty += bool(want)
    assert nonempty > 1000


def test_tracker_by_hand_gap_merge_and_delayed_close():
    # windows 1 s every 0.5 s: regions 0-0.75, 0.75-1.25, 1.25-1.75, ...
    tracker = EventTracker(['a'], 1.0, 0.5, 0.5, merge_gap_seconds=0.6)
    scores = [0.9, 0.2, 0.8, 0.1, 0.1, 0.1]
    got = [tracker.push(np.array([s])) for s in scores]
    assert [[(s, e.onset, e.offset) for s, e in m] for m in got] == [
        [('open', 0.0, None)], [], [], [], [], [('close', 0.0, 1.75)]]
    # the gap 0.75-1.25 (0.5 s) merged; the close waits until 0.6 s of
    # quiet after 1.75 (window 5 starts its region at 2.75)
    assert got[-1][0][1].score == pytest.approx(0.9)


# ------------------------------------------------------------ audio, fast

@pytest.mark.parametrize('seconds,window,hop', [(3.1, 1.0, 0.5),
                                                (0.3, 1.0, 0.5),
                                                (2.05, 0.5, 0.2)])
def test_window_cutter_cuts_chunks_as_read_windows_cuts_a_file(
        seconds, window, hop, tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / 'x.wav'
    wav = (rng.standard_normal(int(seconds * 32000)) * 0.1).astype(
        np.float32)
    sf.write(path, wav, 32000, subtype='FLOAT')
    want = list(read_windows(path, 32000, window, hop_seconds=hop))
    cutter = WindowCutter(*window_samples(32000, window, hop))
    got, at = [], 0
    while at < len(wav):
        n = int(rng.integers(1, 9000))
        cutter.push(wav[at:at + n])
        got += list(cutter.full())
        at += n
    got += list(cutter.end())
    assert len(got) == len(want) and cutter.count == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_decode_pcm():
    x = np.array([[100, -300], [32767, -32768]], '<i2')
    np.testing.assert_array_equal(
        decode_pcm(x.tobytes(), 's16le', 2),
        np.array([-100, -0.5], np.float32) / 32768)
    with pytest.raises(ValueError, match='not a whole number of 2-channel'):
        decode_pcm(x.tobytes()[:-2], 's16le', 2)
    with pytest.raises(ValueError, match='NaN'):
        decode_pcm(np.array([0, np.nan], '<f4').tobytes(), 'f32le', 1)


# ------------------------------------------------- detect.py, stdin, live

def detect_cmd(*args):
    return [sys.executable, str(SCRIPTS / 'detect.py'), *map(str, args)]


def read_events(path):
    with open(path, newline='') as f:
        return [(r['onset'], r['offset'], r['label'], r['score'])
                for r in csv.DictReader(f)]


@pytest.mark.slow
@pytest.mark.parametrize('fmt,channels', [('s16le', 1), ('f32le', 2)])
def test_stdin_gives_the_files_windows_and_events_as_they_close(
        model, tmp_path, fmt, channels):  # noqa: F811
    rec = tmp_path / 'rec.wav'
    long_recording(rec, seconds=25)  # 44.1 kHz, 16-bit
    common = ['--checkpoint', model, '--classes', *LABELS,
              '--window_seconds', WINDOW, '--min_event_seconds', 0.5,
              '--device', 'cpu', '--cpu_threads', 1, '--plot', 'false']
    offline = subprocess.run(detect_cmd(
        *common, '--wav', rec, '--output_dir', tmp_path / 'file'),
        capture_output=True, text=True, env=script_env(), timeout=600)
    assert offline.returncode == 0, offline.stderr[-2000:]
    x, sr = sf.read(rec, dtype='int16' if fmt == 's16le' else 'float32')
    x = np.stack([x] * channels, 1) if channels > 1 else x
    data = x.astype(x.dtype.newbyteorder('<')).tobytes()
    live = tmp_path / 'live'
    proc = subprocess.Popen(detect_cmd(
        *common, '--wav', '-', '--sample_rate', sr, '--format', fmt,
        '--channels', channels, '--output_dir', live),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=script_env())
    # the first 8 s: the first event (low hum 1-4 s) is printed and in the
    # CSV and label track while stdin is still open
    proc.stdin.write(data[:len(data) * 8 // 25])
    proc.stdin.flush()
    first = []
    reader = threading.Thread(target=lambda: first.append(
        proc.stdout.readline().decode()), daemon=True)
    reader.start()
    reader.join(120)
    assert first and first[0].startswith('-\t'), first
    assert proc.poll() is None
    onset, offset, label, score = first[0].rstrip('\n').split('\t')[1:]
    assert label == LABELS[0] and abs(float(onset) - 1.0) <= HOP
    so_far = read_events(live / 'stdin.events.csv')
    assert so_far[0] == (onset, offset, label, score) and len(so_far) <= 3
    assert (live / 'stdin.labels.txt').read_text().splitlines()[0].split(
        '\t')[2] == label
    proc.stdin.write(data[len(data) * 8 // 25:])
    proc.stdin.close()
    rest, err = proc.stdout.read(), proc.stderr.read().decode()
    proc.wait(600)
    assert proc.returncode == 0, err[-2000:]
    want = read_events(tmp_path / 'file' / 'rec.events.csv')
    assert len(want) >= 6
    assert read_events(live / 'stdin.events.csv') == want
    lines = (first[0] + rest.decode()).splitlines()
    # printed as they close: in the order of their offsets
    printed = [tuple(ln.split('\t')[1:]) for ln in lines[:-1]]
    assert sorted(printed) == sorted(want)
    assert [float(e[1]) for e in printed] == sorted(
        float(e[1]) for e in printed)
    assert lines[-1].startswith(f'-: {len(want)} events of 3 classes')
    with np.load(tmp_path / 'file' / 'rec.scores.npz') as a, \
            np.load(live / 'stdin.scores.npz') as b:
        assert a['scores'].shape == b['scores'].shape == (99, 3)
        np.testing.assert_allclose(b['scores'], a['scores'], atol=1e-5)
        np.testing.assert_array_equal(a['bounds'], b['bounds'])
        np.testing.assert_allclose(b['envelope'], a['envelope'], atol=1e-6)


def test_live_without_sounddevice_or_a_microphone_is_one_line(tmp_path):
    """A sounddevice that cannot load (as when missing, or without
    PortAudio), and one that finds no input device."""
    missing, nodevice = tmp_path / 'missing', tmp_path / 'nodevice'
    for d, body in ((missing, "raise OSError('PortAudio library not "
                     "found')\n"),
                    (nodevice, 'class PortAudioError(Exception): pass\n'
                     'def query_devices(kind=None):\n'
                     "    raise PortAudioError('Error querying device -1')\n")):
        (d / 'sounddevice').mkdir(parents=True)
        (d / 'sounddevice' / '__init__.py').write_text(body)
    for d, want in ((missing, 'error: --live records through the '
                     'sounddevice package, which is not usable here '
                     '(PortAudio library not found): pip install '
                     'sounddevice'),
                    (nodevice, 'error: --live: no microphone (Error querying'
                     ' device -1); plug one in')):
        env = script_env()
        env['PYTHONPATH'] = f'{d}:{env.get("PYTHONPATH", "")}'
        proc = subprocess.run(detect_cmd(
            '--live', '--model_dir', tmp_path / 'never_opened'),
            capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 2
        assert proc.stderr.startswith(want), proc.stderr
        assert len(proc.stderr.splitlines()) == 1


# ------------------------------------------------------ the service, slow

@pytest.fixture(scope='module')
def export_dir(model, tmp_path_factory):  # noqa: F811
    from paddlespeech.cls.export import export
    return export(model, tmp_path_factory.mktemp('stream') / 'export')


@pytest.fixture(scope='module')
def recording(tmp_path_factory):
    rec = tmp_path_factory.mktemp('stream_rec') / 'rec.wav'
    truth = long_recording(rec, seconds=20)
    return rec, [(on, off, display_name(c)) for on, off, c in truth]


@pytest.fixture(scope='module')
def offline(export_dir, recording):
    """detect.py's timeline of the recording (the export, in process)."""
    from paddlespeech.cls import open_model
    from paddlespeech.cls.events import detection_windowing, stream_timeline
    m = open_model(model_dir=export_dir, device='cpu', cpu_threads=1)
    return stream_timeline(recording[0], m.scores, m.labels,
                           m.feature.sample_rate,
                           detection_windowing(m.clip_seconds))


def make_server(export_dir, api_key=None):
    from tests.test_serving import ThreadServer, service
    from paddlespeech.cls.serving import create_app
    from paddlespeech.cls.serving.stream import StreamLimits
    app = create_app(service(export_dir, max_batch_size=8), api_key,
                     stream_limits=StreamLimits(
                         first_seconds=1.0, idle_seconds=1.5,
                         max_message_bytes=1 << 20))
    return ThreadServer(app)


@pytest.fixture(scope='module')
def server(export_dir):
    with make_server(export_dir) as s:
        s.ws = s.url.replace('http://', 'ws://') + '/v1/stream'
        yield s


def run_client(server, rec, *args):
    proc = subprocess.run(
        [sys.executable, str(CLIENT), '--url', server.ws, '--wav', rec,
         *map(str, args)], capture_output=True, text=True,
        env=script_env(), timeout=600)
    return proc, [json.loads(ln) for ln in proc.stdout.splitlines()]


@pytest.mark.slow
def test_stream_scores_and_events_are_the_offline_ones(server, recording,
                                                       offline):
    import httpx
    assert httpx.get(server.url + '/v1/model').json()['streaming'] is True
    rec, truth = recording
    options = {'top_k': 0, 'min_event_seconds': 0.5}
    proc, messages = run_client(server, rec, '--speed', 0, '--options',
                                json.dumps(options))
    assert proc.returncode == 0, proc.stderr
    start, scores = messages[0], [m for m in messages
                                  if m['type'] == 'scores']
    assert start['type'] == 'start' and start['hop_seconds'] == HOP
    assert len(scores) == len(offline.scores) == 79
    assert all(m['labels'] == offline.labels for m in scores)
    np.testing.assert_allclose([m['scores'] for m in scores],
                               offline.scores, atol=1e-5)
    assert [m['start'] for m in scores] == pytest.approx(
        np.arange(79) * HOP)
    want = detect_events(offline, 0.5, None, 0.5)
    events = [m for m in messages if m['type'] == 'event']
    closed = [m for m in events if m['state'] == 'close']
    assert sorted((m['onset'], m['offset'], m['label']) for m in closed) \
        == [(e.onset, e.offset, e.label) for e in want]
    assert [e.score for e in want] == pytest.approx(
        [m['score'] for m in sorted(closed, key=lambda m: (
            m['onset'], m['offset'], m['label']))], abs=1e-5)
    assert len([m for m in events if m['state'] == 'open']) == len(closed)
    assert {(m['label']) for m in closed} >= {t[2] for t in truth}
    # top-k, best first
    proc, messages = run_client(server, rec, '--speed', 0, '--options',
                                '{"top_k": 2, "classes": ["%s", "%s"]}' %
                                tuple(LABELS[:2]))
    first = [m for m in messages if m['type'] == 'scores'][20]
    row = offline.scores[20, :2]
    assert first['labels'] == [LABELS[i] for i in np.argsort(-row)]
    np.testing.assert_allclose(first['scores'], np.sort(row)[::-1],
                               atol=1e-5)


def ws_session(url, first, chunks=(), end=False, headers=None):
    """``(messages, close code)`` of one stream."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect
    messages = []
    with connect(url, additional_headers=headers, max_size=None) as ws:
        try:
            if first is not None:
                ws.send(first)
            for c in chunks:
                ws.send(c)
            if end:
                ws.send(json.dumps({'type': 'end'}))
            for m in ws:
                messages.append(json.loads(m))
        except ConnectionClosed:
            pass
    return messages, ws.close_code


def tone_bytes(seconds, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype('<i2').tobytes()


START = json.dumps({'sample_rate': 16000, 'format': 's16le'})


@pytest.mark.slow
def test_bad_input_is_an_error_and_a_close_code(server, caplog):
    caplog.set_level(logging.INFO, 'paddlespeech.cls.serving')
    bad = [
        ('binary first', b'\x00\x01', (), 1003, 'must be JSON text'),
        ('not JSON', 'hello', (), 1007, 'not JSON'),
        ('missing rate', json.dumps({'format': 's16le'}), (), 1007,
         '"sample_rate" is missing'),
        ('unknown format', json.dumps({'sample_rate': 16000,
                                       'format': 'mp3'}), (), 1007,
         '"format" must be one of'),
        ('rate out of range', json.dumps({'sample_rate': 100,
                                          'format': 's16le'}), (), 1007,
         '"sample_rate" must be an integer in [8000, 192000], got 100'),
        ('unknown key', json.dumps({'sample_rate': 16000, 'format': 's16le',
                                    'treshold': 0.3}), (), 1007,
         "unknown keys ['treshold']"),
        ('odd chunk', START, [b'\x00\x01\x02'], 1007,
         '3 bytes is not a whole number of 1-channel s16le frames'),
        ('oversized', START, [bytes(2 << 20)], 1009,
         'a message of 2097152 bytes; at most 1048576'),
        ('text audio', START, ['{"audio": 1}'], 1003,
         'send audio as binary messages'),
        ('never sends', None, (), 1008, 'no first message for 1 s'),
    ]
    for name, first, chunks, code, text in bad:
        messages, got = ws_session(server.ws, first, chunks)
        errors = [m for m in messages if m['type'] == 'error']
        assert got == code, (name, messages)
        assert len(errors) == 1 and text in errors[0]['message'], (name,
                                                                   errors)
    lines = [r.getMessage() for r in caplog.records
             if '"WS /v1/stream"' in r.getMessage()]
    assert len(lines) == len(bad) and all(' error: ' in ln for ln in lines)
    # a stream that stops sending: its open event closed, then the error
    messages, got = ws_session(server.ws, START, [tone_bytes(2.0)])
    assert got == 1008
    assert messages[-1] == {'type': 'error', 'message':
                            'no audio for 1.5 s; closing'}
    scores = [m for m in messages if m['type'] == 'scores']
    assert len(scores) == 7  # 2 s: 1 + (2 - 0.5) / 0.25 windows
    states = [m['state'] for m in messages if m['type'] == 'event']
    assert states.count('open') == states.count('close')
    # a client gone mid-window; then a good stream is still served
    from websockets.sync.client import connect
    with connect(server.ws) as ws:
        ws.send(START)
        ws.send(tone_bytes(0.3))
    messages, got = ws_session(server.ws, START, [tone_bytes(1.0)], end=True)
    assert got == 1000 and messages[0]['type'] == 'start'
    assert len([m for m in messages if m['type'] == 'scores']) == 3
    time.sleep(0.2)
    gone = [r.getMessage() for r in caplog.records
            if '"WS /v1/stream"' in r.getMessage()][-2]
    assert '"WS /v1/stream" 1001 ' in gone and 'error' not in gone, gone


@pytest.mark.slow
def test_stream_api_key(export_dir):
    from tests.test_serving import wait_ready
    s = make_server(export_dir, api_key='s3cret')
    s.thread.start()
    try:
        wait_ready(s.url, headers={'Authorization': 'Bearer s3cret'})
        url = s.url.replace('http://', 'ws://') + '/v1/stream'
        messages, code = ws_session(url, START)
        assert code == 1008 and 'API key' in messages[0]['message']
        messages, code = ws_session(
            url, START, [tone_bytes(0.6)], end=True,
            headers={'Authorization': 'Bearer s3cret'})
        assert code == 1000 and messages[0]['type'] == 'start'
        keyed = json.dumps({**json.loads(START), 'api_key': 's3cret'})
        messages, code = ws_session(url, keyed, [tone_bytes(0.6)], end=True)
        assert code == 1000 and messages[0]['type'] == 'start'
    finally:
        s.__exit__()


def chromium(browser, *args):
    from selenium import webdriver
    driver_path, binary = browser
    options = webdriver.ChromeOptions()
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu',
                '--disable-dev-shm-usage', *args):
        options.add_argument(arg)
    options.binary_location = binary
    return webdriver.Chrome(service=webdriver.ChromeService(driver_path),
                            options=options)


@pytest.mark.slow
def test_page_live_mode_in_headless_chromium(browser, server,  # noqa: F811
                                             recording):
    """The page's Live mode with a fake microphone playing the synthetic
    recording: its events appear with the right labels, in the
    recording's order and spacing; a refused microphone is an error line."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    rec, truth = recording
    driver = chromium(browser, '--use-fake-ui-for-media-stream',
                      '--use-fake-device-for-media-stream',
                      f'--use-file-for-fake-audio-capture={rec}%noloop')
    try:
        driver.get(server.url + '/')
        driver.find_element(By.ID, 'live').click()

        def closed(d):  # of the recording's classes (not background)
            items = [li for li in d.find_elements(
                By.CSS_SELECTOR, '#live-events li.close')
                if li.get_attribute('data-label') in LABELS]
            return items if len(items) >= 5 else False
        WebDriverWait(driver, 90).until(closed)
        assert driver.find_element(By.ID, 'live-status').text.startswith(
            'listening')
        driver.find_element(By.ID, 'live').click()  # stop
        WebDriverWait(driver, 10).until(lambda d: d.find_element(
            By.ID, 'live').text == 'Start live')
        found = sorted(
            (float(li.get_attribute('data-onset')),
             li.get_attribute('data-label')) for li in
            driver.find_elements(By.CSS_SELECTOR, '#live-events li.close')
            if li.get_attribute('data-label') in LABELS)
    finally:
        driver.quit()
    assert {label for _, label in found} == set(LABELS)
    # in the recording's order (a sound may break into two events: the
    # browser's capture is not the file) and spacing (the capture's own
    # start shifts all onsets alike)
    labels = [label for _, label in found]
    runs = [x for i, x in enumerate(labels) if i == 0 or x != labels[i - 1]]
    want = [label for _, _, label in sorted(truth)]
    assert runs == want[:len(runs)] and len(runs) >= 4, (found, truth)
    shift = min(t for t, x in found if x == LABELS[2]) - 7.5  # white noise
    for on, _, label in truth[:3]:
        assert any(x == label and abs(t - shift - on) <= 0.6
                   for t, x in found), (on, label, found)
    driver = chromium(browser)  # no fake UI: the microphone is refused
    try:
        driver.get(server.url + '/')
        driver.find_element(By.ID, 'live').click()
        status = WebDriverWait(driver, 30).until(lambda d: d.find_element(
            By.CSS_SELECTOR, '#live-status.error'))
        assert status.text.startswith('no microphone: ')
    finally:
        driver.quit()
