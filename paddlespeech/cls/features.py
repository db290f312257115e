"""The log-mel front end: one configuration, two interchangeable back ends.

``FeatureConfig`` is the contract between training, prediction and
deployment: it is stored in every checkpoint and exported model, and
every script builds its front end from the stored copy.

* ``numpy`` back end: per clip, in the data loader (librosa-compatible).
* ``paddle`` back end: batched tensor ops on the model's device, and the
  front end that can be exported inside a static graph.

Both reproduce the front end the PANNs weights were trained with
(torchlibrosa): centred STFT with reflect padding, periodic Hann window,
power spectrum, Slaney mel filters, ``10*log10(max(x, amin))`` with
``ref=1`` and no ``top_db`` clipping.
"""
import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 32000
    n_fft: int = 1024
    hop_length: int = 320
    win_length: int = 1024
    window: str = 'hann'
    f_min: float = 50.0
    f_max: float = 14000.0
    n_mels: int = 64
    ref: float = 1.0
    amin: float = 1e-10
    top_db: float = None

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

    def num_frames(self, num_samples):
        return 1 + num_samples // self.hop_length

    def mel_filters(self):
        """Slaney-normalised mel filter bank, ``[n_fft // 2 + 1, n_mels]``."""
        import librosa
        return librosa.filters.mel(
            sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels,
            fmin=self.f_min, fmax=self.f_max, htk=False,
            norm='slaney').T.astype(np.float32)

    def window_array(self):
        """Periodic window of ``win_length`` zero-padded to ``n_fft``."""
        from scipy.signal import get_window
        win = get_window(self.window, self.win_length, fftbins=True)
        pad = self.n_fft - self.win_length
        return np.pad(win, (pad // 2, pad - pad // 2)).astype(np.float32)


class NumpyLogMel:
    """Log-mel of one clip, ``[samples] -> [frames, n_mels]`` (float32)."""

    def __init__(self, config: FeatureConfig):
        self.config = config
        self.window = config.window_array().astype(np.float64)
        self.mel = config.mel_filters().astype(np.float64)

    def __call__(self, wav):
        c = self.config
        pad = c.n_fft // 2
        x = np.pad(wav.astype(np.float64), pad, mode='reflect')
        frames = np.lib.stride_tricks.sliding_window_view(
            x, c.n_fft)[::c.hop_length]
        spec = np.fft.rfft(frames * self.window, axis=-1)
        power = spec.real**2 + spec.imag**2
        return _power_to_db(power @ self.mel, c, np).astype(np.float32)


def _power_to_db(mel_power, c, xp):
    db = 10.0 * xp.log10(xp.maximum(mel_power, c.amin))
    db = db - 10.0 * np.log10(max(c.amin, c.ref))
    if c.top_db is not None:
        db = xp.maximum(db, db.max() - c.top_db)
    return db


def paddle_logmel(config: FeatureConfig):
    """A ``paddle.nn.Layer``: ``[batch, samples] -> [batch, frames, n_mels]``.

    Framing is a strided view, the DFT is ``paddle.fft.rfft``; everything
    is a plain tensor op, so the layer runs batched on the model's device
    and exports inside a static graph.
    """
    import paddle
    import paddle.nn as nn

    class PaddleLogMel(nn.Layer):

        def __init__(self):
            super().__init__()
            self.config = config
            self.register_buffer(
                'window', paddle.to_tensor(config.window_array()),
                persistable=False)
            self.register_buffer(
                'mel', paddle.to_tensor(config.mel_filters()),
                persistable=False)

        def forward(self, wav):
            c = self.config
            pad = c.n_fft // 2
            x = paddle.nn.functional.pad(
                wav.unsqueeze(1), [pad, pad], mode='reflect',
                data_format='NCL').squeeze(1)
            frames = paddle.signal.frame(
                x, c.n_fft, c.hop_length, axis=-1)  # [B, n_fft, frames]
            frames = frames.transpose([0, 2, 1]) * self.window
            spec = paddle.fft.rfft(frames, axis=-1)
            power = spec.real()**2 + spec.imag()**2
            db = 10.0 * paddle.log10(paddle.clip(
                paddle.matmul(power, self.mel), min=c.amin))
            db = db - 10.0 * float(np.log10(max(c.amin, c.ref)))
            if c.top_db is not None:
                db = paddle.maximum(db, db.max() - c.top_db)
            return db

    return PaddleLogMel()
