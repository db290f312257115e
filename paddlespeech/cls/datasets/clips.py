"""A labelled list of audio clips as model input, and how clips become
batches. Every dataset layout (:mod:`.esc50`) lists its clips here."""
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..audio import AudioError, load_audio, probe_audio
from ..errors import UserError


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

    def __init__(self, items, label_list, multi_label, feature_config,
                 extractor=None):
        self.items, self.label_list = items, label_list
        self.multi_label = multi_label
        self.feature_config, self.extractor = feature_config, extractor
        self._cache = {}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        if idx in self._cache:
            return self._cache[idx]
        path, label = self.items[idx]
        y = label if self.multi_label else np.int64(label)
        c = self.feature_config
        x = load_audio(path, c.sample_rate, min_samples=c.n_fft)
        if self.extractor is not None:
            x = self.extractor(x)
            self._cache[idx] = (x, y)
        return x, y

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
        """``[(path, reason)]`` of clips that cannot be read.

        Header only (fast even for all of ESC-50): missing, empty, non-audio
        and zero-length files; bad samples are caught when read.
        """
        bad = []
        for path, _ in self.items:
            try:
                probe_audio(path)
            except AudioError as e:
                bad.append((path, e.reason))
        return bad

    def drop(self, paths):
        """Leave out the clips at ``paths`` (e.g. unreadable ones)."""
        self.items = [item for item in self.items if item[0] not in paths]
        self._cache.clear()


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


def check_readable(datasets, skip=False, verbose=True):
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
    if verbose:
        print(f'skipping {len(bad)} unreadable audio file(s):\n{listing}',
              file=sys.stderr, flush=True)


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
