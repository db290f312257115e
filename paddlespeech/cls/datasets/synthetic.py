"""Synthesise a small dataset in ESC-50 layout (audio/*.wav, meta/esc50.csv),
or the same clips as a folder per class or a manifest (``--layout``).

Each class is a clearly different kind of sound (tones, noise, chirps,
clicks ...) with random pitch, level, timing and background noise, so a
CNN trained from scratch can learn it in a minute while the pipeline sees
exactly what it sees on ESC-50: 44.1 kHz 16-bit wav files in 5 folds.

``--mixtures_per_fold N`` adds N clips per fold that mix two classes and
are listed on two rows (one per label), which makes a multi-label set.
Stage 0 generates the demo set with it (``dataset: synthetic``); tests and
benchmarks make their data with :func:`generate`; the command line is
``exps/panns/synth.py`` (``paddlespeech-cls synth``).
"""
import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import UserError


def _envelope(n, rng):
    start = rng.integers(0, n // 4)
    length = rng.integers(n // 2, n - start + 1)
    env = np.zeros(n)
    ramp = min(200, length // 4)
    env[start:start + length] = 1.0
    env[start:start + ramp] = np.linspace(0, 1, ramp)
    env[start + length - ramp:start + length] = np.linspace(1, 0, ramp)
    return env


def low_hum(t, rng):
    f = rng.uniform(100, 220)
    return sum(np.sin(2 * np.pi * k * f * t) / k for k in (1, 2, 3))


def high_beeps(t, rng):
    f = rng.uniform(2500, 4000)
    gate = (np.sin(2 * np.pi * rng.uniform(4, 8) * t) > 0).astype(float)
    return np.sin(2 * np.pi * f * t) * gate


def white_noise(t, rng):
    return rng.standard_normal(len(t)) * 0.5


def up_chirp(t, rng):
    f0, f1 = rng.uniform(200, 500), rng.uniform(5000, 8000)
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1]))
    return np.sin(phase)


def clicks(t, rng):
    x = np.zeros(len(t))
    period = int(len(t) / rng.uniform(8, 16))
    x[::period] = 1.0
    return np.convolve(x, np.hanning(32), mode='same') * 2


def lowpass_rumble(t, rng):
    noise = rng.standard_normal(len(t))
    k = int(rng.integers(60, 120))
    return np.convolve(noise, np.ones(k) / np.sqrt(k), mode='same') * 0.3


def background(t, rng):
    """No sound: the clip is the noise floor :func:`make_clip` adds. For
    event detection, where a model must learn what "nothing" sounds like;
    never part of a mixture."""
    return np.zeros(len(t))


CLASSES = [('low_hum', low_hum), ('high_beeps', high_beeps),
           ('white_noise', white_noise), ('up_chirp', up_chirp),
           ('clicks', clicks), ('rumble', lowpass_rumble),
           ('background', background)]


def make_clip(kind, seconds, sample_rate, rng):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = kind(t, rng) * _envelope(len(t), rng)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.2, 0.8)
    x += rng.standard_normal(len(t)) * rng.uniform(0.001, 0.01)
    return np.clip(x, -1, 1)


def make_mixture(kinds, seconds, sample_rate, rng):
    """The sum of one clip of each kind, at a clip's level."""
    x = sum(make_clip(k, seconds, sample_rate, rng) for k in kinds)
    return x / (np.abs(x).max() + 1e-9) * rng.uniform(0.2, 0.8)


LAYOUTS = ('esc50', 'folder', 'manifest')

# A timeline for sound-event detection: (onset, offset, class) in seconds,
# with silences, single events and two pairs of overlapping classes.
DEMO_EVENTS = [(1.0, 4.0, 'low_hum'), (3.0, 6.0, 'high_beeps'),
               (7.5, 10.0, 'white_noise'), (12.0, 16.0, 'low_hum'),
               (13.0, 15.0, 'high_beeps'), (17.0, 19.0, 'white_noise')]


def long_recording(path, events=None, seconds=None, sample_rate=44100,
                   seed=0, block_seconds=10.0):
    """Write a recording with sounds of the demo classes at known times;
    returns its events ``[(onset, offset, class name)]``, sorted.

    ``events`` (default :data:`DEMO_EVENTS`) is one period of the
    timeline; ``seconds`` longer than it (last offset + 1 s) repeats the
    period until then. Each event is its class's sound at a steady level
    with 10 ms ramps, over faint background noise. Written in blocks of
    ``block_seconds`` (16-bit PCM), so an hour never sits in memory.
    """
    pattern = sorted(events or DEMO_EVENTS)
    kinds = dict(CLASSES)
    unknown = sorted({e[2] for e in pattern} - set(kinds))
    if unknown:
        raise UserError(f'unknown classes {unknown}; known: {sorted(kinds)}')
    period = max(e[1] for e in pattern) + 1.0
    seconds = period if seconds is None else float(seconds)
    timeline = [(on + k * period, off + k * period, name)
                for k in range(int(np.ceil(seconds / period)))
                for on, off, name in pattern if on + k * period < seconds]
    timeline = [(on, min(off, seconds), name) for on, off, name in timeline]
    rng = np.random.default_rng(seed)
    total, block = int(seconds * sample_rate), int(block_seconds * sample_rate)
    sounds = {}  # index -> (start sample, waveform), while it is playing
    with sf.SoundFile(str(path), 'w', sample_rate, 1, 'PCM_16') as f:
        for start in range(0, total, block):
            end = min(total, start + block)
            x = rng.standard_normal(end - start) * 0.003
            for i, (on, off, name) in enumerate(timeline):
                a, b = int(on * sample_rate), int(off * sample_rate)
                if b <= start or a >= end:
                    sounds.pop(i, None)
                    continue
                if i not in sounds:
                    sounds[i] = (a, _event_sound(kinds[name], b - a,
                                                 sample_rate, rng))
                s0, wav = sounds[i]
                lo, hi = max(a, start), min(b, end)
                x[lo - start:hi - start] += wav[lo - s0:hi - s0]
            f.write(np.clip(x, -1, 1))
    return timeline


