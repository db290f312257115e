"""Fine-tuning: :class:`Trainer` runs the whole loop (data, model,
optimizer, epochs, evaluation, checkpoints, resume, best model, early
stopping, averaging, curves, data parallel), top to bottom in
:meth:`Trainer.fit`, :meth:`Trainer.train_epoch` and
:meth:`Trainer.evaluate_and_save`. Its parts live beside it: loaders in
:mod:`.datasets.loaders`, the state that saves itself in
:mod:`.checkpointer`, schedule and mixed precision in :mod:`.optim`, the
graceful interrupt in :mod:`.runtime`."""
import sys
import time
from pathlib import Path

import paddle
import paddle.distributed as dist
from tqdm import tqdm

from . import atomic
from .augment import Augmenter
from .calibration import trained_on
from .checkpoint import (best_checkpoint, checkpoints_to_keep, model_meta,
                         prune_checkpoints, read_metrics,
                         remove_step_checkpoints, save_average, save_model,
                         write_metrics)
from .checkpointer import BestTracker, Checkpointer, Progress, RandomState
from .curves import VisualDLLog, plot_curves
from .datasets import load_table
from .datasets.loaders import build_loaders, loader_stopped
from .embeddings import EmbeddingCache, HeadOnly, copies_augmenter
from .evaluation import evaluate
from .errors import UserError
from .features import FrontEnd
from .logs import get_logger
from .models import build_classifier, init_backbone
from .optim import MixedPrecision, Schedule, build_lr, freeze  # noqa: F401
from .runtime import (Interrupted, StopRequest, check_amp, select_device,
                      set_cpu_threads)
from .task import Task

log = get_logger(__name__)


