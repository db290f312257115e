"""The fine-tuning recipe: LR schedules, best checkpoint, early stopping,
frozen backbone, checkpoint averaging, metrics, curves, AMP on CPU and
augmentation in train.py; each test checks the piece's defining property
(by hand where it is a number)."""
import json
import subprocess
import sys
import types

import numpy as np
import paddle
import pytest

from tests.conftest import ROOT, run_script, script_env, train_args
from paddlespeech.cls import checkpoint
from paddlespeech.cls.config import load_config
from paddlespeech.cls.curves import VisualDLLog
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.metrics import (average_precision, macro_f1,
                                      mean_average_precision, top_k_accuracy)
from paddlespeech.cls.models import build_classifier
from paddlespeech.cls.trainer import BestTracker, Trainer, build_lr

pytestmark = pytest.mark.filterwarnings(
    'ignore:When training, we now always track global')
CONSTANT_LR = ('--lr_schedule', 'constant')  # the same for any --epochs
AUGMENT = ('--mixup_alpha', 0.4, '--spec_time_masks', 1, '--spec_time_width',
           5, '--spec_freq_masks', 1, '--spec_freq_width', 4,
           '--time_shift_frames', 3, '--gain_db', 3)


def records(ckpt_dir):
    return [json.loads(line) for line in
            (ckpt_dir / 'metrics.jsonl').read_text().splitlines()]


def weights(path):
    state, _ = checkpoint.load_checkpoint(path)
    return {k: v.numpy() for k, v in state.items()}


# --- units -----------------------------------------------------------------

def test_step_decay_lr_by_hand():
    """Warm-up over 1 epoch (2 steps), then x0.5 every 2 epochs."""
    lr = build_lr(0.1, 'step', epochs=6, steps_per_epoch=2, warmup_epochs=1,
                  step_epochs=2, gamma=0.5)
    seen = []
    for _ in range(12):
        seen.append(lr())
        lr.step()
    np.testing.assert_allclose(
        seen, [0, .05] + [.1] * 4 + [.05] * 4 + [.025] * 2, rtol=1e-12)


def test_best_tracker_early_stopping_and_state():
    t = BestTracker(patience=2)
    improved = [t.update(e, acc) for e, acc in
                enumerate([.5, .7, .7, .6], start=1)]
    assert improved == [True, True, False, False]
    assert (t.epoch, t.score, t.should_stop) == (2, .7, True)
    restored = BestTracker(patience=2)
    restored.load_state_dict(t.state_dict())
    assert restored.state_dict() == t.state_dict() and restored.should_stop
    assert not BestTracker(patience=0).should_stop  # 0: off
    older = BestTracker(patience=2)  # checkpoints before the rename
    older.load_state_dict({'epoch': 2, 'dev_acc': .7, 'bad_evals': 2})
    assert older.state_dict() == t.state_dict()


def test_frozen_backbone_keeps_weights_and_statistics(tiny_dataset,
                                                      tmp_path):
    cfg = load_config(ROOT / 'conf' / 'demo.yaml', {
        'data_dir': str(tiny_dataset), 'checkpoint_dir': str(tmp_path),
        'epochs': 2, 'freeze_backbone_epochs': 1, 'learning_rate': 1e-2,
        'device': 'cpu', 'cpu_threads': 1, 'log_freq': 100})
    trainer = Trainer(cfg)
    model = trainer.model

    def epoch(n):
        before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
        trainer.train_epoch(n)
        after = model.state_dict()
        return {k: not np.array_equal(before[k], after[k].numpy())
                for k in before}

    changed = epoch(1)
    assert changed['fc.weight'] and changed['fc.bias']
    assert not any(v for k, v in changed.items() if k.startswith('backbone'))
    changed = epoch(2)  # (fc_audioset is unused by the classifier)
    assert all(v for k, v in changed.items()
               if k.endswith('.weight') and 'fc_audioset' not in k)


def test_average_checkpoints_is_the_mean(tmp_path):
    meta = {'backbone': 'cnn6', 'num_class': 3, 'label_list': list('abc'),
            'dropout': 0.1, 'feature': {}}
    states = []
    for epoch in (1, 2, 3):
        paddle.seed(epoch)
        model = build_classifier('cnn6', 3, pretrained=False)
        checkpoint.save_checkpoint(tmp_path, epoch, model, meta)
        states.append({k: v.numpy() for k, v in model.state_dict().items()})
    out = checkpoint.save_average(tmp_path, 2)
    assert out == tmp_path / 'avg_2'
    averaged = weights(out)
    assert averaged.keys() == states[0].keys()
    for k, v in averaged.items():
        np.testing.assert_allclose(v, (states[1][k] + states[2][k]) / 2,
                                   rtol=1e-6, atol=1e-7, err_msg=k)
        assert v.dtype == states[0][k].dtype
    assert checkpoint.load_checkpoint(out)[1] == meta


