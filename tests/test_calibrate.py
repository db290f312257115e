"""Per-class thresholds (calibration.py, calibrate.py, detect.py
--threshold auto): the choice against hand-worked curves, thresholds that
meet the target on the clips they were chosen on by an independent count
over a real model's scores, stored in and read back from a checkpoint and
an export, detect.py using them per class, and the refusal of the
model's training clips."""
import csv
import shutil

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import make_synthetic, run_script
from paddlespeech.cls.artifact import read_meta
from paddlespeech.cls.calibration import (pick_threshold, store_thresholds,
                                          training_clips)
from paddlespeech.cls.checkpoint import load_checkpoint, same_model
from paddlespeech.cls.events import class_thresholds
from paddlespeech.cls.metrics import precision_recall_curve

TARGET = 0.75


def read_rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------- the choice

def test_curve_and_lowest_threshold_by_hand():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.6]
    positive = [1, 1, 0, 1, 0, 0]
    t, p, r = precision_recall_curve(scores, positive)
    np.testing.assert_allclose(t, [0.9, 0.8, 0.7, 0.6, 0.5])
    # score >= 0.6 takes 5 clips (0.6 twice), 3 of them positive
    np.testing.assert_allclose(p, [1, 1, 2 / 3, 3 / 5, 3 / 6])
    np.testing.assert_allclose(r, [1 / 3, 2 / 3, 2 / 3, 1, 1])
    # precision 0.6 is met at 0.6 (not at 0.7 above it): the lowest such,
    # halfway down to the next score
    assert pick_threshold(scores, positive, target_precision=0.6) == (
        pytest.approx(0.55), pytest.approx(0.6), pytest.approx(1.0))
    assert pick_threshold(scores, positive, target_precision=0.7)[0] == \
        pytest.approx(0.75)
    # recall 0.6: the highest threshold keeping 2 of 3 positives
    assert pick_threshold(scores, positive, target_recall=0.6)[0] == \
        pytest.approx(0.75)
    assert pick_threshold(scores, positive, target_recall=1.0)[0] == \
        pytest.approx(0.55)
    # the best clip is a negative: precision 1 is never reached
    assert pick_threshold([0.9, 0.1], [0, 1], target_precision=1.0)[0] \
        is None
    assert pick_threshold([0.9, 0.1], [0, 0], target_precision=0.5)[0] \
        is None


def test_class_thresholds_resolution():
    labels = ['a', 'b', 'c']
    on, off = class_thresholds(None, None, labels, {'a': 0.2, 'b': None})
    np.testing.assert_array_equal(on, [0.2, np.inf, 0.5])  # c: default
    on, off = class_thresholds(None, None, labels, None)
    np.testing.assert_array_equal(on, [0.5] * 3)
    on, off = class_thresholds(0.7, 0.4, labels, {'a': 0.2})
    np.testing.assert_array_equal(on, [0.7] * 3)
    np.testing.assert_array_equal(off, [0.4] * 3)
    on, off = class_thresholds('auto', 0.4, labels, {'a': 0.2, 'b': 0.6})
    np.testing.assert_array_equal(off, [0.2, 0.4, 0.4])  # capped at on
    with pytest.raises(Exception, match='no calibrated thresholds'):
        class_thresholds('auto', None, labels, None)


# ------------------------------------------------------- on a real model

@pytest.fixture(scope='module')
def held_out(tmp_path_factory):
    """Clips of the trained model's 3 classes it never heard."""
    return make_synthetic(tmp_path_factory.mktemp('held_out'), classes=3,
                          clips_per_fold=4, folds=2, seconds=0.5, seed=7)


@pytest.fixture
def checkpoint(trained_checkpoint, tmp_path):
    """A copy of the session's checkpoint, free to be calibrated."""
    out = tmp_path / 'ckpt' / 'epoch_2'
    shutil.copytree(trained_checkpoint.parent, out)
    return out / 'model.pdparams'


def independent_scores(model, paths):
    """Each clip's windows scored one by one and averaged by the audio in
    them, without prediction.predict_files."""
    windows, out = model.windowing(), []
    for path in paths:
        got = list(windows.windows(path, model.feature.sample_rate,
                                   model.feature.n_fft))
        scores = model.scores(np.stack([w for w, _ in got]))
        n = np.array([n for _, n in got], np.float64)
        out.append((scores * n[:, None]).sum(0) / n.sum())
    return np.array(out)


