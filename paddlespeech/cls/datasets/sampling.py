"""Batch samplers of the training loop: :class:`ResumableBatchSampler`
skips the batches an interrupted epoch already trained on,
:class:`BalancedBatchSampler` draws class-balanced epochs. Imports Paddle,
so :mod:`paddlespeech.cls.datasets` does not import this module."""
import numpy as np
import paddle


class ResumableBatchSampler(paddle.io.DistributedBatchSampler):
    """Skips, once, the batches an interrupted epoch already trained on.

    The shuffle order depends only on the epoch (``set_epoch``), so the
    remaining batches are exactly those the uninterrupted run would see.
    ``tag_epoch`` yields ``(index, epoch)`` pairs, from which the dataset
    draws its random crops (:meth:`.datasets.ClipDataset.set_crop`).
    """
    skip = 0
    tag_epoch = False

    def __iter__(self):
        epoch = self.epoch
        skip, self.skip = self.skip, 0
        for i, batch in enumerate(self.batches()):
            if i >= skip:
                yield [(j, epoch) for j in batch] if self.tag_epoch else batch

    def batches(self):
        return super().__iter__()


class BalancedBatchSampler(ResumableBatchSampler):
    """Class-balanced batches (``balanced_sampling``): an epoch is as many
    draws as there are clips, an equal share per class (a multi-label
    clip counts for its rarest label), each class cycling through its
    clips in a shuffled order, so rare classes repeat and common ones are
    subsampled. The order depends only on ``seed`` and the epoch, so
    resuming stays exact; ranks take interleaved shares as in
    ``DistributedBatchSampler``."""

    def __init__(self, dataset, batch_size, seed):
        super().__init__(dataset, batch_size=batch_size, shuffle=True,
                         drop_last=False)
        self.seed = seed
        counts = dataset.class_counts()
        self.classes = np.array([
            min(np.flatnonzero(y), key=lambda c: counts[c])
            if dataset.multi_label else int(y) for _, y in dataset.items])

    def batches(self):
        order = balanced_order(self.classes, self.total_size,
                               [self.seed, self.epoch])
        mine = order[self.local_rank::self.nranks]
        for start in range(0, len(mine), self.batch_size):
            yield mine[start:start + self.batch_size].tolist()


def balanced_order(classes, n, seed):
    """``n`` indices into ``classes`` (the class of each clip), each class
    drawn ``n // C`` or ``n // C + 1`` times (the extra draws go to random
    classes), in a random order from ``seed``."""
    rng = np.random.default_rng(seed)
    ids = np.unique(classes)
    quota = np.full(len(ids), n // len(ids))
    quota[rng.choice(len(ids), n % len(ids), replace=False)] += 1
    picks = []
    for c, q in zip(ids, quota):
        if q:  # fewer draws than classes leave some out
            members = np.flatnonzero(classes == c)
            rounds = -(-q // len(members))
            picks.append(np.concatenate([rng.permutation(members)
                                         for _ in range(rounds)])[:q])
    return rng.permutation(np.concatenate(picks))
