"""Files' analysis, the same in every engine: their windows (read by
:mod:`.reading`) scored as ``detect.py`` scores them, several files'
windows to a batch, their events found as ``detect.py`` finds them
(:func:`..events.timeline_events`), and each file's rows of ``files/``,
``windows/`` and ``events/`` as small numpy arrays (cheap to send between
processes)."""
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..audio import AudioError, audio_header
from ..errors import UserError
from ..events import (Timeline, class_columns, class_thresholds,
                      detection_windowing, timeline_events)
from ..runtime import HeapLimit
from .reading import Batch, Restart, failure, read_batches

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


class _File:
    """A file being analysed: its scores as batches come back, then what
    its reader found (:class:`.reading.FileRead`)."""

    def __init__(self):
        self.scores, self.embeddings, self.scored = [], [], 0
        self.read, self.error = None, None

    @property
    def complete(self):
        return self.read is not None and (
            self.read.error is not None or self.error is not None or
            self.scored == len(self.read.envelope))


class FileAnalyzer:
    """``analyzer.results(paths)`` -> :class:`Result` s in order, with
    ``model`` (a :class:`..scoring.SoundModel`) and the :class:`Settings`.
    A file that cannot be used gives a ``status=error`` result with a
    one-line reason, never an exception."""

    def __init__(self, model, settings):
        d, a = settings.detect, settings.analyze
        self.model, self.settings = model, settings
        # one for all calls of results: a pool worker's come run by run
        self.heap = HeapLimit()
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

    def reader_args(self):
        """:func:`.reading.read_batches`' arguments after the paths."""
        return (self.model.feature.sample_rate, self.windowing,
                self.settings.batch_size, self.model.front_end())

    def __call__(self, path):
        return next(self.results([path]))

    def results(self, paths, reader=None):
        """The results of ``paths`` in order, the windows of successive
        files scored together. ``reader``: the items of
        :func:`.reading.read_batches` for them, if read elsewhere (a
        :class:`.reading.ReaderProcess`)."""
        if reader is None:
            reader = read_batches(paths, *self.reader_args())
        files, next_index = {}, 0
        for item in reader:
            if isinstance(item, Batch):
                self._score(item, files)
                self.heap.check()
            elif isinstance(item, Restart):
                for index in [i for i in files if i >= item.index]:
                    del files[index]
            else:
                files.setdefault(item.index, _File()).read = item
            while next_index in files and files[next_index].complete:
                yield self._result(files.pop(next_index))
                next_index += 1

    def run(self, batch):
        """The model on ``batch`` (a :class:`.reading.Batch`): its scores
        (and embeddings), or the one-line error of its run; the inputs
        are let go."""
        try:
            if self.embeddings:
                scores, emb = self.model.scores_and_embeddings(batch.inputs)
                batch.embeddings = np.asarray(emb, np.float16)
            else:
                scores = self.model.scores(batch.inputs)
            batch.scores = np.asarray(scores, np.float32)
        except UserError:  # the model's, not the files'
            raise
        except Exception as e:  # this batch's files only
            batch.error = failure(e)
        batch.inputs = None
        return batch

    def _score(self, batch, files):
        """Each owner's rows of a batch (scored here, unless elsewhere)
        to its file."""
        if batch.scores is None and batch.error is None:
            self.run(batch)
        at = 0
        for index, n in batch.owners:
            f = files.setdefault(index, _File())
            if batch.error is not None:
                f.error = batch.error
                continue
            f.scores.append(batch.scores[at:at + n])
            if batch.embeddings is not None:
                f.embeddings.append(batch.embeddings[at:at + n])
            f.scored += n
            at += n

    def _result(self, f):
        read, row = f.read, f.read.row
        error = read.error or f.error
        if error is None:
            sr = self.model.feature.sample_rate
            size, hop = self.windowing.samples(sr)
            # the first window's region reaches back to 0 and the last
            # one's to the end (events.stream_timeline)
            tl = Timeline(row['path'], list(self.model.labels),
                          np.concatenate(f.scores), read.envelope, size / sr,
                          hop / sr, read.samples / sr)
            if not np.isfinite(tl.scores).all():
                error = 'the model gave non-finite scores'
        if error is not None:
            row.update(status='error', error=error, windows=0, seconds=0.0)
            empty = np.zeros(0)
            return Result(row, empty, empty, np.zeros((0, self.k), np.int32),
                          np.zeros((0, self.k), np.float32),
                          mtime_ns=read.mtime_ns)
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
            tl.scores if self.scores_all else None,
            np.concatenate(f.embeddings) if self.embeddings else None,
            tuple((e.onset, e.offset, e.label, e.score) for e in events),
            tl.duration, read.mtime_ns)


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
