"""A labelled list of audio clips as model input, and how clips become
batches. Every dataset layout (:mod:`.esc50`, :mod:`.layouts`) reduces to
a :class:`ClipTable`; :class:`FoldDataset` takes a split of it."""
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..audio import AudioError, check_audio, load_audio
from ..errors import UserError
from ..logs import get_logger

log = get_logger(__name__)


class DatasetError(UserError):
    pass


class ClipDataset:
    """Map-style dataset of ``items = [(path, label)]``.

    Items come out as ``(waveform [samples], label)`` at the feature sample
    rate, or ``(log-mel [frames, n_mels], label)`` when a per-clip
    ``extractor`` is given; features are computed once per clip and kept in
    memory, so epochs after the first do no feature extraction. A label is
    an int class index, or a float32 multi-hot vector ``[num_class]`` for
    multi-label data (``multi_label``).
    """

    crop = None  # (length, pad_value, seed): see set_crop

    def __init__(self, items, label_list, multi_label, feature_config,
                 extractor=None):
        self.items, self.label_list = items, label_list
        self.multi_label = multi_label
        self.feature_config, self.extractor = feature_config, extractor
        self._cache = {}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        """Item ``idx``; ``(idx, epoch)`` gives it randomly cropped (or
        padded) to the :meth:`set_crop` length, the window drawn from
        ``(seed, epoch, idx)`` alone, so data loader workers and resumed
        runs draw the same windows."""
        epoch = None
        if isinstance(idx, tuple):
            idx, epoch = idx
        if idx in self._cache:
            x, y = self._cache[idx]
        else:
            path, label = self.items[idx]
            y = label if self.multi_label else np.int64(label)
            c = self.feature_config
            x = load_audio(path, c.sample_rate, min_samples=c.n_fft)
            if self.extractor is not None:
                x = self.extractor(x)
                self._cache[idx] = (x, y)
        if epoch is not None and self.crop is not None:
            length, pad_value, seed = self.crop
            rng = np.random.default_rng([seed, epoch, idx])
            x = random_crop(x, length, pad_value, rng)
        return x, y

    def set_crop(self, length, pad_value, seed):
        """Items asked for as ``(idx, epoch)`` come out ``length`` long
        (frames of log-mel, or samples): a random window of a longer clip,
        a shorter one padded with ``pad_value`` (digital silence)."""
        self.crop = (int(length), pad_value, int(seed))

    def precompute(self, desc='features'):
        """Fill the feature cache now, in this process.

        Data loader workers are forked with a copy of the cache; without
        this each worker would compute (and hold) its own.
        """
        if self.extractor is None:
            return
        for i in tqdm(range(len(self)), desc=desc, leave=False,
                      disable=None, file=sys.stdout):
            self[i]

    def unreadable_files(self):
        """``[(path, reason)]`` of clips that cannot be read: missing,
        empty, non-audio and zero-length files, and (:func:`check_audio`)
        NaN or infinite samples and data that fails to decode. Integer
        PCM files (all of ESC-50) are checked by their header alone."""
        bad = []
        for path, _ in self.items:
            try:
                check_audio(path)
            except AudioError as e:
                bad.append((path, e.reason))
        return bad

    def class_counts(self):
        return class_counts(self.items, len(self.label_list),
                            self.multi_label)

    def drop(self, paths):
        """Leave out the clips at ``paths`` (e.g. unreadable ones)."""
        self.items = [item for item in self.items if item[0] not in paths]
        self._cache.clear()


def class_counts(items, num_class, multi_label):
    """Items ``(x, label)`` of each class (a multi-label item counts for
    each of its labels)."""
    counts = np.zeros(num_class, dtype=np.int64)
    for _, y in items:
        counts[np.flatnonzero(np.atleast_1d(y)) if multi_label
               else int(y)] += 1
    return counts


def random_crop(x, length, pad_value, rng):
    """A random ``length``-long window of ``x`` along its first axis, or
    ``x`` padded at the end with ``pad_value`` when it is shorter."""
    if len(x) >= length:
        start = int(rng.integers(0, len(x) - length + 1))
        return x[start:start + length]
    out = np.full((length,) + x.shape[1:], pad_value, dtype=x.dtype)
    out[:len(x)] = x
    return out


class ClipWindows:
    """The clips of a :class:`ClipDataset` cut into windows by
    ``windowing`` (:class:`..audio.Windowing`) exactly as the prediction
    tools cut files, so the dev scores training reports are the scores
    ``predict.py`` and the exports give: item ``i`` is ``(window, label)``
    of clip :attr:`clip_of` ``[i]``, weighing :attr:`weights` ``[i]`` (its
    audio samples) in the clip's average
    (:meth:`..task.Task.pool_windows`). Every clip is read once, here;
    its windows are kept, as log-mel when an ``extractor`` (per window)
    is given."""

    def __init__(self, clips, windowing, extractor=None):
        c = clips.feature_config
        self.items, self.clip_of, self.weights = [], [], []
        for i, (path, label) in enumerate(tqdm(
                clips.items, desc='dev windows', leave=False, disable=None,
                file=sys.stdout)):
            y = label if clips.multi_label else np.int64(label)
            for wav, n in windowing.windows(path, c.sample_rate, c.n_fft):
                x = wav if extractor is None else extractor(wav)
                self.items.append((x, y))
                self.clip_of.append(i)
                self.weights.append(n)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        return self.items[idx]


