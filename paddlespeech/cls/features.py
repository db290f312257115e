"""The log-mel front end: one configuration, two interchangeable back ends.

``FeatureConfig`` is the contract between training, prediction and
deployment: it is stored in every checkpoint and exported model, and
every script builds its front end from the stored copy.

* ``numpy`` back end (:class:`NumpyLogMel`): per clip, in the data loader;
  matches ``librosa.feature.melspectrogram`` + ``librosa.power_to_db``
  with the settings below to about 1e-5 dB.
* ``paddle`` back end (:func:`paddle_logmel`): batched tensor ops on the
  model's device, and the front end that is exported inside a static
  graph (``export_model.py --include_frontend``).

:class:`FrontEnd` chooses between them for every caller.

Both reproduce the front end the PANNs weights were trained with
(torchlibrosa): centred STFT with reflect padding, periodic Hann window,
power spectrum, Slaney mel filters, ``10*log10(max(x, amin))`` with
``ref=1`` and no ``top_db`` clipping. The matching librosa call is::

    S = librosa.feature.melspectrogram(
        y=wav, sr=32000, n_fft=1024, hop_length=320, win_length=1024,
        window='hann', center=True, pad_mode='reflect', power=2.0,
        n_mels=64, fmin=50, fmax=14000, htk=False, norm='slaney')
    librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=None).T

Both back ends window and transform in float64: a float32 DFT (or even
just a float32-rounded window) leaves errors of 0.003-0.03 dB in bins
100 dB below a loud tone, while float64 costs little here. The filter
bank and window are computed here in numpy, so neither back end needs
librosa (nor scipy, for hann and hamming windows) at run time.
"""
import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 32000
    n_fft: int = 1024
    hop_length: int = 320
    win_length: int = 1024
    window: str = 'hann'
    f_min: float = 50.0
    f_max: Optional[float] = 14000.0  # None: Nyquist
    n_mels: int = 64
    ref: float = 1.0
    amin: float = 1e-10
    top_db: Optional[float] = None  # None: no clipping

    def __post_init__(self):
        problems = []
        for name in ('sample_rate', 'n_fft', 'hop_length', 'win_length',
                     'n_mels'):
            if int(getattr(self, name)) <= 0:
                problems.append(f'{name} must be positive')
        if self.win_length > self.n_fft:
            problems.append(f'win_length {self.win_length} > n_fft '
                            f'{self.n_fft}')
        if not 0 <= self.f_min < self.f_max_hz <= self.sample_rate / 2:
            problems.append(f'need 0 <= f_min < f_max <= sample_rate / 2, '
                            f'got f_min {self.f_min}, f_max {self.f_max}, '
                            f'sample_rate {self.sample_rate}')
        if problems:
            raise ValueError('; '.join(problems))

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f'unknown feature settings {unknown}; '
                             f'known: {sorted(known)}')
        return cls(**d)

    def to_dict(self):
        return dataclasses.asdict(self)

    def mismatches(self, **requested):
        """Names of requested settings (None = not requested) that differ."""
        mine = self.to_dict()
        return [
            f'{k}={v} (model: {mine[k]})' for k, v in requested.items()
            if v is not None and v != mine[k]
        ]

    @property
    def f_max_hz(self):
        """``f_max``; None means the Nyquist frequency (as in librosa)."""
        return self.sample_rate / 2 if self.f_max is None else self.f_max

    @property
    def floor_db(self):
        """The lowest log-mel value (digital silence): what padding uses."""
        return 10.0 * float(np.log10(self.amin)) - 10.0 * float(
            np.log10(max(self.amin, self.ref)))

    def num_frames(self, num_samples):
        return 1 + num_samples // self.hop_length

    def mel_filters(self, dtype=np.float64):
        """Slaney-scale, Slaney-normalised mel filter bank.

        ``[n_fft // 2 + 1, n_mels]``; the same triangles as
        ``librosa.filters.mel(htk=False, norm='slaney')`` (transposed),
        which rounds them to float32.
        """
        n_freqs = self.n_fft // 2 + 1
        fft_freqs = np.linspace(0, self.sample_rate / 2, n_freqs)
        mel_pts = np.linspace(_hz_to_mel(self.f_min),
                              _hz_to_mel(self.f_max_hz), self.n_mels + 2)
        hz_pts = _mel_to_hz(mel_pts)
        fdiff = np.diff(hz_pts)
        ramps = hz_pts[:, None] - fft_freqs[None, :]
        lower = -ramps[:-2] / fdiff[:-1, None]
        upper = ramps[2:] / fdiff[1:, None]
        weights = np.maximum(0.0, np.minimum(lower, upper))
        weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
        return np.ascontiguousarray(weights.T, dtype=dtype)

    def window_array(self, dtype=np.float64):
        """Periodic window of ``win_length`` zero-padded to ``n_fft``."""
        n = self.win_length
        k = np.arange(n) * (2.0 * np.pi / n)
        if self.window in ('hann', 'hanning'):
            win = 0.5 - 0.5 * np.cos(k)
        elif self.window == 'hamming':
            win = 0.54 - 0.46 * np.cos(k)
        else:
            from scipy.signal import get_window
            win = get_window(self.window, n, fftbins=True)
        pad = self.n_fft - n
        return np.pad(win, (pad // 2, pad - pad // 2)).astype(dtype)


# Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz,
# logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz):
    hz = np.asarray(hz, dtype=np.float64)
    return np.where(hz >= _MIN_LOG_HZ,
                    _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-30) / _MIN_LOG_HZ)
                    / _LOGSTEP, hz / _F_SP)


def _mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= _MIN_LOG_MEL,
                    _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)),
                    mel * _F_SP)


