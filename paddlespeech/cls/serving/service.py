"""The classifier behind the HTTP layer: uploaded files in, scores out.

Files are decoded and windowed exactly as ``deploy/predict.py`` reads
files (:func:`..prediction.predict_files`), their windows scored through
the shared :class:`.batcher.MicroBatcher`.
"""
import os
import time
from pathlib import Path

import numpy as np

from ..audio import AudioBytes, AudioError, Windowing, audio_seconds
from ..prediction import predict_files
from .batcher import MicroBatcher
from .protocol import TOO_LARGE, UNUSABLE, ClientError


class Service:
    """``classify(files)`` for request threads; ``start``/``close`` around
    the server's life. ``make_predictor()`` builds one predictor of the
    export (in its inference thread)."""

    def __init__(self, model_dir, make_predictor, workers=1,
                 max_batch_size=8, max_wait_ms=10.0, max_seconds=600.0,
                 window_seconds=None, on_fatal=None):
        self.model_dir = Path(model_dir)
        self.max_seconds, self.window_seconds = max_seconds, window_seconds
        self.batcher = MicroBatcher(make_predictor, workers, max_batch_size,
                                    max_wait_ms, warmup=self._warm_up,
                                    on_fatal=on_fatal)
        self.requests_in_flight = 0

    def start(self):
        self.batcher.start()
        return self

    def close(self):
        self.batcher.close()

    @property
    def ready(self):
        return self.batcher.ready

    @property
    def predictor(self):
        return self.batcher.predictor

    @property
    def labels(self):
        return self.predictor.labels

    @property
    def windowing(self):
        """The model's :class:`..audio.Windowing` (``--window_seconds``
        overrides its clip length), as ``deploy/predict.py`` cuts files."""
        return Windowing.of_model(self.predictor.clip_seconds,
                                  self.window_seconds)

    def _warm_up(self, predictor):
        """One window-length clip: the first run of a shape is the slow one."""
        sr = predictor.feature.sample_rate
        w = Windowing.of_model(predictor.clip_seconds, self.window_seconds)
        size, _ = w.samples(sr)
        predictor([np.zeros(size if w.pad else min(size, 5 * sr),
                            np.float32)])

    def model_info(self):
        p = self.predictor
        return {'model_dir': str(self.model_dir), 'labels': list(p.labels),
                'num_classes': len(p.labels),
                'feature': p.feature.to_dict(),
                'backbone': p.meta.backbone,
                'multi_label': p.task.multi_label,
                'input': p.meta.input,
                'max_batch_size': self.batcher.max_batch_size,
                'max_seconds': self.max_seconds,
                'window_seconds': self.windowing.seconds}

    def stats(self):
        return {'ready': self.ready,
                'requests_in_flight': self.requests_in_flight,
                'batches': {str(k): v for k, v in
                            self.batcher.batches_run().items()}}

    def classify(self, files):
        """``([(scores, duration) or ClientError], timing)`` for
        ``[(name, bytes)]``, results in order; a bad file fails alone.
        Windows of equal length, from one file or several, are handed to
        the batcher together. ``timing``: seconds spent decoding, queued
        and in predictor runs (``decode``, ``queue``, ``inference``)."""
        feature = self.predictor.feature
        results, usable = [None] * len(files), []
        start = time.monotonic()
        with self.batcher.incoming() as ticket:
            for i, (name, data) in enumerate(files):
                try:
                    source = AudioBytes(data, name)
                    results[i] = self._check_length(source)
                    usable.append((i, source))
                except (AudioError, ClientError) as e:
                    results[i] = _client_error(e)
            windowing = self.windowing
            budget = _SampleBudget(
                sum(results[i] for i, _ in usable) + len(usable) *
                windowing.seconds, feature.sample_rate)

            def score(waves):
                budget.spend(waves)
                return self.batcher.score(waves, ticket)

            scored = predict_files([s for _, s in usable], feature, score,
                                   windowing,
                                   self.batcher.max_batch_size)
            for (i, _), (_, scores, error) in zip(usable, scored):
                results[i] = _client_error(error) if error else (
                    scores, results[i])
        total = time.monotonic() - start
        return results, {'decode': total - ticket.waited - ticket.ran,
                         'queue': ticket.waited, 'inference': ticket.ran}

    def _check_length(self, source):
        seconds = audio_seconds(source)
        if seconds > self.max_seconds:
            raise ClientError(TOO_LARGE, f'{source}: {seconds:.1f} s of audio;'
                              f' this service takes at most '
                              f'{self.max_seconds:g} s per file '
                              f'(--max_seconds)')
        return seconds


class _SampleBudget:
    """Refuses more samples than the headers promised (plus a window per
    file): a file whose header under-states its length stays bounded."""

    def __init__(self, seconds, sample_rate):
        self.left = int(seconds * sample_rate)

    def spend(self, waves):
        self.left -= sum(len(w) for w in waves)
        if self.left < 0:
            raise ClientError(TOO_LARGE, 'the audio is longer than its '
                              'header says; refused (--max_seconds)')


def _client_error(e):
    if isinstance(e, ClientError):
        return e
    return ClientError(UNUSABLE, str(e))


def default_threads(workers):
    """CPU threads per predictor: the cores shared by the workers."""
    return max(1, len(os.sched_getaffinity(0)) // workers)
