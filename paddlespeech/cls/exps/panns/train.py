"""Fine-tune a PANNs backbone on a dataset in ESC-50 layout.

Single process:  python train.py --config conf/panns.yaml
Data parallel:   python -m paddle.distributed.launch train.py ...
"""
import paddlespeech.cls  # noqa: F401  (must precede paddle: MKL setup)

import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import paddle
import paddle.distributed as dist
from tqdm import tqdm

from paddlespeech.cls.checkpoint import (latest_checkpoint, load_checkpoint,
                                         save_checkpoint)
from paddlespeech.cls.config import ConfigArgumentParser, parse_bool
from paddlespeech.cls.datasets.esc50 import (DatasetError, ESC50Dataset,
                                             dataset_root)
from paddlespeech.cls.features import NumpyLogMel, paddle_logmel
from paddlespeech.cls.models import build_classifier
from paddlespeech.cls.runtime import run, select_device, set_cpu_threads
from paddlespeech.cls.training import build_lr, collate, evaluate


def get_parser():
    p = ConfigArgumentParser(description=__doc__.splitlines()[0])
    p.add('--device', help='cpu, gpu or gpu:N (default: gpu if available)')
    p.add('--feat_backend', choices=['numpy', 'paddle'],
          help='numpy: per clip in the data loader, features cached after '
          'the first epoch; paddle: batched on the model device')
    p.add('--epochs', type=int, help='number of training epochs')
    p.add('--learning_rate', type=float, help='Adam learning rate')
    p.add('--lr_schedule', choices=['constant', 'cosine'],
          help='learning rate over the run (stepped every batch)')
    p.add('--warmup_epochs', type=float,
          help='linear warm-up from 0 over this many epochs')
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
          help='continue from the latest checkpoint in checkpoint_dir')
    return p


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def main(argv):
    cfg = get_parser().parse_config(argv)
    select_device(cfg.device)
    world = dist.get_world_size()
    set_cpu_threads(cfg.cpu_threads, share_with=world)
    if world > 1:
        dist.init_parallel_env()
    rank = dist.get_rank()
    seed_everything(cfg.seed + rank)
    data_dir = dataset_root(cfg)

    extractor = NumpyLogMel(cfg.feature) if cfg.feat_backend == 'numpy' \
        else None
    frontend = paddle_logmel(cfg.feature) if extractor is None else None
    pad_value = -100.0 if extractor is not None else 0.0
    train_ds = ESC50Dataset(data_dir, 'train', cfg.split, cfg.feature,
                            extractor)
    dev_ds = ESC50Dataset(data_dir, 'dev', cfg.split, cfg.feature,
                          extractor)
    check_readable(train_ds, dev_ds)
    labels = train_ds.label_list

    sampler = paddle.io.DistributedBatchSampler(
        train_ds, batch_size=cfg.batch_size, shuffle=True, drop_last=False)
    loader_kw = dict(num_workers=cfg.num_workers,
                     collate_fn=lambda b: collate(b, pad_value),
                     persistent_workers=cfg.num_workers > 0)
    train_loader = paddle.io.DataLoader(train_ds, batch_sampler=sampler,
                                        **loader_kw)
    dev_loader = paddle.io.DataLoader(dev_ds, batch_size=cfg.batch_size,
                                      shuffle=False, **loader_kw)

    model = build_classifier(cfg.backbone, len(labels), cfg.dropout,
                             cfg.pretrained, cfg.pretrained_path)
    lr = build_lr(cfg.learning_rate, cfg.lr_schedule, cfg.epochs,
                  len(train_loader), cfg.warmup_epochs)
    optimizer = paddle.optimizer.Adam(learning_rate=lr,
                                      parameters=model.parameters())
    scheduler = lr if isinstance(lr, paddle.optimizer.lr.LRScheduler) else None
    meta = {'backbone': cfg.backbone, 'num_class': len(labels),
            'label_list': labels, 'dropout': cfg.dropout,
            'feature': cfg.feature.to_dict()}
    ckpt_dir = Path(cfg.checkpoint_dir)
    start_epoch = 1
    if getattr(cfg, 'resume', False):
        start_epoch = resume(ckpt_dir, model, optimizer, meta) + 1
    if world > 1:
        model = paddle.DataParallel(model)
    criterion = paddle.nn.CrossEntropyLoss()

    for epoch in range(start_epoch, cfg.epochs + 1):
        sampler.set_epoch(epoch)
        train_loss, train_acc = train_one_epoch(
            model, train_loader, optimizer, scheduler, criterion, frontend,
            epoch, cfg, rank)
        if epoch % cfg.save_freq and epoch != cfg.epochs:
            continue
        if rank == 0:
            net = model._layers if world > 1 else model
            dev_loss, dev_acc = evaluate(net, dev_loader, criterion, frontend)
            out = save_checkpoint(ckpt_dir, epoch, net, meta, optimizer,
                                  train_state(epoch))
            record = {'epoch': epoch, 'dev_acc': round(dev_acc, 6),
                      'dev_loss': round(dev_loss, 6),
                      'train_loss': round(train_loss, 6),
                      'train_acc': round(train_acc, 6)}
            with open(ckpt_dir / 'metrics.jsonl', 'a') as f:
                f.write(json.dumps(record) + '\n')
            print(f'[eval] epoch {epoch}: dev_acc {dev_acc:.4f} dev_loss '
                  f'{dev_loss:.4f} -> saved {out}', flush=True)
        if world > 1:
            dist.barrier()
    return 0


