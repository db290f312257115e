"""The 5-fold loop of local/cross_validate.py on a tiny generated dataset."""
import csv
import json
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

from tests.conftest import ROOT, conf_with, script_env
from paddlespeech.cls.datasets import collate
from paddlespeech.cls.datasets.esc50 import ESC50Dataset
from paddlespeech.cls.features import NumpyLogMel
from paddlespeech.cls.models import load_classifier
from paddlespeech.cls.metrics import confusion_matrix, per_class_accuracy


def test_folds_partition_the_dataset(tiny_dataset):
    with open(tiny_dataset / 'meta' / 'esc50.csv') as f:
        fold_of = {r['filename']: int(r['fold']) for r in csv.DictReader(f)}
    for k in range(1, 6):
        train = {p.name for p, _ in ESC50Dataset(tiny_dataset, 'train', k).items}
        dev = {p.name for p, _ in ESC50Dataset(tiny_dataset, 'dev', k).items}
        assert dev == {n for n, f in fold_of.items() if f == k}
        assert not train & dev
        assert train | dev == set(fold_of)


def test_confusion_matrix_by_hand():
    m = confusion_matrix([0, 1, 1, 2, 2, 0], [0, 1, 2, 2, 2, 1], 3)
    np.testing.assert_array_equal(m, [[1, 0, 0], [1, 1, 0], [0, 1, 2]])
    np.testing.assert_allclose(per_class_accuracy(m), [1.0, 0.5, 2 / 3])


def run_cv(conf_path, cv_dir, *extra):
    env = script_env()
    return subprocess.run(
        [sys.executable, str(ROOT / 'local' / 'cross_validate.py'),
         '--config', str(conf_path), '--cv_dir', str(cv_dir),
         '--device', 'cpu', *extra],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_cross_validation_report_and_rerun(tiny_dataset, tmp_path):
    conf = conf_with('demo.yaml', data_dir=str(tiny_dataset), epochs=1,
                     save_freq=1, batch_size=8,
                     checkpoint_dir=str(tmp_path / 'unused'))
    conf_path = tmp_path / 'cv.yaml'
    conf_path.write_text(yaml.safe_dump(conf))
    cv_dir = tmp_path / 'cv'

    first = run_cv(conf_path, cv_dir, '--folds', '1,3')
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert sorted(p.name for p in cv_dir.glob('fold_*')) == ['fold_1',
                                                            'fold_3']
    everything = run_cv(conf_path, cv_dir)
    assert everything.returncode == 0, everything.stderr[-2000:]
    assert everything.stdout.count('done before, skipping') == 2

    with open(tiny_dataset / 'meta' / 'esc50.csv') as f:
        fold_of = {r['filename']: int(r['fold']) for r in csv.DictReader(f)}
    accs = []
    for k in range(1, 6):
        result = json.loads((cv_dir / f'fold_{k}' / 'result.json').read_text())
        names = {p.rsplit('/', 1)[1] for p in result['files']}
        assert names == {n for n, f in fold_of.items() if f == k}
        assert result['accuracy'] == np.mean(
            np.array(result['predicted']) == np.array(result['target']))
        accs.append(result['accuracy'])
    report = (cv_dir / 'RESULTS.md').read_text()
    assert f'{np.mean(accs):.4f} ± {np.std(accs):.4f}' in report
    # scored with the last epoch (chosen without the test fold); best/,
    # chosen on the test fold, only in a column labelled optimistic
    assert result['selection'] == 'final'
    assert result['checkpoint'].endswith('epoch_1')
    assert result['optimistic']['checkpoint'].endswith('best')
    assert "scored with the last epoch's checkpoint" in report
    header = next(line for line in report.splitlines()
                  if line.startswith('| fold |'))
    assert header.endswith('| best/ on the test fold (optimistic: chosen on '
                           'the clips it is scored on) |')
    assert report.count('\n| ') >= 5 + 3  # a row per fold and per class
    png = (cv_dir / 'confusion.png').read_bytes()
    assert png.startswith(b'\x89PNG')


@pytest.mark.slow
def test_best_chosen_on_a_validation_split(tiny_dataset, tmp_path):
    """``--val_fraction``: best/ is chosen on held-out training clips, so it
    is what the fold is scored with, and nothing is labelled optimistic."""
    conf = conf_with('demo.yaml', data_dir=str(tiny_dataset), epochs=2,
                     save_freq=1, batch_size=8,
                     checkpoint_dir=str(tmp_path / 'unused'))
    conf_path = tmp_path / 'cv.yaml'
    conf_path.write_text(yaml.safe_dump(conf))
    proc = run_cv(conf_path, tmp_path / 'cv', '--folds', '2',
                  '--val_fraction', '0.25')
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / 'cv' / 'fold_2' / 'result.json')
                        .read_text())
    assert result['selection'] == 'validation' and 'optimistic' not in result
    assert result['checkpoint'].endswith('best')
    best = json.loads((tmp_path / 'cv' / 'fold_2' / 'checkpoint' / 'best' /
                       'metrics.json').read_text())
    model, _, feature = load_classifier(result['checkpoint'])
    val = ESC50Dataset(tiny_dataset, 'val', 2, feature, NumpyLogMel(feature),
                       val_fraction=0.25, seed=conf['train']['seed'])
    x, y = collate([val[i] for i in range(len(val))], feature.floor_db)
    with paddle.no_grad():
        predicted = model(paddle.to_tensor(x)).numpy().argmax(axis=1)
    assert best['dev_acc'] == pytest.approx((predicted == y).mean())
    report = (tmp_path / 'cv' / 'RESULTS.md').read_text()
    assert 'chosen on a validation split' in report
    assert 'optimistic' not in report
