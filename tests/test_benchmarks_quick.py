"""benchmarks/run.py --quick: every figure checked against a reference
computed here (hand-counted FLOPs and parameter sizes, the raw timings
the rows derive from, librosa's log-mel) or against the hardware."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ('infer', 'folder', 'train', 'frontend', 'limit', 'rss', 'data',
            'lowp', 'detect', 'analyze')

pytest.importorskip('torch')
pytest.importorskip('panns_inference')
pytest.importorskip('torchlibrosa')
librosa = pytest.importorskip('librosa')

# Quick mode: CNN6, 1 s clips at 32 kHz -> 1 + 32000 // 320 = 101 frames
# of 64 mel bins. CNN6 = four 5x5 conv blocks 1 -> 64 -> 128 -> 256 -> 512
# channels, 2x2 pooling after each; 2 FLOPs per multiply-add; then fc1
# 512 x 512 and the 50-class head.
FRAMES = 101
CNN6_FLOP_1S = (2 * 1 * 64 * 25 * 101 * 64         # block 1 at 101 x 64
                + 2 * 64 * 128 * 25 * 50 * 32      # block 2 at 50 x 32
                + 2 * 128 * 256 * 25 * 25 * 16     # block 3 at 25 x 16
                + 2 * 256 * 512 * 25 * 12 * 8      # block 4 at 12 x 8
                + 2 * 512 * 512 + 2 * 512 * 50)    # fc1, head
assert CNN6_FLOP_1S == 1_961_125_888
# The same for 5 s (501 frames): the 9.91 GFLOP the README quotes.
CNN6_FLOP_5S = (2 * 1 * 64 * 25 * 501 * 64 + 2 * 64 * 128 * 25 * 250 * 32
                + 2 * 128 * 256 * 25 * 125 * 16 + 2 * 256 * 512 * 25 * 62 * 8
                + 2 * 512 * 512 + 2 * 512 * 50)
# CNN6 parameters (conv weights, fc1, head; BatchNorm left out), in MiB
CNN6_PARAM_MB = 4 * (25 * (1 * 64 + 64 * 128 + 128 * 256 + 256 * 512)
                     + 512 * 512 + 512 + 512 * 50 + 50) / 2 ** 20
# Peak FP32 rate per core: AVX-512, two FMA units (2 x 16 x 2 FLOP/cycle)
# at a clock no server CPU reaches (5 GHz).
MAX_GFLOPS_PER_CORE = 64 * 5.0


def close(a, b, rel=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('bench')
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(ROOT)] + [p for p in [env.get('PYTHONPATH')] if p])
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'run.py'), '--quick',
         '--json', str(tmp / 'bench.json'), '--work_dir', str(tmp / 'work')],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-5000:]
    result = json.loads((tmp / 'bench.json').read_text())
    result['stdout'], result['work'] = proc.stdout, tmp / 'work'
    return result


def rows(bench, section):
    return {r['what']: r for r in bench['sections'][section]['rows']}


@pytest.mark.slow
def test_table_and_ratios(bench):
    assert bench['machine']['mode'] == 'quick'
    assert set(bench['sections']) == set(SECTIONS)
    all_rows = [r for s in SECTIONS for r in bench['sections'][s]['rows']]
    # the printed table has one line per row
    table = [l for l in bench['stdout'].splitlines() if l.startswith('| ')]
    assert len(table) == 1 + len(all_rows)
    for r in all_rows:
        if 'ref' in r:
            assert close(r['ratio'], r['value'] / r['ref']), r
        else:
            assert 'ratio' not in r and 'target' not in r, r
        if 'target' in r:  # targets are minimum ratios
            assert r['met'] == (r['ratio'] >= r['target']), r


@pytest.mark.slow
def test_infer_rows_are_the_measured_rates(bench):
    raw, R = bench['sections']['infer']['raw']['cnn6'], rows(bench, 'infer')
    pd, th = raw['paddle'], raw['torch']
    # clips/s = batch / median time of one batch
    for res in (pd['deploy_onednn'], pd['deploy_plain'], pd['dygraph'], th):
        for kind in ('e2e', 'net'):
            assert set(res[kind]) == {'1', '8'}
            for b, m in res[kind].items():
                assert close(m['clips_per_s'] * m['latency_ms'] / 1000,
                             int(b)), m
    names = {'deploy_onednn': 'deploy Predictor, oneDNN',
             'deploy_plain': 'deploy Predictor, no oneDNN',
             'dygraph': 'dynamic graph'}
    for b in ('1', '8'):
        for kind, label in (('e2e', 'incl. front end'),
                            ('net', 'network only')):
            for mode, name in names.items():
                r = R[f'CNN6 b{b} {label}: {name}']
                assert r['value'] == pd[mode][kind][b]['clips_per_s']
                assert r['ref'] == th[kind][b]['clips_per_s']
    for mode in names:
        assert R[f'CNN6 b1 latency incl. front end: {mode}']['value'] == \
            pd[mode]['e2e']['1']['latency_ms']
    r = R['CNN6 b1 incl. front end: dynamic graph (predict.py) vs deploy '
          'oneDNN']
    assert (r['value'], r['ref'], r['target']) == (
        pd['dygraph']['e2e']['1']['clips_per_s'],
        pd['deploy_onednn']['e2e']['1']['clips_per_s'], 0.8)


@pytest.mark.slow
def test_limit_flops_against_hand_count_and_hardware(bench):
    from benchmarks.common import model_flops
    assert model_flops('cnn6', 501) == CNN6_FLOP_5S
    assert round(CNN6_FLOP_5S / 1e9, 2) == 9.91

    lim = bench['sections']['limit']['raw']
    infer = bench['sections']['infer']['raw']['cnn6']['paddle']
    assert lim['frames'] == FRAMES
    c = lim['cnn6']
    assert close(c['gflop_per_clip'] * 1e9, CNN6_FLOP_1S)
    # the rate is the infer section's deploy oneDNN network-only batch 8
    assert c['clips_per_s'] == infer['deploy_onednn']['net']['8'][
        'clips_per_s']
    assert close(c['gflops'], CNN6_FLOP_1S * c['clips_per_s'] / 1e9)
    peak = lim['peak']
    best = max(peak['numpy_gflops'], peak['paddle_gflops'],
               peak['onednn_gflops'] or 0)
    r = rows(bench, 'limit')['CNN6 deploy oneDNN b8 network (1.96 '
                             'GFLOP/clip)']
    assert (r['value'], r['ref'], r['target']) == (c['gflops'], best, 0.8)
    # no figure beats the CPU's arithmetic limit (a wrong FLOP count or
    # clip length would: 5 s of FLOPs per 1 s clip is 5x too many)
    ceiling = bench['machine']['affinity'] * MAX_GFLOPS_PER_CORE
    for g in (c['gflops'], peak['numpy_gflops'], peak['paddle_gflops'],
              peak['onednn_gflops'] or 0):
        assert g < ceiling, (g, ceiling)
    assert min(peak['numpy_gflops'], peak['paddle_gflops']) > 1.0


@pytest.mark.slow
def test_train_rates_memory_and_epoch(bench):
    raw, R = bench['sections']['train']['raw'], rows(bench, 'train')
    pd, th = raw['cnn6']['paddle'], raw['cnn6']['torch']
    for m in (pd, th):
        assert close(m['clips_per_s'], 4 / m['step_s'])  # batch 4
        # weights, gradients and Adam's two moments are all resident
        assert m['peak_rss_mb'] > 4 * CNN6_PARAM_MB, m
    r = R['CNN6 train step b4 (dynamic graph)']
    assert (r['value'], r['ref'], r['target']) == (
        pd['clips_per_s'], th['clips_per_s'], 1.0)
    r = R['CNN6 training peak RSS']
    assert (r['value'], r['ref']) == (pd['peak_rss_mb'], th['peak_rss_mb'])
    ep = raw['epoch_cache']
    # 2 classes x 2 clips per fold x 4 training folds (fold 1 held out)
    assert ep['clips'] == 16
    r = R['CNN6 epoch 2 (feature cache) vs epoch 1, 16 clips of 1 s (speed '
          '= 1 / time)']
    assert close(r['value'], 1 / ep['epoch2_s'])
    assert close(r['ref'], 1 / ep['epoch1_s'])


@pytest.mark.slow
def test_folder_speeds_are_inverse_wall_times(bench):
    raw, R = bench['sections']['folder']['raw'], rows(bench, 'folder')
    assert (raw['files'], raw['arch']) == (8, 'cnn6')
    r = R['8 x 1 s 44.1 kHz wav, CNN6: deploy/predict.py --batch_size 8 '
          '(speed = 1 / wall time)']
    assert close(r['value'], 1 / raw['deploy_s'])
    assert close(r['ref'], 1 / raw['torch_s'])
    r = R['predict.py (dynamic graph, batch 1)']
    assert close(r['value'], 1 / raw['predict_dygraph_s'])
    assert close(r['ref'], 1 / raw['deploy_s'])


def _librosa_db(wav):
    """PANNs' log-mel with librosa, [frames, 64] (dB, ref 1, amin 1e-10)."""
    S = librosa.feature.melspectrogram(
        y=wav, sr=32000, n_fft=1024, hop_length=320, win_length=1024,
        window='hann', center=True, pad_mode='reflect', power=2.0, n_mels=64,
        fmin=50, fmax=14000, htk=False, norm='slaney')
    return librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=None).T


