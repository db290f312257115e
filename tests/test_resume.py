"""Interrupted training: atomic checkpoints, resume after SIGKILL, and a
checkpoint saved on Ctrl-C; resumed runs end where an uninterrupted run
with the same seed ends, weight for weight."""
import contextlib
import io
import json
import math
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest
import yaml

from tests.conftest import (ROOT, SCRIPTS, conf_with, run_script,
                            script_env, train_args)
from paddlespeech.cls import checkpoint
from paddlespeech.cls.checkpointer import Checkpointer, Progress
from paddlespeech.cls.config import load_config
from paddlespeech.cls.models import build_classifier
from paddlespeech.cls.trainer import Trainer

EPOCHS = 3


def train_cmd(dataset, ckpt_dir, *extra):
    return [sys.executable, str(SCRIPTS / 'train.py'),
            *map(str, train_args(dataset, ckpt_dir, '--epochs', EPOCHS,
                                 '--batch_size', 4, '--log_freq', 1,
                                 *extra))]


def metrics(ckpt_dir):
    return [json.loads(line) for line in
            (ckpt_dir / 'metrics.jsonl').read_text().splitlines()]


def weights(ckpt_dir, epoch=EPOCHS):
    state, _ = checkpoint.load_checkpoint(ckpt_dir / f'epoch_{epoch}')
    return {k: v.numpy() for k, v in state.items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope='module')
def reference(tiny_dataset, tmp_path_factory):
    """An uninterrupted run: its checkpoint directory."""
    ckpt_dir = tmp_path_factory.mktemp('reference') / 'ckpt'
    run_script('train.py', *train_cmd(tiny_dataset, ckpt_dir,
                                      '--save_freq', 1)[2:])
    return ckpt_dir


def test_failed_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    model = build_classifier('cnn6', 3, pretrained=False)
    optimizer = paddle.optimizer.Adam(parameters=model.parameters())
    meta = {'backbone': 'cnn6', 'num_class': 3, 'label_list': list('abc'),
            'dropout': 0.1, 'feature': {}}
    checkpoint.save_checkpoint(tmp_path, 1, model, meta, optimizer, {})
    saved = {k: v.numpy() for k, v in model.state_dict().items()}
    for p in model.parameters():
        p.set_value(p.numpy() + 1)

    real_save, calls = paddle.save, []

    def save_then_crash(obj, path, *a, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise OSError('disk full')
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(paddle, 'save', save_then_crash)
    for epoch in (1, 2):  # overwriting epoch 1, and writing a new epoch 2
        calls.clear()
        with pytest.raises(OSError, match='disk full'):
            checkpoint.save_checkpoint(tmp_path, epoch, model, meta,
                                       optimizer, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ['epoch_1']
    assert checkpoint.resume_point(tmp_path) == tmp_path / 'epoch_1'
    state, _ = checkpoint.load_checkpoint(tmp_path / 'epoch_1')
    assert_same_weights({k: v.numpy() for k, v in state.items()}, saved)


class Counter:
    """A piece of training state, as the trainer's register themselves."""

    def __init__(self):
        self.n, self.loaded = 0, 'never'

    def state_dict(self):
        return {'n': self.n}

    def set_state_dict(self, state):
        self.loaded = state
        self.n = state['n'] if state else -1


def test_checkpointer_restores_what_registered(tmp_path):
    """Each registered piece comes back from the furthest checkpoint; a
    flat one spreads over train_state as checkpoints always held progress;
    a piece the checkpoint predates gets None; another model is
    refused."""
    model = paddle.nn.Linear(4, 2)
    optimizer = paddle.optimizer.Adam(parameters=model.parameters())
    progress, counter = Progress(2), Counter()
    ckpt = Checkpointer(tmp_path, {'backbone': 'linear'})
    ckpt.add_recoverable('model', model)
    ckpt.add_recoverable('optimizer', optimizer)
    ckpt.add_recoverable('progress', progress, flat=True)
    ckpt.add_recoverable('counter', counter)
    progress.step, counter.n = 3, 7
    saved = {k: v.numpy() for k, v in model.state_dict().items()}
    out = ckpt.save(2, step=3)
    assert out == tmp_path / 'epoch_2_step_3'
    ts = paddle.load(str(out / 'model.pdopt'))['train_state']
    assert ts == {'epoch': 2, 'step': 3, 'loss_sum': 0.0, 'correct': 0.0,
                  'seen': 0, 'counter': {'n': 7}}

    for p in model.parameters():
        p.set_value(p.numpy() + 1)
    progress.start(5)
    counter.n = 0
    assert ckpt.recover_if_possible() == (out, ts)
    assert_same_weights({k: v.numpy() for k, v in
                         model.state_dict().items()}, saved)
    assert (progress.epoch, progress.step, counter.n) == (2, 3, 7)

    later = Counter()
    ckpt.add_recoverable('later', later)
    ckpt.recover_if_possible()
    assert later.loaded is None and later.n == -1

    other = Checkpointer(tmp_path, {'backbone': 'other'})
    other.add_recoverable('model', model)
    with pytest.raises(checkpoint.CheckpointError, match='other settings'):
        other.recover_if_possible()
    assert Checkpointer(tmp_path / 'none', {}).recover_if_possible() is None


@contextlib.contextmanager
def small_disk(folder, megabytes):
    """A tmpfs of ``megabytes`` mounted on ``folder`` (needs root)."""
    folder.mkdir()
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={megabytes}m',
                           'tmpfs', str(folder)], capture_output=True)
    if proc.returncode:
        pytest.skip(f'cannot mount a tmpfs here: {proc.stderr.decode()}')
    try:
        yield folder
    finally:
        subprocess.run(['umount', str(folder)], check=True)


