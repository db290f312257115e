"""Batching, learning-rate schedule and evaluation used by training."""
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


def build_lr(learning_rate, schedule, epochs, steps_per_epoch,
             warmup_epochs=0):
    """A float (constant) or a per-step ``paddle.optimizer.lr`` scheduler.

    ``cosine`` decays to 0 over the run; ``warmup_epochs`` ramps linearly
    from 0 first. Scheduler state is part of the optimizer's state dict, so
    resuming continues the schedule.
    """
    if schedule not in ('constant', 'cosine'):
        raise ValueError(f'lr_schedule must be constant or cosine, got '
                         f'{schedule!r}')
    warmup = int(warmup_epochs * steps_per_epoch)
    if schedule == 'constant' and not warmup:
        return learning_rate
    lr = learning_rate
    if schedule == 'cosine':
        lr = paddle.optimizer.lr.CosineAnnealingDecay(
            learning_rate, T_max=max(epochs * steps_per_epoch - warmup, 1))
    if warmup:
        lr = paddle.optimizer.lr.LinearWarmup(lr, warmup, 0.0, learning_rate)
    return lr
