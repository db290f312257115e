"""Clip embeddings computed once with the frozen backbone and kept on
disk: what head-only training (``head_only: true``) trains on.

A clip is cut into windows as evaluation cuts it
(:class:`..datasets.ClipWindows`); each window's embedding
(:meth:`..models.SoundClassifier.embed`) is stored in
``<cache>/<model key>/<clip key>.npz``. The model key covers the backbone's
weights, the feature settings and the windowing; the clip key the file's
path, size and modification time. A second run, more epochs or another
label set reuse the entries; a changed file or backbone is embedded
again.
"""
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import paddle

from . import atomic
from .datasets.clips import class_counts
from .logs import get_logger

log = get_logger(__name__)


class EmbeddedWindows:
    """The windows of a :class:`..datasets.ClipDataset`'s clips as
    embeddings: item ``i`` is ``(embedding, label)`` of clip
    :attr:`clip_of` ``[i]``, weighing :attr:`weights` ``[i]`` (as
    :class:`..datasets.ClipWindows`, so evaluation pools them alike)."""

    def __init__(self, clips, embeddings, weights):
        self.label_list, self.multi_label = clips.label_list, \
            clips.multi_label
        self.items, self.clip_of, self.weights = [], [], []
        for i, ((_, label), emb, w) in enumerate(zip(clips.items, embeddings,
                                                      weights)):
            y = label if clips.multi_label else np.int64(label)
            for e, n in zip(emb, w):
                self.items.append((e, y))
                self.clip_of.append(i)
                self.weights.append(int(n))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        return self.items[idx[0] if isinstance(idx, tuple) else idx]

    def class_counts(self):
        return class_counts(self.items, len(self.label_list),
                            self.multi_label)


class EmbeddingCache:
    """``cache(clips, windowing, copies)`` -> :class:`EmbeddedWindows`,
    embedding only the clips not cached yet, in batches of ``batch_size``
    windows. ``copies``: besides each window's own embedding, that many of
    its log-mel augmented by ``augmenter`` (each copy cached apart)."""

    def __init__(self, root, model, frontend, batch_size=16, augmenter=None):
        self.root, self.model, self.frontend = Path(root), model, frontend
        self.batch_size, self.augmenter = batch_size, augmenter
        self._weights_key = _weights_key(model.backbone)

    def folder(self, windowing, copy=0):
        """Where the embeddings of ``windowing``'s windows (``copy`` > 0:
        of augmented copy number ``copy``) are kept."""
        about = {'weights': self._weights_key,
                 'feature': self.frontend.config.to_dict(),
                 'window': [windowing.seconds, windowing.pad]}
        if copy:
            about.update(copy=copy, augment=dataclasses.asdict(
                self.augmenter.config))
        key = hashlib.sha1(json.dumps(about, sort_keys=True).encode())
        return self.root / key.hexdigest()[:16]

    def __call__(self, clips, windowing, copies=0):
        embeddings = [[] for _ in clips.items]
        weights = [[] for _ in clips.items]
        for copy in range(copies + 1):
            folder = self.folder(windowing, copy)
            entries = [folder / f'{_clip_key(path)}.npz' for path, _ in
                       clips.items]
            missing = [i for i, e in enumerate(entries) if not e.is_file()]
            if missing:
                what = f'augmented copy {copy} of ' if copy else ''
                log.info(f'[embed] {what}{len(missing)} of {len(entries)} '
                         f'clips through the frozen backbone -> {folder}')
                self._embed(clips, [clips.items[i] for i in missing],
                            [entries[i] for i in missing], windowing,
                            augment=bool(copy))
            for i, e in enumerate(entries):
                with np.load(e) as z:
                    embeddings[i].append(z['embedding'])
                    weights[i].append(z['weights'])
        return EmbeddedWindows(clips, [np.concatenate(e) for e in embeddings],
                               [np.concatenate(w) for w in weights])

    @paddle.no_grad()
    def _embed(self, clips, items, entries, windowing, augment=False):
        from .datasets.loaders import window_loader
        subset = _Clips(items, clips)
        loader = window_loader(subset, windowing, self.frontend,
                               self.batch_size)
        was_training = self.model.training
        self.model.eval()
        rows = []
        for x, _ in loader:
            x = self.frontend.batch(x)
            if augment:
                x, _ = self.augmenter(x, None, training=True)
            rows.append(self.model.embed(x).numpy())
        if was_training:
            self.model.train()
        rows = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
        windows = loader.dataset
        clip_of, weights = np.asarray(windows.clip_of), np.asarray(
            windows.weights)
        for i, entry in enumerate(entries):
            mine = clip_of == i
            atomic.write_file(entry, lambda tmp: np.savez(
                tmp, embedding=rows[mine].astype(np.float32),
                weights=weights[mine]))


class _Clips:
    """The part of a ClipDataset that ClipWindows reads, for a subset."""

    def __init__(self, items, like):
        self.items, self.multi_label = items, like.multi_label
        self.feature_config = like.feature_config


def _weights_key(layer):
    h = hashlib.sha1()
    for name, value in sorted(layer.state_dict().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(value.numpy()).tobytes())
    return h.hexdigest()


def _clip_key(path):
    """The file's path, size and mtime, and the part of it a manifest's
    ``start``/``end`` name (:class:`..audio.Segment`)."""
    st = os.stat(path)
    part = (getattr(path, 'start', None), getattr(path, 'end', None))
    return hashlib.sha1(f'{Path(path).resolve()}|{st.st_size}|'
                        f'{st.st_mtime_ns}|{part}'.encode()).hexdigest()


class HeadOnly(paddle.nn.Layer):
    """The classifier's head alone: embeddings in, logits out (the
    backbone's weights stay in the classifier, and in its checkpoints)."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, embedding):
        return self.classifier.head(embedding)


def copies_augmenter(augmenter, train):
    """The augmenter of ``embed_augment``'s copies (the run's, mixup
    aside: a copy is of one clip), or None without copies; one line when
    the copies would be plain ones."""
    from .augment import Augmenter
    from .errors import UserError
    if not train.embed_augment:
        return None
    if not train.head_only:
        raise UserError('embed_augment makes copies for head_only runs: set '
                        'head_only: true, or drop embed_augment')
    config = dataclasses.replace(augmenter.config, mixup_alpha=None)
    if not config.active:
        raise UserError('embed_augment needs an augment: section with '
                        'masks, time shift or gain (mixup does not apply '
                        'to copies of one clip)')
    return Augmenter(config, augmenter.floor_db)
