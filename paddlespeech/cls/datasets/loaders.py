"""Data loaders that fail in one line: :class:`GuardedLoader` turns an
item or batch that raises, or a dead worker, into a :class:`DatasetError`
instead of a hang or a bare ``SystemError``; :func:`window_loader` scores
clips window by window through it; :func:`build_loaders` makes a training
run's loaders (and cross-validation's test-fold loader). Imports Paddle,
so :mod:`paddlespeech.cls.datasets` does not import this module."""
import traceback
from dataclasses import dataclass

import numpy as np
import paddle

from ..audio import AudioError, Windowing, audio_seconds
from ..errors import UserError
from .clips import (ClipWindows, DatasetError, FoldDataset, check_readable,
                    collate, print_class_counts)
from .sampling import BalancedBatchSampler, ResumableBatchSampler


class GuardedLoader(paddle.io.DataLoader):
    """``paddle.io.DataLoader`` (same arguments) whose failures end the
    run as one :class:`DatasetError` line, in the training loop.

    An exception raised while loading an item or collating a batch kills
    Paddle's loader thread: with ``num_workers=0`` the main process then
    waits forever for the batch (deaf to Ctrl-C and SIGTERM), with workers
    it gets a bare ``SystemError``. Here the failure is caught where it
    happens (in the worker, or the loader thread) and travels as a batch
    of its own, the message's UTF-8 bytes alone, which the iterator turns
    back into the error; a worker that dies is reported the same way.
    """

    def __init__(self, dataset, collate_fn, **kw):
        super().__init__(dataset, collate_fn=_GuardedCollate(collate_fn),
                         **kw)

    def __iter__(self):
        shown, self.dataset = self.dataset, _GuardedItems(self.dataset)
        try:
            batches = super().__iter__()
        finally:
            self.dataset = shown  # what callers see (e.g. ClipWindows)
        try:
            for batch in batches:
                if len(batch) == 1:
                    raise DatasetError(
                        bytes(batch[0].numpy()).decode('utf-8'))
                yield batch
        except SystemError as e:
            stopped = loader_stopped(e)
            if stopped is None:
                raise
            raise stopped from e


def loader_stopped(e):
    """The one-line error for Paddle's ``SystemError`` when a data loader
    worker died (its SIGCHLD handler raises it wherever the main process
    is) or the loader's queue was killed; None for other errors."""
    text = str(e)
    if 'DataLoader' not in text and 'Blocking queue' not in text:
        return None
    first = text.strip().splitlines()[0].split('. ')[0].replace(
        '(Fatal) ', '')
    return DatasetError(f'{first}: rerun with --num_workers 0 to see the '
                        f'error, or lower num_workers if memory ran out')


class _LoadFailure:
    """An item that raised, as it reaches the collate function."""

    def __init__(self, message):
        self.message = message


def _failure_message(e, where):
    if isinstance(e, UserError):  # AudioError names the file already
        return str(e)
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return (f'{where}: {type(e).__name__}: {e} (at {frame.filename}:'
            f'{frame.lineno})')


