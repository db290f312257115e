"""Your own sounds: a folder per class or a manifest, besides ESC-50's
layout, each read into a :class:`.clips.ClipTable`.

* folder per class: ``<data_dir>/<label>/**/<file>``; the label is the
  first folder level, nested folders are allowed; hidden files and folders
  and files that are not audio (:data:`..audio.AUDIO_SUFFIXES`) are left
  out and named in a warning.
* manifest: a CSV (or ``.tsv``) with a header, a ``path`` (or
  ``file_name``) column relative to the manifest's folder and a ``label``
  column (or ``labels``, split on ``;``), optionally ``fold``; a file on
  several rows with different labels is multi-label. Optional ``start``
  and ``end`` columns (seconds) make a row's clip that part of its file
  (:class:`..audio.Segment`; several parts of one file are several
  clips), as the review page's export writes them; an absolute ``path``
  is taken as it is. ``data_dir`` is the manifest itself or a folder
  holding one of :data:`MANIFEST_NAMES`.

Class order: label names sorted, names kept exactly as written. Data
without folds gets stratified ones (:mod:`.folds`). Lists the tree once
(``os.scandir``), so 100,000 files take well under a second.
"""
import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..audio import AUDIO_SUFFIXES, Segment, describe_left_out, find_audio
from ..logs import get_logger
from .clips import ClipTable, DatasetError
from .esc50 import dataset_root, esc50_table
from .folds import FOLDS_NAME, folds_file_name, folds_for

log = get_logger(__name__)

LAYOUTS = ('auto', 'esc50', 'folder', 'manifest')
MANIFEST_NAMES = ('metadata.csv', 'manifest.csv', 'manifest.tsv')
MANIFEST_SUFFIXES = ('.csv', '.tsv')
HELP = ('ESC-50 layout (meta/esc50.csv), a folder per class, or a manifest '
        f'({", ".join(MANIFEST_NAMES)}); see docs/data.md')


@dataclass
class DataConfig:
    """The ``data:`` section: which clips, their folds, how batches draw
    them."""
    # auto | esc50 | folder | manifest | synthetic (stage 0 generates it)
    dataset: str = 'auto'
    data_home: str = './data'
    # ESC-50 layout, a folder per class, or a manifest; None: ESC-50
    data_dir: Optional[str] = None
    split: int = 1  # dev fold; training uses the other folds
    num_folds: int = 5  # folds assigned to data without them
    # None: <data_dir>/.folds.csv, beside a manifest <manifest
    # stem>.folds.csv (read-only data: <checkpoint_dir>/folds.csv)
    folds_file: Optional[str] = None
    # train on random crops this long, score clips in windows; None: whole
    clip_seconds: Optional[float] = None
    balanced_sampling: bool = False  # class-balanced training batches
    # > 0: best/ is chosen on this share of the training folds
    val_fraction: float = 0.0
    skip_bad_files: bool = False  # train without unreadable clips (listed)
    # generator settings when dataset == synthetic
    synthetic: dict = field(default_factory=dict)


def detect_layout(data_dir):
    """``esc50``, ``folder`` or ``manifest``, from what ``data_dir`` holds."""
    p = Path(data_dir)
    if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
        return 'manifest'
    if not p.is_dir():
        raise DatasetError(f'data_dir {p} does not exist: point it at a '
                           f'dataset: {HELP}')
    if (p / 'meta' / 'esc50.csv').is_file():
        return 'esc50'
    if any((p / name).is_file() for name in MANIFEST_NAMES):
        return 'manifest'
    if any(e.is_dir() and not e.name.startswith('.') for e in os.scandir(p)):
        return 'folder'
    raise DatasetError(f'data_dir {p} holds no dataset: expected {HELP}')


