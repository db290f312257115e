"""Multi-label data: multi-hot labels from a csv listing a clip on several
rows, training with BCE and dev mAP, sigmoid scores in predict.py and in
the exported graph, and the mAP report of cross-validation."""
import csv
import json
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml
from sklearn.metrics import average_precision_score  # librosa needs sklearn

from tests.conftest import (ROOT, conf_with, make_synthetic, run_script,
                            script_env, train_args)
from paddlespeech.cls.audio import load_audio
from paddlespeech.cls.augment import mixup
from paddlespeech.cls.checkpoint import load_checkpoint
from paddlespeech.cls.datasets import collate
from paddlespeech.cls.datasets.esc50 import (DatasetError, ESC50Dataset,
                                             read_meta)
from paddlespeech.cls.features import FeatureConfig, NumpyLogMel
from paddlespeech.cls.inference import Predictor
from paddlespeech.cls.models import load_classifier
from paddlespeech.cls.task import Task

CLASSES = 3


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """3 classes x 1 clip + 2 two-class mixtures per fold, 4 folds, 0.5 s."""
    return make_synthetic(tmp_path_factory.mktemp('multilabel'),
                          classes=CLASSES, clips_per_fold=1, folds=4,
                          seconds=0.5, mixtures_per_fold=2)


@pytest.fixture(scope='module')
def run(dataset, tmp_path_factory):
    """2 epochs with mixup, evaluating each: the checkpoint directory."""
    ckpt_dir = tmp_path_factory.mktemp('multilabel_run') / 'ckpt'
    out = run_script('train.py', *train_args(
        dataset, ckpt_dir, '--epochs', 2, '--save_freq', 1,
        '--mixup_alpha', 0.4)).stdout
    assert '[eval] epoch 2: dev_map ' in out and ' acc ' not in out
    return ckpt_dir


def labels_by_file(dataset):
    with open(dataset / 'meta' / 'esc50.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    found = {}
    for r in rows:
        found.setdefault(r['filename'], (int(r['fold']), set()))[1].add(
            int(r['target']))
    return found


def dev_scores(checkpoint, dataset):
    """Logits of ``checkpoint`` on fold 1 and the multi-hot targets."""
    model, _, feature = load_classifier(checkpoint)
    dev = ESC50Dataset(dataset, 'dev', 1, feature, NumpyLogMel(feature))
    x, y = collate([dev[i] for i in range(len(dev))], feature.floor_db)
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy(), y


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_dataset_yields_multi_hot_vectors(dataset, tiny_dataset):
    expected = labels_by_file(dataset)
    assert any(len(t) > 1 for _, t in expected.values())
    feature = FeatureConfig()
    ds = ESC50Dataset(dataset, 'dev', 1, feature, NumpyLogMel(feature))
    assert ds.multi_label
    assert sorted(p.name for p, _ in ds.items) == sorted(
        name for name, (fold, _) in expected.items() if fold == 1)
    for i, (path, _) in enumerate(ds.items):
        x, y = ds[i]
        assert y.dtype == np.float32 and y.shape == (CLASSES,)
        assert set(np.unique(y)) <= {0.0, 1.0}
        assert set(np.flatnonzero(y)) == expected[path.name][1]
        assert ds[i][0] is x  # features cached as for single labels
    _, batch_y = collate([ds[0], ds[1]], feature.floor_db)
    assert batch_y.dtype == np.float32 and batch_y.shape == (2, CLASSES)

    single = ESC50Dataset(tiny_dataset, 'dev', 1, feature)
    assert not single.multi_label
    assert isinstance(single.items[0][1], int)


def test_mixup_mixes_multi_hot_targets():
    y = paddle.to_tensor([[1, 0, 1], [0, 1, 0]], dtype='float32')
    _, targets, _, _ = mixup(paddle.zeros([2, 4, 64]),
                             Task(multi_label=True).targets(y, CLASSES),
                             None, lam=[0.25], perm=[1, 0])
    np.testing.assert_allclose(targets.numpy(), [[.25, .75, .25],
                                                 [.75, .25, .75]])


def test_clip_in_two_folds_is_an_error(tmp_path):
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'esc50.csv').write_text(
        'filename,fold,target,category\n'
        'a.wav,1,0,dog\nb.wav,1,1,cat\na.wav,2,1,cat\n')
    message = (f'{tmp_path}/meta/esc50.csv: a.wav is listed in fold 1 and '
               f'in fold 2; a clip belongs to one fold')
    with pytest.raises(DatasetError) as e:
        read_meta(tmp_path)
    assert str(e.value).startswith(message)
    with pytest.raises(DatasetError, match='a.wav is listed in fold 1'):
        ESC50Dataset(tmp_path, 'train', 1)


