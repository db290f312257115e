"""Batching, learning-rate schedule, evaluation and the pieces that make
training resumable (batch skipping, graceful interrupt, metrics file)."""
import json
import os
import signal
import sys
from pathlib import Path

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


class ResumableBatchSampler(paddle.io.DistributedBatchSampler):
    """Skips, once, the batches an interrupted epoch already trained on.

    The shuffle order depends only on the epoch (``set_epoch``), so the
    remaining batches are exactly those the uninterrupted run would see.
    """
    skip = 0

    def __iter__(self):
        skip, self.skip = self.skip, 0
        for i, batch in enumerate(super().__iter__()):
            if i >= skip:
                yield batch


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) arrived; raised between two training steps."""


class StopRequest:
    """Turns the first SIGINT / SIGTERM into a request checked between
    steps, so the checkpoint written on the way out is consistent; a
    second Ctrl-C interrupts at once."""

    def __init__(self, enabled=True):
        self.enabled, self.requested, self._old = enabled, False, {}

    def __enter__(self):
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.requested = True
        print(f'\n{signal.Signals(signum).name}: saving a checkpoint after '
              f'this step (Ctrl-C again to quit without saving)',
              file=sys.stderr, flush=True)

    def check(self):
        if self.requested:
            raise Interrupted()


def read_metrics(path):
    """Records of ``metrics.jsonl``; a line cut off by a crash is dropped."""
    records = []
    if Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def write_metrics(path, records):
    """Replace ``metrics.jsonl`` atomically (temporary file + rename)."""
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(''.join(json.dumps(r) + '\n' for r in records))
    os.replace(tmp, path)