@pytest.mark.slow
def test_frontends_compute_librosas_log_mel(bench):
    raw, R = bench['sections']['frontend']['raw'], rows(bench, 'frontend')
    ours = np.load(bench['work'] / 'frontend_paddle.npz')
    theirs = np.load(bench['work'] / 'frontend_torch.npz')
    assert ours['waves'].shape == (16, 32000)
    assert np.array_equal(ours['waves'], theirs['waves'])
    expected = np.stack([_librosa_db(w) for w in ours['waves']])
    assert expected.shape == (16, FRAMES, 64)
    # the benchmark's librosa is this computation
    np.testing.assert_allclose(theirs['librosa'], expected, atol=1e-6)
    recorded = raw['max_abs_db_vs_librosa']
    for name, f in (('numpy', ours), ('paddle', ours),
                    ('torchlibrosa', theirs)):
        diff = float(np.abs(f[name] - expected).max())
        assert math.isclose(recorded[name], diff, rel_tol=1e-6,
                            abs_tol=1e-9), name
        assert diff < 0.01, (name, diff)  # the same log-mel, in dB
    lib = raw['torch']['librosa']
    for what, value in (
            ('numpy NumpyLogMel (per clip), OpenBLAS 2 threads',
             raw['paddle']['numpy']),
            ("numpy NumpyLogMel (per clip), OpenBLAS 1 thread (the recipe's "
             'setting)', raw['paddle_openblas1']['numpy']),
            ('paddle paddle_logmel (batch 8)',
             raw['paddle']['paddle_batched']),
            ('torchlibrosa (batch 8)', raw['torch']['torchlibrosa_batched'])):
        assert (R[what]['value'], R[what]['ref']) == (value, lib), what


