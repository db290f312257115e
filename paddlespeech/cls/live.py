"""Detection on audio as it arrives (stdin, a microphone, a WebSocket):
raw PCM decoded, resampled and cut into exactly the windows
``detect.py`` cuts a file into (:class:`..audio.WindowCutter`), each
scored as soon as its audio is in and fed to an
:class:`..events.EventTracker`, so scores and events are the offline
ones."""
import queue
import time
from dataclasses import dataclass

import numpy as np

from .audio import WindowCutter, _ResampleStream, to_mono
from .errors import UserError
from .events import EventTracker, Timeline, class_thresholds, top_k_mask

# raw sample formats: numpy dtype, full scale (as libsndfile reads PCM)
PCM_FORMATS = {'s16le': ('<i2', 32768.0), 'f32le': ('<f4', 1.0)}


def frame_bytes(fmt, channels):
    return np.dtype(PCM_FORMATS[fmt][0]).itemsize * channels


def decode_pcm(data, fmt, channels):
    """Interleaved little-endian samples -> mono float32; ValueError for
    a partial sample frame or non-finite samples."""
    size = frame_bytes(fmt, channels)
    if len(data) % size:
        raise ValueError(f'{len(data)} bytes is not a whole number of '
                         f'{channels}-channel {fmt} frames ({size} bytes '
                         f'each)')
    dtype, scale = PCM_FORMATS[fmt]
    wav = np.frombuffer(data, dtype).astype(np.float32)
    if scale != 1.0:
        wav /= scale
    elif not np.isfinite(wav).all():
        raise ValueError('the audio contains NaN or infinite samples')
    return to_mono(wav.reshape(-1, channels))


def pcm_chunks(stream, fmt, channels, name='stdin', frames=4096):
    """Mono float32 chunks of a binary ``stream`` of raw PCM, each as soon
    as it is read (a pipe gives what has arrived)."""
    size = frame_bytes(fmt, channels)
    read = getattr(stream, 'read1', stream.read)
    rest = b''
    while True:
        data = read(frames * size)
        if not data:
            break
        data = rest + data
        whole = len(data) - len(data) % size
        rest = data[whole:]
        if whole:
            try:
                yield decode_pcm(data[:whole], fmt, channels)
            except ValueError as e:
                raise UserError(f'{name}: {e}') from None
    if rest:
        raise UserError(f'{name}: ended inside a sample frame ({len(rest)} '
                        f'bytes left over); check --format and --channels')


def open_microphone():
    """The ``sounddevice`` module (an optional extra), once it is there
    and finds an input device; else a one-line error."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:
        raise UserError(f'--live records through the sounddevice package, '
                        f'which is not usable here ({e}): pip install '
                        f'sounddevice (and apt-get install libportaudio2)')
    try:
        sd.query_devices(kind='input')
    except Exception as e:
        raise UserError(f'--live: no microphone ({e}); plug one in, or '
                        f'pipe audio to --wav -') from None
    return sd


def record(sd, sample_rate, block_seconds=0.1):
    """Mono float32 chunks from the default input device (``sd``:
    :func:`open_microphone`'s), until Ctrl-C."""
    blocks = queue.Queue()
    with sd.InputStream(samplerate=sample_rate, channels=1, dtype='float32',
                        blocksize=int(block_seconds * sample_rate),
                        callback=lambda x, *_: blocks.put(x[:, 0].copy())):
        try:
            while True:
                yield blocks.get()
        except KeyboardInterrupt:
            return


@dataclass
class Step:
    """One scored window: its ``index``, ``start``/``end`` (seconds of
    audio in it), ``scores`` (of :attr:`LiveDetector.labels`) and the
    ``[(state, Event)]`` it opened or closed."""
    index: int
    start: float
    end: float
    scores: np.ndarray
    events: list


class LiveDetector:
    """``push(chunk)`` mono float32 at ``input_rate`` -> the :class:`Step`
    of every window it completed; ``end()`` -> the last windows (zero-
    padded, as a file's) and the events still open, closed. ``score``:
    ``waves -> [n, classes]`` (a model's ``scores`` or the service's
    batcher). ``keep``: remember scores and envelope for
    :meth:`timeline`."""

    def __init__(self, score, labels, sample_rate, windowing, input_rate,
                 threshold, threshold_off=None, min_event_seconds=0.0,
                 merge_gap_seconds=0.0, top_k_per_window=0, classes=None,
                 calibrated=None, batch_size=16, keep=False):
        self.score, self.sample_rate = score, sample_rate
        self.size, self.hop = windowing.samples(sample_rate)
        self.cutter = WindowCutter(self.size, self.hop)
        self.resample = _ResampleStream(input_rate, sample_rate)
        self.columns = [list(labels).index(c) for c in classes] \
            if classes else None
        self.labels = list(classes or labels)
        on, off = class_thresholds(threshold, threshold_off, self.labels,
                                   calibrated)
        self.tracker = EventTracker(
            self.labels, self.size / sample_rate, self.hop / sample_rate,
            on, off, min_event_seconds, merge_gap_seconds)
        self.top_k, self.batch_size = top_k_per_window, batch_size
        self.keep, self.kept, self.envelope = keep, [], []
        self.started = time.perf_counter()

    @property
    def duration(self):
        """Seconds of audio in so far (at the model's rate)."""
        return self.cutter.samples / self.sample_rate

    def push(self, chunk):
        self.cutter.push(self.resample(chunk, last=False))
        return self._run(list(self.cutter.full()))

    def end(self):
        """``(steps, events)``: the tail's windows, then the closing of
        every event still open."""
        self.cutter.push(self.resample(np.zeros(0, np.float32), last=True))
        steps = self._run(list(self.cutter.end()))
        return steps, self.tracker.finish(self.duration)

    def _run(self, windows):
        steps = []
        for i in range(0, len(windows), self.batch_size):
            batch = windows[i:i + self.batch_size]
            scores = np.asarray(self.score([np.pad(
                w, (0, self.size - len(w))) for w in batch]), np.float32)
            if not np.isfinite(scores).all():
                raise ValueError('the model gave non-finite scores')
            active = top_k_mask(scores, self.top_k)
            if self.columns:
                scores, active = (scores[:, self.columns],
                                  active[:, self.columns])
            for w, row, act in zip(batch, scores, active):
                k = self.tracker.windows
                start = k * self.hop
                if self.keep:
                    self._keep(k, w, row)
                steps.append(Step(k, start / self.sample_rate,
                                  (start + len(w)) / self.sample_rate, row,
                                  self.tracker.push(row, act)))
        return steps

    def _keep(self, k, wav, row):
        lo, hi = (self.size - self.hop) // 2, (self.size + self.hop) // 2
        region = wav[0 if k == 0 else lo:hi if len(wav) == self.size
                     else len(wav)]
        self.envelope.append(float(np.abs(region).max())
                             if len(region) else 0.0)
        self.kept.append(row)

    def timeline(self, path):
        """The :class:`..events.Timeline` of the audio so far (``keep``)."""
        n = len(self.labels)
        return Timeline(
            path, self.labels, np.array(self.kept, np.float32).reshape(-1, n),
            np.array(self.envelope, np.float32), self.size / self.sample_rate,
            self.hop / self.sample_rate, self.duration,
            time.perf_counter() - self.started)