def train_one_epoch(model, loader, optimizer, scheduler, criterion, frontend,
                    epoch, cfg, rank):
    model.train()
    total_loss = correct = seen = 0.0
    bar = tqdm(loader, desc=f'epoch {epoch}/{cfg.epochs}', leave=False,
               disable=True if rank else None,  # None: off when not a tty
               file=sys.stdout, dynamic_ncols=True)
    tick, tick_seen = time.time(), 0
    for step, (x, y) in enumerate(bar, start=1):
        if frontend is not None:
            with paddle.no_grad():
                x = frontend(x)
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        if scheduler is not None:
            scheduler.step()

        n = y.shape[0]
        total_loss += float(loss) * n
        correct += float((logits.argmax(axis=1) == y).astype('float32').sum())
        seen += n
        tick_seen += n
        if step % cfg.log_freq == 0 or step == len(loader):
            speed = tick_seen / (time.time() - tick)
            stats = (f'loss {total_loss / seen:.4f} acc {correct / seen:.4f} '
                     f'lr {optimizer.get_lr():.2e} {speed:.1f} clips/s')
            bar.set_postfix_str(stats)
            if rank == 0:
                tqdm.write(f'[train] epoch {epoch}/{cfg.epochs} step '
                           f'{step}/{len(loader)} {stats}', file=sys.stdout)
            tick, tick_seen = time.time(), 0
    return total_loss / max(seen, 1), correct / max(seen, 1)


def train_state(epoch):
    return {'epoch': epoch, 'python_rng': random.getstate(),
            'numpy_rng': np.random.get_state(),
            'paddle_rng': paddle.get_rng_state()}


def resume(ckpt_dir, model, optimizer, meta):
    """Restore the latest checkpoint; returns its epoch (0 when none)."""
    latest = latest_checkpoint(ckpt_dir)
    if latest is None:
        print(f'[resume] no checkpoint in {ckpt_dir}; starting from scratch')
        return 0
    state, saved_meta = load_checkpoint(latest)
    if saved_meta != meta:
        raise DatasetError(f'{latest} was trained with other settings '
                           f'(backbone, labels or features) than this run; '
                           f'use another --checkpoint_dir')
    model.set_state_dict(state)
    opt = paddle.load(str(latest / 'model.pdopt'))
    optimizer.set_state_dict(opt['optimizer'])
    ts = opt['train_state']
    random.setstate(ts['python_rng'])
    np.random.set_state(ts['numpy_rng'])
    paddle.set_rng_state(ts['paddle_rng'])
    metrics = ckpt_dir / 'metrics.jsonl'
    if metrics.is_file():  # drop evaluations newer than the checkpoint
        keep = [line for line in metrics.read_text().splitlines()
                if line and json.loads(line)['epoch'] <= ts['epoch']]
        metrics.write_text(''.join(line + '\n' for line in keep))
    print(f'[resume] continuing after epoch {ts["epoch"]} from {latest}')
    return ts['epoch']


def check_readable(*datasets):
    bad = [b for ds in datasets for b in ds.unreadable_files()]
    if bad:
        listing = '\n'.join(f'  {p}: {r}' for p, r in bad)
        raise DatasetError(f'{len(bad)} unreadable audio file(s):\n{listing}')


if __name__ == '__main__':
    run(main)
