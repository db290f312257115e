"""Fine-tune a PANNs backbone on a dataset in ESC-50 layout.

Single process:  python train.py --config conf/panns.yaml
Data parallel:   python -m paddle.distributed.launch train.py ...

Ctrl-C (or SIGTERM) in a single-process run saves epoch_N_step_S/ after
the current step; --resume continues from the furthest checkpoint (model,
optimizer, LR schedule, position in the epoch, random state, best dev
accuracy and early-stopping count), also after a crash or kill.

Besides epoch_N/ (only the last few with --keep_checkpoint_max), the run
keeps best/ (highest dev accuracy, used by the later stages), optionally
avg_N/ (--average_last), and draws curves.png from metrics.jsonl at the end.

Multi-label data (a clip listed on several rows of meta/esc50.csv) trains
with a sigmoid (binary cross-entropy) loss, and best/ and early stopping
follow the dev mAP instead of the accuracy.
"""
import paddlespeech.cls  # noqa: F401  (must precede paddle: MKL setup)

import argparse
import functools
import random
import sys
import time
from pathlib import Path

import numpy as np
import paddle
import paddle.distributed as dist
from tqdm import tqdm

from paddlespeech.cls.augment import Augmenter, soft_cross_entropy
from paddlespeech.cls.checkpoint import (load_checkpoint,
                                         prune_checkpoints,
                                         remove_step_checkpoints,
                                         resume_point, save_average,
                                         save_checkpoint, save_model)
from paddlespeech.cls.config import ConfigArgumentParser, parse_bool
from paddlespeech.cls.curves import VisualDLLog, plot_curves
from paddlespeech.cls.datasets.esc50 import (DatasetError, ESC50Dataset,
                                             dataset_root)
from paddlespeech.cls.features import NumpyLogMel, paddle_logmel
from paddlespeech.cls.models import build_classifier
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.runtime import (check_amp, run, select_device,
                                      set_cpu_threads)
from paddlespeech.cls.training import (AMP_MODES, LR_SCHEDULES, BestTracker,
                                       Interrupted, MixedPrecision,
                                       ResumableBatchSampler, StopRequest,
                                       build_lr, collate, evaluate, freeze,
                                       read_metrics, write_metrics)


def get_parser():
    p = ConfigArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add('--device', help='cpu, gpu or gpu:N (default: gpu if available)')
    p.add('--feat_backend', choices=['numpy', 'paddle'],
          help='numpy: per clip in the data loader, features cached after '
          'the first epoch; paddle: batched on the model device')
    p.add('--epochs', type=int, help='number of training epochs')
    p.add('--learning_rate', type=float, help='Adam learning rate')
    p.add('--lr_schedule', choices=LR_SCHEDULES,
          help='learning rate over the run (stepped every batch): '
          'constant, cosine to 0, or step decay')
    p.add('--warmup_epochs', type=float,
          help='linear warm-up from 0 over this many epochs')
    p.add('--lr_step_epochs', type=float,
          help='step schedule: multiply the rate by lr_gamma every N epochs '
          '(counted after the warm-up)')
    p.add('--lr_gamma', type=float, help='step schedule: decay factor')
    p.add('--freeze_backbone_epochs', type=int,
          help='train only the classifier head (backbone weights and '
          'BatchNorm statistics fixed) for the first N epochs')
    p.add('--early_stop_patience', type=int,
          help='stop after N evaluations without a higher dev accuracy '
          '(dev mAP on multi-label data) (0: off)')
    p.add('--average_last', type=int,
          help='at the end, average the last N epoch checkpoints into '
          'avg_N/ (0: off)')
    p.add('--keep_checkpoint_max', type=int,
          help='after each save, delete all but the last N epoch_N/ '
          'checkpoints, oldest first (best/ and avg_N/ always stay); at '
          'least average_last are kept, since the average needs them '
          '(0: keep all)')
    p.add('--amp', choices=AMP_MODES,
          help='GPU automatic mixed precision (paddle.amp O1); refused on '
          'CPU')
    p.add('--visualdl_dir', help='write VisualDL scalars here (needs '
          'pip install visualdl)')
    for flag, kind, what in AUGMENT_FLAGS:
        p.add(f'--{flag}', key=f'augment.{flag}', type=kind,
              metavar=flag.upper(), help=what)
    p.add('--batch_size', type=int, help='clips per step (per process)')
    p.add('--num_workers', type=int,
          help='data loader worker processes (0: load in the main process)')
    p.add('--checkpoint_dir', help='where epoch_N/ checkpoints and '
          'metrics.jsonl are written')
    p.add('--save_freq', type=int,
          help='evaluate on the dev fold and save every N epochs')
    p.add('--log_freq', type=int, help='log training metrics every N steps')
    p.add('--backbone', choices=['cnn14', 'cnn10', 'cnn6'],
          help='PANNs backbone')
    p.add('--pretrained', type=parse_bool,
          help='start from the AudioSet weights (true/false)')
    p.add('--pretrained_path', help='local .pdparams of the backbone '
          'instead of the download')
    p.add('--data_dir', help='dataset root in ESC-50 layout '
          '(audio/, meta/esc50.csv)')
    p.add('--split', type=int, help='dev fold; the other folds train')
    p.add('--seed', type=int, help='random seed')
    p.add('--cpu_threads', type=int,
          help='CPU threads per process (default: cores / processes)')
    p.add('--resume', action='store_true',
          help='continue from the furthest checkpoint in checkpoint_dir '
          '(epoch_N or the epoch_N_step_S of an interrupted run)')
    p.add('--skip_bad_files', type=parse_bool, nargs='?', const=True,
          help='train without unreadable clips (they are listed) instead '
          'of refusing to start')
    return p