def test_full_disk_during_a_checkpoint_save_is_one_line(tiny_dataset,
                                                        tmp_path):
    """On a 100 MB disk epoch 1 (best/ 18 MB, epoch_1/ 53 MB: CNN6 with
    Adam's moments) fits and epoch_2/ does not: train.py ends with one
    line naming it, the space it needs and the space free, and epoch_1/
    is the intact resume point."""
    with small_disk(tmp_path / 'disk', 100) as disk:
        ckpt_dir = disk / 'ckpt'
        proc = subprocess.run(
            train_cmd(tiny_dataset, ckpt_dir, '--save_freq', 1, '--epochs',
                      2), capture_output=True, text=True,
            env=script_env(), timeout=300)
        free = shutil.disk_usage(disk).free
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert 'Traceback' not in proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        m = re.fullmatch(
            rf'error: cannot write {re.escape(str(ckpt_dir / "epoch_2"))}: '
            rf'no space left on device \(it needs about ([\d.]+) MB, '
            rf'([\d.]+) MB free there\): free space or set --checkpoint_dir '
            rf'to another disk; earlier checkpoints are intact \(--resume '
            rf'continues from them\)', last)
        assert m, last
        on_disk = sum(f.stat().st_size for f in
                      (ckpt_dir / 'epoch_1').iterdir())
        assert float(m[1]) == pytest.approx(on_disk / 2 ** 20, rel=0.01)
        assert float(m[2]) == round(free / 2 ** 20, 1)
        assert float(m[2]) < float(m[1])
        assert '[eval] epoch 1' in proc.stdout
        assert checkpoint.resume_point(ckpt_dir) == ckpt_dir / 'epoch_1'
        assert not [p for p in ckpt_dir.iterdir() if p.name.endswith('.tmp')
                    and p.is_dir()]
        state, _ = checkpoint.load_checkpoint(ckpt_dir / 'epoch_1')
        assert len(state) == len(build_classifier(
            'cnn6', 3, pretrained=False).state_dict())


