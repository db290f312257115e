"""Fine-tuning: :class:`Trainer` runs the whole loop (data, model,
optimizer, epochs, evaluation, checkpoints, resume, best model, early
stopping, averaging, curves, data parallel); the pieces below it are the
parts a reader may want on their own (learning-rate schedule, graceful
interrupt, best tracking, frozen backbone, mixed precision). Its batch
samplers are in :mod:`.datasets.sampling`, its guarded data loader in
:mod:`.datasets.loaders`, the metrics file beside the checkpoints in
:mod:`.checkpoint`."""
import contextlib
import random
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import paddle
import paddle.distributed as dist
from tqdm import tqdm

from . import atomic
from .audio import AudioError, Windowing, audio_seconds
from .augment import Augmenter
from .checkpoint import (load_checkpoint, model_meta, prune_checkpoints,
                         read_metrics, remove_step_checkpoints, resume_point,
                         save_average, save_checkpoint, save_model,
                         write_metrics)
from .curves import VisualDLLog, plot_curves
from .datasets import (ClipWindows, DatasetError, FoldDataset,
                       check_readable, collate, load_table,
                       print_class_counts)
from .datasets.loaders import GuardedLoader, loader_stopped, window_loader
from .datasets.sampling import BalancedBatchSampler, ResumableBatchSampler
from .errors import UserError
from .features import FrontEnd
from .models import build_classifier
from .runtime import check_amp, select_device, set_cpu_threads
from .task import Task


@dataclass
class Progress:
    """Where training stands in the current epoch, and its running sums:
    what an interrupt saves and ``--resume`` restores."""
    epoch: int
    step: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    seen: int = 0


