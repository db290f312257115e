"""The model-free half of an analysis: each file's ``files/`` row (stat
and header), its windows cut as ``detect.py`` cuts them
(:func:`..events.timeline_windows`), the windows of successive files
packed into batches of the model's size, so that short files fill a
batch together, and each batch put through the model's front end
(:meth:`..scoring.SoundModel.front_end`).

:func:`read_batches` runs in the analysing process, or in a reader
process beside it (:class:`ReaderProcess`): Paddle holds the GIL while a
model runs, so only another process reads while it does."""
import multiprocessing
import os
import traceback
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..audio import AudioError, audio_header
from ..events import timeline_windows


@dataclass
class Batch:
    """Windows for one model run (a list of waves, or their
    :class:`..scoring.Prepared` inputs) and whose they are: ``owners``
    ``[(file index, windows)]`` in order; then what the run gave
    (:meth:`.analyzer.FileAnalyzer.run`)."""
    inputs: object
    owners: list
    scores: Optional[np.ndarray] = None
    embeddings: Optional[np.ndarray] = None
    error: Optional[str] = None


@dataclass
class FileRead:
    """A file read to its end (its windows are in the batches before and
    in the next one), or given up with a one-line ``error``."""
    index: int
    row: dict
    mtime_ns: Optional[int]
    envelope: np.ndarray  # one peak per window
    samples: int  # audio samples read (at the model's rate)
    error: Optional[str] = None


def file_row(path):
    """``(files/ row, exact mtime in ns, error or None)`` from the file's
    stat and header."""
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
    except Exception as e:
        return row, mtime_ns, failure(e)
    return row, mtime_ns, None


def failure(e):
    """A file's one-line reason: the decoder's, or the exception's."""
    reason = e.reason if isinstance(e, AudioError) else \
        f'{type(e).__name__}: {e}'
    return ' '.join(str(reason).split())


def read_batches(paths, sample_rate, windowing, batch_size, front_end=None,
                 careful=0):
    """Yield :class:`Batch` es and one :class:`FileRead` per path, in
    order. A file that fails midway has its windows not yet sent dropped;
    those already sent are scored and thrown away. The first ``careful``
    files each end their batch, so that each file's :class:`FileRead`
    follows all its windows (:class:`ReaderProcess` finds which file
    crashed its reader that way)."""
    waves, owners = [], []

    def batch():
        inputs = front_end(waves) if front_end else list(waves)
        return Batch(inputs, list(owners))

    for index, path in enumerate(paths):
        row, mtime_ns, error = file_row(path)
        envelope, samples = [], 0
        if error is None:
            try:
                for wav, peak, samples in timeline_windows(
                        path, sample_rate, windowing):
                    envelope.append(peak)
                    waves.append(wav)
                    if owners and owners[-1][0] == index:
                        owners[-1] = (index, owners[-1][1] + 1)
                    else:
                        owners.append((index, 1))
                    if len(waves) >= batch_size:
                        yield batch()
                        waves, owners = [], []
            except Exception as e:
                error = failure(e)
                if owners and owners[-1][0] == index:
                    del waves[len(waves) - owners.pop()[1]:]
        if index < careful and waves:
            yield batch()
            waves, owners = [], []
        yield FileRead(index, row, mtime_ns, np.array(envelope, np.float32),
                       samples, error)
    if waves:
        yield batch()


@dataclass
class Restart:
    """The reader starts again at file ``index``: what came of it and of
    the files after it so far is to be forgotten."""
    index: int


_DONE = 'done'


def _read_into(jobs, out):
    """The reader process: for each job (paths, an index offset, and
    :func:`read_batches`' other arguments) sends its items through the
    pipe ``out`` (each send waits for the model to take the one before),
    then ``done``, or the traceback of what went wrong."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's to handle
    try:
        while True:
            job = jobs.get()
            if job is None:
                return
            paths, base, args, careful = job
            for item in read_batches(paths, *args, careful=careful):
                if isinstance(item, Batch):
                    item.owners = [(i + base, n) for i, n in item.owners]
                else:
                    item.index += base
                out.send(item)
            out.send(_DONE)
    except BaseException:
        out.send(('failed', traceback.format_exc()))


class ReaderProcess:
    """:func:`read_batches` in a process of its own, a batch ahead of the
    model. Started before the model opens (its imports overlap the
    model's), given its files by :meth:`read`, whose iteration gives the
    items.

    A reader killed by a signal (a decoder's crash on a damaged file) is
    started again: first from the earliest file not yet whole, each file then
    in a batch of its own, so that a second death names the file that
    caused it; that file gets an error and the reading goes on after it.
    Ended with the iteration (or :meth:`close`), and at once if this
    process ends."""

    def __init__(self):
        self.context = multiprocessing.get_context('spawn')
        self.restarts = 0
        self._start()

    def _start(self):
        self.jobs = self.context.Queue()
        self.pipe, end = self.context.Pipe(duplex=False)
        self.process = self.context.Process(
            target=_read_into, daemon=True, args=(self.jobs, end))
        self.process.start()
        end.close()  # the reader's end: its death is the pipe's end here

    def read(self, paths, *args):
        """The items of ``read_batches(paths, *args)``, with a
        :class:`Restart` (then the items again from its file) after each
        death of the reader."""
        paths, base, careful = list(paths), 0, 0
        try:
            while base < len(paths):
                sent, windows = {}, {}  # per file: windows sent, in all
                self.jobs.put((paths[base:], base, args, careful))
                for item in self._items():
                    if isinstance(item, Batch):
                        for i, n in item.owners:
                            sent[i] = sent.get(i, 0) + n
                    elif isinstance(item, FileRead):
                        windows[item.index] = 0 if item.error else \
                            len(item.envelope)
                    yield item
                if self.process.is_alive():
                    return
                first = next(i for i in range(base, len(paths) + 1)
                             if i not in windows or
                             sent.get(i, 0) < windows[i])
                if first == len(paths):
                    return
                code = self.process.exitcode
                if code >= 0:  # not killed: it could not start
                    raise RuntimeError(f'the reader process ended (exit '
                                       f'{code}) before its files were read')
                yield Restart(first)
                self.restarts += 1
                self._start()
                if first < base + careful:  # read on its own: this one
                    row, mtime_ns, _ = file_row(paths[first])
                    yield FileRead(
                        first, row, mtime_ns, np.zeros(0, np.float32), 0,
                        f'the reader process died reading it (exit '
                        f'{code}): a crash of the decoder on damaged data')
                    base, careful = first + 1, 0
                else:
                    base, careful = first, args[2] + 1
        finally:
            self.close()

    def _items(self):
        """The items of the job in hand; ends when it is done or when the
        reader has died."""
        while True:
            try:
                if not self.pipe.poll(0.5):
                    if self.process.is_alive():
                        continue
                    self.process.join()
                    return
                item = self.pipe.recv()
            except (EOFError, OSError):  # died, maybe midway through a send
                self.process.join()
                return
            if item == _DONE:
                return
            if isinstance(item, tuple):
                raise RuntimeError(f'the reader process failed:\n{item[1]}')
            yield item

    def close(self):
        if self.process.is_alive():
            self.jobs.put(None)
            self.process.join(1.0)
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.pipe.close()
        self.jobs.close()