def test_training_reports_dev_map(run, dataset):
    history = [json.loads(line) for line in
               (run / 'metrics.jsonl').read_text().splitlines()]
    assert [set(r) for r in history] == [
        {'epoch', 'dev_map', 'dev_loss', 'train_loss'}] * 2
    _, meta = load_checkpoint(run / 'epoch_2')
    assert meta['multi_label'] is True

    logits, y = dev_scores(run / 'epoch_2', dataset)
    assert history[1]['dev_map'] == pytest.approx(
        average_precision_score(y, logits, average='macro'), abs=2e-6)
    bce = np.logaddexp(0, logits) - y * logits
    assert history[1]['dev_loss'] == pytest.approx(bce.mean(), rel=1e-4)

    maps = [r['dev_map'] for r in history]
    best = json.loads((run / 'best' / 'metrics.json').read_text())
    assert best == history[int(np.argmax(maps))]


def test_predict_and_export_give_sigmoid_scores(run, dataset, tmp_path):
    clip = next((dataset / 'audio').glob('1-*-M-*.wav'))
    model, labels, feature = load_classifier(run / 'epoch_2')
    wav = load_audio(clip, feature.sample_rate, min_samples=feature.n_fft)
    with paddle.no_grad():
        logits = model(paddle.to_tensor(NumpyLogMel(feature)(wav)[None]))
    expected = sigmoid(logits.numpy()[0].astype(np.float64))

    out = run_script('predict.py', '--checkpoint', run / 'epoch_2', '--wav',
                     clip, '--top_k', CLASSES, '--device', 'cpu').stdout
    lines = out.strip().splitlines()
    assert lines[0] == f'[{clip}]'
    printed = dict(line.rsplit(': ', 1) for line in lines[1:])
    scores = np.array([float(printed[name]) for name in labels])
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    softmax = np.exp(logits.numpy()[0]) / np.exp(logits.numpy()[0]).sum()
    assert not np.allclose(scores, softmax, atol=1e-3)

    export_dir = tmp_path / 'export'
    run_script('export_model.py', '--checkpoint', run / 'epoch_2',
               '--output_dir', export_dir)
    assert json.loads((export_dir / 'model.json').read_text())[
        'multi_label'] is True
    deployed = Predictor(export_dir, 'cpu', 1)([wav])[0]
    np.testing.assert_allclose(deployed, expected, atol=1e-5)


@pytest.mark.slow
def test_cross_validation_reports_map(dataset, tmp_path):
    conf = conf_with('demo.yaml', data_dir=str(dataset), epochs=1,
                     save_freq=1, batch_size=8, cpu_threads=1,
                     checkpoint_dir=str(tmp_path / 'unused'))
    conf_path = tmp_path / 'cv.yaml'
    conf_path.write_text(yaml.safe_dump(conf))
    cv_dir = tmp_path / 'cv'
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'local' / 'cross_validate.py'),
         '--config', str(conf_path), '--cv_dir', str(cv_dir), '--device',
         'cpu', '--folds', '1'],
        capture_output=True, text=True, env=script_env(), cwd=ROOT,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((cv_dir / 'fold_1' / 'result.json').read_text())
    logits, y = dev_scores(result['checkpoint'], dataset)
    assert result['map'] == pytest.approx(
        average_precision_score(y, logits, average='macro'), abs=1e-6)
    assert f'[cv] fold 1: mAP {result["map"]:.4f}' in proc.stdout
    report = (cv_dir / 'RESULTS.md').read_text()
    assert f'| 1 | 5 | {result["map"]:.4f} |' in report
    assert f'Mean mAP: {result["map"]:.4f} ± 0.0000' in report
    assert 'no per-class accuracy or confusion matrix' in report
    assert not (cv_dir / 'confusion.png').exists()