AUGMENT_FLAGS = [
    ('mixup_alpha', float, 'mixup of log-mel clips and targets with '
     'Beta(alpha, alpha) weights (0/unset: off)'),
    ('spec_time_masks', int, 'SpecAugment: time masks per clip'),
    ('spec_time_width', int, 'SpecAugment: widest time mask (frames)'),
    ('spec_freq_masks', int, 'SpecAugment: frequency masks per clip'),
    ('spec_freq_width', int, 'SpecAugment: widest frequency mask (mel bins)'),
    ('time_shift_frames', int, 'random time shift of up to N frames'),
    ('gain_db', float, 'random gain of up to +-N dB'),
]


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def main(argv):
    cfg = get_parser().parse_config(argv)
    check_amp(cfg.amp, select_device(cfg.device))
    world = dist.get_world_size()
    keep = checkpoints_to_keep(cfg.keep_checkpoint_max, cfg.average_last,
                               verbose=dist.get_rank() == 0)
    if world > 1 and cfg.freeze_backbone_epochs:
        raise UserError('freeze_backbone_epochs is for single-process '
                        'training (data parallel syncs every parameter)')
    set_cpu_threads(cfg.cpu_threads, share_with=world)
    if world > 1:
        dist.init_parallel_env()
    rank = dist.get_rank()
    seed_everything(cfg.seed + rank)
    data_dir = dataset_root(cfg)

    extractor = NumpyLogMel(cfg.feature) if cfg.feat_backend == 'numpy' \
        else None
    frontend = paddle_logmel(cfg.feature) if extractor is None else None
    pad_value = cfg.feature.floor_db if extractor is not None else 0.0
    train_ds = ESC50Dataset(data_dir, 'train', cfg.split, cfg.feature,
                            extractor)
    dev_ds = ESC50Dataset(data_dir, 'dev', cfg.split, cfg.feature,
                          extractor)
    check_readable([train_ds, dev_ds], cfg.skip_bad_files, verbose=rank == 0)
    labels, multi_label = train_ds.label_list, train_ds.multi_label

    sampler = ResumableBatchSampler(
        train_ds, batch_size=cfg.batch_size, shuffle=True, drop_last=False)
    if cfg.num_workers > 0:
        train_ds.precompute('train features')
        dev_ds.precompute('dev features')
    loader_kw = dict(num_workers=cfg.num_workers,
                     collate_fn=lambda b: collate(b, pad_value),
                     persistent_workers=cfg.num_workers > 0)
    train_loader = paddle.io.DataLoader(train_ds, batch_sampler=sampler,
                                        **loader_kw)
    dev_loader = paddle.io.DataLoader(dev_ds, batch_size=cfg.batch_size,
                                      shuffle=False, **loader_kw)

    model = build_classifier(cfg.backbone, len(labels), cfg.dropout,
                             cfg.pretrained, cfg.pretrained_path,
                             multi_label)
    lr = build_lr(cfg.learning_rate, cfg.lr_schedule, cfg.epochs,
                  len(train_loader), cfg.warmup_epochs, cfg.lr_step_epochs,
                  cfg.lr_gamma)
    optimizer = paddle.optimizer.Adam(learning_rate=lr,
                                      parameters=model.parameters())
    scheduler = lr if isinstance(lr, paddle.optimizer.lr.LRScheduler) else None
    meta = {'backbone': cfg.backbone, 'num_class': len(labels),
            'label_list': labels, 'dropout': cfg.dropout,
            'feature': cfg.feature.to_dict()}
    if multi_label:  # absent: single-label, as in older checkpoints
        meta['multi_label'] = True
    ckpt_dir = Path(cfg.checkpoint_dir)
    tracker = BestTracker(cfg.early_stop_patience)
    precision = MixedPrecision(cfg.amp)
    augmenter = Augmenter(cfg.augment)
    progress = new_progress(1)
    if getattr(cfg, 'resume', False):
        progress = resume(ckpt_dir, model, optimizer, meta, tracker,
                          precision)
    if progress['epoch'] > cfg.epochs and rank == 0:
        print(f'[resume] {ckpt_dir} already holds all {cfg.epochs} epochs; '
              f'nothing to train (raise --epochs to continue)')
    stopped = tracker.should_stop
    if stopped and rank == 0:
        print(f'[early stop] {ckpt_dir} stopped early before (best epoch '
              f'{tracker.epoch}); nothing to train')
    log = VisualDLLog(cfg.visualdl_dir) if cfg.visualdl_dir and rank == 0 \
        else None
    net = model
    if world > 1:
        model = paddle.DataParallel(model)
    criterion = (paddle.nn.BCEWithLogitsLoss() if multi_label else
                 paddle.nn.CrossEntropyLoss())
    extras = dict(augmenter=augmenter if augmenter.active else None,
                  precision=precision, log=log, multi_label=multi_label)
    state = functools.partial(train_state, tracker=tracker,
                              precision=precision)

    try:
        with StopRequest(enabled=world == 1) as stop:
            for epoch in range(progress['epoch'], cfg.epochs + 1):
                if stopped:
                    break
                if progress['epoch'] != epoch:
                    progress = new_progress(epoch)
                sampler.set_epoch(epoch)
                sampler.skip = progress['step']
                frozen = epoch <= cfg.freeze_backbone_epochs
                freeze(net.backbone, frozen)
                train_loss, train_acc = train_one_epoch(
                    model, train_loader, optimizer, scheduler, criterion,
                    frontend, progress, cfg, rank, stop,
                    frozen=[net.backbone] if frozen else [], **extras)
                if epoch % cfg.save_freq and epoch != cfg.epochs:
                    continue
                if rank == 0:
                    evaluate_and_save(net, dev_loader, criterion, frontend,
                                      optimizer, meta, ckpt_dir, progress,
                                      train_loss, train_acc, tracker, state,
                                      log, keep)
                stopped = agree(tracker.should_stop, world)
                if stopped and rank == 0:
                    print(f'[early stop] no better {score_name(multi_label)}'
                          f' in {tracker.bad_evals} evaluations; best: epoch '
                          f'{tracker.epoch} ({tracker.dev_acc:.4f})',
                          flush=True)
    except Interrupted:
        out = save_checkpoint(ckpt_dir, progress['epoch'], net, meta,
                              optimizer, state(progress),
                              step=progress['step'])
        print(f'interrupted: saved {out} (epoch {progress["epoch"]}, step '
              f'{progress["step"]}/{len(train_loader)}); continue with '
              f'--resume', file=sys.stderr, flush=True)
        return 130
    finally:
        if log is not None:
            log.close()
    if rank == 0:
        finish(ckpt_dir, cfg.average_last)
    return 0


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


