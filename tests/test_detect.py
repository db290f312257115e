"""Sound-event detection (detect.py, events.py): windows with a hop read
as one stream, the event logic against hand-worked timelines, the output
files, and a model trained on the demo classes finding the events of a
synthetic recording (onsets and offsets within one hop, segment-based F1
from sed_eval), the streamed scores equal to whole-file scores, and flat
memory on a long file."""
import contextlib
import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import yaml

from tests.conftest import SCRIPTS, script_env
from paddlespeech.cls.audio import (Windowing, load_audio, read_windows,
                                    window_samples)
from paddlespeech.cls.datasets.esc50 import display_name
from paddlespeech.cls.datasets.synthetic import (DEMO_EVENTS, generate,
                                                 long_recording)
from paddlespeech.cls.events import (CSV_HEADER, Event, Timeline,
                                     detect_events, stream_timeline,
                                     top_k_mask, write_outputs)

SR = 32000


def timeline(scores, window=1.0, hop=0.5, duration=None, labels=('a', 'b')):
    scores = np.asarray(scores, np.float64).reshape(len(scores), -1)
    n = len(scores)
    duration = (n - 1) * hop + window if duration is None else duration
    return Timeline('x.wav', list(labels[:scores.shape[1]]), scores,
                    np.ones(n, np.float32), window, hop, duration)


# ------------------------------------------------------------ windows, fast

@pytest.mark.parametrize('seconds,window,hop', [
    (3.1, 1.0, 0.5), (3.0, 1.0, 1.0), (2.05, 0.5, 0.2), (0.3, 1.0, 0.5),
    (1.0, 1.0, 0.25)])