@dataclass
class ClipTable:
    """A dataset whatever its layout: clip ``paths``, each clip's ``fold``
    and class indices (``targets``, several for a multi-label clip), the
    class names in index order, and ``source``, the file the clips and
    their labels were read from (for messages); ``folds_file`` when the
    folds were assigned (:mod:`.folds`)."""
    root: Path
    paths: list
    folds: list
    targets: list
    label_list: list
    source: Path
    folds_file: Path = None

    @property
    def multi_label(self):
        return any(len(t) > 1 for t in self.targets)

    @property
    def fold_ids(self):
        return sorted(set(self.folds))

    def items(self, folds):
        """``[(path, label)]`` of the clips in ``folds``: class indices, or
        multi-hot rows for a multi-label table."""
        keep = [i for i, f in enumerate(self.folds) if f in folds]
        if self.multi_label:
            eye = np.eye(len(self.label_list), dtype=np.float32)
            return [(self.paths[i], eye[self.targets[i]].sum(0))
                    for i in keep]
        return [(self.paths[i], self.targets[i][0]) for i in keep]


class FoldDataset(ClipDataset):
    """Clips of the training folds (``mode='train'``) or of fold ``split``
    (``'dev'``) of a :class:`ClipTable`; with ``val_fraction`` > 0, a
    stratified share of the training folds (seeded) is held out of
    ``'train'`` as ``'val'`` (:class:`ClipDataset` says what an item is)."""

    def __init__(self, table, mode='train', split=1, feature_config=None,
                 extractor=None, val_fraction=0.0, seed=0):
        if mode not in ('train', 'val', 'dev') or (mode == 'val' and
                                                   not val_fraction):
            raise ValueError(f"mode must be 'train', 'dev' or (with "
                             f"val_fraction) 'val', got {mode!r}")
        self.root, self.mode, self.table = Path(table.root), mode, table
        folds = table.fold_ids
        if split not in folds:
            raise DatasetError(f'{table.source} has folds {folds}; dev fold '
                               f'{split} is not one of them (set split)')
        items = table.items({split} if mode == 'dev' else
                            set(folds) - {split})
        if mode != 'dev' and val_fraction:
            held = set(holdout([y for _, y in items], val_fraction, seed))
            items = [it for i, it in enumerate(items)
                     if (i in held) == (mode == 'val')]
        super().__init__(items, table.label_list, table.multi_label,
                         feature_config, extractor)


def holdout(labels, fraction, seed):
    """Sorted indices of a seeded, stratified ``fraction`` of the items
    with ``labels`` (class indices or multi-hot rows): per label set,
    ``fraction`` of its clips rounded, at least one and never all of them
    (a label set with one clip stays in training)."""
    rng = np.random.default_rng(seed)
    by_class = {}
    for i, y in enumerate(labels):
        by_class.setdefault(tuple(np.flatnonzero(np.atleast_1d(y)))
                            if np.ndim(y) else int(y), []).append(i)
    picked = []
    for key in sorted(by_class):
        idx = by_class[key]
        k = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        picked += [int(i) for i in rng.permutation(idx)[:k]]
    return sorted(picked)


def read_label_file(path):
    """Label names, one per line (blank lines ignored), in class order."""
    try:
        text = Path(path).read_text(encoding='utf-8')
    except OSError as e:
        raise DatasetError(f'cannot read label file {path}: '
                           f'{e.strerror or e}') from e
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise DatasetError(f'label file {path} holds no labels (one name '
                           f'per line)')
    return labels


def print_class_counts(dataset):
    """One line of clips per class, flagging an imbalance."""
    counts = dataset.class_counts()
    listing = ', '.join(f'{name} {n}' for name, n in
                        zip(dataset.label_list, counts))
    ratio = counts.max() / max(counts.min(), 1)
    hint = (f' (imbalanced {ratio:.1f}x: balanced_sampling: true draws '
            f'class-balanced batches)' if ratio >= 2 else '')
    log.info(f'[data] {dataset.mode} clips per class{hint}: {listing}')


def check_readable(datasets, skip=False):
    """Refuse to start if any clip is unreadable, listing all of them; with
    ``skip`` go on without them instead (and say which)."""
    bad = [b for ds in datasets for b in ds.unreadable_files()]
    if not bad:
        return
    listing = '\n'.join(f'  {p}: {r}' for p, r in bad)
    if not skip:
        raise DatasetError(f'{len(bad)} unreadable audio file(s):\n'
                           f'{listing}\n(fix or remove them, or pass '
                           f'--skip_bad_files to train without them)')
    for ds in datasets:
        ds.drop({p for p, _ in bad})
        if not len(ds):
            raise DatasetError(f'no readable clips left in the {ds.mode} '
                               f'set of {ds.root}')
    log.warning(f'skipping {len(bad)} unreadable audio file(s):\n{listing}')


def collate(batch, pad_value):
    """Stack ``(x, label)`` items, padding ``x`` along time to the longest.

    ``pad_value`` is digital silence in the domain of ``x``
    (:attr:`..features.FrontEnd.pad_value`: 0 for waveforms, the log-mel
    floor for features). Labels stack as they are: int64 class indices, or
    float32 ``[batch, num_class]`` multi-hot rows.
    """
    xs, ys = zip(*batch)
    longest = max(len(x) for x in xs)
    out = np.full((len(xs), longest) + xs[0].shape[1:], pad_value,
                  dtype=np.float32)
    for i, x in enumerate(xs):
        out[i, :len(x)] = x
    return out, np.stack([np.asarray(y) for y in ys])