@pytest.mark.slow
def test_rss_windows_and_peak(bench):
    r = bench['sections']['rss']['raw']['release']
    R = rows(bench, 'rss')
    assert r['clips'] == 40 and r['window'] == 10
    # ru_maxrss is the peak of every RSS sample taken
    assert r['peak_rss_mb'] >= max(r['rss_first_mb'], r['rss_last_mb'],
                                   r['rss_before_mb'])
    assert r['peak_rss_mb'] > CNN6_PARAM_MB
    assert close(r['growth_mb'], r['rss_last_mb'] - r['rss_first_mb'])
    row = R['RSS mean over last 10 clips vs first 10 (1.00 = flat)']
    assert (row['value'], row['ref']) == (r['rss_last_mb'], r['rss_first_mb'])
    assert R['CNN6 deploy/predict.py path peak RSS, 40 files of 0.5-2 s'][
        'value'] == r['peak_rss_mb']


@pytest.mark.slow
def test_quick_levers_compare_with_the_default(bench):
    S = bench['sections']
    levers = {name: [r for r in S[name]['rows']
                     if r['what'].startswith('lever: ')] for name in SECTIONS}
    names = {r['what'] for rs in levers.values() for r in rs}
    assert names == {
        'lever: CNN6 deploy oneDNN b1 incl. front end, KMP_BLOCKTIME=0',
        'lever: CNN6 deploy oneDNN b8 incl. front end, KMP_BLOCKTIME=0',
        'lever: deploy/predict.py --enable_mkldnn false',
        'lever: CNN6 dynamic graph, 1 thread',
        'lever: without the heap limit (runtime.HeapLimit; last 10 vs '
        'first 10)'}

    # each lever: its value from its own run (with the setting changed),
    # its reference the default measurement's figure
    (run,) = S['infer']['raw']['levers']
    assert run['env'] == {'KMP_BLOCKTIME': '0'}
    default = S['infer']['raw']['cnn6']['paddle']['deploy_onednn']['e2e']
    for r in levers['infer']:
        b = r['what'].split(' b', 1)[1].split()[0]
        assert r['value'] == run['result']['deploy_onednn']['e2e'][b][
            'clips_per_s']
        assert r['ref'] == default[b]['clips_per_s']

    (run,) = S['folder']['raw']['levers']
    assert run['args']['cli'] == ['--enable_mkldnn', 'false']
    (r,) = levers['folder']
    assert close(r['value'], 1 / run['result']['wall_s'])
    assert close(r['ref'], 1 / S['folder']['raw']['torch_s'])

    (run,) = S['train']['raw']['levers']
    assert run['args']['lever'] == 'threads1'
    (r,) = levers['train']
    assert r['value'] == run['result']['clips_per_s']
    assert r['ref'] == S['train']['raw']['cnn6']['paddle']['clips_per_s']

    (run,) = S['rss']['raw']['levers']
    assert run['result']['release'] is False
    (r,) = levers['rss']
    # the heap-limit lever compares its own last window with its first
    assert (r['value'], r['ref']) == (run['result']['rss_last_mb'],
                                      run['result']['rss_first_mb'])