def test_hop_windows_are_slices_of_the_whole_file(seconds, window, hop,
                                                  tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / 'x.wav'
    sf.write(path, rng.standard_normal(int(seconds * 44100)) * 0.1, 44100,
             subtype='FLOAT')
    whole = load_audio(path, SR)
    got = list(read_windows(path, SR, window, hop_seconds=hop))
    size, step = window_samples(SR, window, hop)
    # by hand: windows start every hop until one reaches the end
    n = 1 + max(0, -(-(len(whole) - size) // step))
    assert len(got) == n
    for k, w in enumerate(got):
        np.testing.assert_array_equal(w, whole[k * step:k * step + size])
    assert (n - 1) * step + len(got[-1]) == len(whole)


def test_long_recording_puts_sound_where_its_events_are(tmp_path):
    path = tmp_path / 'long.wav'
    events = long_recording(path, seconds=45)
    # 20-second period repeated, cut at 45 s
    assert events[:6] == sorted(DEMO_EVENTS)
    assert events[6] == (21.0, 24.0, 'low_hum')
    assert events[12:] == [(41.0, 44.0, 'low_hum'),
                           (43.0, 45.0, 'high_beeps')]
    assert len(events) == 14
    x, sr = sf.read(path)
    assert len(x) == 45 * sr
    active = np.zeros(len(x), bool)
    for on, off, _ in events:
        active[int(on * sr):int(off * sr)] = True
    assert np.sqrt(np.mean(x[~active] ** 2)) < 0.005
    for on, off, _ in events:
        seg = x[int(on * sr) + 500:int(off * sr) - 500]
        assert np.sqrt(np.mean(seg ** 2)) > 0.05


# -------------------------------------------------------- event logic, fast

def test_regions_tile_the_file_at_window_centres():
    t = timeline(np.zeros(5), window=1.0, hop=0.5, duration=2.9)
    # centres 0.5, 1.0, ...; region edges halfway between centres, the
    # first from 0, the last to the end
    np.testing.assert_allclose(t.centres, [0.5, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_allclose(t.bounds, [0, 0.75, 1.25, 1.75, 2.25, 2.9])
    short = timeline([0.9], window=1.0, hop=0.5, duration=0.3)
    np.testing.assert_allclose(short.bounds, [0, 0.3])
    (e,) = detect_events(short, 0.5)
    assert (e.onset, e.offset) == (0.0, 0.3)


def test_threshold_and_hysteresis():
    s = [0.1, 0.6, 0.45, 0.35, 0.7, 0.2, 0.2]
    t = timeline(s, window=1.0, hop=0.5)  # bounds 0 .75 1.25 ... 3.25 4.0
    # without hysteresis: windows 1 and 4
    assert detect_events(t, 0.5) == [Event(0.75, 1.25, 'a', 0.6),
                                     Event(2.25, 2.75, 'a', 0.7)]
    # closing under 0.4: windows 1-2, then 4
    ev = detect_events(t, 0.5, threshold_off=0.4)
    assert [(e.onset, e.offset) for e in ev] == [(0.75, 1.75), (2.25, 2.75)]
    assert [e.score for e in ev] == pytest.approx([0.6, 0.7])
    # closing under 0.3: one event, windows 1-4, its score the highest
    (e,) = detect_events(t, 0.5, threshold_off=0.3)
    assert (e.onset, e.offset, e.score) == (0.75, 2.75, pytest.approx(0.7))


def test_merge_gap_then_minimum_length():
    s = [0.9, 0.0, 0.9, 0.0, 0.0, 0.0, 0.9, 0.0]
    t = timeline(s, window=1.0, hop=0.5)
    # events [0, .75) [1.25, 1.75) [3.25, 3.75); gaps .5 and 1.5
    assert len(detect_events(t, 0.5)) == 3
    ev = detect_events(t, 0.5, merge_gap_seconds=0.6)
    assert [(e.onset, e.offset) for e in ev] == [(0.0, 1.75), (3.25, 3.75)]
    ev = detect_events(t, 0.5, merge_gap_seconds=0.6, min_event_seconds=0.6)
    assert [(e.onset, e.offset) for e in ev] == [(0.0, 1.75)]


def test_classes_are_independent_and_top_k_keeps_the_best():
    s = np.array([[0.9, 0.8], [0.9, 0.8], [0.1, 0.8]])
    t = timeline(s, labels=('a', 'b'))
    ev = detect_events(t, 0.5)
    assert [(e.label, e.onset, e.offset) for e in ev] == [
        ('a', 0.0, 1.25), ('b', 0.0, 2.0)]
    masked = top_k_mask(s, 1)
    np.testing.assert_array_equal(masked, [[0.9, 0], [0.9, 0], [0, 0.8]])
    ev = detect_events(t, 0.5, active=masked)
    assert [(e.label, e.onset, e.offset) for e in ev] == [
        ('a', 0.0, 1.25), ('b', 1.25, 2.0)]
    # the event's score is the model's, not the masked one
    assert ev[1].score == pytest.approx(0.8)
    only = t.only(['b'])
    assert only.labels == ['b'] and only.scores.shape == (3, 1)


def test_outputs_parse(tmp_path):
    t = timeline([[0.9, 0.1], [0.9, 0.7], [0.2, 0.7], [0.1, 0.1]])
    t.path = 'dir/x.wav'
    events = detect_events(t, 0.5)
    paths = write_outputs(tmp_path, 'x', t, events)
    with open(paths['events.csv'], newline='') as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_HEADER
    assert rows[1:] == [['dir/x.wav', '0.000', '1.250', 'a', '0.9000'],
                        ['dir/x.wav', '0.750', '1.750', 'b', '0.7000']]
    # Audacity label track: onset<TAB>offset<TAB>label per line
    lines = paths['labels.txt'].read_text().splitlines()
    assert [ln.split('\t') for ln in lines] == [
        ['0.000000', '1.250000', 'a'], ['0.750000', '1.750000', 'b']]
    with np.load(paths['scores.npz']) as z:
        np.testing.assert_array_equal(z['scores'], t.scores)
        np.testing.assert_allclose(z['centres'], [0.5, 1.0, 1.5, 2.0])
        assert list(z['labels']) == ['a', 'b']
    png = paths['png'].read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'x.events.csv', 'x.labels.txt', 'x.png', 'x.scores.npz']


# ------------------------------------------- a trained model, slow (shared)

# The demo's classes that keep their character in a long sound, plus
# background (noise floor only), so the model learns what "nothing" is;
# two-class mixtures teach overlaps (sigmoid scores).
CLASSES = ['low_hum', 'high_beeps', 'white_noise', 'background']
LABELS = [display_name(c) for c in CLASSES[:3]]
WINDOW, HOP = 0.5, 0.25


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    """CNN6 from scratch on 0.5 s clips of the demo generator (4 per class
    and fold, 10 mixtures per fold), 12 epochs: best/model.pdparams."""
    from paddlespeech.cls.config import load_config
    from paddlespeech.cls.trainer import Trainer
    root = tmp_path_factory.mktemp('detect_model')
    data = generate(root / 'data', classes=CLASSES, clips_per_fold=4,
                    seconds=WINDOW, mixtures_per_fold=10)
    conf = root / 'detect.yaml'
    conf.write_text(yaml.safe_dump({
        'backbone': 'cnn6', 'pretrained': False, 'epochs': 12,
        'learning_rate': 1e-3, 'lr_schedule': 'cosine', 'batch_size': 8,
        'save_freq': 100, 'log_freq': 1000, 'seed': 0,
        # 33 frames a second: a 0.5 s clip is 17 frames, enough for
        # CNN6's four poolings, and training takes a third of the time
        'feature': {'hop_length': 960}}))
    cfg = load_config(conf, {'data_dir': str(data), 'device': 'cpu',
                             'checkpoint_dir': str(root / 'ckpt')})
    with contextlib.redirect_stdout(io.StringIO()):
        assert Trainer(cfg).fit() == 0
    return root / 'ckpt' / 'best' / 'model.pdparams'


def segment_f1(reference, estimated, labels, resolution):
    """sed_eval's overall segment-based F-measure, written out: a class is
    active in a segment that any of its events overlaps; F1 = 2 TP /
    (2 TP + FP + FN) over all segments and classes. (Checked equal to
    ``sed_eval.sound_event.SegmentBasedMetrics`` 0.2.1 on three detection
    outputs at 0.25, 0.5 and 1 s; sed_eval itself needs pkg_resources,
    which setuptools 81 and later no longer have.)"""
    n = int(np.ceil(max(e[1] for e in reference + estimated) / resolution))

    def roll(events):
        active = np.zeros((n, len(labels)), bool)
        for onset, offset, label in events:
            first = int(np.floor(onset / resolution + 1e-9))
            end = int(np.ceil(offset / resolution - 1e-9))
            active[first:end, labels.index(label)] = True
        return active
    ref, est = roll(reference), roll(estimated)
    tp, fp, fn = (ref & est).sum(), (~ref & est).sum(), (ref & ~est).sum()
    return 2 * tp / (2 * tp + fp + fn)


def test_segment_f1_by_hand():
    ref = [(1.0, 4.0, 'a'), (2.0, 3.0, 'b')]
    # 1 s segments: a in 1, 2, 3; b in 2. Estimated a over 0.9-4.1: 0-4
    # (TP 3, FP 2); b missed (FN 1): 6 / (6 + 2 + 1)
    assert segment_f1(ref, [(0.9, 4.1, 'a')], ['a', 'b'], 1.0) == \
        pytest.approx(6 / 9)
    assert segment_f1(ref, ref, ['a', 'b'], 0.25) == 1.0


def detect(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPTS / 'detect.py'), *map(str, args)],
        capture_output=True, text=True, env=script_env(), timeout=600)


@pytest.mark.slow
def test_events_of_a_synthetic_recording(model, tmp_path):
    rec = tmp_path / 'rec.wav'
    truth = [(on, off, display_name(c)) for on, off, c in
             long_recording(rec)]
    short = tmp_path / 'short.flac'
    sf.write(short, np.zeros(4410), 44100)  # 0.1 s: one padded window
    out = tmp_path / 'out'
    proc = detect('--checkpoint', model, '--wav', rec, tmp_path / 'gone.wav',
                  short, '--window_seconds', WINDOW, '--classes', *LABELS,
                  '--min_event_seconds', 0.5, '--output_dir', out,
                  '--device', 'cpu', '--cpu_threads', 2)
    # the missing file: one line, the others scored, exit 1
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if 'error' in ln]
    assert errors == [f'error: {tmp_path / "gone.wav"}: no such file']
    assert '\r' not in proc.stderr  # no progress bar off a terminal
    with open(out / 'rec.events.csv', newline='') as f:
        found = [(float(r['onset']), float(r['offset']), r['label'],
                  float(r['score'])) for r in csv.DictReader(f)]
    assert [e[:2] for e in found] == sorted(e[:2] for e in found)
    # every true event found once, onset and offset within one hop
    assert len(found) == len(truth), found
    for on, off, label in truth:
        match = [e for e in found if e[2] == label
                 and abs(e[0] - on) <= HOP and abs(e[1] - off) <= HOP]
        assert len(match) == 1, ((on, off, label), found)
    # score = the highest window score inside the event
    with np.load(out / 'rec.scores.npz') as z:
        bounds, scores = z['bounds'], z['scores']
        assert list(z['labels']) == LABELS
    for on, off, label, score in found:
        inside = (bounds[:-1] >= on - 1e-6) & (bounds[1:] <= off + 1e-6)
        assert score == pytest.approx(
            scores[inside, LABELS.index(label)].max(), abs=1e-4)
    # segment-based F1 at the hop's resolution
    assert segment_f1(truth, [e[:3] for e in found], LABELS, HOP) >= 0.9
    # stdout: a line per event, then the summary
    lines = proc.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith(f'{rec}\t')] == [
        f'{rec}\t{on:.3f}\t{off:.3f}\t{label}\t{score:.4f}'
        for on, off, label, score in found]
    assert f'{rec}: {len(found)} events of 3 classes' in proc.stdout
    assert lines[-1].startswith(f'{short}: ')
    # the 0.1 s file: one window, its outputs written
    with np.load(out / 'short.scores.npz') as z:
        assert z['scores'].shape == (1, 3)
        np.testing.assert_allclose(z['bounds'], [0, 0.1])
    labels = (out / 'rec.labels.txt').read_text().splitlines()
    assert [tuple(ln.split('\t')) for ln in labels] == [
        (f'{on:.6f}', f'{off:.6f}', label) for on, off, label, _ in found]
    assert (out / 'rec.png').stat().st_size > 10000