def score_name(multi_label):
    """The dev metric that chooses best/ and drives early stopping."""
    return 'dev_map' if multi_label else 'dev_acc'


def agree(flag, world):
    """Rank 0's ``flag`` on every rank (only rank 0 evaluates)."""
    if world == 1:
        return flag
    t = paddle.to_tensor([int(flag)])
    dist.broadcast(t, src=0)
    return bool(t.item())


def finish(ckpt_dir, average_last):
    """End of a run: the averaged checkpoint and the training curves."""
    if average_last:
        out = save_average(ckpt_dir, average_last)
        if out is not None:
            print(f'[average] last {average_last} checkpoints -> {out}')
    records = read_metrics(ckpt_dir / 'metrics.jsonl')
    if records:
        plot_curves(records, ckpt_dir / 'curves.png')
        print(f'[curves] {ckpt_dir / "curves.png"}', flush=True)


def new_progress(epoch):
    """Position in training and the running sums of the current epoch."""
    return {'epoch': epoch, 'step': 0, 'loss_sum': 0.0, 'correct': 0.0,
            'seen': 0}


def evaluate_and_save(net, dev_loader, criterion, frontend, optimizer, meta,
                      ckpt_dir, progress, train_loss, train_acc, tracker,
                      state, log=None, keep=0):
    """Evaluate, record the metrics, keep ``best/``, checkpoint, then
    delete epoch checkpoints beyond the last ``keep`` (0: keep all).

    The metrics line is written first: after a crash in between, resuming
    from the previous checkpoint drops it and evaluates this epoch again,
    so the history never has a gap or a duplicate. ``best/`` goes before
    the epoch checkpoint whose ``train_state`` records it, for the same
    reason; old checkpoints go only once the new one is complete.
    """
    epoch = progress['epoch']
    dev = evaluate(net, dev_loader, criterion, frontend)
    metrics = ckpt_dir / 'metrics.jsonl'
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    records = [r for r in read_metrics(metrics) if r['epoch'] < epoch]
    multi_label = 'map' in dev
    if multi_label:  # training accuracy means nothing here: left out
        record = {'epoch': epoch, 'dev_map': round(dev['map'], 6),
                  'dev_loss': round(dev['loss'], 6),
                  'train_loss': round(train_loss, 6)}
        shown = f'dev_map {dev["map"]:.4f}'
    else:
        record = {'epoch': epoch, 'dev_acc': round(dev['acc'], 6),
                  'dev_loss': round(dev['loss'], 6),
                  'train_loss': round(train_loss, 6),
                  'train_acc': round(train_acc, 6),
                  'dev_top5': round(dev['top5'], 6),
                  'dev_macro_f1': round(dev['macro_f1'], 6)}
        shown = (f'dev_acc {dev["acc"]:.4f} top5 {dev["top5"]:.4f} '
                 f'macro_f1 {dev["macro_f1"]:.4f}')
    write_metrics(metrics, records + [record])
    if log is not None:
        log.scalars('dev', dev, epoch)
    best = ''
    if tracker.update(epoch, record[score_name(multi_label)]):
        save_model(ckpt_dir, 'best', net.state_dict(), meta, record)
        best = ' (best)'
    out = save_checkpoint(ckpt_dir, epoch, net, meta, optimizer,
                          state(dict(progress, complete=True)))
    remove_step_checkpoints(ckpt_dir)
    prune_checkpoints(ckpt_dir, keep, current=out)
    print(f'[eval] epoch {epoch}: {shown} dev_loss {dev["loss"]:.4f} -> '
          f'saved {out}{best}', flush=True)