def train_recording_lr(dataset, ckpt_dir, epochs, **over):
    """Train in this process; the trainer, the learning rate of every
    step it trained and its stdout."""
    cfg = load_config(ROOT / 'conf' / 'demo.yaml', {
        'data_dir': str(dataset), 'checkpoint_dir': str(ckpt_dir),
        'epochs': epochs, 'save_freq': epochs, 'batch_size': 8,
        'device': 'cpu', 'cpu_threads': 1, 'log_freq': 1000, **over})

    def record(*epoch):
        if not epoch:  # a training step, not resume() placing the schedule
            used.append(trainer.optimizer.get_lr())
        step(*epoch)

    out = io.StringIO()
    # parameter names as in a new process, which the optimizer state is
    # keyed by
    with paddle.utils.unique_name.guard(), contextlib.redirect_stdout(out):
        trainer = Trainer(cfg)
        used, step = [], trainer.scheduler.step
        trainer.scheduler.step = record
        assert trainer.fit() == 0
    return trainer, used, out.getvalue()


def test_more_epochs_on_resume_stretch_the_cosine_schedule(tiny_dataset,
                                                           tmp_path):
    """A finished cosine run (its rate at 0) resumed with twice the epochs
    trains the new steps on the cosine of the longer run, by hand, and
    ends at that schedule's end value."""
    base, n = 1e-3, 2
    ckpt_dir = tmp_path / 'ckpt'
    trainer, first, _ = train_recording_lr(
        tiny_dataset, ckpt_dir, n, learning_rate=base, lr_schedule='cosine')
    steps = len(trainer.train_loader)
    assert steps > 1 and len(first) == n * steps

    def cosine(k, total):
        return base * (1 + math.cos(math.pi * k / total)) / 2

    np.testing.assert_allclose(first, [cosine(k, n * steps)
                                       for k in range(n * steps)], rtol=1e-9)
    assert trainer.optimizer.get_lr() == 0.0  # the 2-epoch schedule ended

    trainer, resumed, out = train_recording_lr(
        tiny_dataset, ckpt_dir, 2 * n, learning_rate=base,
        lr_schedule='cosine', resume=True)
    assert f'epochs {n} -> {2 * n}' in out, out
    total = 2 * n * steps
    expected = [cosine(k, total) for k in range(n * steps, total)]
    assert len(resumed) == len(expected) and min(resumed) > 0
    np.testing.assert_allclose(resumed, expected, rtol=1e-9)
    assert resumed[0] == pytest.approx(base / 2)  # half-way down the new one
    assert trainer.optimizer.get_lr() == pytest.approx(cosine(total, total),
                                                       abs=1e-15)
    assert [r['epoch'] for r in metrics(ckpt_dir)] == [n, 2 * n]


