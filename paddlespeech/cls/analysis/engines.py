"""Engines: what turns a list of files into :class:`.analyzer.Result` s, in
the order given. Each holds models (one per worker) opened with
``open_model(**model_kwargs)``; ``describe()`` gives the model's
``(meta, labels, windowing)`` and ``results(paths)`` the results one at a
time, so that one writer commits them as they come."""
import multiprocessing
import signal

from .analyzer import FileAnalyzer, cpu_count


def describe(analyzer):
    w = analyzer.windowing
    return (analyzer.model.meta.to_dict(), list(analyzer.model.labels),
            {'window_seconds': w.seconds, 'hop_seconds': w.hop_seconds,
             'pad': w.pad})


def open_analyzer(model_kwargs, settings):
    from ..opener import open_model
    return FileAnalyzer(open_model(**model_kwargs), settings)


class InProcess:
    """One model in this process: files scored one after the other."""

    def __init__(self, model_kwargs, settings):
        self.analyzer = open_analyzer(model_kwargs, settings)

    def describe(self):
        return describe(self.analyzer)

    def results(self, paths):
        return map(self.analyzer, paths)

    def close(self):
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


def _analyze(path):
    return _worker(path)


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
        self.workers = workers

    def describe(self):
        return self.pool.apply(_describe, (None,))

    def results(self, paths):
        return self.pool.imap(_analyze, paths, chunksize=1)

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
