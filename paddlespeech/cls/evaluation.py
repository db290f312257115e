"""Scores of a dev set as the tools give them: the windows of each clip
(:class:`.datasets.ClipWindows`, or their cached embeddings for a
head-only run) scored and pooled per clip, then the task's metrics."""
import numpy as np
import paddle

from .datasets import ClipWindows
from .embeddings import EmbeddedWindows


@paddle.no_grad()
def predict_scores(model, loader, frontend=None):
    """``(logits, targets)`` of ``model`` over ``loader``, in order, as
    numpy arrays; ``frontend`` (:class:`FrontEnd`) turns batches into
    log-mel where the loader yields waveforms."""
    was_training = model.training
    model.eval()
    scores, targets = [], []
    for x, y in loader:
        if frontend is not None:
            x = frontend.batch(x)
        scores.append(model(x).astype('float32').numpy())
        targets.append(np.asarray(y))
    if was_training:
        model.train()
    return np.concatenate(scores), np.concatenate(targets)


def evaluate(model, loader, task, frontend=None):
    """``({'loss', ...task metrics}, logits, targets)`` over ``loader``;
    per clip when it yields :class:`ClipWindows`."""
    scores, targets = predict_scores(model, loader, frontend)
    windows = loader.dataset
    if isinstance(windows, (ClipWindows, EmbeddedWindows)):
        scores, targets = task.pool_windows(scores, targets,
                                            windows.clip_of, windows.weights)
    loss = float(task.loss(paddle.to_tensor(scores),
                           paddle.to_tensor(targets)))
    return {'loss': loss, **task.evaluate(scores, targets)}, scores, targets
