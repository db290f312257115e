"""Sound-event detection on long recordings: window scores streamed from
a file, events per class (threshold with hysteresis, minimum length, gap
merging) and the timeline outputs (CSV, scores, Audacity labels, PNG).

Window ``k`` covers ``[k * hop, k * hop + window)``; its score stands for
the hop-long region around its centre, so consecutive windows tile the
file (the first region starts at 0, the last ends at the file's end) and
overlapping windows do not stretch an event by a window's length.
"""
import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from . import atomic
from .errors import UserError
from .runtime import HeapLimit


@dataclass
class DetectConfig:
    """The ``detect:`` section (``detect.py``). Flat files name four keys
    after the script: ``detect_model_dir``, ``audioset`` (``--pretrained``),
    ``detect_window_seconds`` and ``detect_dir`` (``--output_dir``)."""
    FLAT = {'model_dir': 'detect_model_dir', 'pretrained': 'audioset',
            'window_seconds': 'detect_window_seconds',
            'output_dir': 'detect_dir', 'sample_rate': 'pcm_sample_rate',
            'channels': 'pcm_channels', 'format': 'pcm_format'}
    model_dir: Optional[str] = None  # an export
    pretrained: bool = False  # the AudioSet tagger of predict.arch
    # None: the model's clip length (else 5 s)
    window_seconds: Optional[float] = None
    hop_seconds: Optional[float] = None  # None: half a window
    # auto: the model's calibrated thresholds (calibrate.py); None: auto
    # where the model has them, else 0.5
    threshold: Optional[Union[str, float]] = None
    threshold_off: Optional[float] = None  # None: threshold (no hysteresis)
    min_event_seconds: float = 0.0
    merge_gap_seconds: float = 0.0
    top_k_per_window: int = 0  # 0: every class may be active in a window
    classes: Optional[Union[str, list]] = None  # None: every class
    output_dir: Optional[str] = None  # None: <export_dir>/../detect
    plot: bool = True  # write <name>.png
    # --wav - (raw PCM on stdin): None: the model's rate
    sample_rate: Optional[int] = None
    channels: int = 1
    format: str = 's16le'  # s16le | f32le
    live: bool = False  # --live: the default microphone


@dataclass
class Timeline:
    """One file's window scores ``[windows, classes]`` and the peak
    amplitude of each window's region (the waveform's envelope)."""
    path: str
    labels: list
    scores: np.ndarray
    envelope: np.ndarray
    window_seconds: float
    hop_seconds: float
    duration: float
    elapsed: float = 0.0

    @property
    def centres(self):
        return np.arange(len(self.scores)) * self.hop_seconds + \
            self.window_seconds / 2

    @property
    def bounds(self):
        """``len(scores) + 1`` region edges: window ``k`` stands for
        ``[bounds[k], bounds[k + 1])``."""
        inner = self.centres[:-1] + self.hop_seconds / 2
        edges = np.concatenate([[0.0], inner, [self.duration]])
        return np.clip(edges, 0.0, self.duration)

    def only(self, names):
        """The same timeline with the classes ``names`` only."""
        idx = [self.labels.index(n) for n in names]
        return Timeline(self.path, list(names), self.scores[:, idx],
                        self.envelope, self.window_seconds, self.hop_seconds,
                        self.duration, self.elapsed)


def timeline_windows(path, sample_rate, windowing):
    """Yield ``(window, peak, samples)`` for each window of ``path``: the
    window (``windowing`` must pad: blocks read and resampled as one
    stream, the last, shorter window and a file shorter than one window
    zero-padded), the peak amplitude of its centre region (a
    :class:`Timeline`'s envelope) and the audio samples read so far. The
    model-free half of :func:`stream_timeline`, shared with the reader of
    ``analyze.py``. Raises :class:`..audio.AudioError`."""
    if not windowing.pad:
        raise ValueError('a timeline needs windows of one length (pad)')
    size, hop = windowing.samples(sample_rate)
    lo, hi = (size - hop) // 2, (size + hop) // 2  # a window's centre region
    for k, (wav, n) in enumerate(windowing.windows(path, sample_rate)):
        region = wav[0 if k == 0 else lo:hi if n == size else n]
        yield wav, float(np.abs(region).max()) if len(region) else 0.0, \
            k * hop + n


