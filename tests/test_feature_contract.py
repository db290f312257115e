"""One feature contract from checkpoint to deployment.

A CNN6 classifier with random weights (no training) is saved the way
train.py saves it and exported twice: the default graph that takes log-mel
features, and ``--include_frontend`` (raw 32 kHz waveform in). Checked:

* dynamic model (numpy and paddle front ends) == feature graph == waveform
  graph through deploy/predict.py's ``Predictor``, oneDNN on and off,
  batches of several clips and of one, clips of different lengths: same
  top-1, probabilities within 1e-4;
* the feature configuration and the label list are stored in the
  checkpoint and in model.json;
* predict.py and deploy/predict.py refuse contradicting front-end flags
  (exit 2, one line on stderr, no traceback);
* a 48 kHz stereo and an 8 kHz mono file predict like their 32 kHz mono
  conversions (down-mix + soxr HQ done here in the test), with predict.py
  (both back ends) and deploy/predict.py (both exports; the waveform one
  run with librosa and the numpy front end made unavailable).
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import paddle

from paddlespeech.cls.checkpoint import load_checkpoint, save_checkpoint
from paddlespeech.cls.artifact import read_export
from paddlespeech.cls.export import export
from paddlespeech.cls.features import FeatureConfig, NumpyLogMel, \
    paddle_logmel
from paddlespeech.cls.models import build_classifier

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / 'paddlespeech' / 'cls' / 'exps' / 'panns'
LABELS = ['Dog bark', 'Rain', 'Siren', 'Clock tick']
SR = 32000
TOL = 1e-4


def _env():
    env = dict(os.environ)
    env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    return env


def _run(args, code=None):
    """Run a script (or ``python -c code script args``); CompletedProcess."""
    cmd = [sys.executable] + (['-c', code] if code else []) + \
        [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(),
                          cwd=ROOT, timeout=300)


def _clips(seconds, seed):
    """Different kinds of sound, so that a random model tells them apart."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    clicks = np.zeros(n)
    clicks[::SR // 8] = 0.9
    return [x.astype(np.float32) for x in (
        0.5 * np.sin(2 * np.pi * 440 * t),
        0.3 * rng.standard_normal(n),
        np.sin(2 * np.pi * (200 * t + 4000 * t**2)),
        clicks,
        0.02 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 3000 * t),
        np.convolve(rng.standard_normal(n), np.ones(80) / 9, 'same'),
    )]


def _random_classifier(feature):
    """CNN6 with random weights whose top-1 varies between clip kinds.

    Default BatchNorm statistics leave the embedding dominated by a
    component shared by all inputs; centring the head on a few clips'
    embeddings makes the classes compete.
    """
    paddle.seed(0)
    model = build_classifier('cnn6', len(LABELS), dropout=0.1)
    model.eval()
    bn0 = model.backbone.bn0
    bn0._mean.set_value(paddle.full([feature.n_mels], -40.0))
    bn0._variance.set_value(paddle.full([feature.n_mels], 400.0))
    extract = NumpyLogMel(feature)
    feats = paddle.to_tensor(np.stack([extract(c) for c in _clips(1.0, 9)]))
    with paddle.no_grad():
        emb = model.backbone(feats.unsqueeze(1)).numpy()
    rng = np.random.default_rng(0)
    w = rng.standard_normal((emb.shape[1], len(LABELS))) / (
        emb.std(0).mean() * np.sqrt(emb.shape[1])) * 2.0
    model.fc.weight.set_value(w.astype(np.float32))
    model.fc.bias.set_value((-emb.mean(0) @ w).astype(np.float32))
    return model


