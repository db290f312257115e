"""A predictor in a child process.

Paddle Inference keeps the GIL for the whole of a run (a CNN14 batch of
eight 5 s clips: about a second), so a predictor inside the server's
process stalls every other thread meanwhile: the event loop, ``/healthz``,
the reading and decoding of the next requests. In a process of its own it
runs beside them.
"""
import multiprocessing
import pickle
import signal

from ..scoring import SoundModel


class ProcessPredictor(SoundModel):
    """``open_model(**kwargs)`` in a child process, a
    :class:`..scoring.SoundModel` like it. The child picks the device
    (``device=None``: a GPU if there is one), so that the caller's own
    process never loads Paddle. Errors come back as the exceptions the
    model raised. The child ignores SIGINT and SIGTERM (the server
    answers the requests in flight first) and ends when its pipe closes:
    :meth:`close`, or the caller's exit. A child that has not loaded the
    model after ``start_timeout`` seconds is killed (RuntimeError)."""

    def __init__(self, start_timeout=300.0, **kwargs):
        context = multiprocessing.get_context('spawn')
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, kwargs),
                                       name='inference', daemon=True)
        self.process.start()
        child.close()
        try:
            if not self._conn.poll(start_timeout):
                self.kill()
                raise RuntimeError(f'the inference process did not load the '
                                   f'model within {start_timeout:g} s')
            shared = self._answer()
        except BaseException:
            self.close()  # the child ends by itself after a failed start
            raise
        self.meta, self.source, self.pad_windows = shared

    @property
    def alive(self):
        return self.process.is_alive()

    @property
    def exitcode(self):
        return self.process.exitcode

    def scores(self, waves):
        return self._ask('scores', waves)

    def embeddings(self, waves):
        return self._ask('embeddings', waves)

    def _ask(self, method, waves):
        try:
            self._conn.send((method, list(waves)))
        except OSError:
            self._ended()
        return self._answer()

    def _answer(self):
        try:
            ok, value = self._conn.recv()
        except (EOFError, OSError):
            self._ended()
        if not ok:
            raise value
        return value

    def _ended(self):
        self.process.join(5)
        raise RuntimeError(f'the inference process ended (exit code '
                           f'{self.process.exitcode})') from None

    def close(self):
        """Ends the child (once its current run is over); idempotent."""
        if not self._conn.closed:
            self._conn.close()
        self.process.join(30)
        self.kill()

    def kill(self):
        """Ends the child now (SIGKILL), even in the middle of a run."""
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def _ignore_stop_signals():
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)


def _serve(conn, kwargs):
    _ignore_stop_signals()
    from ..runtime import HeapLimit, prepare_process
    prepare_process()
    from ..opener import open_model
    try:
        model = open_model(**kwargs)
    except Exception as e:
        _ignore_stop_signals()  # again: importing Paddle set its own
        conn.send((False, _picklable(e)))
        return
    _ignore_stop_signals()
    conn.send((True, (model.meta, model.source, model.pad_windows)))
    heap = HeapLimit()  # batches of ever other shapes fragment the heap
    methods = {'scores': model.scores, 'embeddings': model.embeddings}
    while True:
        try:
            method, waves = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer = (True, methods[method](waves))
        except Exception as e:
            answer = (False, _picklable(e))
        conn.send(answer)
        heap.check()


def _picklable(e):
    """``e``, or a RuntimeError with its text where it does not survive
    pickling (exceptions whose constructor takes other arguments)."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f'{type(e).__name__}: {e}')