def stream_timeline(path, score, labels, sample_rate, windowing,
                    batch_size=16, progress=None):
    """Score ``path`` window by window (:func:`timeline_windows`); returns
    a :class:`Timeline`.

    Windows go to ``score`` ``batch_size`` at a time, all of one length.
    Memory holds a batch of windows and the scores, never the file.
    ``progress(seconds)`` is called with the audio seconds scored so far.
    Raises :class:`..audio.AudioError`.
    """
    size, hop = windowing.samples(sample_rate)
    start, heap = time.perf_counter(), HeapLimit()
    scores, envelope, batch, samples = [], [], [], 0

    def run():
        scores.append(np.asarray(score(batch), dtype=np.float32))
        batch.clear()
        heap.check()
        if progress:
            progress(samples / sample_rate)

    for wav, peak, samples in timeline_windows(path, sample_rate, windowing):
        envelope.append(peak)
        batch.append(wav)
        if len(batch) >= batch_size:
            run()
    if batch:
        run()
    # the first window's region reaches back to 0 and the last one's to the
    # end, so their envelope may count a little more than their region
    return Timeline(str(path), list(labels), np.concatenate(scores), np.array(
        envelope, np.float32), size / sample_rate, hop / sample_rate,
        samples / sample_rate, time.perf_counter() - start)


@dataclass(frozen=True)
class Event:
    onset: float
    offset: Optional[float]  # None: still open (EventTracker)
    label: str
    score: float


def top_k_mask(scores, k):
    """Scores with all but each window's ``k`` best set to 0 (k < 1: all
    kept)."""
    if k is None or k < 1 or k >= scores.shape[1]:
        return scores
    keep = np.argsort(-scores, axis=1, kind='stable')[:, :k]
    out = np.zeros_like(scores)
    np.put_along_axis(out, keep, np.take_along_axis(scores, keep, 1), 1)
    return out


def detect_events(timeline, threshold, threshold_off=None,
                  min_event_seconds=0.0, merge_gap_seconds=0.0,
                  active=None):
    """Events of every class, sorted by onset (then label).

    A window score at or over ``threshold`` opens an event of its class, a
    score under ``threshold_off`` (default: ``threshold``) closes it (each
    a number, or one per class of the timeline: :func:`class_thresholds`);
    the
    event spans the regions of its windows and its score is the highest
    window score inside it. Events of one class less than
    ``merge_gap_seconds`` apart are merged, then events shorter than
    ``min_event_seconds`` dropped. ``active``: the scores to threshold, if
    not the timeline's own (e.g. :func:`top_k_mask` of them). Thresholds
    are numbers or one per class (:func:`class_thresholds`).
    :class:`EventTracker` finds the same events window by window.
    """
    classes = len(timeline.labels)
    on = np.broadcast_to(np.asarray(threshold, float), (classes,))
    off = on if threshold_off is None else np.broadcast_to(
        np.asarray(threshold_off, float), (classes,))
    scores = timeline.scores if active is None else active
    bounds = timeline.bounds
    events = []
    for c, label in enumerate(timeline.labels):
        runs, begin = [], None
        for k, s in enumerate(scores[:, c]):
            if begin is None and s >= on[c]:
                begin = k
            elif begin is not None and s < off[c]:
                runs.append([begin, k])
                begin = None
        if begin is not None:
            runs.append([begin, len(scores)])
        merged = []
        for a, b in runs:
            if merged and bounds[a] - bounds[merged[-1][1]] < \
                    merge_gap_seconds:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        for a, b in merged:
            onset, offset = float(bounds[a]), float(bounds[b])
            if offset - onset >= min_event_seconds and offset > onset:
                events.append(Event(onset, offset, label,
                                    float(timeline.scores[a:b, c].max())))
    return sorted(events, key=_order)


