"""Single- or multi-label classification: everything that differs between
the two, in one object chosen once from the data (or a checkpoint's meta).

Single-label: one class per clip, softmax scores, cross-entropy, dev
accuracy (plus top-5 and macro F1) choosing ``best/``. Multi-label (a clip
listed with several labels): independent sigmoid scores, binary
cross-entropy, dev mAP choosing ``best/``; a training accuracy means
nothing there and is not reported.

Paddle is imported by the methods on tensors only: the deployed side (a
server's process, :mod:`.serving.process`) uses the numpy ones without it.
"""
import numpy as np

from . import metrics


class Task:

    def __init__(self, multi_label=False):
        self.multi_label = bool(multi_label)

    @classmethod
    def from_meta(cls, meta):
        """The task of a checkpoint or export (absent: single-label, as in
        files written before multi-label training)."""
        return cls(meta.get('multi_label', False))

    def meta(self):
        return {'multi_label': True} if self.multi_label else {}

    def __eq__(self, other):
        return isinstance(other, Task) and other.multi_label == \
            self.multi_label

    def __repr__(self):
        return f'Task(multi_label={self.multi_label})'

    @property
    def score(self):
        """The dev metric that chooses ``best/`` and drives early stopping."""
        return 'map' if self.multi_label else 'acc'

    @property
    def score_key(self):
        """Its name in ``metrics.jsonl``."""
        return f'dev_{self.score}'

    def targets(self, y, num_class):
        """``[batch, num_class]`` float targets (what augmentation mixes):
        one-hot rows of class indices, or the multi-hot rows as they are."""
        if self.multi_label:
            return y.astype('float32')
        import paddle.nn.functional as F
        return F.one_hot(y.reshape([-1]).astype('int64'),
                         num_class).astype('float32')

    def loss(self, logits, targets):
        """Mean loss of a batch. ``targets``: class indices, or float
        ``[batch, num_class]`` (multi-hot, or mixed by augmentation)."""
        import paddle
        import paddle.nn.functional as F
        logits = logits.astype('float32')
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(
                logits, targets.astype('float32'))
        if paddle.is_floating_point(targets):
            return soft_cross_entropy(logits, targets)
        return F.cross_entropy(logits, targets)

    def probabilities(self, logits):
        import paddle.nn.functional as F
        if self.multi_label:
            return F.sigmoid(logits)
        return F.softmax(logits, axis=-1)

    def pool_windows(self, logits, targets, clip_of, weights):
        """Per clip, the ``weights``-weighted mean of its windows'
        probabilities (as ``predict.py`` averages a file's windows), as
        logits of that mean, and the clip's target: numpy in and out.
        Computed in log space, so a clip of one window keeps its logits
        exactly however confident they are."""
        z = np.asarray(logits, dtype=np.float64)
        clip_of = np.asarray(clip_of)
        logw = np.log(np.asarray(weights, np.float64))[:, None]
        if self.multi_label:  # log p and log(1 - p) of each sigmoid
            parts = (-np.logaddexp(0, -z), -np.logaddexp(0, z))
        else:
            parts = (z - _logsumexp(z, axis=1),)
        n = clip_of.max() + 1
        pooled = []
        for part in parts:
            out = np.full((n, z.shape[1]), -np.inf)
            for c in range(n):
                rows = clip_of == c
                lw = logw[rows] - _logsumexp(logw[rows], axis=0)
                out[c] = _logsumexp(lw + part[rows], axis=0)[0]
            pooled.append(out)
        pooled = pooled[0] - pooled[1] if self.multi_label else pooled[0]
        _, first = np.unique(clip_of, return_index=True)
        return pooled.astype(np.float32), np.asarray(targets)[first]

    def correct(self, logits, y):
        """Clips of the batch whose top class is their label (None when
        multi-label)."""
        if self.multi_label:
            return None
        return float((logits.argmax(axis=1) == y).astype('float32').sum())

    def evaluate(self, scores, targets):
        """Dev metrics of numpy logits (or probabilities) and targets."""
        scores, targets = np.asarray(scores), np.asarray(targets)
        if self.multi_label:
            return {'map': metrics.mean_average_precision(scores, targets)}
        predicted = scores.argmax(axis=1)
        return {'acc': float((predicted == targets).mean()),
                'top5': metrics.top_k_accuracy(scores, targets, 5),
                'macro_f1': metrics.macro_f1(predicted, targets,
                                             scores.shape[1])}

    def record(self, epoch, dev, train_loss, train_acc):
        """The ``metrics.jsonl`` line of an evaluation, and its log text."""
        record = {'epoch': epoch, self.score_key: round(dev[self.score], 6),
                  'dev_loss': round(dev['loss'], 6),
                  'train_loss': round(train_loss, 6)}
        if self.multi_label:
            return record, f'dev_map {dev["map"]:.4f}'
        record.update(train_acc=round(train_acc, 6),
                      dev_top5=round(dev['top5'], 6),
                      dev_macro_f1=round(dev['macro_f1'], 6))
        return record, (f'dev_acc {dev["acc"]:.4f} top5 {dev["top5"]:.4f} '
                        f'macro_f1 {dev["macro_f1"]:.4f}')


def soft_cross_entropy(logits, soft_targets):
    """Mean over the batch of ``-sum(t * log_softmax(logits))``; equals
    ``F.cross_entropy(logits, y)`` for one-hot ``t``."""
    import paddle.nn.functional as F
    logp = F.log_softmax(logits.astype('float32'), axis=-1)
    return -(soft_targets.astype('float32') * logp).sum(axis=-1).mean()


def _logsumexp(x, axis):
    """``log(sum(exp(x)))`` along ``axis`` (kept as a length-1 axis)."""
    top = x.max(axis=axis, keepdims=True)
    return top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))
