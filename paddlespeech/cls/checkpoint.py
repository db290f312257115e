"""Checkpoint layout and I/O.

``<checkpoint_dir>/epoch_<N>/model.pdparams`` holds the classifier's
weights plus a ``_meta`` entry (backbone, labels, feature configuration),
so a single copied file is enough to predict or export; ``model.pdopt``
holds the optimizer and training state for resuming. ``epoch_<N>_step_<S>``
is the same after S steps of epoch N (written when training is
interrupted). ``best/`` holds the model of the evaluation with the highest
dev accuracy, or dev mAP for multi-label data (``best/metrics.json``: its
epoch and metrics) and ``avg_<N>/`` the average of the last N epoch
checkpoints; both have ``model.pdparams`` only. With
``keep_checkpoint_max`` only the last few ``epoch_<N>/`` stay
(``prune_checkpoints``). A checkpoint directory is written under a
temporary name and renamed when complete (:mod:`.atomic`), so an
interrupted save leaves the previous checkpoint intact and never a
half-written one. ``metrics.jsonl`` beside them holds one record per
evaluation (:func:`read_metrics`, :func:`write_metrics`).

Importing this module does not import Paddle (only reading and writing
does), so the stage scripts' path lookups (``local/locate.py``) stay fast.
"""
import contextlib
import errno
import json
import math
import os
import re
import shutil
from pathlib import Path

from . import atomic
from .errors import UserError
from .logs import get_logger

log = get_logger(__name__)

META_KEY = '_meta'
# _meta keys that describe how a model was trained or is used, not what
# it is: a resumed run or an average may differ in them
USAGE_KEYS = ('trained_on', 'thresholds')
_EPOCH_DIR = re.compile(r'^epoch_(\d+)$')
_RESUME_DIR = re.compile(r'^epoch_(\d+)(?:_step_(\d+))?$')


class CheckpointError(UserError):
    pass


def model_meta(backbone, label_list, dropout, feature, task,
               clip_seconds=None, head_hidden=0, trained_on=None):
    """The ``_meta`` entry: what predicting with or exporting a checkpoint
    needs besides the weights (``multi_label`` only when true, as in
    checkpoints written before multi-label training). ``clip_seconds``:
    the length of the clips it was trained on (detection's default
    window), where known; ``head_hidden``: units of the head's hidden
    layer (none when 0); ``trained_on``: which clips trained it
    (:func:`..calibration.trained_on`), so calibration can refuse them.
    ``thresholds`` (per-class, :mod:`..calibration`) are added later."""
    meta = {'backbone': backbone, 'num_class': len(label_list),
            'label_list': list(label_list), 'dropout': dropout,
            'feature': feature.to_dict(), **task.meta()}
    if clip_seconds:
        meta['clip_seconds'] = round(float(clip_seconds), 3)
    if head_hidden:
        meta['head_hidden'] = int(head_hidden)
    if trained_on:
        meta['trained_on'] = trained_on
    return meta


def same_model(a, b):
    """Whether two ``_meta`` entries describe the same model (backbone,
    labels, task, features), whatever their :data:`USAGE_KEYS`."""
    def core(m):
        return {k: v for k, v in m.items() if k not in USAGE_KEYS}
    return core(a) == core(b)


def write_model_meta(path, meta):
    """Replace the ``_meta`` of the checkpoint ``path`` (``model.pdparams``
    or its directory) by ``meta``, atomically; the weights are kept."""
    path = Path(path)
    if path.is_dir():
        path = path / 'model.pdparams'
    state, _ = load_checkpoint(path)
    state[META_KEY] = json.dumps(meta)
    with disk_full(path, tensor_bytes(state)):
        atomic.save(state, path)


def save_checkpoint(checkpoint_dir, epoch, model, meta, optimizer=None,
                    train_state=None, step=None):
    """Write ``epoch_<epoch>/`` (``epoch_<epoch>_step_<step>/`` when ``step``
    is given) and return its path. ``model`` and ``optimizer``: the objects
    or their state dicts."""
    import paddle
    name = f'epoch_{epoch}' + (f'_step_{step}' if step is not None else '')
    model, optimizer = _state(model), _state(optimizer)

    def write(folder):
        if optimizer is not None:
            paddle.save({'optimizer': optimizer,
                         'train_state': train_state or {}},
                        str(folder / 'model.pdopt'))
        _save_model(model, meta, folder)

    return _write_dir(Path(checkpoint_dir) / name, write, model, optimizer)


def save_model(checkpoint_dir, name, state, meta, info=None):
    """Write ``<name>/model.pdparams`` (and ``info`` as
    ``<name>/metrics.json``) atomically; returns the directory."""

    def write(folder):
        _save_model(state, meta, folder)
        if info is not None:
            (folder / 'metrics.json').write_text(json.dumps(info) + '\n')

    return _write_dir(Path(checkpoint_dir) / name, write, state)


