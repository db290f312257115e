"""Classification metrics from scores and predictions. Plain numpy, so
they can be checked by hand (and against sklearn where it is installed)
without adding a dependency; :class:`..task.Task` picks the ones a task
reports."""
import numpy as np


def confusion_matrix(predicted, target, num_class):
    """``m[t, p]`` = number of clips of class ``t`` predicted as ``p``."""
    m = np.zeros((num_class, num_class), dtype=np.int64)
    np.add.at(m, (np.asarray(target), np.asarray(predicted)), 1)
    return m


def per_class_accuracy(confusion):
    """Recall of each class; NaN for classes without clips."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.diag(confusion) / totals


def top_k_accuracy(scores, target, k=5):
    """Fraction of clips whose class is among the ``k`` highest scores
    (all classes when there are fewer than ``k``)."""
    scores, target = np.asarray(scores), np.asarray(target)
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind='stable')[:, :k]
    return float((top == target[:, None]).any(axis=1).mean())


def macro_f1(predicted, target, num_class):
    """Unweighted mean of the per-class F1 = 2TP / (2TP + FP + FN) over the
    classes that occur in ``target`` or ``predicted`` (as sklearn's
    ``f1_score(average='macro')``), so rare classes count as much as
    frequent ones."""
    m = confusion_matrix(predicted, target, num_class)
    tp = np.diag(m).astype(np.float64)
    fp, fn = m.sum(axis=0) - tp, m.sum(axis=1) - tp
    seen = (tp + fp + fn) > 0
    tp, fp, fn = tp[seen], fp[seen], fn[seen]
    return float(np.mean(2 * tp / (2 * tp + fp + fn)))


def average_precision(scores, positive):
    """Area under one class's precision-recall curve, as the sum over
    distinct score thresholds of (recall step) x precision; tied scores
    form one threshold. NaN when the class has no positive clip."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive).astype(bool)
    if not positive.any():
        return float('nan')
    order = np.argsort(-scores, kind='stable')
    scores, positive = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tp = np.cumsum(positive)[last]
    precision = tp / (last + 1)
    recall = tp / positive.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores, targets):
    """mAP of a multi-label task: ``targets`` is ``[clips, classes]``
    multi-hot; classes without positives are left out."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    ap = [average_precision(scores[:, c], targets[:, c])
          for c in range(targets.shape[1])]
    return float(np.nanmean(ap))


def precision_recall_curve(scores, positive):
    """``(thresholds, precision, recall)`` of the decision ``score >=
    threshold`` at every distinct score, highest first (tied scores are
    one threshold); recall is NaN when the class has no positive."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive).astype(bool)
    order = np.argsort(-scores, kind='stable')
    scores, positive = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1] if len(
        scores) else np.zeros(0, dtype=np.int64)
    tp = np.cumsum(positive)[last]
    with np.errstate(invalid='ignore', divide='ignore'):
        recall = tp / positive.sum()
    return scores[last], tp / (last + 1), recall
