"""The classifier behind the HTTP layer: uploaded files in, scores out.

Files are decoded and windowed exactly as ``deploy/predict.py`` reads
files (:func:`..prediction.predict_files`), their windows scored through
the shared :class:`.batcher.MicroBatcher`.
"""
import os
import threading
import time
from pathlib import Path

import numpy as np

from ..audio import (AudioBytes, AudioError, AudioTooLarge, Windowing,
                     check_header)
from ..artifact import read_export
from ..prediction import predict_files
from .batcher import MicroBatcher
from .protocol import TOO_LARGE, UNUSABLE, ClientError

UNAVAILABLE = 503
CLIENT_GONE = 499  # nginx's "client closed request"
CLIENT_GONE_MESSAGE = ('the client disconnected; its request was cancelled '
                       'before scoring')
# The rate and channels at which --max_seconds of audio bounds the samples
# decoded per file: stereo at 48 kHz, the most of common recordings.
BUDGET_RATE, BUDGET_CHANNELS = 48000, 2


class Service:
    """``admit(files)`` then ``classify(admitted)`` for request threads;
    ``start``/``close`` around the server's life. ``make_predictor()``
    builds one predictor of the export (in its inference thread). What the
    service says of the model (labels, windowing, ``/v1/model``) is the
    export's ``model.json`` (``meta``, read here when not given), so it is
    known before any predictor has loaded and without asking one.

    Bounds on a request's cost, checked from the headers before anything
    is decoded: ``max_seconds`` per file, samples per file
    (``max_seconds`` at :data:`BUDGET_RATE` x :data:`BUDGET_CHANNELS`),
    and ``max_inflight_seconds`` of audio admitted and not yet answered
    (more: 503, retry later). ``max_decoding`` requests are decoded and
    scored at once; the app makes the others wait their turn."""

    def __init__(self, model_dir, make_predictor, workers=1,
                 max_batch_size=8, max_wait_ms=10.0, max_seconds=600.0,
                 window_seconds=None, on_fatal=None, max_restarts=5,
                 max_inflight_seconds=1800.0, max_decoding=None,
                 meta=None, label_file=None):
        self.model_dir = Path(model_dir)
        self.meta = meta or read_export(model_dir, label_file)[2]
        self.max_seconds, self.window_seconds = max_seconds, window_seconds
        self.max_samples = max_seconds * BUDGET_RATE * BUDGET_CHANNELS
        self.max_inflight_seconds = max_inflight_seconds
        self.max_decoding = max_decoding or 2 * max_batch_size * workers
        self.batcher = MicroBatcher(make_predictor, workers, max_batch_size,
                                    max_wait_ms, warmup=self._warm_up,
                                    on_fatal=on_fatal,
                                    max_restarts=max_restarts)
        self.requests_in_flight = 0
        self.inflight_seconds = 0.0
        self._lock = threading.Lock()

    def start(self):
        self.batcher.start()
        return self

    def close(self, timeout=None):
        self.batcher.close(timeout)

    @property
    def ready(self):
        return self.batcher.ready

    @property
    def state(self):
        """``loading``, ``restarting``, ``ready`` or ``closing``."""
        return self.batcher.state

    @property
    def predictor(self):
        return self.batcher.predictor

    @property
    def labels(self):
        return self.meta.label_list

    @property
    def windowing(self):
        """The model's :class:`..audio.Windowing` (``--window_seconds``
        overrides its clip length), as ``deploy/predict.py`` cuts files."""
        return Windowing.of_model(self.meta.clip_seconds, self.window_seconds)

    def _warm_up(self, predictor):
        """One window-length clip: the first run of a shape is the slow one."""
        w = self.windowing
        sr = self.meta.feature.sample_rate
        size, _ = w.samples(sr)
        predictor([np.zeros(size if w.pad else min(size, 5 * sr),
                            np.float32)])

    def model_info(self):
        m = self.meta
        return {'model_dir': str(self.model_dir), 'labels': list(m.label_list),
                'num_classes': len(m.label_list),
                'feature': m.feature.to_dict(),
                'backbone': m.backbone,
                'multi_label': m.multi_label,
                'input': m.input,
                'thresholds': m.thresholds,  # calibrate.py's, or None
                'max_batch_size': self.batcher.max_batch_size,
                'max_seconds': self.max_seconds,
                'window_seconds': self.windowing.seconds}

    def stats(self):
        return {'ready': self.ready,
                'requests_in_flight': self.requests_in_flight,
                'inflight_seconds': round(self.inflight_seconds, 3),
                'restarts': self.batcher.restarts,
                'batches': {str(k): v for k, v in
                            self.batcher.batches_run().items()}}

    def admit(self, files):
        """``[(name, bytes)]`` -> :class:`Admitted`, whose ``with`` block
        holds its seconds of audio in flight. Each file's header is
        checked (a bad one fails alone); raises ClientError 413 when the
        request alone is over ``max_inflight_seconds``, 503 when it does
        not fit beside the requests in flight."""
        start = time.monotonic()
        results, usable = [None] * len(files), []
        for i, (name, data) in enumerate(files):
            try:
                source = AudioBytes(data, name)
                results[i] = self._check_header(source)
                usable.append((i, source))
            except (AudioError, ClientError) as e:
                results[i] = _client_error(e)
        seconds = sum(results[i] for i, _ in usable)
        if seconds > self.max_inflight_seconds:
            raise ClientError(TOO_LARGE, f'{seconds:.1f} s of audio in one '
                              f'request; this service holds at most '
                              f'{self.max_inflight_seconds:g} s at once '
                              f'(--max_inflight_seconds)')
        with self._lock:
            if self.inflight_seconds + seconds > self.max_inflight_seconds:
                raise ClientError(UNAVAILABLE, f'busy: '
                                  f'{self.inflight_seconds:.0f} s of audio '
                                  f'in flight (--max_inflight_seconds '
                                  f'{self.max_inflight_seconds:g}); retry '
                                  f'shortly')
            self.inflight_seconds += seconds
        return Admitted(self, results, usable, seconds,
                        time.monotonic() - start)

    def classify(self, files, cancelled=None):
        """``([(scores, duration) or ClientError], timing)`` for
        ``[(name, bytes)]`` or what :meth:`admit` made of them, results in
        order; a bad file fails alone. Windows of equal length, from one
        file or several, are handed to the batcher together; none once
        ``cancelled()`` (the client left) is true. ``timing``: seconds
        spent checking and decoding, queued and in predictor runs
        (``decode``, ``queue``, ``inference``)."""
        if not isinstance(files, Admitted):
            with self.admit(files) as admitted:
                return self.classify(admitted, cancelled)
        admitted = files
        feature = self.meta.feature
        results, usable = list(admitted.results), admitted.usable
        start = time.monotonic()
        with self.batcher.incoming() as ticket:
            windowing = self.windowing
            budget = _SampleBudget(
                admitted.seconds + len(usable) * windowing.seconds,
                feature.sample_rate)

            def score(waves):
                if cancelled is not None and cancelled():
                    raise ClientError(CLIENT_GONE, CLIENT_GONE_MESSAGE)
                budget.spend(waves)
                return self.batcher.score(waves, ticket)

            scored = predict_files([s for _, s in usable], feature, score,
                                   windowing,
                                   self.batcher.max_batch_size)
            for (i, _), (_, scores, error) in zip(usable, scored):
                results[i] = _client_error(error) if error else (
                    scores, results[i])
        total = time.monotonic() - start + admitted.checked
        return results, {'decode': total - ticket.waited - ticket.ran,
                         'queue': ticket.waited, 'inference': ticket.ran}

    def _check_header(self, source):
        try:
            seconds, _ = check_header(source, self.max_samples)
        except AudioTooLarge as e:
            raise ClientError(TOO_LARGE, f'{e} (--max_seconds at '
                              f'{BUDGET_RATE // 1000} kHz x '
                              f'{BUDGET_CHANNELS} channels)')
        if seconds > self.max_seconds:
            raise ClientError(TOO_LARGE, f'{source}: {seconds:.1f} s of audio;'
                              f' this service takes at most '
                              f'{self.max_seconds:g} s per file '
                              f'(--max_seconds)')
        return seconds


class Admitted:
    """A request's files past their header checks: per-file results so
    far (seconds, or the ClientError of a refused file), the usable
    ``[(index, AudioBytes)]``, and its ``seconds`` of audio, held in the
    service's count of audio in flight until the ``with`` block ends."""

    def __init__(self, service, results, usable, seconds, checked):
        self.service, self.results, self.usable = service, results, usable
        self.seconds, self.checked = seconds, checked

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with self.service._lock:
            self.service.inflight_seconds -= self.seconds
            self.seconds = 0.0


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