def _order(e):
    return e.onset, e.offset, e.label


def _message_order(message):
    """By onset and label, an event's opening before its closing."""
    state, e = message
    return e.onset, e.label, state == 'close'


class _Track:
    """One class's event in the making: ``begin`` (its first window),
    ``closed`` (the window that ended its last run, while a later run may
    still merge into it), its best score, the best score of the windows
    since ``closed`` (``gap``), and whether its opening was announced."""
    __slots__ = ('begin', 'closed', 'best', 'gap', 'opened')

    def __init__(self):
        self.begin = self.closed = None
        self.best = self.gap = -np.inf
        self.opened = False


class EventTracker:
    """:func:`detect_events` window by window, for audio that is still
    arriving: :meth:`push` takes each window's scores and returns
    ``[(state, Event)]``, ``'open'`` once an event is sure to be reported
    (its run reaches ``min_event_seconds``; offset ``None``) and
    ``'close'`` once it can no longer grow or merge (its class stayed
    under the threshold for ``merge_gap_seconds``); :meth:`finish` closes
    the rest at the end of the audio. The closed events are
    :func:`detect_events`'s on the same windows."""

    def __init__(self, labels, window_seconds, hop_seconds, threshold,
                 threshold_off=None, min_event_seconds=0.0,
                 merge_gap_seconds=0.0):
        self.labels = list(labels)
        n = len(self.labels)
        self.on = np.broadcast_to(np.asarray(threshold, float), (n,))
        self.off = self.on if threshold_off is None else np.broadcast_to(
            np.asarray(threshold_off, float), (n,))
        self.window, self.hop = window_seconds, hop_seconds
        self.min_event, self.merge_gap = min_event_seconds, merge_gap_seconds
        self.tracks = [_Track() for _ in self.labels]
        self.windows = 0

    def bound(self, k):
        """Where window ``k``'s region starts (:attr:`Timeline.bounds`,
        computed alike)."""
        if k == 0:
            return 0.0
        return float((k - 1) * self.hop + self.window / 2 + self.hop / 2)

    def push(self, scores, active=None):
        """One window's ``scores`` (and the ``active`` ones to threshold,
        as in :func:`detect_events`)."""
        k, out = self.windows, []
        self.windows += 1
        active = scores if active is None else active
        for c, t in enumerate(self.tracks):
            s, raw = active[c], float(scores[c])
            if t.begin is not None and t.closed is None:
                if s < self.off[c]:
                    t.closed, t.gap = k, raw
                else:
                    t.best = max(t.best, raw)
            elif t.closed is not None:
                near = self.bound(k) - self.bound(t.closed) < self.merge_gap
                if near and s >= self.on[c]:
                    t.best, t.closed = max(t.best, t.gap, raw), None
                elif near:
                    t.gap = max(t.gap, raw)
                else:
                    out += self._end(c, self.bound(t.closed))
                    t = self.tracks[c]
            if t.begin is None and s >= self.on[c]:
                t.begin, t.best = k, raw
            if t.begin is not None and t.closed is None and not t.opened \
                    and self.bound(k) - self.bound(t.begin) >= \
                    self.min_event:
                t.opened = True
                out.append(('open', Event(self.bound(t.begin), None,
                                          self.labels[c], t.best)))
        return sorted(out, key=_message_order)

    def finish(self, duration):
        """Close every event at the end of the audio (``duration``
        seconds: :attr:`Timeline.duration`)."""
        out = []
        for c, t in enumerate(self.tracks):
            if t.begin is not None:
                out += self._end(c, duration if t.closed is None else
                                 self.bound(t.closed))
        return sorted(out, key=_message_order)

    def open_events(self):
        """The events announced open and not closed yet."""
        return [Event(self.bound(t.begin), None, self.labels[c], t.best)
                for c, t in enumerate(self.tracks) if t.opened]

    def _end(self, c, offset):
        t, label = self.tracks[c], self.labels[c]
        onset, out = self.bound(t.begin), []
        if offset - onset >= self.min_event and offset > onset:
            if not t.opened:
                out.append(('open', Event(onset, None, label, t.best)))
            out.append(('close', Event(onset, float(offset), label,
                                       t.best)))
        self.tracks[c] = _Track()
        return out


