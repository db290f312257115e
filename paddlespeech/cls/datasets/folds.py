"""Folds for data that comes without them: stratified, seeded, and kept in
a folds file (``path,fold`` rows) so that training, the later stages,
cross-validation and a rerun all see the same split, and a changed data
set is noticed instead of silently re-split. Each manifest has its own
folds file (``<manifest stem>.folds.csv`` beside it), a folder-per-class
data set ``.folds.csv``; ``folds_file`` sets another place."""
import csv
import io
from pathlib import Path

import numpy as np

from .. import atomic
from ..logs import get_logger
from .clips import DatasetError

log = get_logger(__name__)

FOLDS_NAME = '.folds.csv'


def assign_folds(targets, k, seed):
    """Fold (1..k) of each clip with class indices ``targets``: each label
    set's clips are shuffled (seeded) and dealt round-robin, starting
    where the previous label set stopped, so every fold holds each class's
    share to within one clip and the folds' sizes differ by at most one."""
    rng = np.random.default_rng(seed)
    groups = {}
    for i, t in enumerate(targets):
        groups.setdefault(tuple(sorted(t)), []).append(i)
    folds, pos = np.zeros(len(targets), dtype=np.int64), 0
    for key in sorted(groups):
        idx = rng.permutation(groups[key])
        folds[idx] = (pos + np.arange(len(idx))) % k + 1
        pos = (pos + len(idx)) % k
    return folds.tolist()


def folds_file_name(manifest=None):
    """The folds file's name beside the data: ``.folds.csv`` in a
    folder-per-class ``data_dir``, ``<manifest stem>.folds.csv`` beside a
    manifest, so that manifests sharing a folder keep their own folds."""
    return f'{Path(manifest).stem}.folds.csv' if manifest else FOLDS_NAME


def folds_file_candidates(root, data, train, name=FOLDS_NAME):
    """Where the folds file is looked for, in order, and written: the
    ``data:`` section's ``folds_file``, else ``<data>/<name>`` and, for
    read-only data, the training run's ``<checkpoint_dir>/folds.csv``."""
    if data.folds_file:
        return [Path(data.folds_file)]
    return [Path(root) / name, Path(train.checkpoint_dir) / 'folds.csv']


def folds_for(root, files, targets, label_list, data, train,
              name=FOLDS_NAME):
    """``(folds, folds file)``: the fold of each of ``files`` (relative to
    ``root``), read from the folds file when there is one, else assigned
    (``data.num_folds`` folds, seeded with ``train.seed``) and written to
    the first writable candidate (:func:`folds_file_candidates`).
    ``name``: :func:`folds_file_name`. A manifest's folds in the
    ``.folds.csv`` that all manifests of a folder once shared are still
    read when they are exactly this manifest's files."""
    k = int(data.num_folds)
    if k < 2:
        raise DatasetError(f'num_folds must be at least 2, got {k}')
    candidates = folds_file_candidates(root, data, train, name)
    for path in candidates:
        if path.is_file():
            return read_folds(path, files, k), path
    shared = Path(root) / FOLDS_NAME
    if not data.folds_file and name != FOLDS_NAME and shared.is_file():
        try:
            return read_folds(shared, files, k), shared
        except DatasetError:
            pass  # another manifest's: this one gets its own
    counts = np.zeros(len(label_list), dtype=np.int64)
    for t in targets:
        counts[t] += 1
    for name, n in zip(label_list, counts):
        if n < k:
            raise DatasetError(
                f'class {name!r} has {n} clip(s), fewer than num_folds {k}: '
                f'add clips of it, or lower num_folds')
    folds = assign_folds(targets, k, train.seed)
    out = io.StringIO()
    w = csv.writer(out, lineterminator='\n')
    w.writerow(['path', 'fold'])
    w.writerows(zip(files, folds))
    error = None
    for path in candidates:
        try:
            atomic.write_text(path, out.getvalue())
        except OSError as e:
            error = e
            continue
        log.info(f'[data] assigned {k} stratified folds (seed {train.seed}) '
                 f'to {len(files)} clips: {path} (delete it to assign them '
                 f'again)')
        return folds, path
    raise DatasetError(f'cannot write the folds file {candidates[-1]} '
                       f'({error}): set folds_file to a writable path')


def read_folds(path, files, k):
    """Folds of ``files`` from the folds file at ``path``; refuses one
    written for other files or another number of folds."""
    hint = (f'delete {path} to assign folds again, or set folds_file to '
            f'another path to keep it')
    try:
        with open(path, newline='', encoding='utf-8') as f:
            reader = csv.DictReader(f)
            given = {r['path']: int(r['fold']) for r in reader}
    except (OSError, KeyError, TypeError, ValueError, csv.Error) as e:
        raise DatasetError(f'folds file {path} is not a path,fold table '
                           f'({e}): {hint}') from e
    listed = set(files)
    added = [f for f in files if f not in given]
    removed = [f for f in given if f not in listed]
    if added or removed:
        what = [f'{len(x)} file(s) {how}, e.g. {x[0]}'
                for x, how in ((added, 'added'), (removed, 'removed')) if x]
        raise DatasetError(f'the data set changed since the folds in {path} '
                           f'were assigned ({"; ".join(what)}): {hint}')
    most = max(given.values(), default=0)
    if most != k:
        raise DatasetError(f'{path} holds {most} folds but num_folds is {k}:'
                           f' {hint}, or set num_folds {most}')
    return [given[f] for f in files]