class Trainer:
    """Fine-tune a classifier as ``cfg`` (:func:`..config.load_config`)
    says. Under ``paddle.distributed.launch`` every process trains on its
    share of each batch and rank 0 alone evaluates and writes.

    ``Trainer(cfg).fit()`` is ``train.py``; ``train_epoch`` and
    ``evaluate`` are there for callers that drive the loop themselves.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        check_amp(cfg.amp, select_device(cfg.device))
        self.world = dist.get_world_size()
        self.keep = checkpoints_to_keep(cfg.keep_checkpoint_max,
                                        cfg.average_last,
                                        verbose=dist.get_rank() == 0)
        if self.world > 1 and cfg.freeze_backbone_epochs:
            raise UserError('freeze_backbone_epochs is for single-process '
                            'training (data parallel syncs every parameter)')
        set_cpu_threads(cfg.cpu_threads, share_with=self.world)
        if self.world > 1:
            dist.init_parallel_env()
        self.rank = dist.get_rank()
        seed_everything(cfg.seed + self.rank)

        self.frontend = FrontEnd(cfg.feature, cfg.feat_backend)
        self.table = load_table(cfg, verbose=self.rank == 0)
        self.train_set, self.dev_set = (
            FoldDataset(self.table, mode, cfg.split, cfg.feature,
                        self.frontend.per_clip, cfg.val_fraction, cfg.seed)
            for mode in ('train', 'val' if cfg.val_fraction else 'dev'))
        check_readable([self.train_set, self.dev_set], cfg.skip_bad_files,
                       verbose=self.rank == 0)
        if self.rank == 0:
            print_class_counts(self.train_set)
        self.task = Task(self.train_set.multi_label)
        labels = self.train_set.label_list
        self.sampler = (BalancedBatchSampler(
            self.train_set, cfg.batch_size, cfg.seed) if
            cfg.balanced_sampling else ResumableBatchSampler(
                self.train_set, batch_size=cfg.batch_size, shuffle=True,
                drop_last=False))
        if cfg.num_workers > 0:
            self.train_set.precompute('train features')
        pad = self.frontend.pad_value
        if cfg.clip_seconds:
            length = self.frontend.clip_length(cfg.clip_seconds)
            self.train_set.set_crop(length, pad, cfg.seed)
            self.sampler.tag_epoch = True
        # the clip length the model records: prediction windows by it
        clip_seconds = cfg.clip_seconds or typical_seconds(
            self.train_set.items)
        self.train_loader = GuardedLoader(
            self.train_set, batch_sampler=self.sampler,
            num_workers=cfg.num_workers, collate_fn=lambda b: collate(b, pad),
            persistent_workers=cfg.num_workers > 0)
        self.dev_loader = window_loader(self.dev_set,
                                        Windowing.of_model(clip_seconds),
                                        self.frontend, cfg.batch_size)

        self.model = build_classifier(cfg.backbone, len(labels), cfg.dropout,
                                      cfg.pretrained, cfg.pretrained_path,
                                      self.task)
        lr = build_lr(cfg.learning_rate, cfg.lr_schedule, cfg.epochs,
                      len(self.train_loader), cfg.warmup_epochs,
                      cfg.lr_step_epochs, cfg.lr_gamma)
        self.lr_plan = lr_plan(cfg, len(self.train_loader))
        self.optimizer = paddle.optimizer.Adam(
            learning_rate=lr, parameters=self.model.parameters())
        self.scheduler = lr if isinstance(
            lr, paddle.optimizer.lr.LRScheduler) else None
        self.meta = model_meta(cfg.backbone, labels, cfg.dropout, cfg.feature,
                               self.task, clip_seconds)
        self.ckpt_dir = Path(cfg.checkpoint_dir)
        self.tracker = BestTracker(cfg.early_stop_patience)
        self.precision = MixedPrecision(cfg.amp)
        augmenter = Augmenter(cfg.augment, cfg.feature.floor_db)
        self.augmenter = augmenter if augmenter.active else None
        self.progress = Progress(1)
        self.log = None
        self.net = (paddle.DataParallel(self.model) if self.world > 1 else
                    self.model)

    def fit(self):
        """Train (resuming first with ``cfg.resume``); 0 when done, 130 when
        interrupted (after saving ``epoch_N_step_S/``)."""
        cfg, rank = self.cfg, self.rank
        if rank == 0:  # checkpoint writes a kill left half renamed
            atomic.recover_dirs(self.ckpt_dir)
        if self.world > 1:
            dist.barrier()
        if cfg.resume:
            self.resume()
        if self.progress.epoch > cfg.epochs and rank == 0:
            print(f'[resume] {self.ckpt_dir} already holds all {cfg.epochs} '
                  f'epochs; nothing to train (raise --epochs to continue)')
        stopped = self.tracker.should_stop
        if stopped and rank == 0:
            print(f'[early stop] {self.ckpt_dir} stopped early before (best '
                  f'epoch {self.tracker.epoch}); nothing to train')
        if cfg.visualdl_dir and rank == 0:
            self.log = VisualDLLog(cfg.visualdl_dir)
        try:
            with StopRequest(enabled=self.world == 1) as stop:
                for epoch in range(self.progress.epoch, cfg.epochs + 1):
                    if stopped:
                        break
                    train_loss, train_acc = self.train_epoch(epoch, stop)
                    if epoch % cfg.save_freq and epoch != cfg.epochs:
                        continue
                    if rank == 0:
                        self.evaluate_and_save(train_loss, train_acc)
                    stopped = agree(self.tracker.should_stop, self.world)
                    if stopped and rank == 0:
                        t = self.tracker
                        print(f'[early stop] no better {self.task.score_key}'
                              f' in {t.bad_evals} evaluations; best: epoch '
                              f'{t.epoch} ({t.score:.4f})', flush=True)
        except SystemError as e:
            stopped = loader_stopped(e)
            if stopped is None:
                raise
            raise stopped from e
        except Interrupted:
            p = self.progress
            out = save_checkpoint(self.ckpt_dir, p.epoch, self.model,
                                  self.meta, self.optimizer,
                                  self.train_state(), step=p.step)
            print(f'interrupted: saved {out} (epoch {p.epoch}, step '
                  f'{p.step}/{len(self.train_loader)}); continue with '
                  f'--resume', file=sys.stderr, flush=True)
            return 130
        finally:
            if self.log is not None:
                self.log.close()
        if rank == 0:
            self.finish()
        return 0

    def train_epoch(self, epoch, stop=None):
        """Train the rest of ``epoch`` (all of it unless resumed midway),
        updating :attr:`progress` after every step so an interrupt can save
        exactly where training stands; returns the epoch's mean training
        loss and accuracy (None for multi-label data).

        With augmentation the loss is taken against the augmented (mixed)
        targets, while the reported accuracy stays against the clips' own
        labels. A frozen backbone runs in eval mode (fixed BatchNorm
        statistics, no dropout).
        """
        cfg, task, loader = self.cfg, self.task, self.train_loader
        if self.progress.epoch != epoch:
            self.progress = Progress(epoch)
        p = self.progress
        self.sampler.set_epoch(epoch)
        self.sampler.skip = p.step
        frozen = epoch <= cfg.freeze_backbone_epochs
        freeze(self.model.backbone, frozen)
        self.net.train()
        if frozen:
            self.model.backbone.eval()
        bar = tqdm(loader, desc=f'epoch {epoch}/{cfg.epochs}', leave=False,
                   initial=p.step,
                   disable=True if self.rank else None,  # None: off if no tty
                   file=sys.stdout, dynamic_ncols=True)
        tick, tick_seen = time.time(), 0
        for step, (x, y) in enumerate(bar, start=p.step + 1):
            if stop is not None:
                stop.check()
            with paddle.no_grad():
                x = self.frontend.batch(x)
            targets = y
            if self.augmenter is not None:
                x, targets = self.augmenter(
                    x, task.targets(y, self.model.num_class), training=True)
            with self.precision.autocast():
                logits = self.net(x)
                loss = task.loss(logits, targets)
            self.precision.step(loss, self.optimizer)
            if self.scheduler is not None:
                self.scheduler.step()

            n = y.shape[0]
            p.loss_sum += float(loss) * n
            p.correct += task.correct(logits, y) or 0.0
            p.seen += n
            p.step = step
            tick_seen += n
            if step % cfg.log_freq == 0 or step == len(loader):
                self._log_step(step, tick_seen / (time.time() - tick), bar)
                tick, tick_seen = time.time(), 0
        seen = max(p.seen, 1)
        return p.loss_sum / seen, (
            None if task.multi_label else p.correct / seen)

    def _log_step(self, step, speed, bar):
        p, lr, steps = self.progress, self.optimizer.get_lr(), \
            len(self.train_loader)
        scalars = {'loss': p.loss_sum / p.seen}
        if not self.task.multi_label:
            scalars['acc'] = p.correct / p.seen
        stats = ' '.join(f'{k} {v:.4f}' for k, v in scalars.items())
        stats += f' lr {lr:.2e} {speed:.1f} clips/s'
        bar.set_postfix_str(stats)
        if self.rank == 0:
            tqdm.write(f'[train] epoch {p.epoch}/{self.cfg.epochs} step '
                       f'{step}/{steps} {stats}', file=sys.stdout)
        if self.log is not None:
            self.log.scalars('train', {**scalars, 'lr': lr},
                             (p.epoch - 1) * steps + step)

    def evaluate(self):
        """Dev metrics (:meth:`Task.evaluate`) and the dev loss."""
        return evaluate(self.model, self.dev_loader, self.task,
                        self.frontend)[0]

    def evaluate_and_save(self, train_loss, train_acc):
        """Evaluate, record the metrics, keep ``best/``, checkpoint, then
        delete epoch checkpoints beyond the last ``keep``.

        The metrics line is written first: after a crash in between,
        resuming from the previous checkpoint drops it and evaluates this
        epoch again, so the history never has a gap or a duplicate.
        ``best/`` goes before the epoch checkpoint whose ``train_state``
        records it, for the same reason; old checkpoints go only once the
        new one is complete.
        """
        epoch, ckpt_dir = self.progress.epoch, self.ckpt_dir
        dev = self.evaluate()
        metrics = ckpt_dir / 'metrics.jsonl'
        records = [r for r in read_metrics(metrics) if r['epoch'] < epoch]
        record, shown = self.task.record(epoch, dev, train_loss, train_acc)
        write_metrics(metrics, records + [record])
        if self.log is not None:
            self.log.scalars('dev', dev, epoch)
        best = ''
        if self.tracker.update(epoch, record[self.task.score_key]):
            save_model(ckpt_dir, 'best', self.model.state_dict(), self.meta,
                       record)
            best = ' (best)'
        out = save_checkpoint(ckpt_dir, epoch, self.model, self.meta,
                              self.optimizer, self.train_state(complete=True))
        remove_step_checkpoints(ckpt_dir)
        prune_checkpoints(ckpt_dir, self.keep, current=out)
        print(f'[eval] epoch {epoch}: {shown} dev_loss {dev["loss"]:.4f} -> '
              f'saved {out}{best}', flush=True)

    def finish(self):
        """End of a run: the averaged checkpoint, the training curves, and
        one line with the best dev score, its epoch and the checkpoint the
        later stages use (``best/``, else the latest epoch's)."""
        from .checkpoint import best_checkpoint
        last = self.cfg.average_last
        if last:
            out = save_average(self.ckpt_dir, last)
            if out is not None:
                print(f'[average] last {last} checkpoints -> {out}')
        records = read_metrics(self.ckpt_dir / 'metrics.jsonl')
        if records:
            plot_curves(records, self.ckpt_dir / 'curves.png',
                        self.task.score)
            print(f'[curves] {self.ckpt_dir / "curves.png"}', flush=True)
            key = self.task.score_key
            top = max(records, key=lambda r: r[key])  # ties: the earliest
            ckpt = best_checkpoint(self.ckpt_dir)
            where = f' (checkpoint {ckpt / "model.pdparams"})' if ckpt else ''
            print(f'best {key} {top[key]:.4f} at epoch {top["epoch"]}{where}',
                  flush=True)

    def train_state(self, complete=False):
        state = {**asdict(self.progress), 'python_rng': random.getstate(),
                 'numpy_rng': np.random.get_state(),
                 'paddle_rng': paddle.get_rng_state(),
                 'best': self.tracker.state_dict(),
                 'amp': self.precision.state_dict(),
                 'lr_plan': self.lr_plan}
        if complete:
            state['complete'] = True
        return state

    def resume(self):
        """Restore the furthest checkpoint: weights, optimizer and schedule,
        random state, best-so-far and early-stopping count, loss scale and
        the position to continue from (from scratch when there is none)."""
        ckpt_dir = self.ckpt_dir
        latest = resume_point(ckpt_dir)
        if latest is None:
            print(f'[resume] no checkpoint in {ckpt_dir}; starting from '
                  f'scratch')
            return
        state, saved_meta = load_checkpoint(latest)
        if saved_meta != self.meta:
            raise DatasetError(f'{latest} was trained with other settings '
                               f'(backbone, labels, single/multi-label or '
                               f'features) than this run; use another '
                               f'--checkpoint_dir')
        self.model.set_state_dict(state)
        opt = paddle.load(str(latest / 'model.pdopt'))
        ts = opt['train_state']
        replanned = ts.get('lr_plan') != self.lr_plan
        with warnings.catch_warnings():
            # Paddle's LinearWarmup counts its inner schedule's entry as
            # unused on every restore
            warnings.filterwarnings('ignore', 'There are some unused values')
            self.optimizer.set_state_dict(
                self._rebased_schedule(opt['optimizer'], ts) if replanned
                else opt['optimizer'])
        random.setstate(ts['python_rng'])
        np.random.set_state(ts['numpy_rng'])
        paddle.set_rng_state(ts['paddle_rng'])
        self.tracker.load_state_dict(ts.get('best'))
        self.precision.set_state_dict(ts.get('amp'))
        complete = ts.get('complete', 'step' not in ts)
        self.progress = Progress(ts['epoch'] + 1) if complete else Progress(
            **{k: ts[k] for k in asdict(Progress(0))})
        metrics = ckpt_dir / 'metrics.jsonl'
        write_metrics(metrics, [r for r in read_metrics(metrics)
                                if r['epoch'] < self.progress.epoch])
        where = (f'after epoch {ts["epoch"]}' if complete else
                 f'at epoch {ts["epoch"]} step {ts["step"]}')
        print(f'[resume] continuing {where} from {latest} (delete '
              f'{ckpt_dir} to start over)', flush=True)
        if replanned and self.progress.epoch <= self.cfg.epochs:
            self._report_replan(ts.get('lr_plan'))

    def _rebased_schedule(self, opt_state, ts):
        """``opt_state`` with the schedule of the current settings at the
        step count the checkpoint reached (the saved schedule was planned
        for other settings: more epochs, another rate or shape)."""
        opt_state = dict(opt_state)
        saved = opt_state.pop('LR_Scheduler', None)
        if self.scheduler is None:
            return opt_state
        if saved is not None:
            done = saved['last_epoch']
        else:
            done = (ts['epoch'] - 1) * len(self.train_loader) + ts.get(
                'step', len(self.train_loader))
        self.scheduler.step(done)  # with an epoch: the closed form
        opt_state['LR_Scheduler'] = self.scheduler.state_dict()
        return opt_state

    def _report_replan(self, saved):
        if saved is None:
            why = 'the checkpoint records no schedule'
        else:
            why = ', '.join(f'{k} {saved.get(k)} -> {v}' for k, v in
                            self.lr_plan.items() if saved.get(k) != v)
        steps = self.cfg.epochs * len(self.train_loader)
        done = self.scheduler.last_epoch if self.scheduler else None
        at = f' at step {done} of {steps}' if done is not None else ''
        print(f'[resume] learning-rate schedule changed ({why}): continuing '
              f'the {self.cfg.lr_schedule} schedule of these settings{at}, '
              f'lr {self.optimizer.get_lr():.3e}', flush=True)


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
    if isinstance(windows, ClipWindows):
        scores, targets = task.pool_windows(scores, targets,
                                            windows.clip_of, windows.weights)
    loss = float(task.loss(paddle.to_tensor(scores),
                           paddle.to_tensor(targets)))
    return {'loss': loss, **task.evaluate(scores, targets)}, scores, targets


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def checkpoints_to_keep(keep_max, average_last, verbose=True):
    """How many epoch checkpoints pruning keeps (0: all): ``keep_max``,
    raised to ``average_last`` so the final average finds its checkpoints."""
    if keep_max < 0:
        raise UserError(f'--keep_checkpoint_max must be 0 (keep all) or '
                        f'positive, got {keep_max}')
    if keep_max and average_last > keep_max:
        if verbose:
            print(f'[checkpoints] keeping the last {average_last} epoch '
                  f'checkpoints, not {keep_max}: average_last '
                  f'{average_last} needs them', flush=True)
        return average_last
    return keep_max


def agree(flag, world):
    """Rank 0's ``flag`` on every rank (only rank 0 evaluates)."""
    if world == 1:
        return flag
    t = paddle.to_tensor([int(flag)])
    dist.broadcast(t, src=0)
    return bool(t.item())


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


def lr_plan(cfg, steps_per_epoch):
    """The settings that shape the learning-rate schedule; a checkpoint
    records them so ``--resume`` with other ones (say more ``epochs``)
    rebuilds the schedule instead of continuing the old one."""
    plan = {'lr_schedule': cfg.lr_schedule,
            'learning_rate': cfg.learning_rate,
            'warmup_epochs': cfg.warmup_epochs}
    if cfg.lr_schedule == 'cosine':
        plan['epochs'] = cfg.epochs
    elif cfg.lr_schedule == 'step':
        plan.update(lr_step_epochs=cfg.lr_step_epochs, lr_gamma=cfg.lr_gamma)
    if cfg.lr_schedule != 'constant' or cfg.warmup_epochs:
        plan['steps_per_epoch'] = steps_per_epoch
    return plan


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


class BestTracker:
    """Best dev score so far (:attr:`Task.score`: accuracy, or mAP for
    multi-label data), its epoch, and the evaluations since it last
    improved (early stopping). Saved in every checkpoint's ``train_state``
    so a resumed run keeps selecting and counting where the interrupted
    one was."""

    def __init__(self, patience=0):
        self.patience = patience
        self.epoch, self.score, self.bad_evals = None, -1.0, 0

    def update(self, epoch, score):
        """Record an evaluation; True when it is a new best (ties keep the
        earlier epoch)."""
        if score > self.score:
            self.epoch, self.score, self.bad_evals = epoch, score, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self):
        return bool(self.patience) and self.bad_evals >= self.patience

    def state_dict(self):
        return {'epoch': self.epoch, 'score': self.score,
                'bad_evals': self.bad_evals}

    def load_state_dict(self, state):
        """Restore; None (a checkpoint from before best tracking) keeps
        the fresh state. Older checkpoints name the score ``dev_acc``."""
        if state:
            self.epoch, self.bad_evals = state['epoch'], state['bad_evals']
            self.score = state.get('score', state.get('dev_acc'))


def freeze(layer, frozen=True):
    """Stop (or restore) gradients into ``layer``'s parameters; the
    optimizer skips parameters without gradients, so they stay exactly as
    they are. Put the layer in eval mode too (:meth:`Trainer.train_epoch`
    does) so its BatchNorm statistics stay as well."""
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
