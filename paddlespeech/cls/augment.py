"""Training-time augmentation of batched log-mel features.

Everything works on ``x = [batch, frames, n_mels]`` float log-mel in dB
(what the front end feeds the model, before ``bn0``) with Paddle ops on the
tensor's device, drawing from Paddle's generator, so ``paddle.seed`` and
the RNG state saved in checkpoints make runs and resumes reproducible.

Each random function also takes its random draws as optional arguments
and returns what it used, so tests (and logging) can check exact results.

Recipe choices (PANNs transfer: SpecAugment with 2 x 64 frames and
2 x 8 bins, mixup with alpha 1 per pair; both applied after ``bn0`` there):

* masks are filled with the clip's mean dB by default. PANNs masks with 0
  *after* ``bn0``, i.e. with the training mean; here the input is raw dB
  before ``bn0``, where 0 dB is a loud level and the -100 dB floor a
  digital silence that ``bn0`` maps to an extreme value. The clip mean is
  the per-clip stand-in for "0 after normalisation".
* mixup mixes dB values linearly; ``bn0`` is affine per bin, so this is the
  same as PANNs' mixup of normalised log-mel.
* time shift pads with the floor (ESC-50 clips are already zero-padded to
  5 s, so floor runs are in-distribution); ``roll`` is available.
* gain is +g dB on every bin above the floor (the log of a power gain),
  clamped at the floor; floor bins stay (silence scaled is silence).

The functions import Paddle when called, so that reading the ``augment:``
section (:class:`AugmentConfig`) with the rest of a configuration does
not.
"""
import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

from .features import FeatureConfig

FLOOR_DB = FeatureConfig().floor_db  # the default front end's silence