@pytest.mark.slow
def test_data_listing_lists_every_generated_file(bench):
    raw, R = bench['sections']['data']['raw'], rows(bench, 'data')
    # quick: 10,000 files round-robin over 50 class folders -> 200 per
    # class, dealt into 5 folds of 40 per class -> 5 folds of 2,000
    assert (raw['generated'], raw['files']) == (10000, 10000)
    assert (raw['classes'], raw['folds']) == (50, 5)
    assert raw['fold_sizes'] == [2000] * 5
    r = R['listing + 5 stratified folds of 10000 files in 50 class folders '
          '(load_table; speed = files / time)']
    assert close(r['value'], 10000 / raw['first_s'])
    assert (r['ref'], r['target']) == (10000, 1.0)


@pytest.mark.slow
def test_lowp_rows_are_the_measured_rates(bench):
    raw, R = bench['sections']['lowp']['raw']['cnn6'], rows(bench, 'lowp')
    runs = raw['runs']
    assert set(runs) == {'paddle_fp32', 'onnx_fp32', 'paddle_int8'}
    # each export ran on the backend and in the precision it was built for
    for kind, r in runs.items():
        fmt, precision = kind.split('_')
        assert (r['backend'], r['precision']) == (
            {'paddle': 'paddle', 'onnx': 'onnxruntime'}[fmt], precision)
        meta = json.loads((Path(raw['exports'][kind]) / 'model.json')
                          .read_text())
        assert (meta['backend'], meta['precision']) == (r['backend'],
                                                         precision)
    # the PyTorch reference is the infer section's batch-8 figure
    torch = bench['sections']['infer']['raw']['cnn6']['torch']['e2e']['8']
    assert raw['torch_e2e'] == torch['clips_per_s']
    names = {'paddle_fp32': 'paddle.inference fp32 (oneDNN)',
             'onnx_fp32': 'ONNX Runtime fp32',
             'paddle_int8': 'INT8 Paddle PTQ + oneDNN'}
    for kind, name in names.items():
        r = R[f'CNN6 b8 incl. front end: {name}']
        assert (r['value'], r['ref']) == (runs[kind]['e2e_clips_per_s'],
                                          torch['clips_per_s'])
        # low-precision rows name the CPU flags they ran with
        assert ('CPU ' in r['note']) == (kind != 'paddle_fp32' and
                                         kind != 'onnx_fp32')
    r = R['CNN6 b8 network only: ONNX Runtime fp32 vs paddle.inference fp32']
    assert (r['value'], r['ref']) == (runs['onnx_fp32']['net_clips_per_s'],
                                      runs['paddle_fp32']['net_clips_per_s'])
    r = R['CNN6 b8 network only: INT8 Paddle PTQ + oneDNN vs its fp32']
    assert (r['value'], r['ref']) == (runs['paddle_int8']['net_clips_per_s'],
                                      runs['paddle_fp32']['net_clips_per_s'])


