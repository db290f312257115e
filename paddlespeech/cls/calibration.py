"""Per-class decision thresholds for a target precision (or recall).

A labelled set is scored clip by clip as prediction scores a file (the
model's windows, their scores averaged: :func:`..prediction.predict_files`);
per class, the clips' scores against "has this label" (one class against
the rest, so single- and multi-label models alike) give the
precision-recall curve (:func:`..metrics.precision_recall_curve`), on
which :func:`pick_threshold` chooses. The thresholds go into the model
(``_meta['thresholds']`` of a checkpoint, ``thresholds`` of an export's
``model.json``) as ``{class: threshold}``: a class whose target no
threshold reaches is ``None`` (``detect.py --threshold auto`` never reports
it), a class without clips in the set is left out (it keeps the default
threshold).

Thresholds chosen on the clips that trained the model would be far too
optimistic, so training records which clips it used (:func:`trained_on`,
in ``_meta['trained_on']``) and :func:`training_clips` finds them in the
calibration set. It compares files by absolute path: a copy of a training
file elsewhere is not recognised, and checkpoints trained before this was
recorded (and exports whose checkpoint is gone) tell nothing.
"""
import base64
import csv
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from . import atomic
from .errors import UserError
from .metrics import precision_recall_curve

CSV_HEADER = ('class', 'threshold', 'precision', 'recall', 'support')
DEFAULT_PRECISION = 0.9
_DIGEST = 6  # bytes per clip: collisions stay negligible at 10^6 clips
_EPS = 1e-9  # 0.9 must count as meeting 0.9 whatever the rounding


@dataclass
class CalibrateConfig:
    """The ``calibrate:`` section (``calibrate.py``; the labelled clips
    are the ``data:`` section's)."""
    FLAT = {'model_dir': 'calibrate_model_dir', 'folds': 'calibrate_folds',
            'output_dir': 'calibrate_dir'}
    model_dir: Optional[str] = None  # an export
    folds: Optional[Union[str, int, list]] = None  # None: every clip
    # None: 0.9, unless target_recall is given
    target_precision: Optional[float] = None
    target_recall: Optional[float] = None
    allow_training_data: bool = False  # warn instead of refusing them
    output_dir: Optional[str] = None  # thresholds.csv, pr_curves.png


def clip_key(path):
    """A short digest of a clip's file (a segment counts as its file), by
    its absolute path."""
    name = os.path.abspath(os.fspath(path))
    return hashlib.blake2b(name.encode('utf-8', 'surrogateescape'),
                           digest_size=_DIGEST).digest()


def trained_on(table, split):
    """What ``_meta['trained_on']`` records of a run on ``table``
    (:class:`..datasets.clips.ClipTable`) with dev fold ``split``: its
    source, the training folds and a digest of each of their clips."""
    folds = sorted({f for f in table.folds if f != split})
    keys = sorted({clip_key(p) for p, f in zip(table.paths, table.folds)
                   if f != split})
    return {'data': str(table.source), 'split': split, 'folds': folds,
            'clips': len(keys),
            'digests': base64.b64encode(b''.join(keys)).decode('ascii')}


def training_clips(record, paths):
    """Boolean mask: which of ``paths`` trained the model ``record``
    (:func:`trained_on`) describes."""
    raw = base64.b64decode(record.get('digests', ''))
    known = {raw[i:i + _DIGEST] for i in range(0, len(raw), _DIGEST)}
    return np.array([clip_key(p) in known for p in paths], dtype=bool)


def recorded_training(model):
    """The ``trained_on`` record of an opened model
    (:class:`..scoring.SoundModel`), or None: a checkpoint holds it, an
    export leads to it through ``model.json``'s ``checkpoint``."""
    meta = getattr(getattr(model, 'model', None), 'meta', None)
    if isinstance(meta, dict):
        return meta.get('trained_on')
    source = model.meta.checkpoint
    if not source:
        return None
    from .checkpoint import CheckpointError, checkpoint_file_of, read_state
    path = checkpoint_file_of(source)
    if path is None:
        return None
    try:
        _, meta = read_state(path)
    except CheckpointError:
        return None
    return (meta or {}).get('trained_on')


def check_not_training(model, paths, data, allow=False, warn=print):
    """Refuse calibration data holding clips that trained ``model`` (a
    one-line warning instead with ``allow``, and where nothing says which
    clips trained it)."""
    record = recorded_training(model)
    if record is None:
        warn(f'warning: {model.source} does not record its training clips '
             f'(trained before they were recorded, or an export whose '
             f'checkpoint is gone): make sure {data} holds none of them')
        return
    mask = training_clips(record, paths)
    if not mask.any():
        return
    line = (f'{mask.sum()} of {len(paths)} clips of {data} trained '
            f'{model.source} (folds {record.get("folds")} of '
            f'{record.get("data")})')
    if allow:
        warn(f'warning: {line}; thresholds chosen on them are optimistic')
        return
    raise UserError(f'{line}: thresholds chosen on them would be far too '
                    f'optimistic; calibrate on held-out clips (--folds '
                    f'{record.get("split")}, the dev fold, or other data) '
                    f'or pass --allow_training_data')


