"""Search an analysed archive by example: rank every indexed window by the
cosine similarity of its embedding to a query's, exactly.

An index is an analysis directory (``analyze.py --embeddings``; the layout
of docs/analysis.md): ``windows/part-*.parquet`` rows of ``path``,
``start``, ``end`` and ``embedding`` (``list<float16>``) and ``run.json``,
which says how to open the model that embedded them. The query is
embedded by that same model (:func:`open_index_model`, refused when the
model found there is no longer the one that built the index). The
embeddings are read once through ``pyarrow.dataset`` in batches into a
float32 matrix beside the index (:func:`embedding_matrix`), which each
search reads a block at a time, so memory stays bounded whatever the
archive's size. :func:`write_analysis` writes the
layout from arrays (tests, benchmarks).
"""
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

RUN_FILE = 'run.json'
WINDOWS = 'windows'
FILES = 'files'
# 8,192 windows of 2048-d: 32 MB of float16, 64 MB as float32
BATCH_ROWS = 8192
# rows read at once in a search: 8 MB at 2048-d
BLOCK_ROWS = 1024
CACHE = 'search'
# what must agree between the model that built an index and the one that
# embeds a query (ExportMeta keys)
MODEL_KEYS = ('backbone', 'label_list', 'feature', 'embedding_size')


@dataclass
class Hit:
    path: str
    start: float
    end: float
    similarity: float


def _pa():
    try:
        import pyarrow
        import pyarrow.dataset  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as e:
        raise UserError('searching an analysis needs pyarrow: pip install '
                        'pyarrow (requirements.txt lists it)') from e
    return pyarrow


def read_run(index_dir):
    """``run.json`` of the analysis directory ``index_dir``."""
    path = Path(index_dir) / RUN_FILE
    if not path.is_file():
        raise UserError(f'{index_dir} is not an analysis directory (no '
                        f'{RUN_FILE}): give --index the --output_dir of '
                        f'analyze.py --embeddings')
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f'cannot read {path} ({e}): analyse the archive '
                        f'again') from e


def model_differences(built, now):
    """Keys of :data:`MODEL_KEYS` on which the ``model.json``-style dicts
    ``built`` (run.json's ``meta``) and ``now`` differ."""
    return [k for k in MODEL_KEYS if built.get(k) != now.get(k)]


def open_index_model(index_dir, run=None, **options):
    """The model that embedded the index, opened as ``run.json`` says
    (``open_model`` kwargs), refused in one line when it is not the same
    model any more (another backbone, labels, front end or embedding
    size)."""
    from .opener import open_model
    run = run or read_run(index_dir)
    kwargs = {k: v for k, v in (run.get('model') or {}).items()
              if v is not None}
    if not kwargs:
        raise UserError(f'{Path(index_dir) / RUN_FILE} names no model; '
                        f'analyse the archive again with analyze.py')
    model = open_model(**kwargs, **options)
    diff = model_differences(run.get('meta') or {}, model.meta.to_dict())
    if diff:
        raise UserError(
            f'the model at {kwargs} is not the one that built the index '
            f'{index_dir} (its {", ".join(diff)} differ): a query must be '
            f'embedded by the same model; analyse the archive again with '
            f'this model')
    return model


def embed_query(model, path, start=None, end=None, window_seconds=None,
                hop_seconds=None):
    """The query's embedding (``float32 [D]``): the part ``start``-``end``
    (seconds) of ``path`` cut into the index's windows (its
    ``window_seconds``/``hop_seconds``; one padded window for a shorter
    query), each embedded, averaged by the audio samples in it."""
    from .audio import Segment
    sr = model.feature.sample_rate
    source = path
    if start is not None or end is not None:
        from .audio import audio_seconds
        source = Segment(str(path), float(start or 0.0),
                         float(audio_seconds(path) if end is None else end))
    windows = model.windowing(window_seconds, hop_seconds)
    waves, weights = [], []
    for wav, n in windows.windows(source, sr, model.feature.n_fft):
        waves.append(wav)
        weights.append(n)
    if len({len(w) for w in waves}) > 1:  # unpadded last window
        waves, weights = waves[:-1], weights[:-1]
    emb = np.asarray(model.embeddings(waves), dtype=np.float32)
    return np.average(emb, axis=0, weights=np.asarray(weights, float))


def windows_dataset(index_dir):
    pa = _pa()
    folder = Path(index_dir) / WINDOWS
    if not any(folder.glob('*.parquet')):
        raise UserError(f'{folder} holds no Parquet files: analyse the '
                        f'archive with analyze.py --embeddings --output_dir '
                        f'{index_dir}')
    ds = pa.dataset.dataset(str(folder), format='parquet')
    if 'embedding' not in ds.schema.names:
        raise UserError(f'{index_dir} has no embeddings: analyse the archive '
                        f'again with analyze.py --embeddings')
    return ds


def batch_matrix(column, source):
    """A ``list<float16>`` column as a ``[rows, D]`` float16 array."""
    flat = column.flatten().to_numpy(zero_copy_only=False)
    rows = len(column)
    if rows and (column.null_count or len(flat) % rows):
        raise UserError(f'{source}: embeddings of unequal length or missing: '
                        f'analyse the archive again')
    return flat.reshape(rows, -1)