def test_metrics_by_hand():
    scores = np.array([[.1, .5, .2, .1, .05, .05],
                       [.6, .1, .1, .1, .05, .05],
                       [.3, .2, .1, .2, .15, .05]])
    # the true class is ranked 1st, 6th (ties go to the lower index) and 3rd
    assert top_k_accuracy(scores, [1, 5, 3], k=1) == pytest.approx(1 / 3)
    assert top_k_accuracy(scores, [1, 5, 3], k=2) == pytest.approx(1 / 3)
    assert top_k_accuracy(scores, [1, 5, 3], k=5) == pytest.approx(2 / 3)
    assert top_k_accuracy(scores, [1, 5, 3], k=10) == 1.0
    # class 0: TP 1 FP 1 FN 1 -> 1/2; class 1: TP 1 FN 1 -> 2/3; class 2:
    # TP 0 FP 1 -> 0; class 3 never occurs -> left out
    assert macro_f1([0, 1, 0, 2], [0, 1, 1, 0], 4) == pytest.approx(
        (1 / 2 + 2 / 3 + 0) / 3)
    # positives ranked 1st and 3rd: (1/1 + 2/3) / 2
    assert average_precision([.9, .8, .7, .6, .5], [1, 0, 1, 0, 0]) == \
        pytest.approx(5 / 6)
    # a tie is one threshold: R .5 at P 1/2, then R 1 at P 2/3
    assert average_precision([.5, .5, .2], [1, 0, 1]) == pytest.approx(
        .5 * .5 + .5 * 2 / 3)
    assert np.isnan(average_precision([.3, .2], [0, 0]))
    assert mean_average_precision(
        np.array([[.9, .1], [.8, .7], [.2, .3]]),
        np.array([[1, 0], [0, 1], [1, 0]])) == pytest.approx(
            ((1 + 2 / 3) / 2 + 1) / 2)


def test_metrics_match_sklearn():
    sklearn = pytest.importorskip('sklearn.metrics')
    rng = np.random.default_rng(0)
    scores = rng.random((60, 7)).round(1)  # rounding makes ties
    multi_hot = rng.random((60, 7)) < 0.3
    for c in range(7):
        assert average_precision(scores[:, c], multi_hot[:, c]) == \
            pytest.approx(sklearn.average_precision_score(multi_hot[:, c],
                                                          scores[:, c]))
    target = rng.integers(0, 7, 60)
    pred = scores.argmax(axis=1)
    assert macro_f1(pred, target, 7) == pytest.approx(
        sklearn.f1_score(target, pred, average='macro'))
    untied = rng.random((60, 7))
    assert top_k_accuracy(untied, target, 5) == pytest.approx(
        sklearn.top_k_accuracy_score(target, untied, k=5, labels=range(7)))


def test_visualdl_log_writes_scalars(monkeypatch, tmp_path):
    written = []

    class LogWriter:
        def __init__(self, logdir):
            self.logdir = logdir

        def add_scalar(self, tag, value, step):
            written.append((tag, value, step))

        def close(self):
            written.append('closed')

    monkeypatch.setitem(sys.modules, 'visualdl',
                        types.SimpleNamespace(LogWriter=LogWriter))
    log = VisualDLLog(tmp_path)
    log.scalars('dev', {'acc': 0.5}, 3)
    log.close()
    assert written == [('dev/acc', 0.5, 3), 'closed']


def test_visualdl_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'visualdl', None)  # import fails
    with pytest.raises(UserError, match='pip install visualdl'):
        VisualDLLog(tmp_path)


# --- train.py ----------------------------------------------------------------

@pytest.fixture(scope='module')
def augmented_run(tiny_dataset, tmp_path_factory):
    """4 epochs with every augmentation, evaluating each epoch, averaging
    the last 2 checkpoints."""
    ckpt_dir = tmp_path_factory.mktemp('augmented') / 'ckpt'
    run_script('train.py', *train_args(tiny_dataset, ckpt_dir, '--epochs', 4,
                                       '--save_freq', 1, '--average_last', 2,
                                       *CONSTANT_LR, *AUGMENT))
    return ckpt_dir