def pick_threshold(scores, positive, target_precision=None,
                   target_recall=None):
    """``(threshold, precision, recall)`` for one class: with
    ``target_precision`` the lowest threshold whose precision reaches it,
    with ``target_recall`` the highest whose recall does. Thresholds
    between two neighbouring distinct scores decide alike; the one
    returned is halfway between the chosen score and the next lower one
    (0 below the lowest), so a jitter of the scores does not flip a
    decision. ``(None, nan, nan)`` when no threshold reaches the target
    (or the class has no positive)."""
    if (target_precision is None) == (target_recall is None):
        raise ValueError('give one of target_precision and target_recall')
    thresholds, precision, recall = precision_recall_curve(scores, positive)
    if not np.asarray(positive).any():
        return None, float('nan'), float('nan')
    if target_precision is not None:
        ok = np.flatnonzero(precision >= target_precision - _EPS)
        i = ok[-1] if len(ok) else None
    else:
        ok = np.flatnonzero(recall >= target_recall - _EPS)
        i = ok[0] if len(ok) else None
    if i is None:
        return None, float('nan'), float('nan')
    below = thresholds[i + 1] if i + 1 < len(thresholds) else 0.0
    return (float((thresholds[i] + below) / 2), float(precision[i]),
            float(recall[i]))


def calibrate(scores, targets, labels, target_precision=None,
              target_recall=None):
    """Rows ``{class, threshold, precision, recall, support}`` per class of
    ``labels``: ``scores`` ``[clips, classes]``, ``targets`` multi-hot of
    the same shape."""
    scores, targets = np.asarray(scores), np.asarray(targets).astype(bool)
    rows = []
    for c, label in enumerate(labels):
        t, p, r = pick_threshold(scores[:, c], targets[:, c],
                                 target_precision, target_recall)
        rows.append({'class': label, 'threshold': t, 'precision': p,
                     'recall': r, 'support': int(targets[:, c].sum())})
    return rows


def thresholds_of(rows):
    """``{class: threshold}`` as the model stores it: classes without
    support left out, unreached targets None."""
    return {r['class']: r['threshold'] for r in rows if r['support']}


def thresholds_csv(rows):
    out = io.StringIO()
    w = csv.writer(out, lineterminator='\n')
    w.writerow(CSV_HEADER)
    for r in rows:
        w.writerow([r['class']] + [
            '' if r[k] is None or r[k] != r[k] else repr(r[k])
            for k in ('threshold', 'precision', 'recall')] + [r['support']])
    return out.getvalue()


def label_targets(table, labels):
    """Multi-hot ``[clips, len(labels)]`` of ``table``'s clips in the
    model's class order; a class the model does not know is refused."""
    unknown = sorted(set(table.label_list) - set(labels))
    if unknown:
        raise UserError(f'{table.source} has classes the model does not '
                        f'know: {unknown[:5]} (the model has {labels[:5]}'
                        f'{"…" if len(labels) > 5 else ""}): calibrate on '
                        f'data labelled with its classes')
    column = [labels.index(n) for n in table.label_list]
    out = np.zeros((len(table.paths), len(labels)), dtype=bool)
    for i, names in enumerate(table.targets):
        out[i, [column[k] for k in names]] = True
    return out


def score_clips(model, paths, batch_size=8):
    """``[clips, classes]`` scores of ``paths`` as prediction scores them
    (the model's windows, averaged); an unreadable clip is refused."""
    from .prediction import predict_files
    rows = []
    for path, scores, error in predict_files(
            paths, model.feature, model.scores, model.windowing(),
            batch_size):
        if error:
            raise UserError(f'{error}: fix or remove the clip from the '
                            f'calibration data')
        rows.append(scores)
    return np.stack(rows).astype(np.float64)


def store_thresholds(thresholds, checkpoint=None, model_dir=None):
    """Write ``thresholds`` into the model, atomically: a checkpoint's
    ``_meta`` or an export's ``model.json``; returns the file written."""
    if model_dir:
        from .artifact import META_FILE, read_meta, write_meta
        meta = read_meta(model_dir)
        if meta is None:
            raise UserError(f'{model_dir} has no {META_FILE} to hold the '
                            f'thresholds: export the checkpoint again')
        write_meta(model_dir, meta.replace(thresholds=thresholds))
        return Path(model_dir) / META_FILE
    from .checkpoint import checkpoint_file_of, load_checkpoint, \
        write_model_meta
    path = checkpoint_file_of(checkpoint) or Path(checkpoint)
    _, meta = load_checkpoint(path)
    write_model_meta(path, {**meta, 'thresholds': thresholds})
    return path


def plot_pr_curves(path, scores, targets, rows, target_precision=None,
                   target_recall=None):
    """One small precision-recall plot per class (recall across, precision
    up), its chosen threshold marked and the target dashed."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.figure import Figure
    n = len(rows)
    cols = int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / cols))
    fig = Figure(figsize=(2.6 * cols, 2.4 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    for c, (ax, r) in enumerate(zip(axes, rows)):
        _, precision, recall = precision_recall_curve(scores[:, c],
                                                      targets[:, c])
        if r['support']:
            ax.step(recall, precision, where='post', color='#4a6fa5')
        if target_precision is not None:
            ax.axhline(target_precision, ls='--', color='grey', lw=0.8)
        else:
            ax.axvline(target_recall, ls='--', color='grey', lw=0.8)
        if r['threshold'] is not None:
            ax.plot(r['recall'], r['precision'], 'o', color='#d95f02')
            title = f'{r["class"]}: {r["threshold"]:.3g}'
        else:
            title = f'{r["class"]}: ' + ('not reached' if r['support']
                                         else 'no clips')
        ax.set_title(title, fontsize=8)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=6)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.supxlabel('recall')
    fig.supylabel('precision')
    fig.tight_layout()
    atomic.write_file(path, lambda p: fig.savefig(p, dpi=80, format='png'))
