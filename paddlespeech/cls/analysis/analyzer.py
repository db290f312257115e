"""One file's analysis, the same in every engine: its windows scored as
``detect.py`` scores them (:func:`..events.stream_timeline`), its events
found as ``detect.py`` finds them, and the rows of ``files/``,
``windows/`` and ``events/`` as small numpy arrays (cheap to send between
processes)."""
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..audio import AudioError, audio_header
from ..errors import UserError
from ..events import (class_columns, class_thresholds, detection_windowing,
                      stream_timeline, timeline_events)

@dataclass
class Settings:
    """What shapes a worker's results: the ``detect:`` and ``analyze:``
    sections and the windows per model run (small and picklable)."""
    detect: object
    analyze: object
    batch_size: int

    def record(self):
        """The values a directory's results depend on (``run.json``
        ``settings``): other values into the same directory are refused."""
        d, a = self.detect, self.analyze
        return {'window_seconds': d.window_seconds,
                'hop_seconds': d.hop_seconds, 'threshold': d.threshold,
                'threshold_off': d.threshold_off,
                'min_event_seconds': d.min_event_seconds,
                'merge_gap_seconds': d.merge_gap_seconds,
                'top_k_per_window': d.top_k_per_window,
                'classes': d.classes, 'top_k': a.top_k, 'scores': a.scores,
                'embeddings': a.embeddings}


@dataclass
class Result:
    """One file's rows. ``file``: its ``files/`` row (a dict);
    ``top_index``/``top_scores``: ``[windows, k]``; ``scores``:
    ``[windows, classes]`` (``--scores all``); ``embedding``: ``[windows,
    D]`` float16 (``--embeddings``); ``events``: ``(onset, offset, label,
    score)`` tuples."""
    file: dict
    start: np.ndarray
    end: np.ndarray
    top_index: np.ndarray
    top_scores: np.ndarray
    scores: Optional[np.ndarray] = None
    embedding: Optional[np.ndarray] = None
    events: tuple = ()
    audio_seconds: float = 0.0
    mtime_ns: Optional[int] = None  # exact, for the journal

    @property
    def ok(self):
        return self.file['status'] == 'ok'


class FileAnalyzer:
    """``analyzer(path)`` -> :class:`Result`, with ``model`` (a
    :class:`..scoring.SoundModel`) and the :class:`Settings`. A file that
    cannot be used gives a ``status=error`` result with a one-line reason,
    never an exception."""

    def __init__(self, model, settings):
        d, a = settings.detect, settings.analyze
        self.model, self.settings = model, settings
        self.windowing = detection_windowing(
            model.clip_seconds, d.window_seconds, d.hop_seconds)
        self.classes = class_columns(d.classes, model.labels)
        self.on, self.off = class_thresholds(
            d.threshold, d.threshold_off, model.labels,
            model.meta.thresholds, model.source)
        self.k = min(a.top_k, len(model.labels))
        self.scores_all = a.scores == 'all'
        self.embeddings = a.embeddings
        if a.embeddings and not model.embedding_size:
            raise UserError(f'--embeddings: {model.source} gives no '
                            f'embeddings (an export of an earlier version, '
                            f'or upstream\'s): export the checkpoint again '
                            f'with export_model.py')

    def __call__(self, path):
        try:
            st = os.stat(path)
            size, mtime_ns, mtime = st.st_size, st.st_mtime_ns, st.st_mtime
        except OSError:
            size = mtime_ns = mtime = None
        row = {'path': str(path), 'size': size, 'mtime': mtime,
               'duration': None, 'sample_rate': None, 'channels': None,
               'status': 'ok', 'error': None, 'windows': 0, 'seconds': 0.0}
        try:
            row['duration'], row['sample_rate'], row['channels'] = \
                audio_header(path)
            result = self._analyze(path, row)
        except AudioError as e:
            result = self._failed(row, e.reason)
        except UserError:  # the model's, not the file's
            raise
        except Exception as e:  # a decoder's own failure: this file only
            result = self._failed(row, f'{type(e).__name__}: {e}')
        result.mtime_ns = mtime_ns
        return result

    def _analyze(self, path, row):
        model = self.model
        embeddings = []
        if self.embeddings:
            both = model.scores_and_embeddings

            def score(waves):
                s, e = both(waves)
                embeddings.append(np.asarray(e, np.float16))
                return s
        else:
            score = model.scores
        tl = stream_timeline(path, score, model.labels,
                             model.feature.sample_rate, self.windowing,
                             self.settings.batch_size)
        if not np.isfinite(tl.scores).all():
            return self._failed(row, 'the model gave non-finite scores')
        _, events = timeline_events(tl, self.on, self.off,
                                    self.settings.detect, self.classes)
        n = len(tl.scores)
        start = np.arange(n) * tl.hop_seconds
        end = np.minimum(start + tl.window_seconds, tl.duration)
        top = np.argsort(-tl.scores, axis=1, kind='stable')[:, :self.k]
        row.update(windows=n, seconds=tl.duration)
        return Result(
            row, start, end, top.astype(np.int32),
            np.take_along_axis(tl.scores, top, 1).astype(np.float32),
            tl.scores.astype(np.float32) if self.scores_all else None,
            np.concatenate(embeddings) if self.embeddings else None,
            tuple((e.onset, e.offset, e.label, e.score) for e in events),
            tl.duration)

    def _failed(self, row, reason):
        row.update(status='error', error=' '.join(str(reason).split()),
                   windows=0, seconds=0.0)
        empty = np.zeros(0)
        return Result(row, empty, empty, np.zeros((0, self.k), np.int32),
                      np.zeros((0, self.k), np.float32))


def header_hours(paths):
    """Audio hours of ``paths`` by their headers (unreadable ones: 0), for
    a progress bar's total."""
    total = 0.0
    for p in paths:
        try:
            total += audio_header(p)[0]
        except (AudioError, OSError):
            pass
    return total / 3600


def cpu_count():
    return len(os.sched_getaffinity(0))
