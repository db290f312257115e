"""Micro-batching: clips from concurrent requests scored together.

Requests put their clips (windows) in a queue; one inference thread per
predictor takes up to ``max_batch_size`` clips of equal length, the
oldest first, and answers each caller. It waits for more clips only while
requests that have not handed in their clips yet are being read, and at
most ``max_wait_ms`` after the oldest clip arrived: an idle service adds
no wait to a lone request, a busy one fills its batches. Clips of other
lengths wait for a batch of their own. A clip's scores do not depend on
its batch (the rule of ``deploy/predict.py``).
"""
import contextlib
import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future

import numpy as np

from ..runtime import HeapLimit

log = logging.getLogger('paddlespeech.cls.serving')


class Closed(RuntimeError):
    """The batcher is shutting down (or never started) and takes no clips."""


class _Clip:
    __slots__ = ('wave', 'future', 'arrived', 'ran')

    def __init__(self, wave):
        self.wave, self.future = wave, Future()
        self.arrived = time.monotonic()
        self.ran = None  # (start, end) of its batch's predictor run


class _Ticket:
    """One request: whether its clips are in, and the seconds they spent
    queued (``waited``) and in predictor runs (``ran``)."""
    __slots__ = ('handed_in', 'waited', 'ran')

    def __init__(self):
        self.handed_in = False
        self.waited = self.ran = 0.0


class MicroBatcher:
    """``score(waves)`` from any thread; ``make_predictor()`` is called
    once in each of ``workers`` inference threads, which own their
    predictor (created, warmed up and run on that thread)."""

    def __init__(self, make_predictor, workers=1, max_batch_size=8,
                 max_wait_ms=10.0, warmup=None, on_fatal=None):
        if max_batch_size < 1 or workers < 1 or max_wait_ms < 0:
            raise ValueError('need max_batch_size >= 1, workers >= 1, '
                             'max_wait_ms >= 0')
        self.make_predictor, self.warmup = make_predictor, warmup
        self.workers, self.max_batch_size = workers, max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.on_fatal = on_fatal
        self.predictor = None  # the first one made: labels, feature, task
        self._batch_sizes = Counter()  # batch size -> batches run
        self._cond = threading.Condition()
        self._groups = {}  # clip length -> deque of _Clip, oldest first
        self._expected = 0  # requests being read, clips not handed in yet
        self._ready = 0
        self._closing = False
        self._threads = []

    @property
    def ready(self):
        """Every predictor loaded and warmed up."""
        return self._ready == self.workers and not self._closing

    def batches_run(self):
        """``{batch size: batches run}`` so far (a copy)."""
        with self._cond:
            return dict(sorted(self._batch_sizes.items()))

    def start(self):
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f'inference-{i}',
                                 daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self, timeout=None):
        """Score the clips already queued, then stop the threads."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    @contextlib.contextmanager
    def incoming(self):
        """Around reading a request: while it is open, batches of its clip
        length may wait (``max_wait_ms``) for its clips."""
        ticket = _Ticket()
        with self._cond:
            self._expected += 1
        try:
            yield ticket
        finally:
            with self._cond:
                self._hand_in(ticket)

    def _hand_in(self, ticket):
        if ticket is not None and not ticket.handed_in:
            ticket.handed_in = True
            self._expected -= 1
            self._cond.notify_all()

    def score(self, waves, ticket=None):
        """Scores ``[len(waves), classes]``; blocks until they are done,
        and adds the seconds queued and run to ``ticket``. Raises
        :class:`Closed` when shutting down, and what the predictor raised
        for a batch that failed."""
        clips = [_Clip(w) for w in waves]
        with self._cond:
            if self._closing or not self._threads:
                raise Closed('the service is shutting down')
            for c in clips:
                self._groups.setdefault(len(c.wave), deque()).append(c)
            self._hand_in(ticket)
            self._cond.notify_all()
        scores = np.stack([c.future.result() for c in clips])
        if ticket is not None:
            ran = sum(end - start for start, end in {c.ran for c in clips})
            ticket.ran += ran
            ticket.waited += time.monotonic() - clips[0].arrived - ran
        return scores

    def _next_batch(self):
        """The oldest clip's batch, once full, due, or nothing more is
        coming; None when closed and empty. Called holding the lock."""
        while True:
            if not self._groups:
                if self._closing:
                    return None
                self._cond.wait()
                continue
            length, group = min(self._groups.items(),
                                key=lambda item: item[1][0].arrived)
            wait = group[0].arrived + self.max_wait - time.monotonic()
            if (len(group) < self.max_batch_size and self._expected > 0
                    and wait > 0 and not self._closing):
                self._cond.wait(wait)
                continue  # another thread may have taken the group
            batch = [group.popleft() for _ in
                     range(min(len(group), self.max_batch_size))]
            if not group:
                del self._groups[length]
            return batch

    def _fatal(self, error):
        """No more clips taken; ``on_fatal`` stops the server."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self.on_fatal is not None:
            self.on_fatal(error)

    def _work(self):
        predictor = None
        try:
            predictor = self.make_predictor()
            if self.warmup is not None:
                self.warmup(predictor)
        except BaseException as e:  # noqa: B902  (reported, then fatal)
            log.error('error: cannot load the model: %s', e)
            _close(predictor)
            self._fatal(e)
            return
        try:
            self._serve(predictor)
        finally:
            _close(predictor)

    def _serve(self, predictor):
        with self._cond:
            if self.predictor is None:
                self.predictor = predictor
            self._ready += 1
        heap = HeapLimit()  # batches of ever other shapes fragment the heap
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            start = time.monotonic()
            try:
                scores = predictor([c.wave for c in batch])
            except Exception as e:
                log.error('error: a batch of %d clips failed: %s',
                          len(batch), e)
                for c in batch:
                    c.future.set_exception(e)
                if not getattr(predictor, 'alive', True):
                    self._fatal(e)  # its process is gone
                    return
                continue
            ran = (start, time.monotonic())
            with self._cond:
                self._batch_sizes[len(batch)] += 1
            for c, s in zip(batch, scores):
                c.ran = ran
                c.future.set_result(s)
            heap.check()


def _close(predictor):
    """Ends a predictor that has a process of its own."""
    if predictor is not None and hasattr(predictor, 'close'):
        predictor.close()