@pytest.mark.slow
def test_streamed_scores_equal_whole_file_scores(model, tmp_path):
    from paddlespeech.cls import open_model
    s = open_model(checkpoint=model, device='cpu')
    rec = tmp_path / 'rec.wav'
    long_recording(rec, seconds=9.1)
    t = stream_timeline(rec, s.scores, s.labels, s.feature.sample_rate,
                        Windowing(WINDOW, HOP), batch_size=5)
    whole = load_audio(rec, s.feature.sample_rate)
    size, hop = window_samples(s.feature.sample_rate, WINDOW, HOP)
    windows = [whole[k:k + size] for k in range(0, len(whole), hop)]
    windows = windows[:len(t.scores)]
    windows = [np.pad(w, (0, size - len(w))) for w in windows]
    assert len(windows) == 36  # 9.1 s: 1 + ceil((9.1 - 0.5) / 0.25)
    np.testing.assert_allclose(t.scores, s.scores(windows), atol=2e-6)
    assert t.duration == pytest.approx(9.1)


@pytest.mark.slow
def test_audioset_tagger_windows_match_the_pytorch_reference(reference,
                                                             tmp_path):
    """--pretrained: two 2.5 s windows, each one of the reference's test
    clips, score as the PyTorch PANNs CNN6 scores that clip."""
    from tests import panns_reference
    waves = panns_reference.test_waveforms()[[0, 2]]  # tone, chirp
    path = tmp_path / 'two.wav'
    sf.write(path, waves.reshape(-1), panns_reference.SAMPLE_RATE,
             subtype='FLOAT')
    proc = detect('--pretrained', '--arch', 'cnn6', '--pretrained_path',
                  reference('cnn6').pdparams, '--wav', path,
                  '--window_seconds', 2.5, '--hop_seconds', 2.5,
                  '--threshold', 0.9, '--output_dir', tmp_path, '--plot',
                  'false', '--device', 'cpu')
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected, _ = panns_reference.reference_outputs(
        reference('cnn6').model, waves)
    with np.load(tmp_path / 'two.scores.npz') as z:
        assert len(z['labels']) == 527
        np.testing.assert_allclose(z['scores'], expected, rtol=0, atol=1e-4)
    assert not (tmp_path / 'two.png').exists()