class NumpyLogMel:
    """Log-mel of one clip, ``[samples] -> [frames, n_mels]`` (float32).

    Frames are transformed in blocks of ``block`` frames so that the
    working set stays in cache (2.5x faster than one big array for 5 s
    clips, and faster than librosa).
    """

    def __init__(self, config: FeatureConfig, block=64):
        self.config = config
        self.block = block
        self.window = config.window_array(np.float64)
        self.mel = config.mel_filters(np.float64)

    def __call__(self, wav):
        return _power_to_db(self.mel_power(wav), self.config).astype(
            np.float32)

    def mel_power(self, wav):
        """Mel power ``[frames, n_mels]`` (float64), before the log."""
        c = self.config
        wav = np.asarray(wav)
        if wav.ndim != 1:
            raise ValueError(f'expected a mono waveform [samples], got shape '
                             f'{wav.shape}')
        pad = c.n_fft // 2
        x = np.pad(wav.astype(np.float64), pad, mode='reflect')
        frames = np.lib.stride_tricks.sliding_window_view(
            x, c.n_fft)[::c.hop_length]
        out = np.empty((len(frames), c.n_mels))
        for s in range(0, len(frames), self.block):
            spec = np.fft.rfft(frames[s:s + self.block] * self.window, axis=-1)
            np.matmul(spec.real**2 + spec.imag**2, self.mel,
                      out=out[s:s + self.block])
        return out


def _power_to_db(mel_power, c):
    db = 10.0 * np.log10(np.maximum(mel_power, c.amin))
    db -= 10.0 * np.log10(max(c.amin, c.ref))
    if c.top_db is not None:
        db = np.maximum(db, db.max() - c.top_db)
    return db


def paddle_logmel(config: FeatureConfig):
    """A ``paddle.nn.Layer``: ``[batch, samples] -> [batch, frames, n_mels]``.

    Framing is ``paddle.signal.frame``, the DFT is ``paddle.fft.rfft`` in
    float64 (Paddle's float32 FFT is ten times less accurate than numpy's:
    0.03 dB off in bins 100 dB below a full-scale tone), the mel
    projection and the log are float32. Every step is a plain tensor op,
    so the layer runs batched on the model's device and exports inside a
    static graph (input float32, any batch size and length >= n_fft // 2
    + 1 samples).
    """
    import paddle
    import paddle.nn as nn

    class PaddleLogMel(nn.Layer):

        def __init__(self):
            super().__init__()
            self.config = config
            self.register_buffer(
                'window', paddle.to_tensor(config.window_array(np.float64)),
                persistable=False)
            self.register_buffer(
                'mel', paddle.to_tensor(config.mel_filters(np.float32)),
                persistable=False)

        def forward(self, wav):
            c = self.config
            pad = c.n_fft // 2
            x = paddle.nn.functional.pad(
                wav.astype('float32').unsqueeze(1), [pad, pad],
                mode='reflect', data_format='NCL').squeeze(1)
            frames = paddle.signal.frame(
                x, c.n_fft, c.hop_length, axis=-1)  # [B, n_fft, frames]
            frames = frames.transpose([0, 2, 1]).astype('float64') \
                * self.window
            spec = paddle.as_real(paddle.fft.rfft(frames, axis=-1))
            power = spec.square().sum(axis=-1).astype('float32')
            db = 10.0 * paddle.log10(paddle.clip(
                paddle.matmul(power, self.mel), min=c.amin))
            db = db - 10.0 * float(np.log10(max(c.amin, c.ref)))
            if c.top_db is not None:  # per clip, like librosa
                db = paddle.maximum(
                    db, db.max(axis=[1, 2], keepdim=True) - c.top_db)
            return db

    return PaddleLogMel()


FEAT_BACKENDS = ('numpy', 'paddle')


class FrontEnd:
    """The one place a log-mel back end is chosen, for training,
    prediction, deployment and export alike.

    ``numpy``: per clip where the audio is read (the data loader caches the
    result; :attr:`per_clip` is what a dataset applies), so batches arrive
    as log-mel. ``paddle``: batches arrive as waveforms and :meth:`batch`
    computes the log-mel on the model's device. Either way ``batch(x)``
    turns what the loader yields into model input, and :attr:`pad_value`
    is what the loader pads shorter clips with: digital silence in that
    domain.
    """

    def __init__(self, config: FeatureConfig, backend='numpy'):
        if backend not in FEAT_BACKENDS:
            raise ValueError(f'feat_backend must be one of {FEAT_BACKENDS}, '
                             f'got {backend!r}')
        self.config, self.backend = config, backend
        self.per_clip = NumpyLogMel(config) if backend == 'numpy' else None
        self.layer = paddle_logmel(config) if backend == 'paddle' else None

    @property
    def pad_value(self):
        return self.config.floor_db if self.per_clip is not None else 0.0

    def clip_length(self, seconds):
        """``seconds`` of audio as the loader yields it: log-mel frames, or
        waveform samples (at the feature sample rate)."""
        samples = int(round(seconds * self.config.sample_rate))
        return (self.config.num_frames(samples) if self.per_clip is not None
                else samples)

    def batch(self, x):
        """A loader batch (log-mel, or waveforms) -> log-mel tensor."""
        return x if self.layer is None else self.layer(x)

    def __call__(self, waves):
        """Equal-length waveforms -> ``[batch, frames, n_mels]`` tensor."""
        import paddle
        if self.layer is not None:
            return self.layer(paddle.to_tensor(np.stack(waves)))
        return paddle.to_tensor(self.numpy(waves))

    def numpy(self, waves):
        """Equal-length waveforms -> ``[batch, frames, n_mels]`` float32
        array, without Paddle (the numpy back end only)."""
        if self.per_clip is None:
            raise ValueError('FrontEnd.numpy needs the numpy back end')
        return np.stack([self.per_clip(w) for w in waves])
