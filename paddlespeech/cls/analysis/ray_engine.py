"""The Ray engine (``--engine ray``): the file list as a Ray Data dataset,
``map_batches`` over an actor pool of ``--workers`` actors, each holding
one model (:class:`.analyzer.FileAnalyzer`) and reserving
``--cpus_per_worker`` CPUs; results stream back to this process, whose
writer commits them to the same journal and tables as the local engine's.
Ray is imported only here (``pip install 'paddlespeech-cls[ray]'``)."""
import logging
import os
import pickle
import time

import numpy as np

from ..errors import UserError

# paths checked on every node before the run
SAMPLE_PATHS = 3
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
    """One model per actor; a batch of paths -> their pickled results."""

    def __init__(self, model_kwargs, settings):
        from ..runtime import prepare_process
        prepare_process()
        from .engines import open_analyzer
        self.analyzer = open_analyzer(model_kwargs, settings)

    def __call__(self, batch):
        paths = [str(p) for p in batch['path']]
        return {'path': np.array(paths, dtype=object),
                'result': np.array([pickle.dumps(self.analyzer(p))
                                    for p in paths], dtype=object)}


def _describe(model_kwargs, settings):
    from ..runtime import prepare_process
    prepare_process()
    from .engines import describe, open_analyzer
    return describe(open_analyzer(model_kwargs, settings))


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
        remote = self.ray.remote(num_cpus=self.cpus)(_describe)
        return self.ray.get(remote.remote(self.kwargs, self.settings))

    def results(self, paths):
        ray = self.ray
        paths = list(paths)
        self.check_paths(paths)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        ds = ray.data.from_items([{'path': p} for p in paths],
                                 override_num_blocks=max(1, min(len(paths),
                                                            8 * self.workers)))
        ds = ds.map_batches(
            _Actor, batch_size=1, batch_format='numpy',
            fn_constructor_kwargs={'model_kwargs': self.kwargs,
                                   'settings': self.settings},
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.cpus)
        for batch in ds.iter_batches(batch_size=1, batch_format='numpy',
                                     prefetch_batches=self.workers):
            for blob in batch['result']:
                yield pickle.loads(blob)

    def close(self):
        self.ray.shutdown()
