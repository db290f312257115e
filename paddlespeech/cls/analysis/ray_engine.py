"""The Ray engine (``--engine ray``): the file list as a Ray Data dataset
of runs of files, read and windowed in tasks (:mod:`.reading`), their
batches scored by ``map_batches`` over an actor pool of ``--workers``
actors, each holding one model and reserving ``--cpus_per_worker`` CPUs.
The scored batches stream back to this process, which makes each file's
rows as the local engine does (:class:`.analyzer.FileAnalyzer`) and
commits them to the same journal and tables. Ray is imported only here
(``pip install 'paddlespeech-cls[ray]'``)."""
import logging
import os
import pickle
import socket
import time

import numpy as np

from ..artifact import ExportMeta
from ..errors import UserError
from ..scoring import SoundModel
from .analyzer import FileAnalyzer
from .engines import chunks, describe
from .reading import Batch, read_batches

# paths checked on every node before the run
SAMPLE_PATHS = 3
# items (batches of windows, file rows) per call of an actor
ROWS_PER_CALL = 8
LOOPBACK = ('127.0.0.1', 'localhost')


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UserError('--engine ray needs Ray Data: pip install '
                        '"paddlespeech-cls[ray]" (or -r '
                        'requirements-ray.txt)') from None
    return ray


class _Actor:
    """One model per actor: batches of windows scored, file rows passed
    through (pickled items of :mod:`.reading`)."""

    def __init__(self, model_kwargs, settings):
        from ..runtime import prepare_process
        prepare_process()
        from .engines import open_analyzer
        self.analyzer = open_analyzer(model_kwargs, settings)

    def __call__(self, rows):
        items = [pickle.loads(b) for b in rows['item']]
        return {'item': np.array(
            [pickle.dumps(self.analyzer.run(i) if isinstance(i, Batch)
                          else i, protocol=5) for i in items],
            dtype=object)}


def _read(rows, reader_args):
    """A Ray task: a run of files read into batches and file rows."""
    for paths, base in zip(rows['paths'], rows['base']):
        base = int(base)
        for item in read_batches([str(p) for p in paths], *reader_args):
            if isinstance(item, Batch):
                item.owners = [(i + base, n) for i, n in item.owners]
            else:
                item.index += base
            yield {'item': np.array([pickle.dumps(item, protocol=5)],
                                    dtype=object)}


class Described(SoundModel):
    """A model's description without its weights (``meta`` and its front
    end): what the driver needs to read files and make their rows."""

    def __init__(self, meta, source, front_end):
        self.meta, self.source, self._front_end = meta, source, front_end

    def front_end(self):
        return self._front_end


def _describe(model_kwargs):
    """A model opened on a node: its description (``model.json``, the
    front end)."""
    from ..runtime import prepare_process
    prepare_process()
    from ..opener import open_model
    model = open_model(**model_kwargs)
    return model.meta.to_dict(), model.source, model.front_end()


def check_reachable(address, timeout=5.0):
    """One line, at once, when nothing answers at ``HOST:PORT`` (Ray
    itself would keep trying for minutes)."""
    host, _, port = address.rpartition(':')
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout).close()
    except OSError as e:
        raise UserError(f'--address {address}: no Ray cluster answers there '
                        f'({e.strerror or e}); start one with ray start '
                        f'--head, or pass --address auto on one of its '
                        f'nodes') from None


def _visible(paths):
    import socket
    return socket.gethostname(), [p for p in paths if not os.path.lexists(p)]


class RayEngine:
    """``--engine ray``: connects to ``address`` (None: a Ray started on
    this machine for the run, ended with it); ``workers`` actors of
    ``cpus_per_worker`` CPUs (None: the model's ``cpu_threads``, else 1)."""

    def __init__(self, model_kwargs, settings, address=None, workers=1,
                 cpus_per_worker=None):
        if not address or address.split(':')[0] in LOOPBACK:
            # Ray turns a loopback address into this machine's network
            # address unless told it runs on one machine only: a Ray here
            # stays on the loopback interface
            os.environ.setdefault('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', '0')
        ray = self.ray = _import_ray()
        for name in ('ray', 'ray.data'):
            logging.getLogger(name).setLevel(logging.WARNING)
        if address and address != 'auto':
            check_reachable(address)
        started = time.perf_counter()
        self.own = not address
        extra = {'num_cpus': os.cpu_count()} if self.own else {}
        ray.init(address=address, log_to_driver=False,
                 include_dashboard=False, configure_logging=False,
                 ignore_reinit_error=True, **extra)
        threads = model_kwargs.get('cpu_threads')
        cpus = cpus_per_worker or threads or 1
        self.kwargs = dict(model_kwargs,
                           cpu_threads=threads or max(1, int(cpus)))
        self.settings, self.cpus, self.workers = settings, cpus, workers
        self.connect_seconds = time.perf_counter() - started

    def check_paths(self, paths):
        """Every node sees the inputs (a few that exist here): one line
        naming a node that does not."""
        from ray.util.scheduling_strategies import \
            NodeAffinitySchedulingStrategy
        sample = [p for p in paths if os.path.lexists(p)][:SAMPLE_PATHS]
        check = self.ray.remote(num_cpus=0)(_visible)
        nodes = [n for n in self.ray.nodes() if n['Alive']]
        answers = self.ray.get([check.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                n['NodeID'], soft=False)).remote(sample) for n in nodes])
        for (host, missing), node in zip(answers, nodes):
            if missing:
                raise UserError(
                    f'--engine ray: node {node["NodeManagerAddress"]} '
                    f'({host}) cannot see {missing[0]}: the input must be '
                    f'on a filesystem every node mounts at the same path')

    def describe(self):
        """The model's description: an export's from its ``model.json``
        here; another model's from a task that opens it on a node."""
        from ..artifact import read_export
        from ..scoring import ModelInputs
        kw = self.kwargs
        if kw.get('model_dir'):
            meta = read_export(kw['model_dir'], kw.get('label_file'))[2]
            model = Described(meta, str(kw['model_dir']), ModelInputs(
                None if meta.takes_waveform else meta.feature))
        else:
            remote = self.ray.remote(num_cpus=self.cpus)(_describe)
            meta, source, front_end = self.ray.get(remote.remote(kw))
            model = Described(ExportMeta.from_dict(meta), source, front_end)
        self.analyzer = FileAnalyzer(model, self.settings)
        return describe(self.analyzer)

    def results(self, paths):
        """Runs of files read in tasks (one at a time per actor, reserving
        no CPU: reading is light beside the model), their batches scored
        by the actor pool, the rows put together here."""
        ray = self.ray
        paths = list(paths)
        self.check_paths(paths)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        runs, base = [], 0
        for run in chunks(paths, self.analyzer.windowing,
                          self.settings.batch_size):
            runs.append({'paths': run, 'base': base})
            base += len(run)
        ds = ray.data.from_items(runs, override_num_blocks=len(runs))
        ds = ds.map_batches(_read, batch_size=1, num_cpus=0,
                            concurrency=self.workers,
                            fn_kwargs={'reader_args':
                                       self.analyzer.reader_args()})
        ds = ds.map_batches(
            _Actor, batch_size=ROWS_PER_CALL, batch_format='numpy',
            fn_constructor_kwargs={'model_kwargs': self.kwargs,
                                   'settings': self.settings},
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.cpus)
        items = (pickle.loads(row['item']) for row in ds.iter_rows())
        return self.analyzer.results(paths, items)

    def close(self):
        self.ray.shutdown()