def detection_windowing(clip_seconds, window_seconds=None, hop_seconds=None):
    """The windows of detection (:class:`..audio.Windowing`, always
    padded: a timeline's windows are of one length): ``window_seconds``,
    else the model's clip length, else :data:`FALLBACK_WINDOW_SECONDS`;
    a window every ``hop_seconds`` (default: half a window)."""
    from .audio import Windowing
    window = window_seconds or clip_seconds or FALLBACK_WINDOW_SECONDS
    hop = window / 2 if hop_seconds is None else hop_seconds
    if not 0 < hop <= window:
        raise UserError(f'hop_seconds must be in (0, window_seconds '
                        f'{window:g}], got {hop}')
    return Windowing(window, hop, pad=True)


# ESC-50's clip length, for models that do not record theirs
FALLBACK_WINDOW_SECONDS = 5.0


AUTO = 'auto'
DEFAULT_THRESHOLD = 0.5


def class_thresholds(threshold, threshold_off, labels, calibrated=None,
                     source='the model'):
    """``(on, off)``: one threshold per class of ``labels`` for
    :func:`detect_events`. ``threshold``: a number for every class,
    ``'auto'`` for the model's ``calibrated`` ones (``{class: threshold}``,
    :mod:`.calibration`; a None there never opens an event, a class left
    out gets :data:`DEFAULT_THRESHOLD`), or None: ``'auto'`` where
    ``calibrated`` exists, else the default. ``threshold_off`` (None: the
    threshold) is capped at each class's threshold. ``'auto'`` without
    calibrated thresholds is a one-line error naming ``source``."""
    if threshold is None:
        threshold = AUTO if calibrated else DEFAULT_THRESHOLD
    if threshold == AUTO:
        if not calibrated:
            raise UserError(
                f'--threshold auto: {source} has no calibrated thresholds; '
                f'run calibrate.py on it first, or give a number')
        on = np.array([np.inf if (t := calibrated.get(name,
                                                      DEFAULT_THRESHOLD))
                       is None else t for name in labels], dtype=np.float64)
    else:
        on = np.full(len(labels), float(threshold))
    off = on if threshold_off is None else np.minimum(on, threshold_off)
    return on, off


def parse_threshold(text):
    """``--threshold``'s value: ``auto`` or a number in (0, 1]."""
    if text is None or str(text).strip().lower() == AUTO:
        return None if text is None else AUTO
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value <= 1:
        raise UserError(f'--threshold must be auto or a number in (0, 1], '
                        f'got {text}')
    return value


def add_detection_flags(p):
    """The window and event flags ``detect.py`` and ``analyze.py`` share
    (a :class:`..config.ConfigArgumentParser`)."""
    p.add('--window_seconds', key='detect_window_seconds', type=float,
          help='window length; default: the clip length the model was '
          f'trained on, as train.py records it (AudioSet tagger: 10 s; '
          f'models without it: 5 s, ESC-50\'s)')
    p.add('--hop_seconds', type=float,
          help='a window every this many seconds (default: half a window); '
          'events are placed to this resolution')
    p.add('--threshold',
          help='a window score at or over this opens an event (a '
          'single-label model\'s softmax scores share 1 among its classes, '
          'so two sounds at once each score lower); auto: the per-class '
          'thresholds calibrate.py stored in the model (the default where '
          'it has them, else 0.5)')
    p.add('--threshold_off', type=float,
          help='a score under this closes an event (<= --threshold; '
          'default: --threshold)')
    p.add('--min_event_seconds', type=float,
          help='events shorter than this are dropped (after merging)')
    p.add('--merge_gap_seconds', type=float,
          help='events of one class closer than this are merged')
    p.add('--top_k_per_window', type=int,
          help='only the k best classes of a window can be active in it '
          '(0: every class)')
    p.add('--classes', nargs='+',
          help='only these labels (as the model names them; quote names '
          'with spaces)')