def test_thresholds_meet_the_target_and_are_the_lowest(checkpoint, held_out,
                                                       tmp_path):
    out = tmp_path / 'cal'
    proc = run_script('calibrate.py', '--checkpoint', checkpoint, '--data',
                      held_out, '--target_precision', TARGET, '--output_dir',
                      out, '--device', 'cpu', '--cpu_threads', 1)
    assert (out / 'pr_curves.png').stat().st_size > 1000
    rows = read_rows(out / 'thresholds.csv')
    assert list(rows[0]) == ['class', 'threshold', 'precision', 'recall',
                             'support']
    from paddlespeech.cls import open_model
    from paddlespeech.cls.datasets import load_table
    from paddlespeech.cls.config import load_config
    cfg = load_config(overrides={'data_dir': str(held_out)})
    table = load_table(cfg.data, cfg.train)
    model = open_model(checkpoint=checkpoint, device='cpu')
    assert [r['class'] for r in rows] == model.labels
    scores = independent_scores(model, table.paths)
    target = np.array([t[0] for t in table.targets])
    # what calibrate stored is what the model reads back
    stored = model.meta.thresholds
    assert stored == load_checkpoint(checkpoint)[1]['thresholds']
    met = lowered = 0
    for c, r in enumerate(rows):
        s, pos = scores[:, c], target == c
        assert int(r['support']) == pos.sum() == 8
        if not r['threshold']:
            assert stored[r['class']] is None
            # no cut of the distinct scores reaches the target
            for t in np.unique(s):
                assert (pos & (s >= t)).sum() < TARGET * (s >= t).sum()
            continue
        t = float(r['threshold'])
        assert stored[r['class']] == t
        chosen = s >= t
        tp = (pos & chosen).sum()
        assert tp >= TARGET * chosen.sum() - 1e-9
        assert float(r['precision']) == pytest.approx(tp / chosen.sum())
        assert float(r['recall']) == pytest.approx(tp / pos.sum())
        met += 1
        lower = s[s < t]
        if len(lower):  # one step lower: the next score in misses
            step = s >= lower.max()
            assert (pos & step).sum() < TARGET * step.sum()
            lowered += 1
    assert met >= 1, proc.stdout + proc.stderr
    assert lowered >= 1, rows


def test_thresholds_go_with_the_export(checkpoint, held_out, tiny_dataset,
                                       tmp_path):
    labels = load_checkpoint(checkpoint)[1]['label_list']
    thresholds = {labels[0]: 0.25, labels[1]: None, labels[2]: 0.5}
    store_thresholds(thresholds, checkpoint=checkpoint)
    state, meta = load_checkpoint(checkpoint)
    assert meta['thresholds'] == thresholds and 'trained_on' in meta
    export = tmp_path / 'export'
    run_script('export_model.py', '--checkpoint', checkpoint, '--output_dir',
               export)
    assert read_meta(export).thresholds == thresholds
    # calibrating the export rewrites model.json, and only that
    run_script('calibrate.py', '--model_dir', export, '--data', held_out,
               '--target_recall', 0.5, '--output_dir', tmp_path / 'cal',
               '--device', 'cpu', '--cpu_threads', 1)
    rows = read_rows(tmp_path / 'cal' / 'thresholds.csv')
    got = read_meta(export).thresholds
    assert got == {r['class']: float(r['threshold']) for r in rows}
    assert got != thresholds
    assert all(float(r['recall']) >= 0.5 for r in rows)
    from paddlespeech.cls import open_model
    assert open_model(model_dir=export, device='cpu').meta.thresholds == got
    # the service tells its clients (/v1/model), from model.json alone
    from paddlespeech.cls.serving.service import Service
    assert Service(export, None).model_info()['thresholds'] == got
    assert load_checkpoint(checkpoint)[1]['thresholds'] == thresholds
    # the export's model.json leads to its checkpoint's training clips
    proc = run_script('calibrate.py', '--model_dir', export, '--data',
                      tiny_dataset, '--output_dir', tmp_path / 'cal2',
                      check=False)
    assert proc.returncode == 2 and '24 of 30 clips' in proc.stderr