@pytest.fixture(scope='module')
def art(tmp_path_factory):
    """Checkpoint, both exports and the input files, built once."""
    tmp = tmp_path_factory.mktemp('contract')
    feature = FeatureConfig()
    model = _random_classifier(feature)
    meta = {'backbone': 'cnn6', 'num_class': len(LABELS),
            'label_list': LABELS, 'dropout': 0.1,
            'feature': feature.to_dict()}
    ckpt = save_checkpoint(tmp / 'checkpoint', 1, model, meta) / \
        'model.pdparams'
    export(ckpt, tmp / 'export_logmel')
    proc = _run([SCRIPTS / 'export_model.py', '--checkpoint', ckpt,
                 '--output_dir', tmp / 'export_waveform',
                 '--include_frontend'])
    assert proc.returncode == 0, proc.stderr

    # inputs: 48 kHz stereo and 8 kHz mono PCM files, and their 32 kHz mono
    # conversions made here (mean of the channels, then soxr HQ)
    import soxr
    audio = tmp / 'audio'
    audio.mkdir()
    rng = np.random.default_rng(5)
    t48 = np.arange(int(1.3 * 48000)) / 48000
    stereo = np.stack([0.4 * np.sin(2 * np.pi * 523 * t48) +
                       0.05 * rng.standard_normal(len(t48)),
                       0.3 * np.sin(2 * np.pi * (300 * t48 + 3000 * t48**2))],
                      axis=1)
    t8 = np.arange(int(1.1 * 8000)) / 8000
    mono8 = 0.5 * np.sign(np.sin(2 * np.pi * 180 * t8)) * np.exp(-2 * t8)
    pairs = []
    for name, wav, sr in [('stereo48k', stereo, 48000),
                          ('mono8k', mono8, 8000)]:
        src = audio / f'{name}.wav'
        sf.write(src, wav, sr, subtype='PCM_16')
        data, sr_read = sf.read(src, dtype='float32', always_2d=True)
        assert sr_read == sr
        mono = data.mean(axis=1)
        conv = soxr.resample(mono, sr, SR, quality='HQ')
        dst = audio / f'{name}_as_32k_mono.wav'
        sf.write(dst, conv, SR, subtype='FLOAT')
        pairs.append((src, dst, mono))
    return {'tmp': tmp, 'ckpt': ckpt, 'meta': meta, 'model': model,
            'feature': feature, 'logmel': tmp / 'export_logmel',
            'waveform': tmp / 'export_waveform', 'pairs': pairs}


def _dynamic_probs(model, waves, backend):
    feature = FeatureConfig()
    with paddle.no_grad():
        if backend == 'numpy':
            extract = NumpyLogMel(feature)
            x = paddle.to_tensor(np.stack([extract(w) for w in waves]))
        else:
            x = paddle_logmel(feature)(paddle.to_tensor(np.stack(waves)))
        return paddle.nn.functional.softmax(model(x), -1).numpy()


def test_contract_is_stored_with_checkpoint_and_exports(art):
    _, meta = load_checkpoint(art['ckpt'])
    assert meta['feature'] == FeatureConfig().to_dict()
    assert meta['label_list'] == LABELS
    for kind in ('logmel', 'waveform'):
        graph, params, exported = read_export(art[kind])
        assert graph.is_file() and params.is_file()
        assert exported.input == kind
        assert exported.label_list == LABELS
        assert exported.feature == FeatureConfig()
        assert json.loads((art[kind] / 'model.json').read_text()) == \
            exported.to_dict()


@pytest.mark.parametrize('mkldnn', [True, False], ids=['onednn', 'no_onednn'])
def test_exports_match_dynamic_model(art, mkldnn, monkeypatch):
    from paddlespeech.cls import inference, scoring

    batches = [_clips(1.0, 1), _clips(0.7, 2)[:2], _clips(1.5, 3)[:1]]
    logmel = inference.Predictor(art['logmel'], 'cpu', 2,
                                 enable_mkldnn=mkldnn)
    logmel(batches[0])  # its numpy front end made before the patch

    def no_numpy_frontend(*a, **k):
        raise AssertionError('the waveform export used the numpy front end')

    monkeypatch.setattr(scoring, 'FrontEnd', no_numpy_frontend)
    waveform = inference.Predictor(art['waveform'], 'cpu', 2,
                                   enable_mkldnn=mkldnn)
    assert waveform.meta.takes_waveform and not logmel.meta.takes_waveform
    top1, worst = set(), {}
    for waves in batches:
        ref = _dynamic_probs(art['model'], waves, 'numpy')
        results = {'dynamic, paddle front end':
                   _dynamic_probs(art['model'], waves, 'paddle'),
                   'feature graph': logmel(waves),
                   'waveform graph': waveform(waves)}
        for name, probs in results.items():
            assert probs.shape == (len(waves), len(LABELS)), name
            diff = np.abs(probs - ref).max()
            assert diff <= TOL, f'{name}: max |dp| {diff:.2e}'
            worst[name] = max(worst.get(name, 0.0), diff)
            assert (probs.argmax(1) == ref.argmax(1)).all(), name
        top1.update(ref.argmax(1).tolist())
    print(f'oneDNN {mkldnn}: max |dp| vs dynamic model (numpy front end): '
          + ', '.join(f'{k} {v:.1e}' for k, v in worst.items()))
    assert len(top1) > 1, 'random model predicts one class for all clips'