def write_long_recording(path, seconds=60.0, sample_rate=44100, seed=0):
    """:func:`long_recording` plus ``<path>.truth.csv`` (onset, offset and
    label as a model trained on the generated data names it)."""
    from .. import atomic
    from .esc50 import display_name
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    events = long_recording(path, seconds=seconds, sample_rate=sample_rate,
                            seed=seed)
    atomic.write_text(f'{path}.truth.csv', 'onset,offset,label\n' + ''.join(
        f'{on:.3f},{off:.3f},{display_name(name)}\n'
        for on, off, name in events))
    return events


def _event_sound(kind, n, sample_rate, rng):
    t = np.arange(n) / sample_rate
    x = kind(t, rng)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.3, 0.6)
    ramp = min(n // 2, int(0.01 * sample_rate))
    x[:ramp] *= np.linspace(0, 1, ramp)
    x[n - ramp:] *= np.linspace(1, 0, ramp)
    return x


def generate(out_dir, classes=6, clips_per_fold=3, folds=5, seconds=1.0,
             sample_rate=44100, seed=0, mixtures_per_fold=0, layout='esc50'):
    """Write the dataset; returns the dataset root. ``mixtures_per_fold``
    two-class mixtures per fold, drawn from their own random stream so
    the single-class clips stay the same. ``layout``: ``esc50``
    (``audio/`` and ``meta/esc50.csv``), ``folder`` (``<class>/<file>``,
    no folds: training assigns them) or ``manifest`` (``<class>/<file>``
    and ``metadata.csv`` with ``file_name,label,fold``, a mixture on two
    rows); the same clips in each. ``classes``: the first N of
    :data:`CLASSES`, or a list of their names."""
    chosen = _choose(classes)
    mixable = [t for t, (name, _) in enumerate(chosen)
               if name != 'background']
    if mixtures_per_fold and len(mixable) < 2:
        raise UserError('mixtures need at least 2 classes (besides '
                        'background)')
    if layout not in LAYOUTS:
        raise UserError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    if mixtures_per_fold and layout == 'folder':
        raise UserError('mixtures (multi-label clips) need the esc50 or '
                        'manifest layout')
    rng = np.random.default_rng(seed)
    mix_rng = np.random.default_rng([seed, 1])
    root = Path(out_dir)
    clips = []  # (file name, fold, targets, waveform)
    for fold in range(1, folds + 1):
        for target, (name, kind) in enumerate(chosen):
            for take in range(clips_per_fold):
                clip_id = 1000 * fold + 10 * target + take
                fname = f'{fold}-{clip_id}-{chr(65 + take)}-{target}.wav'
                clips.append((fname, fold, [target],
                              make_clip(kind, seconds, sample_rate, rng)))
        for take in range(mixtures_per_fold):
            pair = sorted(int(t) for t in
                          mix_rng.choice(mixable, 2, replace=False))
            clip_id = 1000 * fold + 900 + take
            fname = f'{fold}-{clip_id}-M-{pair[0]}-{pair[1]}.wav'
            clips.append((fname, fold, pair, make_mixture(
                [chosen[t][1] for t in pair], seconds, sample_rate,
                mix_rng)))
    rows = []
    for fname, fold, targets, x in clips:
        rel = (f'audio/{fname}' if layout == 'esc50' else
               f'{chosen[targets[0]][0]}/{fname}')
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, x, sample_rate, subtype='PCM_16')
        take = fname.split('-')[2]
        rows += [[fname, fold, t, chosen[t][0], 'False',
                  fname.split('-')[1], take] if layout == 'esc50' else
                 [rel, chosen[t][0], fold] for t in targets]
    if layout == 'folder':
        return root
    header = (['filename', 'fold', 'target', 'category', 'esc10', 'src_file',
               'take'] if layout == 'esc50' else ['file_name', 'label',
                                                  'fold'])
    meta = root / ('meta/esc50.csv' if layout == 'esc50' else
                   'metadata.csv')
    meta.parent.mkdir(parents=True, exist_ok=True)
    with open(meta, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return root


def _choose(classes):
    """``[(name, sound)]`` of ``classes`` (a count or a list of names)."""
    if isinstance(classes, int):
        if not 1 <= classes <= len(CLASSES):
            raise UserError(f'classes must be 1..{len(CLASSES)}, got '
                            f'{classes}')
        return CLASSES[:classes]
    kinds = dict(CLASSES)
    unknown = sorted(set(classes) - set(kinds))
    if unknown:
        raise UserError(f'unknown classes {unknown}; known: '
                        f'{[n for n, _ in CLASSES]}')
    return [(n, kinds[n]) for n in classes]