def _state(obj):
    return obj.state_dict() if hasattr(obj, 'state_dict') else obj


def _write_dir(path, write, *states):
    """:func:`.atomic.write_dir`; a full disk is one line
    (:func:`disk_full`)."""
    with disk_full(path, tensor_bytes(*states)):
        return atomic.write_dir(path, write)


@contextlib.contextmanager
def disk_full(path, needed=None):
    """Turn a full disk (or quota) while writing ``path`` into one
    :class:`CheckpointError` line: the path, the space ``needed`` (bytes)
    and what is free. Writes are atomic, so what was there before stays
    intact."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        path = Path(path)
        free = shutil.disk_usage(path.parent).free
        need = f'it needs about {_mb(needed)}, ' if needed else ''
        raise CheckpointError(
            f'cannot write {path}: no space left on device ({need}{_mb(free)}'
            f' free there): free space or set --checkpoint_dir to another '
            f'disk; earlier checkpoints are intact (--resume continues from '
            f'them)') from e


def tensor_bytes(*states):
    """Bytes of the tensors and arrays in (nested) state dicts."""
    total = 0
    for state in states:
        if isinstance(state, dict):
            total += tensor_bytes(*state.values())
        elif hasattr(state, 'shape') and hasattr(state, 'dtype'):
            size = getattr(state, 'element_size', None)
            itemsize = size() if callable(size) else state.dtype.itemsize
            total += math.prod(state.shape) * itemsize
    return total


def _mb(n):
    return f'{n / 2 ** 20:.1f} MB'


def _save_model(state, meta, folder):
    import paddle
    state = dict(state)
    state[META_KEY] = json.dumps(meta)
    paddle.save(state, str(folder / 'model.pdparams'))


def load_checkpoint(path):
    """``(state_dict, meta)`` of a ``model.pdparams`` file (or its directory)
    written by train.py.

    Only load checkpoints you trust: ``paddle.load`` unpickles the file.
    """
    state, meta = read_state(path)
    if meta is None:
        raise CheckpointError(
            f'{path}: no {META_KEY} entry; this is not a checkpoint written '
            f'by train.py (backbone-only weights go to --pretrained_path)')
    return state, meta


def read_state(path):
    """``(state_dict, meta)``; meta is None for a plain state dict (as
    upstream PaddleSpeech's train.py writes)."""
    import paddle
    path = Path(path)
    export = export_dir_of(path)
    if export is not None:
        raise CheckpointError(
            f'{export} is an export, not a training checkpoint: classify '
            f'with deploy/predict.py --model_dir {export} (predict.py '
            f'--checkpoint takes train.py\'s <checkpoint_dir>/best/'
            f'model.pdparams)')
    if path.is_dir():
        path = path / 'model.pdparams'
    if not path.is_file():
        raise CheckpointError(
            f'checkpoint {path} not found (train first with ./run.sh 1, or '
            f'pass --checkpoint <checkpoint_dir>/epoch_N/model.pdparams)')
    try:
        state = paddle.load(str(path))
    except Exception as e:
        raise CheckpointError(f'{path}: not a Paddle checkpoint ({e})') from e
    if not isinstance(state, dict):
        raise CheckpointError(f'{path} holds a {type(state).__name__}, not a '
                              f'state dict')
    meta = state.pop(META_KEY, None)
    return state, json.loads(meta) if meta is not None else None


def export_dir_of(path):
    """The export directory ``path`` is or names a file of (what
    export_model.py writes, not a checkpoint), else None."""
    from .artifact import EXPORT_FILES
    folder = path if path.is_dir() else path.parent
    if not (folder / 'model.pdparams').is_file() and (
            path.is_dir() or path.name in EXPORT_FILES) and any(
            (folder / name).is_file() for name in EXPORT_FILES):
        return folder
    return None


def checkpoint_file_of(path):
    """The ``model.pdparams`` that ``path`` is, holds, or (a checkpoint
    directory) chooses for the later stages, else None."""
    path = Path(path)
    if path.suffix == '.pdparams' and path.is_file():
        return path
    if (path / 'model.pdparams').is_file():
        return path / 'model.pdparams'
    found = best_checkpoint(path)
    return found / 'model.pdparams' if found else None


def epoch_checkpoints(checkpoint_dir):
    """``epoch_<N>`` directories holding a model, oldest first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = sorted((int(m.group(1)), d) for d in root.iterdir()
                   if (m := _EPOCH_DIR.match(d.name)) and
                   (d / 'model.pdparams').is_file())
    return [d for _, d in found]


def latest_checkpoint(checkpoint_dir):
    """The newest ``epoch_<N>`` directory holding a model, or None."""
    found = epoch_checkpoints(checkpoint_dir)
    return found[-1] if found else None


def best_checkpoint(checkpoint_dir):
    """``best/`` (highest dev score) when training wrote one, else the
    latest epoch checkpoint, else None: what later stages use."""
    best = Path(checkpoint_dir) / 'best'
    if (best / 'model.pdparams').is_file():
        return best
    return latest_checkpoint(checkpoint_dir)


def average_checkpoints(paths):
    """Element-wise mean of the models in ``paths`` (and their common
    meta). Averaging the last few checkpoints of a run smooths the noise of
    the final steps; tensors keep their dtype."""
    import paddle
    if not paths:
        raise CheckpointError('no checkpoints to average')
    total, meta = None, None
    for path in paths:
        state, m = load_checkpoint(path)
        if meta is not None and not same_model(m, meta):
            raise CheckpointError(f'{path} holds another model than '
                                  f'{paths[0]}; cannot average them')
        # thresholds calibrated for one checkpoint do not hold for the mean
        meta = {k: v for k, v in m.items() if k != 'thresholds'}
        arrays = {k: v.numpy().astype('float64') for k, v in state.items()}
        total = arrays if total is None else {
            k: total[k] + arrays[k] for k in total}
    dtypes = {k: v.dtype for k, v in state.items()}
    return {k: paddle.to_tensor((v / len(paths)), dtype=dtypes[k])
            for k, v in total.items()}, meta


def save_average(checkpoint_dir, last):
    """Average the last ``last`` epoch checkpoints into ``avg_<last>/``;
    returns its path (None when there are none)."""
    paths = epoch_checkpoints(checkpoint_dir)[-last:]
    if not paths:
        return None
    state, meta = average_checkpoints(paths)
    return save_model(checkpoint_dir, f'avg_{last}', state, meta,
                      {'averaged': [p.name for p in paths]})


def resume_point(checkpoint_dir):
    """The checkpoint to resume from: the furthest of ``epoch_<N>`` (end of
    epoch N) and ``epoch_<N>_step_<S>`` (S steps into epoch N) holding both
    model and optimizer state, or None."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return None
    found = []
    for d in root.iterdir():
        m = _RESUME_DIR.match(d.name)
        if m and (d / 'model.pdparams').is_file() and (
                d / 'model.pdopt').is_file():
            epoch, step = int(m.group(1)), m.group(2)
            found.append(((epoch + 1, 0, 1) if step is None else
                          (epoch, int(step), 0), d))
    return max(found)[1] if found else None


def remove_step_checkpoints(checkpoint_dir):
    """Drop mid-epoch checkpoints once a later epoch checkpoint exists."""
    for d in Path(checkpoint_dir).glob('epoch_*_step_*'):
        shutil.rmtree(d, ignore_errors=True)


def prune_checkpoints(checkpoint_dir, keep, current=None):
    """Delete all but the last ``keep`` ``epoch_<N>`` checkpoints, oldest
    first (``keep`` 0: keep all); returns the deleted paths.

    A CNN14 checkpoint is about 1 GB, so a long run would otherwise fill
    the disk. ``current`` (the checkpoint just written) and the newest one
    always stay, so ``resume_point`` finds what it found before; ``best/``,
    ``avg_<N>/`` and step checkpoints are not touched. Each directory is
    renamed to a hidden name before it is deleted: a crash midway leaves
    either a complete ``epoch_<N>/`` or a hidden leftover (removed by the
    next call), never a partial one that resuming or averaging could pick.
    """
    if keep < 0:
        raise CheckpointError(f'keep_checkpoint_max must be 0 (keep all) or '
                              f'positive, got {keep}')
    root = Path(checkpoint_dir)
    for leftover in root.glob('.epoch_*.pruned'):
        shutil.rmtree(leftover, ignore_errors=True)
    if not keep:
        return []
    current = Path(current) if current is not None else None
    doomed = [d for d in epoch_checkpoints(root)[:-keep] if d != current]
    for d in doomed:
        trash = d.with_name(f'.{d.name}.pruned')
        os.replace(d, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return doomed


def read_metrics(path):
    """Records of ``metrics.jsonl``; a line cut off by a crash is dropped."""
    records = []
    if Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def write_metrics(path, records):
    """Replace ``metrics.jsonl`` atomically."""
    with disk_full(path):
        atomic.write_text(path, ''.join(json.dumps(r) + '\n'
                                        for r in records))


def checkpoints_to_keep(keep_max, average_last):
    """How many epoch checkpoints pruning keeps (0: all): ``keep_max``,
    raised to ``average_last`` so the final average finds its checkpoints."""
    if keep_max < 0:
        raise UserError(f'--keep_checkpoint_max must be 0 (keep all) or '
                        f'positive, got {keep_max}')
    if keep_max and average_last > keep_max:
        log.info(f'[checkpoints] keeping the last {average_last} epoch '
                 f'checkpoints, not {keep_max}: average_last '
                 f'{average_last} needs them')
        return average_last
    return keep_max
