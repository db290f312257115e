"""Engines: what turns a list of files into :class:`.analyzer.Result` s, in
the order given. Each holds models (one per worker) opened with
``open_model(**model_kwargs)``; ``describe()`` gives the model's
``(meta, labels, windowing)`` and ``results(paths)`` the results one at a
time, so that one writer commits them as they come."""
import math
import multiprocessing
import signal

from ..audio import AudioError, Windowing, audio_header
from .analyzer import FileAnalyzer, cpu_count
from .reading import ReaderProcess


def describe(analyzer):
    w = analyzer.windowing
    return (analyzer.model.meta.to_dict(), list(analyzer.model.labels),
            {'window_seconds': w.seconds, 'hop_seconds': w.hop_seconds,
             'pad': w.pad})


def open_analyzer(model_kwargs, settings):
    from ..opener import open_model
    return FileAnalyzer(open_model(**model_kwargs), settings)


class InProcess:
    """One model in this process, the files read by a reader process
    beside it (:class:`.reading.ReaderProcess`) while the model runs."""

    def __init__(self, model_kwargs, settings):
        self.reader = ReaderProcess()
        try:
            self.analyzer = open_analyzer(model_kwargs, settings)
        except BaseException:
            self.reader.close()
            raise

    def describe(self):
        return describe(self.analyzer)

    def results(self, paths):
        paths = list(paths)
        return self.analyzer.results(
            paths, self.reader.read(paths, *self.analyzer.reader_args()))

    def close(self):
        self.reader.close()
        self.analyzer.model.close()


_worker = None


def _init_worker(model_kwargs, settings):
    """A pool process: its own model; Ctrl-C is the parent's to handle."""
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..runtime import prepare_process
    prepare_process()
    try:
        _worker = open_analyzer(model_kwargs, settings)
    except Exception as e:  # raised by _describe: a pool would respawn
        _worker = e
    # Paddle sets its own: a terminated worker ends quietly
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _describe(_):
    if isinstance(_worker, Exception):
        raise _worker
    return describe(_worker)


def _analyze(paths):
    return list(_worker.results(paths))


def chunks(paths, windowing, batch_size):
    """Runs of successive ``paths`` of about ``batch_size`` windows in
    all (by their headers; a file that has none counts as one window):
    a pool worker's share, whose short files fill its batches together."""
    chunk, windows = [], 0
    for path in paths:
        try:
            seconds = audio_header(path)[0]
        except (AudioError, OSError):
            seconds = 0.0
        chunk.append(path)
        hop = windowing.hop_seconds or windowing.seconds
        windows += max(1, math.ceil((seconds - windowing.seconds) / hop) + 1)
        if windows >= batch_size:
            yield chunk
            chunk, windows = [], 0
    if chunk:
        yield chunk


class LocalPool:
    """``workers`` processes, each with its own model of ``cpu_threads``
    threads (default: the cores shared among them): while one decodes a
    file, another runs its model. Results come back in the order given."""

    def __init__(self, model_kwargs, settings, workers):
        threads = model_kwargs.get('cpu_threads') or max(
            1, cpu_count() // workers)
        kwargs = dict(model_kwargs, cpu_threads=threads)
        context = multiprocessing.get_context('spawn')
        self.pool = context.Pool(workers, _init_worker,
                                 (kwargs, settings))
        self.workers, self.settings = workers, settings

    def describe(self):
        described = self.pool.apply(_describe, (None,))
        w = described[2]
        self.windowing = Windowing(w['window_seconds'], w['hop_seconds'],
                                   w['pad'])
        return described

    def results(self, paths):
        for part in self.pool.imap(_analyze, chunks(
                paths, self.windowing, self.settings.batch_size)):
            yield from part

    def close(self):
        """Ends the workers (those still busy after a stop: at once)."""
        self.pool.terminate()
        self.pool.join()


def local_engine(model_kwargs, settings, workers=1):
    """The local engine: the model in this process for one worker, a pool
    of processes for more."""
    if workers <= 1:
        return InProcess(model_kwargs, settings)
    return LocalPool(model_kwargs, settings, workers)