def peak_rss_mb(*args):
    """Run detect.py; its peak RSS (MB) from the kernel's accounting."""
    with open(os.devnull, 'w') as null:
        p = subprocess.Popen(
            [sys.executable, str(SCRIPTS / 'detect.py'), *map(str, args)],
            stdout=null, stderr=subprocess.PIPE, env=script_env())
        err = p.stderr.read()
        _, status, usage = os.wait4(p.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, err[-2000:]
    return usage.ru_maxrss / 1024


@pytest.mark.slow
def test_memory_stays_flat_on_a_long_file(model, tmp_path):
    """5 minutes of 44.1 kHz audio (53 MB as float32, 38 MB more at
    32 kHz) against 5 seconds, in batches of the same shape (2 windows of
    2.5 s), so that only the file's length differs: a reader holding the
    file would add about 90 MB. The one-hour run is a benchmark row."""
    long, short = tmp_path / 'long.wav', tmp_path / 'short.wav'
    long_recording(long, seconds=300)
    long_recording(short, seconds=5)
    flags = ['--checkpoint', model, '--window_seconds', 2.5, '--hop_seconds',
             2.5, '--batch_size', 2, '--device', 'cpu', '--cpu_threads', 2,
             '--output_dir', tmp_path / 'out']
    base = peak_rss_mb('--wav', short, *flags)
    peak = peak_rss_mb('--wav', long, *flags)
    assert peak - base < 50, (base, peak)
    with np.load(tmp_path / 'out' / 'long.scores.npz') as z:
        assert z['scores'].shape == (120, 4)


def test_training_clip_length_is_recorded_for_detection(trained_checkpoint,
                                                         tmp_path):
    """train.py records the clip length (the tiny set's clips are 0.5 s),
    the export copies it with the backbone, and both models give it to
    detect.py as its default window."""
    from paddlespeech.cls import open_model
    from paddlespeech.cls.checkpoint import read_state
    from paddlespeech.cls.export import export
    _, meta = read_state(trained_checkpoint)
    assert meta['clip_seconds'] == 0.5
    out = export(trained_checkpoint, tmp_path / 'export')
    exported = yaml.safe_load((out / 'model.json').read_text())
    assert (exported['backbone'], exported['clip_seconds']) == ('cnn6', 0.5)
    assert open_model(checkpoint=trained_checkpoint,
                      device='cpu').clip_seconds == 0.5
    assert open_model(model_dir=out, device='cpu',
                      cpu_threads=1).clip_seconds == 0.5
