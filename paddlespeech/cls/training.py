"""Batching, learning-rate schedule, evaluation, best-model tracking,
backbone freezing, mixed precision and the pieces that make training
resumable (batch skipping, graceful interrupt, metrics file)."""
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import paddle

from .metrics import summarize


def collate(batch, pad_value):
    """Stack ``(x, label)`` items, padding ``x`` along time to the longest.

    ``pad_value`` is 0 for waveforms and the log-mel floor (-100 dB) for
    features, so padding looks like silence either way. Labels become
    int64 class indices, or float32 ``[batch, num_class]`` when they are
    multi-hot vectors.
    """
    xs, ys = zip(*batch)
    longest = max(len(x) for x in xs)
    out = np.full((len(xs), longest) + xs[0].shape[1:], pad_value,
                  dtype=np.float32)
    for i, x in enumerate(xs):
        out[i, :len(x)] = x
    multi_hot = np.ndim(ys[0]) == 1
    return out, np.asarray(ys, dtype=np.float32 if multi_hot else np.int64)


@paddle.no_grad()
def evaluate(model, loader, criterion, frontend=None):
    """``{'loss', 'acc', 'top5', 'macro_f1'}`` of ``model`` over
    ``loader`` (loss: mean over clips); ``{'loss', 'map'}`` when the
    targets are multi-hot."""
    model.eval()
    total_loss = seen = 0.0
    scores, targets = [], []
    for x, y in loader:
        if frontend is not None:
            x = frontend(x)
        logits = model(x)
        n = y.shape[0]
        total_loss += float(criterion(logits, y)) * n
        seen += n
        scores.append(logits.astype('float32').numpy())
        targets.append(y.numpy())
    model.train()
    return {'loss': total_loss / max(seen, 1),
            **summarize(np.concatenate(scores), np.concatenate(targets))}


LR_SCHEDULES = ('constant', 'cosine', 'step')


def build_lr(learning_rate, schedule, epochs, steps_per_epoch,
             warmup_epochs=0, step_epochs=10, gamma=0.1):
    """A float (constant) or a per-step ``paddle.optimizer.lr`` scheduler.

    ``cosine`` decays to 0 over the run; ``step`` multiplies the rate by
    ``gamma`` every ``step_epochs`` epochs; ``warmup_epochs`` ramps
    linearly from 0 first (the decay counts from its end). Scheduler state
    is part of the optimizer's state dict, so resuming continues the
    schedule.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f'lr_schedule must be one of {LR_SCHEDULES}, got '
                         f'{schedule!r}')
    warmup = int(warmup_epochs * steps_per_epoch)
    if schedule == 'constant' and not warmup:
        return learning_rate
    lr = learning_rate
    if schedule == 'cosine':
        lr = paddle.optimizer.lr.CosineAnnealingDecay(
            learning_rate, T_max=max(epochs * steps_per_epoch - warmup, 1))
    elif schedule == 'step':
        lr = paddle.optimizer.lr.StepDecay(
            learning_rate, step_size=max(int(step_epochs * steps_per_epoch),
                                         1), gamma=gamma)
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


class BestTracker:
    """Best dev score so far (accuracy, or mAP for multi-label data; kept
    as ``dev_acc`` either way), its epoch, and the evaluations since it
    last improved (early stopping). Saved in every checkpoint's
    ``train_state`` so a resumed run keeps selecting and counting where the
    interrupted one was."""

    def __init__(self, patience=0):
        self.patience = patience
        self.epoch, self.dev_acc, self.bad_evals = None, -1.0, 0

    def update(self, epoch, dev_acc):
        """Record an evaluation; True when it is a new best (ties keep the
        earlier epoch)."""
        if dev_acc > self.dev_acc:
            self.epoch, self.dev_acc, self.bad_evals = epoch, dev_acc, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self):
        return bool(self.patience) and self.bad_evals >= self.patience

    def state_dict(self):
        return {'epoch': self.epoch, 'dev_acc': self.dev_acc,
                'bad_evals': self.bad_evals}

    def load_state_dict(self, state):
        """Restore; None (a checkpoint from before best tracking) keeps
        the fresh state."""
        if state:
            self.epoch, self.dev_acc, self.bad_evals = (
                state['epoch'], state['dev_acc'], state['bad_evals'])


def freeze(layer, frozen=True):
    """Stop (or restore) gradients into ``layer``'s parameters; the
    optimizer skips parameters without gradients, so they stay exactly as
    they are. Put the layer in eval mode too (``train_one_epoch`` does) so
    its BatchNorm statistics stay as well."""
    for p in layer.parameters():
        p.stop_gradient = frozen


AMP_MODES = ('off', 'fp16', 'bf16')


class MixedPrecision:
    """``paddle.amp`` O1 autocast for the forward pass and, for fp16, a
    dynamic loss scaler; ``off`` is plain fp32 (the exact former code
    path). Its state (the loss scale) is saved for resuming."""

    def __init__(self, mode='off'):
        if mode not in AMP_MODES:
            raise ValueError(f'amp must be one of {AMP_MODES}, got {mode!r}')
        self.mode = mode
        self.scaler = (paddle.amp.GradScaler(init_loss_scaling=2.0 ** 15)
                       if mode == 'fp16' else None)

    def autocast(self):
        if self.mode == 'off':
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(level='O1', dtype={
            'fp16': 'float16', 'bf16': 'bfloat16'}[self.mode])

    def step(self, loss, optimizer):
        """Backward pass and optimizer step (unscaled, skipped on inf/NaN
        gradients under fp16)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        optimizer.clear_grad()

    def state_dict(self):
        return self.scaler.state_dict() if self.scaler is not None else {}

    def set_state_dict(self, state):
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