def train_one_epoch(model, loader, optimizer, scheduler, criterion, frontend,
                    progress, cfg, rank, stop, augmenter=None, precision=None,
                    frozen=(), log=None, multi_label=False):
    """Train the rest of ``progress['epoch']``, updating ``progress`` after
    every step so an interrupt can save exactly where training stands.

    With an ``augmenter`` the batch is augmented after the front end and
    the loss is the soft cross-entropy against its (mixed) targets, while
    the reported accuracy stays against the clips' own labels. Layers in
    ``frozen`` run in eval mode (fixed BatchNorm statistics, no dropout).
    ``multi_label``: multi-hot targets, the (mixed) targets go to
    ``criterion`` (binary cross-entropy) and no accuracy is reported
    (None).
    """
    precision = precision or MixedPrecision('off')
    model.train()
    for layer in frozen:
        layer.eval()
    epoch = progress['epoch']
    bar = tqdm(loader, desc=f'epoch {epoch}/{cfg.epochs}', leave=False,
               initial=progress['step'],
               disable=True if rank else None,  # None: off when not a tty
               file=sys.stdout, dynamic_ncols=True)
    tick, tick_seen = time.time(), 0
    for step, (x, y) in enumerate(bar, start=progress['step'] + 1):
        stop.check()
        if frontend is not None:
            with paddle.no_grad():
                x = frontend(x)
        if augmenter is not None:
            x, soft = augmenter(x, y, num_classes(model),
                                training=True)
        with precision.autocast():
            logits = model(x)
            loss = (criterion(logits, y) if augmenter is None else
                    criterion(logits, soft) if multi_label else
                    soft_cross_entropy(logits, soft))
        precision.step(loss, optimizer)
        if scheduler is not None:
            scheduler.step()

        n = y.shape[0]
        progress['loss_sum'] += float(loss) * n
        if not multi_label:
            progress['correct'] += float(
                (logits.argmax(axis=1) == y).astype('float32').sum())
        progress['seen'] += n
        progress['step'] = step
        tick_seen += n
        if step % cfg.log_freq == 0 or step == len(loader):
            seen = progress['seen']
            speed = tick_seen / (time.time() - tick)
            acc = ('' if multi_label else
                   f'acc {progress["correct"] / seen:.4f} ')
            stats = (f'loss {progress["loss_sum"] / seen:.4f} {acc}'
                     f'lr {optimizer.get_lr():.2e} {speed:.1f} clips/s')
            bar.set_postfix_str(stats)
            if rank == 0:
                tqdm.write(f'[train] epoch {epoch}/{cfg.epochs} step '
                           f'{step}/{len(loader)} {stats}', file=sys.stdout)
            if log is not None:
                scalars = {'loss': progress['loss_sum'] / seen,
                           'acc': progress['correct'] / seen,
                           'lr': optimizer.get_lr()}
                if multi_label:
                    del scalars['acc']
                log.scalars('train', scalars,
                            (epoch - 1) * len(loader) + step)
            tick, tick_seen = time.time(), 0
    seen = max(progress['seen'], 1)
    return progress['loss_sum'] / seen, (
        None if multi_label else progress['correct'] / seen)