def test_training_clips_refused(checkpoint, trained_checkpoint, tiny_dataset,
                                tmp_path):
    meta = load_checkpoint(checkpoint)[1]
    record = meta['trained_on']
    assert record['split'] == 1 and record['folds'] == [2, 3, 4, 5]
    assert record['clips'] == 24  # 3 classes x 2 clips x 4 folds
    args = ('--checkpoint', checkpoint, '--data', tiny_dataset,
            '--output_dir', tmp_path / 'cal', '--device', 'cpu')
    proc = run_script('calibrate.py', *args, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and '24 of 30 clips' in lines[0] and \
        '--folds 1' in lines[0], proc.stderr
    assert 'thresholds' not in load_checkpoint(checkpoint)[1]
    proc = run_script('calibrate.py', *args, '--folds', 3, check=False)
    assert proc.returncode == 2 and '6 of 6 clips' in proc.stderr
    # the dev fold is fine, and the training folds only when allowed
    run_script('calibrate.py', *args, '--folds', 1)
    proc = run_script('calibrate.py', *args, '--allow_training_data',
                      'true')
    assert 'warning: 24 of 30 clips' in proc.stderr
    # the record lists exactly the clips of the training folds
    from paddlespeech.cls.datasets import load_table
    from paddlespeech.cls.config import load_config
    cfg = load_config(overrides={'data_dir': str(tiny_dataset)})
    table = load_table(cfg.data, cfg.train)
    mask = training_clips(record, table.paths)
    np.testing.assert_array_equal(mask, np.array(table.folds) != 1)
    # calibrating does not make the checkpoint another model to resume
    assert same_model(load_checkpoint(checkpoint)[1],
                      load_checkpoint(trained_checkpoint)[1])


# ---------------------------------------------------- detect.py --threshold

def test_detect_uses_per_class_thresholds(checkpoint, tiny_dataset,
                                          tmp_path):
    audio = sorted((tiny_dataset / 'audio').glob('1-*.wav'))
    waves = [sf.read(p)[0] for p in audio[::2]]  # one clip per class
    wav = tmp_path / 'rec.wav'
    sf.write(wav, np.concatenate(waves), 44100)
    common = ('--checkpoint', checkpoint, '--wav', wav, '--device', 'cpu',
              '--plot', 'false', '--hop_seconds', 0.25)

    def events(*extra):
        out = tmp_path / f'det{len(list(tmp_path.iterdir()))}'
        run_script('detect.py', *common, '--output_dir', out, *extra)
        got = read_rows(out / 'rec.events.csv')
        return out, [(r['label'], float(r['score'])) for r in got]

    out, _ = events('--threshold', 1.0)
    npz = np.load(out / 'rec.scores.npz')
    labels, scores = [str(n) for n in npz['labels']], npz['scores']
    top = scores.max(axis=0)
    a = int(np.argmin(top))  # the class least sure of itself anywhere
    b = int(np.argmax(top))
    assert top[a] < top[b]
    # a: just under its best score; the others: never
    thresholds = {labels[a]: float(top[a]) - 1e-4, labels[b]: None,
                  labels[3 - a - b]: None}
    # no thresholds yet: auto is refused in one line, the default is 0.5
    proc = run_script('detect.py', *common, '--output_dir', tmp_path / 'x',
                      '--threshold', 'auto', check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) \
        == 1 and 'no calibrated thresholds' in proc.stderr
    _, default = events()
    assert default == events('--threshold', 0.5)[1]
    store_thresholds(thresholds, checkpoint=checkpoint)
    # the global threshold of a's best score lets no event of a through,
    # nor does any other; a's own threshold does, alone
    _, got = events('--threshold', float(top[a]) + 1e-3)
    assert labels[a] not in {name for name, _ in got}
    _, auto = events('--threshold', 'auto')
    assert auto and {name for name, _ in auto} == {labels[a]}
    assert max(s for _, s in auto) == pytest.approx(top[a], abs=1e-4)
    # auto is now the default
    assert events()[1] == auto
