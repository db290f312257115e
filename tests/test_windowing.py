"""One windowing rule (audio.Windowing) for training's evaluation and every
prediction road: the accuracy training reports is the accuracy predict.py
and the export give on the same clips."""
import json
import re

import numpy as np
import paddle
import pytest
import soundfile as sf

from tests.conftest import ROOT, make_synthetic, run_script
from paddlespeech.cls.audio import Windowing
from paddlespeech.cls.config import load_config
from paddlespeech.cls.datasets import ClipDataset, load_table
from paddlespeech.cls.features import FeatureConfig, FrontEnd
from paddlespeech.cls.models import build_classifier
from paddlespeech.cls.prediction import predict_files
from paddlespeech.cls.task import Task
from paddlespeech.cls.datasets.loaders import window_loader
from paddlespeech.cls.evaluation import evaluate

SR = 32000


def _noise(path, seconds, seed):
    rng = np.random.default_rng(seed)
    sf.write(path, 0.3 * rng.standard_normal(int(seconds * SR)), SR)
    return path


# ---------------------------------------------------------------- the rule

def test_windows_are_padded_to_the_clip_length_and_weighed_by_audio(
        tmp_path):
    path = _noise(tmp_path / 'a.wav', 2.5, 0)
    wav, _ = sf.read(path, dtype='float32')
    got = list(Windowing(1.0).windows(path, SR))
    assert [n for _, n in got] == [32000, 32000, 16000]
    assert all(len(w) == 32000 for w, _ in got)
    np.testing.assert_array_equal(got[2][0][:16000], wav[64000:])
    assert not got[2][0][16000:].any()
    # unpadded: only up to one FFT frame
    short = _noise(tmp_path / 'b.wav', 0.01, 1)
    (w, n), = Windowing(1.0, pad=False).windows(short, SR, 1024)
    assert (len(w), n) == (1024, 320)


def test_the_model_s_clip_length_is_the_default_window():
    assert Windowing.of_model(1.0) == Windowing(1.0, None, True)
    assert Windowing.of_model(1.0, 3.0, 0.5) == Windowing(3.0, 0.5, True)
    # a model that records no clip length (upstream): as upstream scores
    assert Windowing.of_model(None) == Windowing(10.0, None, False)


@pytest.fixture(scope='module')
def model():
    paddle.seed(0)
    m = build_classifier('cnn6', 3, 0.0, False, None, Task())
    m.eval()
    return m


def test_a_clip_scores_the_same_alone_and_beside_longer_clips(model,
                                                               tmp_path):
    feature = FeatureConfig()
    frontend = FrontEnd(feature, 'numpy')

    @paddle.no_grad()
    def score(waves):
        return model.probabilities(frontend(waves)).numpy()

    short = _noise(tmp_path / 'short.wav', 0.4, 0)
    longer = [_noise(tmp_path / f'long{i}.wav', 2.7 + i, i + 1)
              for i in range(2)]
    rule = Windowing(1.0)
    alone, = predict_files([short], feature, score, rule, batch_size=4)
    mixed = list(predict_files([longer[0], short, longer[1]], feature, score,
                               rule, batch_size=4))
    assert mixed[1][0] == short
    np.testing.assert_allclose(mixed[1][1], alone[1], rtol=0, atol=1e-6)
    # training's evaluation of the same clips: the same scores
    clips = ClipDataset([(p, 0) for p in (longer[0], short, longer[1])],
                        ['a', 'b', 'c'], False, feature)
    task = Task()
    _, logits, _ = evaluate(model, window_loader(clips, rule, frontend, 4),
                            task)
    probs = np.exp(logits)  # pooled probabilities, as logits (softmax)
    for got, (_, want, _) in zip(probs, mixed):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    one = ClipDataset([(short, 0)], ['a', 'b', 'c'], False, feature)
    _, logits_one, _ = evaluate(model, window_loader(one, rule, frontend, 4),
                                task)
    np.testing.assert_allclose(np.exp(logits_one[0]), probs[1], atol=1e-6)


# ------------------------------------------------ training == every tool

def _blocks(text):
    """``{path: top label}`` from the seed's output blocks (top_k 1)."""
    lines = text.strip().splitlines()
    return {lines[i][1:-1]: lines[i + 1].rsplit(': ', 1)[0]
            for i in range(len(lines)) if lines[i].startswith('[')}


@pytest.mark.slow
def test_training_accuracy_is_what_predict_and_the_export_give(tmp_path):
    """Mixed-length clips (0.15-2.6 s) and 1 s training crops: the dev
    accuracy training prints, counted again from predict.py's and
    deploy/predict.py's output for the checkpoint training scored."""
    data = make_synthetic(tmp_path / 'data', classes=4, clips_per_fold=3,
                          folds=3, seconds=2.6, layout='folder')
    rng = np.random.default_rng(0)
    truth = {}
    for path in sorted(data.rglob('*.wav')):
        wav, sr = sf.read(path, dtype='float32')
        seconds = float(rng.uniform(0.15, 2.6))
        sf.write(path, wav[:int(seconds * sr)], sr)
        truth[str(path)] = path.parent.name
    ckpt = tmp_path / 'ckpt'
    out = run_script(
        'train.py', '--config', ROOT / 'conf' / 'demo.yaml', '--data_dir',
        data, '--dataset', 'auto', '--checkpoint_dir', ckpt, '--epochs', 2,
        '--save_freq', 1, '--clip_seconds', 1.0, '--num_folds', 3,
        '--batch_size', 8, '--device', 'cpu', '--cpu_threads', 1).stdout
    printed = {int(e): float(a) for e, a in
               re.findall(r'\[eval\] epoch (\d+): dev_acc ([0-9.]+)', out)}
    records = [json.loads(line) for line in
               (ckpt / 'metrics.jsonl').read_text().splitlines()]
    assert set(printed) == {1, 2}, out
    cfg = load_config(None, {
        'data_dir': str(data), 'num_folds': 3, 'checkpoint_dir': str(ckpt)})
    table = load_table(cfg.data, cfg.train)
    dev = [str(p) for p, _ in table.items({1})]
    assert len(dev) >= 8 and 0 < min(printed.values())
    export = tmp_path / 'export'
    run_script('export_model.py', '--checkpoint', ckpt / 'epoch_1',
               '--output_dir', export)
    for epoch in (1, 2):
        pred = _blocks(run_script(
            'predict.py', '--checkpoint', ckpt / f'epoch_{epoch}', '--wav',
            *dev, '--top_k', 1, '--device', 'cpu').stdout)
        acc = np.mean([pred[p] == truth[p] for p in dev])
        assert round(acc, 6) == records[epoch - 1]['dev_acc']
        assert round(acc, 4) == printed[epoch]
        if epoch == 1:
            deployed = _blocks(run_script(
                'deploy/predict.py', '--model_dir', export, '--wav', *dev,
                '--top_k', 1, '--device', 'cpu').stdout)
            assert deployed == pred