@pytest.mark.parametrize('script,flag,value', [
    ('predict.py', '--sample_rate', 16000),
    ('predict.py', '--n_mels', 128),
    ('deploy/predict.py', '--sample_rate', 16000),
    ('deploy/predict.py', '--n_mels', 128),
])
def test_contradicting_feature_flags_are_refused(art, script, flag, value):
    src = art['pairs'][0][1]
    if script == 'predict.py':
        args = ['--checkpoint', art['ckpt'], '--device', 'cpu']
    else:
        args = ['--model_dir', art['waveform'], '--device', 'cpu']
    proc = _run([SCRIPTS / script, *args, '--wav', src, flag, value])
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('error: ')
    assert f'{flag[2:]}={value}' in lines[0]
    assert 'Traceback' not in proc.stderr
    assert '[' not in proc.stdout  # nothing was classified


def _parse_blocks(stdout):
    """``{path: {label: probability}}`` from the ``[path]`` / ``label: p``
    blocks; other lines (Paddle's own chatter) are ignored."""
    blocks, current = {}, None
    for line in stdout.splitlines():
        m = re.fullmatch(r'\[(.+)\]', line)
        if m:
            current = blocks.setdefault(m.group(1), {})
            continue
        label, sep, value = line.rpartition(': ')
        if current is not None and sep and label in LABELS:
            current[label] = float(value)
    return blocks


# run deploy/predict.py with librosa unimportable and the numpy front end
# broken: a waveform export must need neither
_NO_NUMPY_FRONTEND = '''
import runpy, sys
sys.modules['librosa'] = None
import paddlespeech.cls.features as features
class NoNumpyFrontEnd:
    def __init__(self, *a, **k):
        raise RuntimeError('numpy front end used')
features.NumpyLogMel = NoNumpyFrontEnd
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


@pytest.mark.slow
def test_other_rates_and_channels_predict_like_their_conversion(art):
    files = [p for src, dst, _ in art['pairs'] for p in (src, dst)]
    common = ['--wav', *files, '--top_k', len(LABELS), '--device', 'cpu',
              '--sample_rate', SR, '--n_mels', 64]  # agreeing flags are fine
    jobs = {
        'predict.py numpy': ([SCRIPTS / 'predict.py', '--checkpoint',
                              art['ckpt'], '--feat_backend', 'numpy',
                              *common], None),
        'predict.py paddle': ([SCRIPTS / 'predict.py', '--checkpoint',
                               art['ckpt'], '--feat_backend', 'paddle',
                               *common], None),
        'deploy logmel': ([SCRIPTS / 'deploy' / 'predict.py', '--model_dir',
                           art['logmel'], '--batch_size', 2, *common], None),
        'deploy waveform': ([SCRIPTS / 'deploy' / 'predict.py', '--model_dir',
                             art['waveform'], '--batch_size', 2, *common],
                            _NO_NUMPY_FRONTEND),
        # files longer than a window: read and resampled window by window
        'predict.py, 0.4 s windows': ([
            SCRIPTS / 'predict.py', '--checkpoint', art['ckpt'],
            '--window_seconds', 0.4, *common], None),
        'deploy waveform, 0.4 s windows': ([
            SCRIPTS / 'deploy' / 'predict.py', '--model_dir', art['waveform'],
            '--batch_size', 3, '--window_seconds', 0.4, *common], None),
    }
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as pool:
        procs = {name: pool.submit(_run, *job) for name, job in jobs.items()}
    results = {}
    for name, future in procs.items():
        proc = future.result()
        assert proc.returncode == 0, f'{name}:\n{proc.stderr}'
        blocks = _parse_blocks(proc.stdout)
        assert sorted(blocks) == sorted(str(f) for f in files), proc.stdout
        results[name] = {f: np.array([blocks[str(f)][l] for l in LABELS])
                         for f in files}
    whole = results['predict.py numpy']
    windowed = results['predict.py, 0.4 s windows']
    for name, probs in results.items():
        ref = windowed if 'windows' in name else whole
        for src, dst, _ in art['pairs']:
            diff = np.abs(probs[src] - probs[dst]).max()
            print(f'{name}: {src.name} vs its 32 kHz mono conversion: '
                  f'max |dp| {diff:.1e}')
            assert diff <= TOL, f'{name}: {src.name} vs its conversion {diff}'
            assert probs[src].argmax() == probs[dst].argmax()
            # and every way of predicting agrees
            assert np.abs(probs[dst] - ref[dst]).max() <= TOL, name
    for src, dst, _ in art['pairs']:  # the windows were really used
        assert np.abs(windowed[dst] - whole[dst]).max() > 10 * TOL

    # the comparison has teeth: the same samples taken as 32 kHz without
    # resampling give clearly different probabilities
    for src, _, mono in art['pairs']:
        wrong = _dynamic_probs(art['model'], [mono], 'numpy')[0]
        print(f'{src.name} without resampling: max |dp| '
              f'{np.abs(wrong - whole[src]).max():.2f}')
        assert np.abs(wrong - whole[src]).max() > 100 * TOL