@pytest.mark.slow
def test_detect_rows_are_the_measured_runs(bench):
    raw, R = bench['sections']['detect']['raw'], rows(bench, 'detect')
    d = raw['cnn6']
    # 20 s in 1 s windows every 0.5 s: 1 + (20 - 1) / 0.5 = 39 windows,
    # each also a clip for deploy/predict.py
    assert (d['seconds'], d['windows']) == (20, 39)
    assert len(list((bench['work'] / 'detect_clips_20s_1').glob('*.wav'))) \
        == 39
    r = R['CNN6 export, 20 s 44.1 kHz recording in 1 s windows every 0.5 s, '
          'batch 8: detect.py (speed = audio s / wall s, best of 1)']
    assert d['detect_runs_s'] == [d['detect_s']]
    assert close(r['value'], 20 / d['detect_s'])
    assert close(r['ref'], 20 / d['deploy_s'])
    assert 'target' not in r  # the target is CNN14's (full run)
    r = R['CNN6 detect.py peak RSS, 20 s 44.1 kHz recording']
    assert (r['value'], r['ref']) == (d['detect_peak_rss_mb'],
                                      raw['rss_5s']['peak_rss_mb'])
    assert r['value'] > CNN6_PARAM_MB


@pytest.mark.slow
def test_analyze_rows_are_the_measured_runs(bench):
    raw, R = bench['sections']['analyze']['raw'], rows(bench, 'analyze')
    assert (raw['files'], raw['seconds'], raw['workers']) == (8, 1.0, 1)
    assert len(list((bench['work'] / 'analyze_8x1').glob('*.wav'))) == 8
    r = R['8 x 1 s 44.1 kHz wav, CNN6 export, batch 8: analyze.py, 1 '
          'worker x 2 threads (speed = 1 / wall time, median of 1)']
    assert len(raw['analyze_s']) == len(raw['deploy_s']) == 1
    assert close(r['value'], 1 / raw['analyze_s'][0])
    assert close(r['ref'], 1 / raw['deploy_s'][0])
    assert 'target' not in r  # the targets are CNN14's (full run)
    r = R['analyze.py rerun of the finished run (every file skipped; bound '
          '5 s)']
    assert r['value'] == raw['rerun_s'] > 0
    r = R['analyze.py --embeddings true (speed = 1 / wall time)']
    assert close(r['ratio'], raw['analyze_s'][0] / raw['embeddings_s'])
    assert 'ray_s' not in raw and 'ray_startup' not in raw  # full run only


@pytest.mark.slow
def test_analyze_long_recording_many_files_and_worker_rss(bench):
    import soundfile as sf
    raw, R = bench['sections']['analyze']['raw'], rows(bench, 'analyze')
    L = raw['long']
    assert (L['seconds'], L['window'], L['hop']) == (60, 1.0, 0.5)
    assert sf.info(str(bench['work'] / 'detect_60s.wav')).duration == 60
    # windows every 0.5 s that fit in 60 s, the same for both scripts
    assert L['windows'] == 1 + (60 - 1) / 0.5 == 119
    assert L['analyze_events'] == L['detect_events'] > 0
    r = R['CNN6 export, one 60 s 44.1 kHz recording in 1 s windows every '
          '0.5 s, batch 8: analyze.py, 1 worker x 2 threads (speed = audio '
          's / wall s)']
    assert close(r['value'], 60 / L['analyze_s'])
    assert close(r['ref'], 60 / L['detect_s'])
    assert 'target' not in r  # CNN14's (full run)

    M = raw['many']
    assert (M['files'], M['seconds'], M['arch']) == (300, 0.2, 'cnn6')
    assert len(list((bench['work'] / 'analyze_300x0.2').glob('*.wav'))) \
        == 300
    r = R['analyze.py rerun of a finished run of 300 x 0.2 s files (every '
          'file skipped; bound 5 s)']
    assert r['value'] == M['rerun_s'] < 5
    # sampled once the journal held >= 100 files (a part is 64 files),
    # well before the end; VmHWM only grows
    assert 100 <= M['early_files'] < 300
    early, end = M['early_peak_rss_mb'], M['end_peak_rss_mb']
    assert len(early) == len(end) == 2
    assert all(CNN6_PARAM_MB < a <= b for a, b in zip(early, end))
    growth = [b - a for a, b in zip(early, end)]
    worst = growth.index(max(growth))
    r = R['CNN6 analyze.py peak RSS of a worker after 300 files (the worst '
          'of 2)']
    assert (r['value'], r['ref']) == (end[worst], early[worst])
    assert max(growth) < 50