@dataclass
class AugmentConfig:
    """The ``augment:`` section; 0/None turns an augmentation off."""
    mixup_alpha: Optional[float] = None  # Beta(alpha, alpha); PANNs: 1.0
    mixup_per_sample: bool = False  # one lam per clip (PANNs: per pair)
    spec_time_masks: int = 0  # PANNs: 2 x 64 frames
    spec_time_width: int = 0
    spec_freq_masks: int = 0  # PANNs: 2 x 8 bins
    spec_freq_width: int = 0
    spec_fill: Union[str, float] = 'mean'  # 'mean' (per clip) or a dB value
    time_shift_frames: int = 0
    time_shift_mode: str = 'shift'  # or 'roll'
    gain_db: float = 0

    @classmethod
    def from_dict(cls, d):
        """ValueError naming unknown keys (a typo is never silently off)."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f'unknown augmentation settings {unknown}; '
                             f'known: {sorted(known)}')
        return cls(**d)

    @property
    def active(self):
        """Whether any augmentation is on (else training can keep the
        plain cross-entropy path)."""
        return bool(self.mixup_alpha or self.gain_db or
                    self.time_shift_frames or
                    (self.spec_time_masks and self.spec_time_width) or
                    (self.spec_freq_masks and self.spec_freq_width))


def _tensor(v, dtype):
    """``v`` as a tensor of ``dtype`` (tensors are cast, not copied)."""
    import paddle
    if isinstance(v, paddle.Tensor):
        return v.astype(dtype)
    return paddle.to_tensor(v, dtype=dtype)


def sample_beta(alpha, shape):
    """Beta(alpha, alpha) from two Gamma draws (Paddle's generator)."""
    import paddle
    a = paddle.standard_gamma(paddle.full(shape, float(alpha), 'float32'))
    b = paddle.standard_gamma(paddle.full(shape, float(alpha), 'float32'))
    s = a + b  # both can underflow to 0 for tiny alpha: fall back to 0.5
    return paddle.where(s > 0, a / paddle.where(s > 0, s, paddle.ones_like(s)),
                        paddle.full_like(s, 0.5))


def mixup(x, targets, alpha, per_sample=False, lam=None, perm=None):
    """Mix each clip with a random partner: returns ``(x_mix, targets_mix,
    lam, perm)`` with ``x_mix = lam*x + (1-lam)*x[perm]`` and the float
    ``[batch, num_class]`` targets mixed the same way (one-hot or multi-hot
    alike, :meth:`..task.Task.targets`); ``lam`` is ``[batch]`` (one value
    repeated when ``per_sample`` is False). ``alpha`` 0/None (and no ``lam``
    given) returns the input and the targets, ``lam`` = 1."""
    import paddle
    n = x.shape[0]
    if lam is None:
        if not alpha:
            return x, targets, paddle.ones([n]), paddle.arange(n)
        lam = sample_beta(alpha, [n] if per_sample else [1])
    lam = _tensor(lam, 'float32').reshape([-1]).expand([n])
    perm = paddle.randperm(n) if perm is None else _tensor(perm, 'int64')
    lx = lam.astype(x.dtype).reshape([n] + [1] * (x.ndim - 1))
    x_mix = lx * x + (1 - lx) * paddle.gather(x, perm)
    lt = lam.reshape([n, 1])
    targets = lt * targets + (1 - lt) * paddle.gather(targets, perm)
    return x_mix, targets, lam, perm


def _fill_value(x, fill):
    if isinstance(fill, str):
        if fill != 'mean':
            raise ValueError(f"fill must be 'mean' or a number, got {fill!r}")
        return x.mean(axis=[1, 2], keepdim=True)  # per clip
    return _tensor(fill, x.dtype)


def mask_stripes(x, axis, num_masks, max_width, fill='mean', starts=None,
                 widths=None):
    """SpecAugment masking along ``axis`` (1: frames, 2: mel bins).

    Per clip, ``num_masks`` stripes of width ~ U{0..max_width} (capped at
    the axis length) starting at ~ U{0..size-width}; masks may overlap.
    Returns ``(x_masked, starts, widths)``, both ``[batch, num_masks]``.
    """
    import paddle
    n, size = x.shape[0], x.shape[axis]
    if widths is None:
        widths = paddle.randint(0, min(max_width, size) + 1, [n, num_masks])
    widths = _tensor(widths, 'int64').reshape([n, -1])
    if starts is None:
        room = (size - widths + 1).astype('float32')
        starts = (paddle.rand(widths.shape) * room).floor().astype('int64')
    starts = _tensor(starts, 'int64').reshape([n, -1])
    pos = paddle.arange(size, dtype='int64').reshape([1, 1, size])
    lo, hi = starts.unsqueeze(-1), (starts + widths).unsqueeze(-1)
    hit = ((pos >= lo) & (pos < hi)).any(axis=1)  # [batch, size]
    hit = hit.unsqueeze(2 if axis == 1 else 1)
    fill = _fill_value(x, fill)
    return paddle.where(hit, fill.astype(x.dtype).expand_as(x), x), \
        starts, widths


def time_shift(x, max_frames, mode='shift', floor=FLOOR_DB, shifts=None):
    """Move each clip by k ~ U{-max_frames..max_frames} frames (k > 0:
    later). ``shift`` fills the vacated frames with ``floor``, ``roll``
    wraps around. Returns ``(x_shifted, shifts)``."""
    import paddle
    n, t = x.shape[0], x.shape[1]
    if shifts is None:
        shifts = paddle.randint(-max_frames, max_frames + 1, [n])
    shifts = _tensor(shifts, 'int64').reshape([n, 1])
    src = paddle.arange(t, dtype='int64').reshape([1, t]) - shifts
    if mode == 'roll':
        src = src % t  # floor modulo: -1 -> t - 1
    elif mode != 'shift':
        raise ValueError(f"time shift mode must be shift or roll, got "
                         f"{mode!r}")
    inside = (src >= 0) & (src < t)
    idx = src.clip(0, t - 1).unsqueeze(-1).expand(x.shape)
    out = paddle.take_along_axis(x, idx, axis=1)
    out = paddle.where(inside.unsqueeze(-1), out,
                       paddle.full_like(out, floor))
    return out, shifts.reshape([n])


def random_gain(x, max_db, floor=FLOOR_DB, gains=None):
    """Add g ~ U[-max_db, max_db] dB per clip to every bin above ``floor``
    (clamped at ``floor``); floor bins stay. Returns ``(x_gained, gains)``."""
    import paddle
    n = x.shape[0]
    if gains is None:
        gains = (paddle.rand([n]) * 2 - 1) * max_db
    gains = _tensor(gains, x.dtype).reshape([n, 1, 1])
    floor_t = paddle.full_like(x, floor)
    out = paddle.where(x > floor, paddle.maximum(x + gains, floor_t), x)
    return out, gains.reshape([n])


class Augmenter:
    """All augmentations, as an :class:`AugmentConfig` (or a dict of its
    keys) says.

    ``augmenter(x, targets, training=None) -> (x, targets)`` with float
    ``[batch, num_class]`` targets; ``training`` None follows
    ``train()``/``eval()`` (training at first, as a Paddle layer; pass
    ``training=model.training`` from the loop). Not training: both
    unchanged. ``floor_db`` is the front end's silence
    (:attr:`FeatureConfig.floor_db`), where time shift pads and gain
    stops. Order as in PANNs (SpecAugment, then mixup), with gain and
    shift first so the mask fill sees the final level. What was drawn is
    kept in ``self.last`` (for logging/tests).
    """

    def __init__(self, config=None, floor_db=FLOOR_DB):
        if not isinstance(config, AugmentConfig):
            config = AugmentConfig.from_dict(dict(config or {}))
        self.config = config
        self.floor_db = floor_db
        self.training = True
        self.last = {}

    def train(self):
        self.training = True

    def eval(self):
        self.training = False

    @property
    def active(self):
        return self.config.active

    def __call__(self, x, targets, training=None):
        c = self.config
        training = self.training if training is None else training
        self.last = {}
        if not training:
            return x, targets
        if c.gain_db:
            x, self.last['gains'] = random_gain(x, c.gain_db, self.floor_db)
        if c.time_shift_frames:
            x, self.last['shifts'] = time_shift(
                x, c.time_shift_frames, c.time_shift_mode, self.floor_db)
        fill = c.spec_fill
        if c.spec_time_masks or c.spec_freq_masks:
            fill = _fill_value(x, fill)  # one fill for both kinds of mask
        for axis, m, w, kind in (
                (1, c.spec_time_masks, c.spec_time_width, 'time'),
                (2, c.spec_freq_masks, c.spec_freq_width, 'freq')):
            if m and w:
                x, s, wd = mask_stripes(x, axis, m, w, fill)
                self.last[f'{kind}_masks'] = (s, wd)
        x, targets, lam, perm = mixup(x, targets, c.mixup_alpha,
                                      c.mixup_per_sample)
        if c.mixup_alpha:
            self.last['lam'], self.last['perm'] = lam, perm
        return x, targets
