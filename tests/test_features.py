"""The log-mel front end: numpy back end against librosa, paddle back end
against numpy, the configuration in conf/*.yaml, and the dataset cache.

Tolerances (bins above -80 dB; measured on this machine in brackets):
* numpy vs librosa: 1e-3 dB [8e-6 dB: the float32 output rounding],
  mel power relative 1e-5 [7e-8: librosa rounds its filters to float32];
* paddle (batched) vs numpy: 0.01 dB [8e-6 dB].
"""
from pathlib import Path

import librosa
import numpy as np
import pytest

from paddlespeech.cls.config import load_config
from paddlespeech.cls.features import FeatureConfig, NumpyLogMel, \
    paddle_logmel

ROOT = Path(__file__).resolve().parents[1]
SR = 32000
FLOOR_DB = -80.0


def _signals(seconds=2.0):
    """Equal-length test signals at 32 kHz: name -> float32 waveform."""
    rng = np.random.default_rng(0)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    sig = {}
    sig['tone_440'] = 0.5 * np.sin(2 * np.pi * 440 * t)
    sig['tones_mixed'] = sum(a * np.sin(2 * np.pi * f * t + p) for a, f, p in
                             [(0.3, 100, 0.1), (0.2, 1000, 1.0),
                              (0.2, 9000, 2.0), (0.1, 13500, 0.5)])
    sig['full_scale_tone'] = np.sin(2 * np.pi * 3000.5 * t)
    sig['white_noise'] = 0.3 * rng.standard_normal(n)
    f0, f1 = 50.0, 15000.0  # past f_max: the top bins see leakage only
    sig['chirp'] = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 /
                                       (2 * seconds)))
    clicks = np.zeros(n)
    clicks[::SR // 10] = 1.0
    sig['clicks'] = clicks
    padded = np.zeros(n)
    k = int(0.5 * SR)
    padded[k:k + k] = 0.5 * np.sin(2 * np.pi * 700 * t[:k])
    sig['silence_padded_tone'] = padded
    sig['very_quiet_noise'] = 1e-4 * rng.standard_normal(n)
    sig['very_quiet_tone'] = 1e-4 * np.sin(2 * np.pi * 2000 * t)
    sig['dc_and_rumble'] = 0.2 + 0.3 * np.sin(2 * np.pi * 20 * t)
    return {k: v.astype(np.float32) for k, v in sig.items()}


def _librosa_mel_power(wav, c=FeatureConfig()):
    return librosa.feature.melspectrogram(
        y=wav, sr=c.sample_rate, n_fft=c.n_fft, hop_length=c.hop_length,
        win_length=c.win_length, window=c.window, center=True,
        pad_mode='reflect', power=2.0, n_mels=c.n_mels, fmin=c.f_min,
        fmax=c.f_max, htk=False, norm='slaney').T


def _librosa_logmel(wav, c=FeatureConfig(), top_db=None):
    return librosa.power_to_db(_librosa_mel_power(wav, c), ref=1.0,
                               amin=1e-10, top_db=top_db)


@pytest.fixture(scope='module')
def signals():
    return _signals()


@pytest.fixture(scope='module')
def numpy_feats(signals):
    extract = NumpyLogMel(FeatureConfig())
    return {k: extract(v) for k, v in signals.items()}


def test_conf_files_hold_the_panns_front_end():
    panns = FeatureConfig(sample_rate=32000, n_fft=1024, hop_length=320,
                          win_length=1024, window='hann', f_min=50,
                          f_max=14000, n_mels=64, ref=1.0, amin=1e-10,
                          top_db=None)
    confs = sorted((ROOT / 'conf').glob('*.yaml'))
    assert confs
    for path in confs:
        assert load_config(path).feature == panns, path.name
    assert FeatureConfig() == panns
    assert FeatureConfig.from_dict(panns.to_dict()) == panns


def test_feature_config_rejects_bad_settings():
    with pytest.raises(ValueError, match='unknown feature settings'):
        FeatureConfig.from_dict({'n_mel': 64})
    with pytest.raises(ValueError, match='win_length'):
        FeatureConfig(n_fft=512, win_length=1024)
    with pytest.raises(ValueError, match='f_max'):
        FeatureConfig(sample_rate=16000)  # f_max 14000 > 8000


@pytest.mark.parametrize('settings', [
    {}, {'sample_rate': 16000, 'n_fft': 512, 'win_length': 400,
         'hop_length': 160, 'f_min': 0, 'f_max': 8000, 'n_mels': 128},
    {'f_min': 0, 'f_max': None, 'win_length': 800}])
def test_filters_and_window_match_librosa(settings):
    c = FeatureConfig(**settings)
    ref = librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft,
                              n_mels=c.n_mels, fmin=c.f_min, fmax=c.f_max,
                              htk=False, norm='slaney').T
    ours = c.mel_filters()
    assert ours.shape == (c.n_fft // 2 + 1, c.n_mels)
    # librosa rounds its filter bank to float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-7 * ref.max())
    from scipy.signal import get_window
    win = librosa.util.pad_center(get_window(c.window, c.win_length,
                                             fftbins=True), size=c.n_fft)
    np.testing.assert_allclose(c.window_array(), win, rtol=0, atol=1e-12)


def test_numpy_backend_matches_librosa(signals, numpy_feats):
    extract = NumpyLogMel(FeatureConfig())
    worst_db = worst_rel = 0.0
    for name, wav in signals.items():
        ref_db = _librosa_logmel(wav)
        ours_db = numpy_feats[name]
        assert ours_db.shape == ref_db.shape == (1 + len(wav) // 320, 64)
        assert ours_db.dtype == np.float32
        loud = ref_db > FLOOR_DB
        assert loud.mean() > 0.05, f'{name}: too few bins above -80 dB'
        worst_db = max(worst_db, np.abs(ours_db - ref_db)[loud].max())

        ref_power = _librosa_mel_power(wav.astype(np.float64))
        ours_power = extract.mel_power(wav)
        rel = np.abs(ours_power - ref_power)[loud] / ref_power[loud]
        worst_rel = max(worst_rel, rel.max())
        # below -80 dB (down to the -100 dB floor) still close
        assert np.abs(ours_db - ref_db).max() < 0.05, name
    print(f'numpy vs librosa: {worst_db:.2e} dB, '
          f'mel power rel {worst_rel:.1e}')
    assert worst_db <= 1e-3
    assert worst_rel <= 1e-5


@pytest.mark.filterwarnings('ignore:n_fft=1024 is too large')
@pytest.mark.parametrize('num_samples', [1024, 1025, 32000 + 161, 3 * 320])
def test_numpy_backend_matches_librosa_on_odd_lengths(num_samples):
    wav = (0.2 * np.random.default_rng(num_samples).standard_normal(
        num_samples)).astype(np.float32)
    ref = _librosa_logmel(wav)
    ours = NumpyLogMel(FeatureConfig())(wav)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref)[ref > FLOOR_DB].max() <= 1e-3


def test_top_db_is_per_clip_in_both_backends():
    import paddle
    c = FeatureConfig(top_db=80.0)
    sig = _signals(1.0)
    loud, quiet = sig['tone_440'], sig['very_quiet_tone']
    ref = [_librosa_logmel(w, top_db=80.0) for w in (loud, quiet)]
    ours_np = [NumpyLogMel(c)(w) for w in (loud, quiet)]
    ours_pd = paddle_logmel(c)(paddle.to_tensor(np.stack([loud, quiet])))
    for r, n, p in zip(ref, ours_np, ours_pd.numpy()):
        assert np.abs(n - r).max() <= 1e-3
        assert np.abs(p - r).max() <= 0.01


def test_paddle_backend_matches_numpy_batched(signals, numpy_feats):
    import paddle
    names = list(signals)
    batch = np.stack([signals[k] for k in names])
    frontend = paddle_logmel(FeatureConfig())
    with paddle.no_grad():
        out = frontend(paddle.to_tensor(batch)).numpy()
        single = frontend(paddle.to_tensor(batch[:1])).numpy()
    assert out.shape == (len(names),) + numpy_feats[names[0]].shape
    assert out.dtype == np.float32
    worst = 0.0
    for i, name in enumerate(names):
        ref = numpy_feats[name]
        loud = ref > FLOOR_DB
        worst = max(worst, np.abs(out[i] - ref)[loud].max())
        assert np.abs(out[i] - ref).max() < 0.05, name
    print(f'paddle vs numpy (batch of {len(names)}): {worst:.2e} dB')
    assert worst <= 0.01
    # a clip's features do not depend on the rest of the batch
    assert np.abs(single[0] - out[0]).max() <= 1e-4


def test_paddle_backend_odd_length_and_short_clip():
    import paddle
    frontend = paddle_logmel(FeatureConfig())
    for n in (1024, 32000 + 161):
        wav = (0.2 * np.random.default_rng(n).standard_normal(
            (2, n))).astype(np.float32)
        ref = np.stack([NumpyLogMel(FeatureConfig())(w) for w in wav])
        with paddle.no_grad():
            out = frontend(paddle.to_tensor(wav)).numpy()
        assert out.shape == ref.shape
        assert np.abs(out - ref)[ref > FLOOR_DB].max() <= 0.01


def test_dataset_caches_numpy_features(tmp_path):
    """Features of a clip are computed once; later epochs reuse them."""
    import paddle

    from paddlespeech.cls.datasets import ESC50Dataset, collate
    from paddlespeech.cls.datasets.synthetic import generate

    root = generate(
        tmp_path / 'esc', classes=2, clips_per_fold=2, folds=2, seconds=0.3,
        sample_rate=44100, seed=3)
    config = FeatureConfig()
    numpy_frontend = NumpyLogMel(config)
    calls = []

    def extractor(wav):
        calls.append(len(wav))
        return numpy_frontend(wav)

    ds = ESC50Dataset(root, 'train', 1, config, extractor)
    assert len(ds) == 4
    loader = paddle.io.DataLoader(ds, batch_size=3, shuffle=True,
                                  num_workers=0,
                                  collate_fn=lambda b: collate(b, -100.0))
    for epoch in range(3):
        seen = sum(int(y.shape[0]) for _, y in loader)
        assert seen == len(ds)
        assert len(calls) == len(ds), f'epoch {epoch}: extractor called ' \
            f'{len(calls)} times for {len(ds)} clips'
    for i in range(len(ds)):
        x, label = ds[i]
        assert x.shape == (config.num_frames(int(0.3 * SR)), 64)
        path = ds.items[i][0]
        from paddlespeech.cls.audio import load_audio
        fresh = numpy_frontend(load_audio(path, SR, config.n_fft))
        np.testing.assert_array_equal(x, fresh)
    assert len(calls) == len(ds)