def load_table(data, train):
    """The :class:`.clips.ClipTable` of the dataset the ``data:`` section
    points at: ``data_dir`` (else the ESC-50 download) in the layout
    ``data.dataset`` (``auto``: detected; ``synthetic``: the generated demo
    set, detected). Folder and manifest data without folds get them from
    :func:`.folds_for` (``num_folds`` and ``folds_file``; the ``train:``
    section's ``seed`` and ``checkpoint_dir``, so that every stage finds
    the folds the training run was given)."""
    root = dataset_root(data)
    layout = data.dataset
    if layout not in LAYOUTS + ('synthetic',):
        raise DatasetError(f'dataset {layout!r} is not one of '
                           f'{list(LAYOUTS) + ["synthetic"]}')
    if layout in ('auto', 'synthetic'):
        layout = detect_layout(root) if data.data_dir else 'esc50'
    elif layout != 'esc50' and not root.exists():
        raise DatasetError(f'data_dir {root} does not exist: point it at '
                           f'your {layout} dataset')
    if layout == 'esc50':
        table = esc50_table(root)
        check_classes(table.label_list, table.source)
        return table
    if layout == 'folder':
        files, labels, source = list_folder(root)
        folds = None
    else:
        manifest = manifest_path(root)
        root, source = manifest.parent, manifest
        files, labels, folds, spans = read_manifest(manifest)
    label_list = sorted({name for names in labels for name in names})
    check_classes(label_list, source, layout == 'folder')
    index = {name: i for i, name in enumerate(label_list)}
    targets = [[index[n] for n in names] for names in labels]
    folds_file = None
    if folds is None:
        folds, folds_file = folds_for(
            root, files, targets, label_list, data, train,
            folds_file_name(source if layout == 'manifest' else None))
    spans = spans if layout == 'manifest' else {}
    clips = [Segment(str(root / spans[f][0]), *spans[f][1:]) if f in spans
             else root / f for f in files]
    return ClipTable(root, clips, folds, targets, label_list, source,
                     folds_file)


def check_classes(label_list, source, folder=False):
    """Refuse data of fewer than two classes, which would train to a
    perfect score that means nothing. A folder layout's one class folder
    is usually ``data_dir`` set one level too high: when that folder holds
    a dataset itself, say to point ``data_dir`` at it."""
    if len(label_list) >= 2:
        return
    name = label_list[0] if label_list else None
    if not folder:
        raise DatasetError(f'{source} names {len(label_list)} class '
                           f'({name!r}); a classifier needs at least two: '
                           f'label the clips of two or more classes')
    inner = Path(source) / name
    try:
        fix = (f'if the classes are inside it, set data_dir: {inner} (it '
               f'holds a {detect_layout(inner)} dataset)')
    except DatasetError:
        fix = f'add a folder of clips for each other class beside {inner}'
    raise DatasetError(f'data_dir {source} holds one class folder ({name!r})'
                       f' and a classifier needs at least two: {fix}')


def list_folder(root):
    """``(files, [[label]], root)`` of a folder-per-class tree, files
    relative to ``root`` in sorted order. What is left out (hidden, not
    audio by name, directly in ``root``) is named in one warning line on
    stderr."""
    root = Path(root)
    files, labels = [], []
    left_out = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name == FOLDS_NAME:
            continue
        if entry.name.startswith('.'):
            left_out.setdefault('hidden', []).append(
                entry.name + '/' * entry.is_dir())
            continue
        if not entry.is_dir():
            left_out.setdefault('outside the class folders', []).append(
                entry.name)
            continue
        found, skipped = find_audio(entry.path)
        for reason, paths in skipped.items():
            left_out.setdefault(reason, []).extend(
                f'{entry.name}/{path}' for path in paths)
        if not found:
            raise DatasetError(
                f'class folder {entry.path} holds no audio files '
                f'({" ".join(sorted(AUDIO_SUFFIXES))}): add clips of '
                f'{entry.name!r} or remove the folder')
        files += [f'{entry.name}/{path}' for path in found]
        labels += [[entry.name]] * len(found)
    if not files:
        raise DatasetError(f'data_dir {root} holds no class folders: '
                           f'expected {HELP}')
    check_classes(sorted(set(name for [name] in labels)), root, True)
    if left_out:
        log.warning(f'[data] warning: {root}: {describe_left_out(left_out)}')
    return files, labels, root


