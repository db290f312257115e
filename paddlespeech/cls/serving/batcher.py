"""Micro-batching: clips from concurrent requests scored together.

Requests put their clips (windows) in a queue; one inference thread per
predictor takes up to ``max_batch_size`` clips of equal length, the
oldest first, and answers each caller. It waits for more clips only while
requests that have not handed in their clips yet are being read, and at
most ``max_wait_ms`` after the oldest clip arrived: an idle service adds
no wait to a lone request, a busy one fills its batches. Clips of other
lengths wait for a batch of their own. A clip's scores do not depend on
its batch (the rule of ``deploy/predict.py``).

A predictor whose process dies is replaced: the clips of its lost batch
(and, when no other predictor is ready, every queued clip) fail with
:class:`Unavailable`, a new one is made, and failed restarts are retried
with backoff, ``max_restarts`` times in a row before ``on_fatal``.
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


class Unavailable(RuntimeError):
    """No predictor can take clips now (one is being restarted): the
    client should retry shortly."""


class Closed(Unavailable):
    """The batcher is shutting down (or never started) and takes no clips."""


class GaveUp(RuntimeError):
    """A dead predictor could not be replaced: the service must stop."""


_IDLE_CHECK_S = 0.5  # how soon an idle worker notices its predictor died


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
    in each of ``workers`` inference threads, which own their predictor
    (created, warmed up and run on that thread), and again there when a
    predictor with an ``alive`` attribute dies (see the module's doc).
    ``on_fatal(error)`` is told when a first load fails or restarts keep
    failing (:class:`GaveUp`)."""

    def __init__(self, make_predictor, workers=1, max_batch_size=8,
                 max_wait_ms=10.0, warmup=None, on_fatal=None,
                 max_restarts=5, backoff_s=0.5):
        if max_batch_size < 1 or workers < 1 or max_wait_ms < 0:
            raise ValueError('need max_batch_size >= 1, workers >= 1, '
                             'max_wait_ms >= 0')
        self.make_predictor, self.warmup = make_predictor, warmup
        self.workers, self.max_batch_size = workers, max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.on_fatal = on_fatal
        self.max_restarts, self.backoff_s = max_restarts, backoff_s
        self.restarts = 0  # predictors replaced so far
        self.predictor = None  # the first one made: labels, feature, task
        self._batch_sizes = Counter()  # batch size -> batches run
        self._cond = threading.Condition()
        self._groups = {}  # clip length -> deque of _Clip, oldest first
        self._expected = 0  # requests being read, clips not handed in yet
        self._ready = 0
        self._loaded = False  # some predictor was ready once
        self._closing = False
        self._threads = []
        self._predictors = {}  # thread name -> its predictor now

    @property
    def ready(self):
        """Every predictor loaded and warmed up."""
        return self._ready == self.workers and not self._closing

    @property
    def state(self):
        """``loading`` (never ready yet), ``restarting``, ``ready`` or
        ``closing``."""
        if self._closing:
            return 'closing'
        if self.ready:
            return 'ready'
        return 'restarting' if self._loaded else 'loading'

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
        """Score the clips already queued, then stop the threads. After
        ``timeout`` seconds the clips still queued fail with
        :class:`Closed` and predictors still running are ended."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        end = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if end is None else max(0.0, end - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            log.error('error: the inference did not stop within %g s; '
                      'ended it', timeout)
            with self._cond:
                self._fail_queued(Closed('the service is shutting down'))
                running = list(self._predictors.values())
            for p in running:
                getattr(p, 'kill', lambda: None)()
            for t in self._threads:
                t.join(5)

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
        :class:`Closed` when shutting down, :class:`Unavailable` while no
        predictor is ready or when the one scoring them died, and what the
        predictor raised for a batch that failed."""
        clips = [_Clip(w) for w in waves]
        with self._cond:
            if self._closing or not self._threads:
                raise Closed('the service is shutting down')
            if self._ready == 0:
                raise Unavailable(
                    'the inference process is being restarted; retry '
                    'shortly' if self._loaded else 'the model is loading')
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

    def _next_batch(self, alive):
        """The oldest clip's batch, once full, due, or nothing more is
        coming; None when closed and empty, or when ``alive()`` turns
        false while idle. Called holding the lock."""
        while True:
            if not self._groups:
                if self._closing or not alive():
                    return None
                self._cond.wait(_IDLE_CHECK_S)
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

    def _fail_queued(self, error):
        """Every queued clip fails with ``error``. Holding the lock."""
        for group in self._groups.values():
            for c in group:
                c.future.set_exception(error)
        self._groups.clear()

    def _fatal(self, error):
        """No more clips taken, the queued ones fail; ``on_fatal`` stops
        the server."""
        with self._cond:
            self._closing = True
            self._fail_queued(Closed(f'the service is stopping: {error}'))
            self._cond.notify_all()
        if self.on_fatal is not None:
            self.on_fatal(error)

    def _pause(self, seconds):
        """Sleep unless closing; whether it is closing."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closing, seconds)

    def _work(self):
        """Load, serve; when the predictor dies, make another (after a
        backoff that doubles with each failed attempt in a row)."""
        failures, name = 0, threading.current_thread().name
        while True:
            predictor = None
            try:
                predictor = self.make_predictor()
                with self._cond:
                    self._predictors[name] = predictor
                if self.warmup is not None:
                    self.warmup(predictor)
                if not getattr(predictor, 'alive', True):
                    code = getattr(predictor, 'exitcode', None)
                    raise RuntimeError(f'the inference process ended while '
                                       f'starting (exit code {code})')
            except BaseException as e:  # noqa: B902  (reported, retried)
                _close(predictor)
                if not self._loaded:
                    log.error('error: cannot load the model: %s', e)
                    self._fatal(e)
                    return
                failures += 1
                if failures > self.max_restarts:
                    self._fatal(GaveUp(
                        f'the inference process died and could not be '
                        f'restarted ({failures} attempts, --max_restarts '
                        f'{self.max_restarts}): {e}'))
                    return
                log.error('error: restarting the inference process failed '
                          '(attempt %d of %d): %s', failures,
                          self.max_restarts + 1, e)
                if self._pause(self.backoff_s * 2 ** (failures - 1)):
                    return
                continue
            failures = 0
            try:
                died = self._serve(predictor)
            finally:
                with self._cond:
                    self._predictors.pop(name, None)
                _close(predictor)
            if not died or self._closing:
                return
            with self._cond:
                self.restarts += 1
            log.error('error: %s; restarting it', died)

    def _serve(self, predictor):
        """Run batches until closed (None) or the predictor dies (the
        error)."""
        with self._cond:
            if self.predictor is None:
                self.predictor = predictor
            self._ready += 1
            self._loaded = True
        heap = HeapLimit()  # batches of ever other shapes fragment the heap
        alive = lambda: getattr(predictor, 'alive', True)  # noqa: E731
        while True:
            with self._cond:
                batch = self._next_batch(alive)
                if batch is None and not self._closing:
                    return self._lost(RuntimeError(
                        f'the inference process ended (exit code '
                        f'{getattr(predictor, "exitcode", None)})'), [])
            if batch is None:
                return None
            start = time.monotonic()
            try:
                scores = predictor([c.wave for c in batch])
            except Exception as e:
                if not alive():  # its process is gone
                    with self._cond:
                        return self._lost(e, batch)
                log.error('error: a batch of %d clips failed: %s',
                          len(batch), e)
                for c in batch:
                    c.future.set_exception(e)
                continue
            ran = (start, time.monotonic())
            with self._cond:
                self._batch_sizes[len(batch)] += 1
            for c, s in zip(batch, scores):
                c.ran = ran
                c.future.set_result(s)
            heap.check()

    def _lost(self, error, batch):
        """A predictor died: its batch fails, and the queued clips too when
        no predictor is left to take them. Holding the lock."""
        self._ready -= 1
        lost = Unavailable(f'{error}; it is being restarted: retry shortly')
        for c in batch:
            c.future.set_exception(lost)
        if self._ready == 0:
            self._fail_queued(lost)
        return error


def _close(predictor):
    """Ends a predictor that has a process of its own."""
    if predictor is not None and hasattr(predictor, 'close'):
        predictor.close()