def search(index_dir, query, top_k=50, min_similarity=None,
           exclude_paths=(), threads=1):
    """The ``top_k`` windows most similar to ``query`` (``[D]``), best
    first (ties: index order), as :class:`Hit`; windows of
    ``exclude_paths`` and under ``min_similarity`` left out. Exact: every
    window's cosine similarity is computed, a block at a time
    (:func:`similarities`)."""
    pa = _pa()
    import pyarrow.compute as pc
    ds = windows_dataset(index_dir)
    sims = similarities(index_dir, query, threads)
    keep = np.isfinite(sims)
    if min_similarity is not None:
        keep &= sims >= min_similarity
    if exclude_paths:
        paths = ds.to_table(columns=['path']).column('path')
        keep &= ~pc.is_in(paths, value_set=pa.array(
            sorted(map(str, exclude_paths)), pa.string())).to_numpy(
            zero_copy_only=False)
    idx = np.flatnonzero(keep)
    if len(idx) > top_k:
        idx = idx[np.argpartition(-sims[idx], top_k - 1)[:top_k]]
    idx = idx[np.lexsort((idx, -sims[idx]))]
    rows = ds.take(pa.array(idx, pa.int64()),
                   columns=['path', 'start', 'end']).to_pydict()
    return [Hit(p, s, e, float(sims[i])) for i, p, s, e in
            zip(idx, rows['path'], rows['start'], rows['end'])]


def similarities(index_dir, query, threads=1):
    """Cosine similarity of ``query`` to every window, in index order
    (``float32 [N]``; 0 for an all-zero embedding). Reads the matrix of
    :func:`embedding_matrix` in blocks of :data:`BLOCK_ROWS` with
    ``pread`` (a memory map's pages would count in the process's resident
    memory), in ``threads`` threads (one is enough on 2 cores: the scan is bound by
    memory)."""
    from concurrent.futures import ThreadPoolExecutor
    path, (n, dim), norms = embedding_matrix(index_dir)
    q = np.asarray(query, np.float32).ravel()
    if dim != q.shape[0]:
        raise UserError(f'{index_dir} holds {dim}-d embeddings, the query '
                        f'is {q.shape[0]}-d: analyse the archive again with '
                        f'this model')
    q = q / max(float(np.linalg.norm(q)), 1e-30)
    out = np.empty(n, np.float32)
    row = dim * 4
    fd = os.open(path, os.O_RDONLY)
    local = threading.local()

    def block(k):
        # each thread reads into a buffer of its own, reused: fresh blocks
        # of this size would be mapped and faulted in anew
        if not hasattr(local, 'rows'):
            local.rows = np.empty((BLOCK_ROWS, dim), np.float32)
        rows = min(BLOCK_ROWS, n - k)
        x = local.rows[:rows]
        got = os.preadv(fd, [memoryview(x).cast('B')], k * row)
        if got != rows * row:
            raise UserError(f'{path} is shorter than its {n} rows: delete '
                            f'it (it is rebuilt)')
        np.dot(x, q, out=out[k:k + rows])

    try:
        with ThreadPoolExecutor(max(1, threads)) as pool:
            list(pool.map(block, range(0, n, BLOCK_ROWS)))
    finally:
        os.close(fd)
    return out / np.maximum(norms, 1e-30)


def _source_key(index_dir):
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in
            sorted((Path(index_dir) / WINDOWS).glob('*.parquet'))]


def embedding_matrix(index_dir):
    """``(file, (N, D), float32 [N] norms)``: the index's embeddings as a
    raw float32 ``[N, D]`` file in index order (the float16 values,
    exactly). Parquet's ``list<float16>`` decodes about ten times slower
    than raw reads, and converting float16 took most of a search (3.2 s
    of 1,000,000 x 2048), so the first search of an index writes the
    matrix once into ``INDEX/search/`` (N x D x 4 bytes; written again
    when a windows file changes) and later ones read it as it is. A
    read-only index gets it in the temporary folder, for this search."""
    import tempfile
    key = _source_key(index_dir)
    for cache in (Path(index_dir) / CACHE,
                  Path(tempfile.gettempdir()) /
                  f'search-{_digest(Path(index_dir).resolve())}'):
        stamp = cache / 'source.json'
        try:
            have = json.loads(stamp.read_text())
            # a matrix of an earlier layout (float16) is written anew
            if have['files'] == key and have.get('dtype') == 'float32':
                return (cache / 'embeddings.f32', tuple(have['shape']),
                        np.load(cache / 'norms.npy'))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        try:
            cache.mkdir(exist_ok=True)
            stamp.unlink(missing_ok=True)
            shape, norms = _write_matrix(index_dir, cache / 'embeddings.f32')
            np.save(cache / 'norms.npy', norms)
            stamp.write_text(json.dumps({'files': key, 'dtype': 'float32',
                                         'shape': list(shape)}))
            return cache / 'embeddings.f32', shape, norms
        except PermissionError:
            continue
    raise UserError(f'cannot write the search matrix of {index_dir} into '
                    f'it or the temporary folder: make one writable')