class Trainer:
    """Fine-tune a classifier as ``cfg`` (:func:`..config.load_config`)
    says. Under ``paddle.distributed.launch`` every process trains on its
    share of each batch and rank 0 alone evaluates and writes.

    ``Trainer(cfg).fit()`` is ``train.py``; ``train_epoch`` and
    ``evaluate`` are there for callers that drive the loop themselves.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        train, model, runtime = cfg.train, cfg.model, cfg.runtime
        check_amp(train.amp, select_device(runtime.device))
        self.world = dist.get_world_size()
        self.keep = checkpoints_to_keep(train.keep_checkpoint_max,
                                        train.average_last)
        if self.world > 1 and (train.freeze_backbone_epochs or
                               train.head_only):
            raise UserError('freeze_backbone_epochs and head_only are for '
                            'single-process training (data parallel syncs '
                            'every parameter)')
        set_cpu_threads(runtime.cpu_threads, share_with=self.world)
        if self.world > 1:
            dist.init_parallel_env()
        self.rank = dist.get_rank()
        RandomState.seed(train.seed + self.rank)

        self.ckpt_dir = Path(train.checkpoint_dir)
        self.frontend = FrontEnd(cfg.feature, runtime.feat_backend)
        self.table = load_table(cfg.data, train)
        self.task = Task(self.table.multi_label)
        labels = self.table.label_list

        def build_model():
            init = model.init_checkpoint
            built = build_classifier(
                model.backbone, len(labels), model.dropout,
                model.pretrained and not init, model.pretrained_path,
                self.task, model.head_hidden)
            if init:
                init_backbone(built, init, cfg.feature)
            return built

        # head-only: the frozen backbone embeds every clip once (cached) as
        # the loaders are made; the loop then trains the head on them
        embed = head = None
        augmenter = Augmenter(cfg.augment, cfg.feature.floor_db)
        if train.head_only:
            self.model = build_model()
            freeze(self.model.backbone)
            self.model.backbone.eval()
            embed = EmbeddingCache(
                self.ckpt_dir / 'embeddings', self.model, self.frontend,
                train.batch_size, copies_augmenter(augmenter, train))
            head = HeadOnly(self.model)
        data = build_loaders(self.table, cfg.data, train, self.frontend,
                             embed=embed)
        if not train.head_only:  # after the data checks, before any download
            self.model = build_model()
        self.train_set, self.dev_set = data.train_set, data.dev_set
        self.sampler, self.train_loader = data.sampler, data.train
        self.dev_loader = data.dev
        self.schedule = Schedule(train, len(self.train_loader))
        self.scheduler = self.schedule.scheduler
        self.optimizer = paddle.optimizer.Adam(
            learning_rate=self.schedule.lr,
            parameters=self.model.parameters())
        self.meta = model_meta(model.backbone, labels, model.dropout,
                               cfg.feature, self.task, data.clip_seconds,
                               model.head_hidden,
                               trained_on(self.table, cfg.data.split))
        self.tracker = BestTracker(train.early_stop_patience)
        self.precision = MixedPrecision(train.amp)
        self.augmenter = augmenter if augmenter.active and not head else None
        self.progress = Progress(1)
        self.log = None
        # what the loop runs on a batch: log-mel, or embeddings (head-only)
        self.inputs = (lambda x: x) if head else self.frontend.batch
        self.scorer = head or self.model
        self.net = (paddle.DataParallel(self.scorer) if self.world > 1 else
                    self.scorer)
        # what a checkpoint holds, restored in this order
        self.checkpointer = ckpt = Checkpointer(self.ckpt_dir, self.meta)
        ckpt.add_recoverable('model', self.model)
        ckpt.add_recoverable('progress', self.progress, flat=True)
        ckpt.add_recoverable('lr_plan', self.schedule)
        ckpt.add_recoverable('optimizer', self.optimizer, load=lambda s: (
            self.schedule.load_optimizer(self.optimizer, s,
                                         self.progress.steps_done(
                                             len(self.train_loader)))))
        ckpt.add_recoverable('best', self.tracker)
        ckpt.add_recoverable('amp', self.precision)
        ckpt.add_recoverable('rng', RandomState(), flat=True)

    def fit(self):
        """Train (resuming first with ``cfg.train.resume``); 0 when done,
        130 when interrupted (after saving ``epoch_N_step_S/``)."""
        train, rank = self.cfg.train, self.rank
        if rank == 0:  # checkpoint writes a kill left half renamed
            atomic.recover_dirs(self.ckpt_dir)
        if self.world > 1:
            dist.barrier()
        if train.resume:
            self.resume()
        if self.progress.epoch > train.epochs:
            log.info(f'[resume] {self.ckpt_dir} already holds all '
                     f'{train.epochs} epochs; nothing to train (raise '
                     f'--epochs to continue)')
        stopped = self.tracker.should_stop
        if stopped:
            log.info(f'[early stop] {self.ckpt_dir} stopped early before '
                     f'(best epoch {self.tracker.epoch}); nothing to train')
        if train.visualdl_dir and rank == 0:
            self.log = VisualDLLog(train.visualdl_dir)
        try:
            with StopRequest(enabled=self.world == 1) as stop:
                for epoch in range(self.progress.epoch, train.epochs + 1):
                    if stopped:
                        break
                    train_loss, train_acc = self.train_epoch(epoch, stop)
                    if epoch % train.save_freq and epoch != train.epochs:
                        continue
                    if rank == 0:
                        self.evaluate_and_save(train_loss, train_acc)
                    stopped = agree(self.tracker.should_stop, self.world)
                    if stopped:
                        t = self.tracker
                        log.info(f'[early stop] no better '
                                 f'{self.task.score_key} in {t.bad_evals} '
                                 f'evaluations; best: epoch {t.epoch} '
                                 f'({t.score:.4f})')
        except SystemError as e:
            stopped = loader_stopped(e)
            if stopped is None:
                raise
            raise stopped from e
        except Interrupted:
            p = self.progress
            out = self.checkpointer.save(p.epoch, step=p.step)
            log.warning(f'interrupted: saved {out} (epoch {p.epoch}, step '
                        f'{p.step}/{len(self.train_loader)}); continue with '
                        f'--resume')
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
        train, task, loader, p = self.cfg.train, self.task, \
            self.train_loader, self.progress
        p.start(epoch)
        self.sampler.set_epoch(epoch)
        self.sampler.skip = p.step
        frozen = epoch <= train.freeze_backbone_epochs or train.head_only
        freeze(self.model.backbone, frozen)
        self.net.train()
        if frozen:
            self.model.backbone.eval()
        bar = tqdm(loader, desc=f'epoch {epoch}/{train.epochs}', leave=False,
                   initial=p.step,
                   disable=True if self.rank else None,  # None: off if no tty
                   file=sys.stdout, dynamic_ncols=True)
        tick, tick_seen = time.time(), 0
        for step, (x, y) in enumerate(bar, start=p.step + 1):
            if stop is not None:
                stop.check()
            with paddle.no_grad():
                x = self.inputs(x)
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
            if step % train.log_freq == 0 or step == len(loader):
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
        log.info(f'[train] epoch {p.epoch}/{self.cfg.train.epochs} step '
                 f'{step}/{steps} {stats}')
        if self.log is not None:
            self.log.scalars('train', {**scalars, 'lr': lr},
                             (p.epoch - 1) * steps + step)

    def evaluate(self):
        """Dev metrics (:meth:`Task.evaluate`) and the dev loss."""
        return evaluate(self.scorer, self.dev_loader, self.task,
                        None if self.cfg.train.head_only else
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
        out = self.checkpointer.save(epoch, complete=True)
        remove_step_checkpoints(ckpt_dir)
        prune_checkpoints(ckpt_dir, self.keep, current=out)
        log.info(f'[eval] epoch {epoch}: {shown} dev_loss {dev["loss"]:.4f} '
                 f'-> saved {out}{best}')

    def finish(self):
        """End of a run: the averaged checkpoint, the training curves, and
        one line with the best dev score, its epoch and the checkpoint the
        later stages use (``best/``, else the latest epoch's)."""
        last = self.cfg.train.average_last
        if last:
            out = save_average(self.ckpt_dir, last)
            if out is not None:
                log.info(f'[average] last {last} checkpoints -> {out}')
        records = read_metrics(self.ckpt_dir / 'metrics.jsonl')
        if records:
            plot_curves(records, self.ckpt_dir / 'curves.png',
                        self.task.score)
            log.info(f'[curves] {self.ckpt_dir / "curves.png"}')
            key = self.task.score_key
            top = max(records, key=lambda r: r[key])  # ties: the earliest
            ckpt = best_checkpoint(self.ckpt_dir)
            where = f' (checkpoint {ckpt / "model.pdparams"})' if ckpt else ''
            log.info(f'best {key} {top[key]:.4f} at epoch {top["epoch"]}'
                     f'{where}')

    def resume(self):
        """Restore the furthest checkpoint: weights, optimizer and schedule,
        random state, best-so-far and early-stopping count, loss scale and
        the position to continue from (from scratch when there is none)."""
        ckpt_dir = self.ckpt_dir
        found = self.checkpointer.recover_if_possible()
        if found is None:
            log.info(f'[resume] no checkpoint in {ckpt_dir}; starting from '
                     f'scratch')
            return
        latest, ts = found
        metrics = ckpt_dir / 'metrics.jsonl'
        write_metrics(metrics, [r for r in read_metrics(metrics)
                                if r['epoch'] < self.progress.epoch])
        where = (f'after epoch {ts["epoch"]}' if Progress.completed(ts) else
                 f'at epoch {ts["epoch"]} step {ts["step"]}')
        log.info(f'[resume] continuing {where} from {latest} (delete '
                 f'{ckpt_dir} to start over)')
        if (self.schedule.replanned and
                self.progress.epoch <= self.cfg.train.epochs):
            log.info(self.schedule.describe_change(self.optimizer.get_lr()))


def agree(flag, world):
    """Rank 0's ``flag`` on every rank (only rank 0 evaluates)."""
    if world == 1:
        return flag
    t = paddle.to_tensor([int(flag)])
    dist.broadcast(t, src=0)
    return bool(t.item())
