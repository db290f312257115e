"""Files and habits of upstream PaddleSpeech users: plain state-dict
checkpoints, exports without model.json, ESC-50 label names, and a
stratified validation split for an honest best/."""
import csv

import numpy as np
import paddle
import pytest
from paddle.static import InputSpec

from tests.conftest import run_script
from paddlespeech.cls.datasets import (ESC50_LABELS, ESC50Dataset,
                                       read_meta)
from paddlespeech.cls.datasets.clips import holdout
from paddlespeech.cls.datasets.esc50 import ESC50_CATEGORIES
from paddlespeech.cls.artifact import graph_activation
from paddlespeech.cls.features import FeatureConfig, NumpyLogMel
from paddlespeech.cls.inference import Predictor
from paddlespeech.cls.models import build_classifier, load_classifier
from tests.test_recipe import parse_blocks

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')


def test_esc50_label_names_are_paddleaudios(tmp_path):
    paddleaudio = pytest.importorskip('paddleaudio.datasets')
    (tmp_path / 'meta').mkdir()
    with open(tmp_path / 'meta' / 'esc50.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['filename', 'fold', 'target', 'category'])
        w.writerows([f'{t}.wav', 1 + t % 5, t, c]
                    for t, c in enumerate(ESC50_CATEGORIES))
    _, labels = read_meta(tmp_path)
    assert labels == paddleaudio.ESC50.label_list
    assert labels[7] == 'Insects (flying)' and labels[29] == \
        'Drinking, sipping'


def test_other_datasets_keep_their_names(tiny_dataset):
    _, labels = read_meta(tiny_dataset)
    assert labels == ['Low hum', 'High beeps', 'White noise']


@pytest.fixture(scope='module')
def upstream_checkpoint(trained_checkpoint, tmp_path_factory):
    """trained_checkpoint as upstream's train.py saves it: the plain state
    dict, no _meta; and a label file with its class names."""
    state = paddle.load(str(trained_checkpoint))
    del state['_meta']
    folder = tmp_path_factory.mktemp('upstream')
    paddle.save(state, str(folder / 'model.pdparams'))
    _, labels, _ = load_classifier(trained_checkpoint)
    (folder / 'labels.txt').write_text('\n'.join(labels) + '\n')
    return folder / 'model.pdparams', folder / 'labels.txt'


def test_upstream_checkpoint_predicts_like_its_own(upstream_checkpoint,
                                                   trained_checkpoint,
                                                   tiny_dataset):
    path, label_file = upstream_checkpoint
    clip = sorted((tiny_dataset / 'audio').glob('1-*.wav'))[0]
    common = ('--wav', clip, '--top_k', 3, '--device', 'cpu')
    ours = run_script('predict.py', '--checkpoint', trained_checkpoint,
                      *common)
    theirs = run_script('predict.py', '--checkpoint', path, '--label_file',
                        label_file, *common)
    assert parse_blocks(theirs.stdout) == parse_blocks(ours.stdout)
    note = [line for line in theirs.stderr.splitlines() if 'note:' in line]
    assert len(note) == 1 and 'read as cnn6 (from its tensor shapes)' in \
        note[0] and '3 classes named from' in note[0]
    refused = run_script('predict.py', '--checkpoint', path, *common,
                         check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].endswith(
        'pass --label_file (one class name per line, in class order)')


def test_fifty_classes_are_read_as_esc50(tmp_path, capsys):
    paddle.seed(3)
    model = build_classifier('cnn10', 50)
    paddle.save(model.state_dict(), str(tmp_path / 'model.pdparams'))
    loaded, labels, feature = load_classifier(tmp_path)
    assert labels == ESC50_LABELS and feature == FeatureConfig()
    assert not loaded.task.multi_label
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name].numpy(),
                                      value.numpy(), err_msg=name)
    assert 'read as cnn10' in capsys.readouterr().err


def test_upstream_export_deploys_with_softmax(tmp_path, capsys):
    """Upstream's export_model.py saves SoundClassifier itself: log-mel in,
    logits out, no model.json."""
    paddle.seed(5)
    model = build_classifier('cnn6', 50)
    model.eval()
    static = paddle.jit.to_static(
        model, input_spec=[InputSpec([None, None, 64], 'float32')],
        full_graph=True)
    paddle.jit.save(static, str(tmp_path / 'inference'))
    assert not (tmp_path / 'model.json').exists()
    assert graph_activation(tmp_path / 'inference.json') is None

    rng = np.random.default_rng(0)
    waves = [(0.3 * rng.standard_normal(16000)).astype('float32')
             for _ in range(2)]
    predictor = Predictor(tmp_path, 'cpu', 1)
    assert 'softmax applied to its logits' in capsys.readouterr().err
    assert predictor.labels == ESC50_LABELS
    feats = np.stack([NumpyLogMel(FeatureConfig())(w) for w in waves])
    with paddle.no_grad():
        logits = model(paddle.to_tensor(feats)).numpy().astype(np.float64)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predictor(waves), expected, atol=1e-5)


def test_own_export_ends_in_its_activation(trained_checkpoint, tmp_path):
    from paddlespeech.cls.export import export
    out = export(trained_checkpoint, tmp_path / 'export')
    assert graph_activation(out / 'inference.json') == 'softmax'


def test_holdout_is_stratified_and_seeded():
    labels = [0] * 10 + [1] * 4 + [2] * 1
    held = holdout(labels, 0.25, seed=0)
    # per class: round(2.5) = 2 of 10, round(1.0) = 1 of 4, none of 1
    assert sorted(labels[i] for i in held) == [0, 0, 1]
    assert holdout(labels, 0.25, seed=0) == held
    assert holdout(labels, 0.25, seed=1) != held
    multi = np.eye(3)[[0, 0, 1, 1]] + np.eye(3)[[1, 1, 2, 2]]
    assert len(holdout(multi, 0.5, seed=0)) == 2  # one of each label set


def test_validation_split_leaves_the_dev_fold_alone(tiny_dataset):
    feature = FeatureConfig()
    train = ESC50Dataset(tiny_dataset, 'train', 1, feature, val_fraction=0.25)
    val = ESC50Dataset(tiny_dataset, 'val', 1, feature, val_fraction=0.25)
    dev = ESC50Dataset(tiny_dataset, 'dev', 1, feature)
    names = [{p.name for p, _ in ds.items} for ds in (train, val, dev)]
    assert not names[0] & names[1] and not names[2] & (names[0] | names[1])
    # 8 training clips per class, a quarter of each held out
    assert sorted(y for _, y in val.items) == [0, 0, 1, 1, 2, 2]
    assert len(train) == 18