def _digest(text):
    import hashlib
    return hashlib.sha1(str(text).encode()).hexdigest()[:16]


def _write_matrix(index_dir, path):
    """Stream the embeddings into ``path``; ``((N, D), norms)``."""
    ds = windows_dataset(index_dir)
    norms, dim = [], None
    tmp = path.with_name(f'.{path.name}.tmp')
    with open(tmp, 'wb') as f:
        for batch in ds.to_batches(columns=['embedding'],
                                   batch_size=BATCH_ROWS, batch_readahead=1,
                                   fragment_readahead=1):
            if not batch.num_rows:
                continue
            x = batch_matrix(batch.column('embedding'), index_dir)
            if dim is not None and x.shape[1] != dim:
                raise UserError(f'{index_dir}: embeddings of unequal '
                                f'length: analyse the archive again')
            dim = x.shape[1]
            x = x.astype(np.float32)
            f.write(np.ascontiguousarray(x).tobytes())
            norms.append(np.sqrt(np.einsum('ij,ij->i', x, x)))
    os.replace(tmp, path)
    norms = np.concatenate(norms) if norms else np.zeros(0, np.float32)
    return (len(norms), dim or 0), norms


def count_windows(index_dir):
    return windows_dataset(index_dir).count_rows()


def write_analysis(out_dir, windows, run, files=None,
                   rows_per_group=8192):
    """An analysis directory in the documented layout from arrays:
    ``windows``: a dict (or an iterable of dicts, one Parquet part each)
    of ``path``, ``start``, ``end`` and optionally ``embedding``
    (``[rows, D]``, stored as ``list<float16>``), ``top_labels``,
    ``top_scores``; ``run``: run.json's object; ``files``: a dict of the
    files table's columns (default: one ``ok`` row per distinct path)."""
    pa = _pa()
    import pyarrow.parquet as pq
    out = Path(out_dir)
    for sub in (WINDOWS, FILES):
        (out / sub).mkdir(parents=True, exist_ok=True)
    parts = [windows] if isinstance(windows, dict) else windows
    seen = {}
    for k, part in enumerate(parts):
        n = len(part['path'])
        cols = {'path': pa.array(list(map(str, part['path'])), pa.string()),
                'start': pa.array(np.asarray(part['start'], np.float64)),
                'end': pa.array(np.asarray(part['end'], np.float64)),
                'top_labels': pa.array(part.get('top_labels', [[]] * n),
                                       pa.list_(pa.string())),
                'top_scores': pa.array(part.get('top_scores', [[]] * n),
                                       pa.list_(pa.float32()))}
        if part.get('embedding') is not None:
            emb = np.ascontiguousarray(part['embedding'], np.float16)
            offsets = pa.array(np.arange(n + 1, dtype=np.int32)
                               * emb.shape[1])
            cols['embedding'] = pa.ListArray.from_arrays(
                offsets, pa.array(emb.reshape(-1)))
        pq.write_table(pa.table(cols), out / WINDOWS / f'part-{k:05d}.parquet',
                       row_group_size=rows_per_group, compression='none',
                       use_dictionary=['path'])
        for p, e in zip(cols['path'].to_pylist(), part['end']):
            seen[p] = max(seen.get(p, 0.0), float(e))
    if files is None:
        now = time.time()
        files = {'path': list(seen), 'size': [0] * len(seen),
                 'mtime': [now] * len(seen), 'duration': list(seen.values()),
                 'sample_rate': [32000] * len(seen),
                 'channels': [1] * len(seen), 'status': ['ok'] * len(seen),
                 'error': [None] * len(seen), 'windows': [0] * len(seen),
                 'seconds': list(seen.values())}
    types = {'path': pa.string(), 'size': pa.int64(), 'mtime': pa.float64(),
             'duration': pa.float64(), 'sample_rate': pa.int32(),
             'channels': pa.int32(), 'status': pa.string(),
             'error': pa.string(), 'windows': pa.int32(),
             'seconds': pa.float64()}
    pq.write_table(pa.table({k: pa.array(files[k], t)
                             for k, t in types.items()}),
                   out / FILES / 'part-00000.parquet')
    (out / RUN_FILE).write_text(json.dumps(run, indent=2))
    return out


def run_record(model, window_seconds, hop_seconds, **model_kwargs):
    """A minimal ``run.json`` object for ``model`` opened with
    ``model_kwargs`` (``checkpoint``, ``model_dir``, ``arch``,
    ``pretrained``)."""
    kwargs = {k: model_kwargs.get(k) for k in
              ('checkpoint', 'model_dir', 'arch', 'pretrained')}
    return {'model': {k: (str(v) if v is not None else None)
                      for k, v in kwargs.items()},
            'meta': model.meta.to_dict(),
            'windowing': {'window_seconds': window_seconds,
                          'hop_seconds': hop_seconds, 'pad': True},
            'flags': {}, 'versions': {}, 'cpu_flags': [], 'counts': {},
            'timings': {}}
