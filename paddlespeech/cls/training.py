"""Batching and evaluation shared by training and cross-validation."""
import numpy as np
import paddle


def collate(batch, pad_value):
    """Stack ``(x, label)`` items, padding ``x`` along time to the longest.

    ``pad_value`` is 0 for waveforms and the log-mel floor (-100 dB) for
    features, so padding looks like silence either way.
    """
    xs, ys = zip(*batch)
    longest = max(len(x) for x in xs)
    out = np.full((len(xs), longest) + xs[0].shape[1:], pad_value,
                  dtype=np.float32)
    for i, x in enumerate(xs):
        out[i, :len(x)] = x
    return out, np.asarray(ys, dtype=np.int64)


@paddle.no_grad()
def evaluate(model, loader, criterion, frontend=None):
    """Mean loss and accuracy of ``model`` over ``loader``."""
    model.eval()
    total_loss = correct = seen = 0.0
    for x, y in loader:
        if frontend is not None:
            x = frontend(x)
        logits = model(x)
        n = y.shape[0]
        total_loss += float(criterion(logits, y)) * n
        correct += float((logits.argmax(axis=1) == y).astype('float32').sum())
        seen += n
    model.train()
    return total_loss / max(seen, 1), correct / max(seen, 1)