class _GuardedItems:
    """A dataset whose items that raise come out as :class:`_LoadFailure`."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        try:
            return self.dataset[idx]
        except Exception as e:
            i = idx[0] if isinstance(idx, tuple) else idx
            items = getattr(self.dataset, 'items', None)
            where = (f'loading {items[i][0]}' if items is not None else
                     f'loading item {i}')
            return _LoadFailure(_failure_message(e, where))


class _GuardedCollate:
    """A collate function that turns a batch holding a
    :class:`_LoadFailure` (or one it cannot collate) into the one-element
    batch :class:`GuardedLoader` reads as an error."""

    def __init__(self, collate_fn):
        self.collate_fn = collate_fn

    def __call__(self, items):
        failed = next((x for x in items if isinstance(x, _LoadFailure)),
                      None)
        if failed is None:
            try:
                return self.collate_fn(items)
            except Exception as e:
                failed = _LoadFailure(_failure_message(
                    e, f'collating a batch of {len(items)} item(s)'))
        return (np.frombuffer(failed.message.encode('utf-8'),
                              dtype=np.uint8),)


def window_loader(clips, windowing, frontend, batch_size):
    """A loader of the windows of ``clips`` (:class:`ClipWindows`) for
    :func:`evaluate`: training's dev set and cross-validation's folds are
    scored as the prediction tools score files."""
    windows = ClipWindows(clips, windowing, frontend.per_clip)
    return GuardedLoader(
        windows, batch_size=batch_size, shuffle=False,
        collate_fn=lambda b: collate(b, frontend.pad_value))


@dataclass
class Loaders:
    """What :func:`build_loaders` makes; ``clip_seconds``: the clip length
    the model records, by which prediction windows."""
    dev_set: FoldDataset
    dev: GuardedLoader
    clip_seconds: float = None
    train_set: FoldDataset = None
    sampler: object = None
    train: GuardedLoader = None


def build_loaders(table, data, train, frontend, split=None,
                  clip_seconds=None, training=True, embed=None):
    """The loaders of a run on ``table`` (:func:`.load_table`) with
    ``frontend`` (:class:`..features.FrontEnd`), as the ``data:`` and
    ``train:`` sections say. The dev set is fold ``split`` (default
    ``data.split``), scored in windows of ``clip_seconds`` (default
    ``data.clip_seconds``, else the typical training clip). With
    ``training``: the training set of the other folds (unreadable clips
    refused or, with ``data.skip_bad_files``, dropped; random crops with
    ``data.clip_seconds``), its resumable or class-balanced sampler and
    loader (``train.batch_size``, ``train.num_workers``, ``train.seed``),
    and a validation share of it as the dev set with
    ``data.val_fraction``. Without: the dev set alone, as cross-validation
    scores a fold. ``embed`` (:class:`..embeddings.EmbeddingCache`): both
    sets as the cached embeddings of their windows (head-only
    training)."""
    split = data.split if split is None else split
    feature, per_clip = frontend.config, frontend.per_clip
    modes = ('train', 'val' if data.val_fraction else 'dev') if training \
        else ('dev',)
    *ts, dev_set = (FoldDataset(table, mode, split, feature, per_clip,
                                data.val_fraction, train.seed)
                    for mode in modes)
    out = Loaders(dev_set, None, clip_seconds)
    if training:
        out.train_set = ts = ts[0]
        check_readable([ts, dev_set], data.skip_bad_files)
        print_class_counts(ts)
        clip_seconds = clip_seconds or data.clip_seconds
        if embed is not None:
            return _embedded(out, ts, dev_set, data, train, embed,
                             clip_seconds or typical_seconds(ts.items))
        out.sampler = _sampler(ts, data, train)
        if train.num_workers > 0:
            ts.precompute('train features')
        pad = frontend.pad_value
        if data.clip_seconds:
            ts.set_crop(frontend.clip_length(data.clip_seconds), pad,
                        train.seed)
            out.sampler.tag_epoch = True
        out.clip_seconds = clip_seconds or typical_seconds(ts.items)
        out.train = GuardedLoader(
            ts, batch_sampler=out.sampler, num_workers=train.num_workers,
            collate_fn=lambda b: collate(b, pad),
            persistent_workers=train.num_workers > 0)
    out.dev = window_loader(dev_set, Windowing.of_model(out.clip_seconds),
                            frontend, train.batch_size)
    return out


def _sampler(train_set, data, train):
    if data.balanced_sampling:
        return BalancedBatchSampler(train_set, train.batch_size, train.seed)
    return ResumableBatchSampler(train_set, batch_size=train.batch_size,
                                 shuffle=True, drop_last=False)


def _embedded(out, train_set, dev_set, data, train, embed, clip_seconds):
    windowing = Windowing.of_model(clip_seconds)
    out.clip_seconds = clip_seconds
    out.train_set = train_set = embed(train_set, windowing,
                                      train.embed_augment)
    out.dev_set = dev_set = embed(dev_set, windowing)
    out.sampler = _sampler(train_set, data, train)
    stack = lambda b: collate(b, 0.0)  # noqa: E731
    out.train = GuardedLoader(train_set, batch_sampler=out.sampler,
                              collate_fn=stack)
    out.dev = GuardedLoader(dev_set, batch_size=train.batch_size,
                            shuffle=False, collate_fn=stack)
    return out


def typical_seconds(items, sample=20):
    """The median length of the first ``sample`` training clips (read from
    their headers): the clip length a model trained on whole clips knows."""
    seconds = []
    for path, _ in items[:sample]:
        try:
            seconds.append(audio_seconds(path))
        except AudioError:
            continue
    return float(np.median(seconds)) if seconds else None