def manifest_path(data_dir):
    """The manifest ``data_dir`` names, or the one in that folder."""
    p = Path(data_dir)
    if p.is_file():
        return p
    for name in MANIFEST_NAMES:
        if (p / name).is_file():
            return p / name
    raise DatasetError(f'{p} holds no manifest: add one of '
                       f'{", ".join(MANIFEST_NAMES)} or set data_dir to the '
                       f'manifest file')


def read_manifest(manifest):
    """``(files, [[labels]], folds or None, spans)`` of a manifest:
    files relative to its folder (or absolute, as given), in first-listed
    order; a row with ``start``/``end`` is the clip ``file@start-end``,
    whose ``(file, start, end)`` ``spans`` holds."""
    manifest = Path(manifest)
    delimiter = '\t' if manifest.suffix.lower() == '.tsv' else ','
    try:
        with open(manifest, newline='', encoding='utf-8-sig') as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            columns = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f'cannot read manifest {manifest}: {e}') from e
    path_col = next((c for c in ('path', 'file_name') if c in columns), None)
    label_col = next((c for c in ('label', 'labels') if c in columns), None)
    if path_col is None or label_col is None or not rows:
        raise DatasetError(
            f'manifest {manifest} needs a header with a path (or file_name) '
            f'column and a label (or labels) column, and at least one row; '
            f'found columns {columns} and {len(rows)} rows')
    root = os.path.abspath(manifest.parent)
    labels, folds, first, spans = {}, {}, {}, {}
    has_fold = 'fold' in columns
    has_span = 'start' in columns and 'end' in columns
    for line, r in enumerate(rows, start=2):
        where = f'manifest {manifest} line {line}'
        given = (r.get(path_col) or '').strip()
        full = os.path.normpath(os.path.join(root, given))
        if not given or (not os.path.isabs(given) and
                         os.path.commonpath([root, full]) != root):
            raise DatasetError(
                f'{where}: path {given!r} is outside {root}: put the clips '
                f'in the manifest\'s folder and give paths relative to it, '
                f'or give absolute paths')
        rel = Path(full if os.path.isabs(given) else
                   os.path.relpath(full, root)).as_posix()
        span = (r.get('start') or '').strip(), (r.get('end') or '').strip()
        if has_span and any(span):
            try:
                start, end = map(float, span)
            except ValueError:
                start = end = float('nan')
            if not 0 <= start < end:
                raise DatasetError(
                    f'{where}: start {span[0]!r} and end {span[1]!r} are not '
                    f'seconds with 0 <= start < end: fix them or leave both '
                    f'empty for the whole file')
            path = rel
            rel = f'{path}@{start:g}-{end:g}'
            spans[rel] = (path, start, end)
        raw = r.get(label_col) or ''
        names = [n.strip() for n in (raw.split(';') if label_col == 'labels'
                                     else [raw])]
        if not all(names):
            raise DatasetError(f'{where}: {given} has an empty label: give '
                               f'every row a label')
        have = labels.setdefault(rel, [])
        for name in names:
            if name in have:
                raise DatasetError(
                    f'{where}: {given} with label {name!r} is listed twice '
                    f'(first on line {first[rel, name]}): remove the '
                    f'duplicate row')
            have.append(name)
            first[rel, name] = line
        if has_fold:
            text = (r.get('fold') or '').strip()
            if not text.isdigit():
                raise DatasetError(f'{where}: fold {text!r} is not a whole '
                                   f'number: give every row a fold, or drop '
                                   f'the fold column to assign folds')
            if folds.setdefault(rel, int(text)) != int(text):
                raise DatasetError(
                    f'{where}: {given} is in fold {folds[rel]} and in fold '
                    f'{text}; a clip belongs to one fold: give all its rows '
                    f'the same fold')
    files = list(labels)
    return (files, [labels[f] for f in files],
            [folds[f] for f in files] if has_fold else None, spans)