@pytest.mark.slow
def test_best_checkpoint_is_the_max_dev_acc_epoch(augmented_run, tmp_path):
    history = records(augmented_run)
    assert {'dev_top5', 'dev_macro_f1'} <= set(history[0])
    accs = [r['dev_acc'] for r in history]
    best_epoch = history[int(np.argmax(accs))]['epoch']  # first maximum
    info = json.loads((augmented_run / 'best' / 'metrics.json').read_text())
    assert info == history[best_epoch - 1]
    a, b = weights(augmented_run / 'best'), weights(
        augmented_run / f'epoch_{best_epoch}')
    assert all(np.array_equal(a[k], b[k]) for k in a)
    conf = tmp_path / 'c.yaml'
    conf.write_text(f'checkpoint_dir: {augmented_run}\n')
    located = subprocess.run(
        [sys.executable, str(ROOT / 'local' / 'locate.py'), '--config',
         str(conf), 'checkpoint'], capture_output=True, text=True,
        env=script_env(), check=True).stdout.strip()
    assert located == str(augmented_run / 'best' / 'model.pdparams')


@pytest.mark.slow
def test_run_writes_average_and_curves(augmented_run):
    assert json.loads((augmented_run / 'avg_2' / 'metrics.json').read_text()
                      ) == {'averaged': ['epoch_3', 'epoch_4']}
    assert (augmented_run / 'curves.png').read_bytes().startswith(b'\x89PNG')


@pytest.mark.slow
def test_resume_keeps_best_tracking(tiny_dataset, augmented_run, tmp_path):
    ckpt_dir = tmp_path / 'ckpt'
    args = train_args(tiny_dataset, ckpt_dir, '--save_freq', 1,
                      '--average_last', 2, *CONSTANT_LR, *AUGMENT)
    run_script('train.py', *args, '--epochs', 2)
    run_script('train.py', *args, '--epochs', 4, '--resume')
    assert records(ckpt_dir) == records(augmented_run)
    for name in ('best', 'avg_2'):
        assert (ckpt_dir / name / 'metrics.json').read_text() == (
            augmented_run / name / 'metrics.json').read_text()


@pytest.mark.slow
def test_early_stopping_after_patience_and_on_resume(tiny_dataset, tmp_path):
    """Head-only training at learning rate 0 never improves: with patience
    2 the run stops after evaluations 1 (best), 2 and 3, and a resumed run
    does not train again."""
    ckpt_dir = tmp_path / 'ckpt'
    args = train_args(tiny_dataset, ckpt_dir, '--epochs', 8, '--save_freq', 1,
                      '--learning_rate', 0, '--freeze_backbone_epochs', 8,
                      '--early_stop_patience', 2)
    out = run_script('train.py', *args).stdout
    assert [r['epoch'] for r in records(ckpt_dir)] == [1, 2, 3]
    assert '[early stop] no better dev_acc in 2 evaluations; best: epoch 1' \
        in out
    again = run_script('train.py', *args, '--resume').stdout
    assert 'stopped early before' in again
    assert [r['epoch'] for r in records(ckpt_dir)] == [1, 2, 3]


def test_amp_is_refused_on_cpu(tiny_dataset, tmp_path):
    proc = run_script('train.py', *train_args(tiny_dataset, tmp_path / 'c',
                                              '--amp', 'fp16'), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'error: --amp fp16 needs a GPU, but this run is on cpu; use --amp '
        'off (the default) on CPU']
    assert not (tmp_path / 'c').exists()


@pytest.mark.slow
def test_augmented_recipe_reaches_plain_accuracy(tmp_path):
    """local/compare_augment.py on a smaller data set than its default (the
    default's numbers are in the README): conf/demo.yaml with its augment
    section reaches at least the accuracy of the same run without."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'local' / 'compare_augment.py'),
         '--work_dir', str(tmp_path), '--classes', '2', '--clips_per_fold',
         '2', '--seconds', '0.5', '--cpu_threads', '1'],
        capture_output=True, text=True, env=script_env(), timeout=600)
    print(proc.stdout)
    best = {line.split()[0]: float(line.split()[-1])
            for line in proc.stdout.splitlines()}
    assert set(best) == {'plain', 'augmented'}, proc.stderr[-2000:]
    assert proc.returncode == 0 and best['augmented'] >= best['plain']