def check_detection_flags(detect, batch_size):
    """The window and event flags (the ``detect:`` section) and the batch
    size, refused in one line before a model loads; ``detect.threshold``
    becomes a number or ``auto`` (:func:`parse_threshold`)."""
    if detect.window_seconds is not None and not detect.window_seconds > 0:
        raise UserError(f'--window_seconds must be positive, got '
                        f'{detect.window_seconds}')
    detect.threshold = parse_threshold(detect.threshold)
    top = detect.threshold if isinstance(detect.threshold, float) else 1
    if detect.threshold_off is not None and \
            not 0 <= detect.threshold_off <= top:
        raise UserError(f'--threshold_off must be in [0, --threshold '
                        f'{top}], got {detect.threshold_off}')
    for flag, v in (('--min_event_seconds', detect.min_event_seconds),
                    ('--merge_gap_seconds', detect.merge_gap_seconds),
                    ('--top_k_per_window', detect.top_k_per_window)):
        if v < 0:
            raise UserError(f'{flag} must not be negative, got {v}')
    if batch_size < 1:
        raise UserError(f'--batch_size must be at least 1, got {batch_size}')


def class_columns(names, labels):
    """``--classes`` checked against the model's labels (None: all)."""
    if not names:
        return None
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise UserError(f'--classes: unknown labels {unknown}; the model '
                        f'has {len(labels)}, e.g. {labels[:5]}')
    return list(dict.fromkeys(names))


def timeline_events(timeline, on, off, detect, classes=None):
    """``(timeline, events)`` as ``detect.py`` finds them: per-class
    thresholds ``on``/``off`` (:func:`class_thresholds`), the timeline
    restricted to ``classes`` (None: all), and only the
    ``detect.top_k_per_window`` best classes of a window active."""
    active = top_k_mask(timeline.scores, detect.top_k_per_window)
    if classes:
        columns = [timeline.labels.index(c) for c in classes]
        timeline, active = timeline.only(classes), active[:, columns]
        on, off = on[columns], off[columns]
    return timeline, detect_events(timeline, on, off,
                                   detect.min_event_seconds,
                                   detect.merge_gap_seconds, active)


CSV_HEADER = ('filename', 'onset', 'offset', 'label', 'score')