def num_classes(model):
    """Number of classes of the (possibly DataParallel-wrapped) classifier."""
    return getattr(model, '_layers', model).fc.weight.shape[1]


def train_state(progress, tracker, precision):
    return {**progress, 'python_rng': random.getstate(),
            'numpy_rng': np.random.get_state(),
            'paddle_rng': paddle.get_rng_state(),
            'best': tracker.state_dict(), 'amp': precision.state_dict()}


def resume(ckpt_dir, model, optimizer, meta, tracker, precision):
    """Restore the furthest checkpoint, with the best-so-far and
    early-stopping state into ``tracker`` and the loss scale into
    ``precision``; returns the progress to continue from (epoch 1, step 0
    when there is none)."""
    latest = resume_point(ckpt_dir)
    if latest is None:
        print(f'[resume] no checkpoint in {ckpt_dir}; starting from scratch')
        return new_progress(1)
    state, saved_meta = load_checkpoint(latest)
    if saved_meta != meta:
        raise DatasetError(f'{latest} was trained with other settings '
                           f'(backbone, labels, single/multi-label or '
                           f'features) than this run; use another '
                           f'--checkpoint_dir')
    model.set_state_dict(state)
    opt = paddle.load(str(latest / 'model.pdopt'))
    optimizer.set_state_dict(opt['optimizer'])
    ts = opt['train_state']
    random.setstate(ts['python_rng'])
    np.random.set_state(ts['numpy_rng'])
    paddle.set_rng_state(ts['paddle_rng'])
    tracker.load_state_dict(ts.get('best'))
    precision.set_state_dict(ts.get('amp'))
    complete = ts.get('complete', 'step' not in ts)
    progress = new_progress(ts['epoch'] + 1) if complete else {
        k: ts[k] for k in new_progress(0)}
    metrics = ckpt_dir / 'metrics.jsonl'
    write_metrics(metrics, [r for r in read_metrics(metrics)
                            if r['epoch'] < progress['epoch']])
    where = (f'after epoch {ts["epoch"]}' if complete else
             f'at epoch {ts["epoch"]} step {ts["step"]}')
    print(f'[resume] continuing {where} from {latest} (delete '
          f'{ckpt_dir} to start over)', flush=True)
    return progress


def check_readable(datasets, skip=False, verbose=True):
    """Refuse to start if any clip is unreadable, listing all of them; with
    ``skip`` train without them instead (and say which)."""
    bad = [b for ds in datasets for b in ds.unreadable_files()]
    if not bad:
        return
    listing = '\n'.join(f'  {p}: {r}' for p, r in bad)
    if not skip:
        raise DatasetError(f'{len(bad)} unreadable audio file(s):\n'
                           f'{listing}\n(fix or remove them, or pass '
                           f'--skip_bad_files to train without them)')
    for ds in datasets:
        ds.drop({p for p, _ in bad})
        if not len(ds):
            raise DatasetError(f'no readable clips left in the {ds.mode} '
                               f'set of {ds.root}')
    if verbose:
        print(f'skipping {len(bad)} unreadable audio file(s):\n{listing}',
              file=sys.stderr, flush=True)


if __name__ == '__main__':
    run(main)
