"""A whole analysis: inputs gathered, the output directory checked and
recovered, changed files' old rows dropped, the files not yet done
analysed by an engine and committed part by part, then ``summary.csv``
and ``run.json``. Returns the exit status: 0 every file analysed, 1 some
failed, 130 stopped by Ctrl-C (what was committed stays; the same command
resumes)."""
import importlib.metadata as md
import platform
import sys
import time

from tqdm import tqdm

from ..logs import get_logger
from ..runtime import StopRequest, cpu_flags
from .analyzer import header_hours
from .inputs import file_key, gather_inputs
from .store import Store, schemas

log = get_logger(__name__)

VERSIONS = ('paddlespeech-cls', 'paddlepaddle', 'numpy', 'soundfile',
            'soxr', 'pyarrow', 'ray')


def versions():
    out = {'python': platform.python_version()}
    for name in VERSIONS:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def analyze(options, settings, model_kwargs, flags, open_engine,
            resume_command):
    """Run the analysis of the ``analyze:`` section ``options`` (inputs,
    output directory, parts, progress) with the :class:`.analyzer.Settings`
    ``settings``. ``model_kwargs``: ``open_model``'s; ``flags``:
    every flag's value, for ``run.json``; ``open_engine()``: the engine
    (:mod:`.engines`), called only when there is work to do;
    ``resume_command``: printed when stopped."""
    started, clock = time.time(), time.perf_counter()
    inputs = gather_inputs(options.input)
    store = Store(options.output_dir)
    record_settings = settings.record()
    store.check_same('model', model_kwargs_record(model_kwargs))
    store.check_same('settings', record_settings)
    store.open()
    keys = {p: file_key(p) for p in inputs.paths}
    changed = [p for p, key in keys.items()
               if p in store.done and store.done[p][:2] != tuple(key)]
    todo = [p for p in inputs.paths
            if p not in store.done or p in changed]
    counts = {'inputs': len(inputs.paths), 'left_out': dict(inputs.left_out),
              'skipped': len(inputs.paths) - len(todo),
              'redone': len(changed), 'analysed': 0, 'failed': 0,
              'audio_seconds': 0.0, 'windows': 0, 'events': 0}
    timings = {'started': started}
    status = 0
    if todo:
        store.drop(changed)
        t = time.perf_counter()
        engine = open_engine()
        try:
            meta, labels, windowing = engine.describe()
            timings['model_open_seconds'] = time.perf_counter() - t
            store.check_same('meta', meta)
            store.check_same('windowing', windowing)
            record = {'model': model_kwargs_record(model_kwargs),
                      'meta': meta, 'labels': labels,
                      'windowing': windowing, 'settings': record_settings,
                      'flags': flags, 'versions': versions(),
                      'cpu_flags': sorted(cpu_flags())}
            if store.previous() is None:
                store.write_run_json(dict(record, counts={}, timings={}))
            t = time.perf_counter()
            stopped = _run(options, engine, store, todo, labels, counts)
            timings['analysis_seconds'] = time.perf_counter() - t
        finally:
            engine.close()
        status = 130 if stopped else 0
        store.summary(labels)
        timings['wall_seconds'] = time.perf_counter() - clock
        counts['dataset'] = dataset_counts(store)
        store.write_run_json(dict(record, counts=counts, timings=timings))
    failed = sorted(p for p in inputs.paths
                    if store.done.get(p, (0, 0, 'ok'))[2] == 'error')
    log.info(end_line(store, counts, len(failed),
                      time.perf_counter() - clock))
    if status == 130:
        left = len(todo) - counts['analysed'] - counts['failed']
        log.warning(f'stopped: {left} files left; run the same command to '
                    f'resume:\n  {resume_command}')
        return 130
    return 1 if failed else 0


def end_line(store, counts, failed, wall):
    """The one line a run ends with."""
    parts = [f'{counts["analysed"]} files analysed',
             f'{counts["failed"]} failed', f'{counts["skipped"]} already done']
    if failed > counts['failed']:
        parts.append(f'{failed} failed in all')
    if counts['redone']:
        parts.append(f'{counts["redone"]} changed and redone')
    if counts['left_out']:
        parts.append('skipped ' + ', '.join(
            f'{n} {reason}' for reason, n in sorted(
                counts['left_out'].items())))
    hours = counts['audio_seconds'] / 3600
    speed = counts['audio_seconds'] / max(wall, 1e-9)
    return (f'{store.dir}: {", ".join(parts)}; {hours:.2f} h of audio in '
            f'{wall:.1f} s ({speed:.0f}x real time), {counts["windows"]} '
            f'windows, {counts["events"]} events')


def _run(options, engine, store, todo, labels, counts):
    """Results committed part by part; True when stopped by a signal."""
    schema = schemas(options.scores == 'all', options.embeddings)
    show = not options.quiet
    total = header_hours(todo) if show and sys.stderr.isatty() else None
    buffer, last = [], time.monotonic()
    with StopRequest(doing='committing the files done, then stopping '
                     '(again to stop at once)') as stop, tqdm(
            total=total, unit='h', desc='audio', file=sys.stderr,
            disable=None if show else True, dynamic_ncols=True,
            bar_format='{desc}: {n:.2f}/{total:.2f} {unit} {bar} '
            '[{elapsed}<{remaining}{postfix}]' if total else
            '{desc}: {n:.2f} {unit} [{elapsed}{postfix}]') as bar:
        clock = time.perf_counter()
        for result in engine.results(todo):
            buffer.append(result)
            if result.ok:
                counts['analysed'] += 1
            else:
                counts['failed'] += 1
                if show:
                    bar.write(f'error: {result.file["path"]}: '
                              f'{result.file["error"]}', file=sys.stderr)
            counts['audio_seconds'] += result.audio_seconds
            counts['windows'] += len(result.start)
            counts['events'] += len(result.events)
            bar.update(result.audio_seconds / 3600)
            bar.set_postfix_str(
                f'{counts["audio_seconds"] / max(time.perf_counter() - clock, 1e-9):.0f}x real time',
                refresh=False)
            if (len(buffer) >= options.part_files or stop.requested or
                    time.monotonic() - last >= options.part_seconds):
                store.commit(buffer, labels, schema)
                buffer, last = [], time.monotonic()
            if stop.requested:
                return True
        store.commit(buffer, labels, schema)
    return False


def model_kwargs_record(kwargs):
    """How to open the same model again (``open_model``'s kwargs)."""
    return {k: kwargs.get(k) for k in ('checkpoint', 'model_dir', 'arch',
                                       'pretrained')}


def dataset_counts(store):
    """Files (ok, error), windows and events the directory holds."""
    import pyarrow.dataset as ds
    statuses = [v[2] for v in store.done.values()]
    return {'files': len(statuses), 'ok': statuses.count('ok'),
            'error': statuses.count('error'),
            'windows': ds.dataset(store.dir / 'windows',
                                  format='parquet').count_rows(),
            'events': ds.dataset(store.dir / 'events',
                                 format='parquet').count_rows()}
