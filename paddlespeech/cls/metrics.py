"""Classification metrics from predictions, for evaluation reports."""
import numpy as np
import paddle


@paddle.no_grad()
def predict_dataset(model, loader, frontend=None):
    """``(predicted, target)`` class indices over ``loader``, in order."""
    model.eval()
    preds, targets = [], []
    for x, y in loader:
        if frontend is not None:
            x = frontend(x)
        preds.append(model(x).argmax(axis=1).numpy())
        targets.append(np.asarray(y))
    return np.concatenate(preds), np.concatenate(targets)


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