def events_csv(events, filename):
    """``filename,onset,offset,label,score`` (seconds to 3 decimals)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator='\n')
    w.writerow(CSV_HEADER)
    out.write(''.join(csv_row(e, filename) for e in events))
    return out.getvalue()


def csv_row(e, filename):
    """One line of :func:`events_csv`."""
    out = io.StringIO()
    csv.writer(out, lineterminator='\n').writerow(
        [filename, f'{e.onset:.3f}', f'{e.offset:.3f}', e.label,
         f'{e.score:.4f}'])
    return out.getvalue()


def audacity_labels(events):
    """Audacity's label track: ``onset<TAB>offset<TAB>label`` lines
    (File > Import > Labels)."""
    return ''.join(f'{e.onset:.6f}\t{e.offset:.6f}\t{e.label}\n'
                   for e in events)


def format_event(path, e):
    return f'{path}\t{e.onset:.3f}\t{e.offset:.3f}\t{e.label}\t{e.score:.4f}'


def summary(timeline, events):
    """The one line printed per file after its events."""
    classes = len({e.label for e in events})
    speed = timeline.duration / max(timeline.elapsed, 1e-9)
    return (f'{timeline.path}: {len(events)} events of {classes} classes in '
            f'{_clock(timeline.duration)} of audio ({len(timeline.scores)} '
            f'windows of {timeline.window_seconds:g} s every '
            f'{timeline.hop_seconds:g} s; {timeline.elapsed:.1f} s, '
            f'{speed:.0f}x real time)')


def write_outputs(out_dir, name, timeline, events, plot=True, top=10):
    """``<name>.events.csv``, ``.scores.npz``, ``.labels.txt`` (Audacity)
    and ``.png`` in ``out_dir``, each written atomically; returns the
    paths."""
    paths = {kind: Path(out_dir) / f'{name}.{kind}' for kind in
             ('events.csv', 'scores.npz', 'labels.txt', 'png')}
    atomic.write_text(paths['events.csv'], events_csv(events, timeline.path))
    atomic.write_text(paths['labels.txt'], audacity_labels(events))
    atomic.write_file(paths['scores.npz'], lambda p: np.savez(
        p, centres=timeline.centres, bounds=timeline.bounds,
        labels=np.array(timeline.labels), scores=timeline.scores,
        envelope=timeline.envelope, window_seconds=timeline.window_seconds,
        hop_seconds=timeline.hop_seconds, duration=timeline.duration))
    if plot:
        atomic.write_file(paths['png'], lambda p: plot_timeline(
            p, timeline, events, top))
    else:
        del paths['png']
    return paths


def plot_timeline(path, timeline, events, top=10):
    """The envelope above a heat map of the ``top`` classes (highest
    score anywhere, plus every class with an event), with each event as a
    bar on its class's row. Time axis in h:mm:ss, so an hour reads as
    well as a minute. Drawn on a bare ``Figure`` (Agg, headless) without
    pyplot, whose import alone took 0.8 s of a 10 s run."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator
    labels = timeline.labels
    with_events = [labels.index(n) for n in dict.fromkeys(
        e.label for e in events)]
    best = np.argsort(-timeline.scores.max(axis=0), kind='stable')
    rows = list(dict.fromkeys(with_events + [int(i) for i in best]))
    rows = sorted(rows[:max(top, len(with_events))],
                  key=lambda i: -timeline.scores[:, i].max())
    bounds, T = timeline.bounds, timeline.duration
    fig = Figure(figsize=(14, 2.2 + 0.32 * len(rows)))
    wave, heat = fig.subplots(2, 1, sharex=True, gridspec_kw={
        'height_ratios': [1.4, 0.32 * len(rows)]})
    x = np.repeat(bounds, 2)[1:-1]
    env = np.repeat(timeline.envelope, 2)
    wave.fill_between(x, -env, env, color='#4a6fa5', lw=0)
    wave.set_ylim(-1.05 * max(env.max(initial=0), 1e-3),
                  1.05 * max(env.max(initial=0), 1e-3))
    wave.set_ylabel('peak')
    wave.set_title(f'{timeline.path}: {len(events)} events')
    mesh = heat.pcolormesh(bounds, np.arange(len(rows) + 1),
                           timeline.scores[:, rows].T, vmin=0, vmax=1,
                           cmap='magma_r', shading='flat')
    row_of = {labels[i]: r for r, i in enumerate(rows)}
    for e in events:
        heat.broken_barh([(e.onset, e.offset - e.onset)],
                         (row_of[e.label] + 0.78, 0.18), color='#1b9e77')
    heat.set_yticks(np.arange(len(rows)) + 0.5)
    heat.set_yticklabels([labels[i] for i in rows], fontsize=8)
    heat.set_ylim(len(rows), 0)
    heat.set_xlim(0, T)
    heat.xaxis.set_major_locator(MaxNLocator(12))
    heat.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _clock(v)))
    heat.set_xlabel('time (green bars: events)')
    fig.colorbar(mesh, ax=[wave, heat], fraction=0.02, pad=0.01,
                 label='score')
    fig.savefig(path, dpi=100, format='png')


def _clock(seconds):
    """``75.5`` -> ``1:15.5``; an hour or more -> ``1:02:03``."""
    m, s = divmod(float(seconds), 60)
    h, m = divmod(int(m), 60)
    return f'{h}:{m:02d}:{s:02.0f}' if h else f'{m}:{s:04.1f}'