@pytest.mark.slow
def test_resume_after_sigkill(tiny_dataset, reference, tmp_path):
    ckpt_dir = tmp_path / 'ckpt'
    cmd = train_cmd(tiny_dataset, ckpt_dir, '--save_freq', 1)
    proc = subprocess.Popen(cmd, env=script_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (ckpt_dir / 'epoch_1' / 'model.pdparams').exists():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert not (ckpt_dir / f'epoch_{EPOCHS}').exists()

    out = run_script('train.py', *cmd[2:], '--resume').stdout
    assert '[resume] continuing after epoch' in out
    assert [r['epoch'] for r in metrics(ckpt_dir)] == list(
        range(1, EPOCHS + 1))
    assert metrics(ckpt_dir) == metrics(reference)
    assert_same_weights(weights(ckpt_dir), weights(reference))


@pytest.mark.slow
def test_ctrl_c_saves_and_resume_continues_mid_epoch(tiny_dataset, reference,
                                                     tmp_path):
    ckpt_dir = tmp_path / 'ckpt'
    cmd = train_cmd(tiny_dataset, ckpt_dir, '--save_freq', EPOCHS)
    env = dict(script_env(), PYTHONUNBUFFERED='1')
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith(f'[train] epoch {EPOCHS}/{EPOCHS} step 1/'):
                proc.send_signal(signal.SIGINT)
                break
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert 'Traceback' not in err
    saved = checkpoint.resume_point(ckpt_dir)
    assert saved is not None and saved.name.startswith(
        f'epoch_{EPOCHS}_step_') and not saved.name.endswith('_step_0'), err
    assert f'interrupted: saved {saved}' in err

    out = run_script('train.py', *cmd[2:], '--resume').stdout
    assert f'from {saved}' in out
    assert not list(ckpt_dir.glob('epoch_*_step_*'))
    # train_loss/acc of the split epoch include the steps before Ctrl-C
    assert metrics(ckpt_dir) == [r for r in metrics(reference)
                                 if r['epoch'] == EPOCHS]
    assert_same_weights(weights(ckpt_dir), weights(reference))


@pytest.mark.slow
def test_stage_1_resumes_an_existing_checkpoint(tiny_dataset, reference,
                                                tmp_path):
    """``local/train.sh`` (``./run.sh 1``) continues a finished run when
    asked for more epochs, and says so."""
    ckpt_dir = tmp_path / 'ckpt'
    shutil.copytree(reference, ckpt_dir)
    conf = conf_with('demo.yaml', data_dir=str(tiny_dataset),
                     checkpoint_dir=str(ckpt_dir), batch_size=4,
                     cpu_threads=1, device='cpu', save_freq=1)
    conf_path = tmp_path / 'tiny.yaml'
    conf_path.write_text(yaml.safe_dump(conf))
    env = dict(script_env(), VENV=sys.prefix)
    proc = subprocess.run(
        [str(ROOT / 'local' / 'train.sh'), str(conf_path), '1', '--epochs',
         str(EPOCHS + 1)], capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (f'[resume] continuing after epoch {EPOCHS} from '
            f'{ckpt_dir / f"epoch_{EPOCHS}"}') in proc.stdout
    assert [r['epoch'] for r in metrics(ckpt_dir)] == list(
        range(1, EPOCHS + 2))
    assert metrics(ckpt_dir)[:EPOCHS] == metrics(reference)


# A process that replaces ``<dir>/best`` with atomic.write_dir and is
# SIGKILLed at the chosen rename (1: the old version set aside, 2: the new
# one in place).
KILLED_WRITE = '''
import os, signal, sys
from pathlib import Path
from paddlespeech.cls import atomic
folder, kill_at = Path(sys.argv[1]), int(sys.argv[2])
renames, replace = [0], os.replace
def dying_replace(src, dst):
    renames[0] += 1
    if renames[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    replace(src, dst)
os.replace = dying_replace
atomic.write_dir(folder / 'best', lambda d: (d / 'v').write_text('new'))
'''


@pytest.mark.parametrize('kill_at,left', [
    (1, {'.best.tmp', 'best'}),   # before the first rename: old kept
    (2, {'.best.tmp', '.best.old'}),  # between the two: no best/ at all
])
def test_a_write_killed_between_renames_is_recovered(tmp_path, kill_at,
                                                     left):
    from paddlespeech.cls import atomic
    atomic.write_dir(tmp_path / 'best', lambda d: (d / 'v').write_text('old'))
    proc = subprocess.run([sys.executable, '-c', KILLED_WRITE, str(tmp_path),
                           str(kill_at)], env=script_env(), timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert {p.name for p in tmp_path.iterdir()} == left
    (tmp_path / '.epoch_9.tmp').mkdir()  # a write killed midway
    atomic.recover_dirs(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {'best'}
    # the complete new version wins once the old one was set aside
    assert (tmp_path / 'best' / 'v').read_text() == (
        'new' if kill_at == 2 else 'old')


def test_training_start_recovers_best(tiny_dataset, tmp_path):
    """A run whose best/ was caught between the renames: the next start
    puts the new best/ in place before resuming."""
    ckpt = tmp_path / 'ckpt'
    run_script('train.py', *train_args(tiny_dataset, ckpt, '--epochs', 1))
    best = (ckpt / 'best' / 'metrics.json').read_text()
    (ckpt / 'best').rename(ckpt / '.best.tmp')
    shutil.copytree(ckpt / '.best.tmp', ckpt / '.best.old')
    (ckpt / '.best.old' / 'metrics.json').write_text('{"stale": true}')
    out = run_script('train.py', *train_args(tiny_dataset, ckpt, '--epochs', 1,
                                             '--resume')).stdout
    assert 'nothing to train' in out
    assert (ckpt / 'best' / 'metrics.json').read_text() == best
    assert not list(ckpt.glob('.best.*'))
