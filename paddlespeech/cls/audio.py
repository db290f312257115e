"""Reading audio files into the mono float32 waveform the models expect."""
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import UserError

AUDIO_SUFFIXES = {'.wav', '.flac', '.ogg', '.mp3', '.aiff', '.aif', '.au'}


class AudioError(UserError):
    """A file that cannot be used as input; the message names file and reason."""

    def __init__(self, path, reason):
        super().__init__(f'{path}: {reason}')
        self.path, self.reason = path, reason


def to_mono(wav):
    """``[samples, channels]`` or ``[samples]`` -> ``[samples]`` by averaging."""
    return wav.mean(axis=1) if wav.ndim == 2 else wav


def resample(wav, orig_sr, target_sr):
    """Band-limited resampling (soxr, 'HQ'); identity when the rates match."""
    if orig_sr == target_sr:
        return wav
    import soxr
    return soxr.resample(wav, orig_sr, target_sr, quality='HQ').astype(
        np.float32)


def load_audio(path, sample_rate, min_samples=0):
    """Read ``path``, mix down to mono, resample to ``sample_rate``.

    Clips shorter than ``min_samples`` (e.g. one FFT window) are zero-padded
    at the end. Raises :class:`AudioError` for unreadable files and for
    non-finite samples, which would otherwise become NaN scores.
    """
    with _open(path) as f:
        wav, orig_sr = _read(f, path), f.samplerate
    return _prepare(wav, orig_sr, sample_rate, min_samples, path)


def read_windows(path, sample_rate, window_seconds, min_samples=0):
    """Yield ``path`` as consecutive windows of ``window_seconds``.

    Each window is read and processed as :func:`load_audio` processes a
    whole clip, so memory does not grow with the file's length and a clip
    no longer than one window gives exactly :func:`load_audio`'s result.
    Only the last window may be shorter.
    """
    with _open(path) as f:
        frames = max(1, int(round(window_seconds * f.samplerate)))
        while True:
            wav = _read(f, path, frames, first=f.tell() == 0)
            if wav.shape[0] == 0:
                return
            yield _prepare(wav, f.samplerate, sample_rate, min_samples, path)


def probe_audio(path):
    """Cheap check that ``path`` opens and has samples; raises AudioError.

    Reads the header only: catches missing, empty, non-audio and
    zero-length files, not bad samples further in.
    """
    with _open(path) as f:
        if f.frames == 0:
            raise AudioError(path, 'contains no samples')


def _open(path):
    """An open ``sf.SoundFile``, or an AudioError that says why not."""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise AudioError(path, f'dangling symbolic link (to '
                         f'{os.readlink(p)})')
    if not p.exists():
        raise AudioError(path, 'no such file')
    if p.is_dir():
        raise AudioError(path, 'is a directory, not an audio file')
    if p.stat().st_size == 0:
        raise AudioError(path, 'empty file (0 bytes)')
    try:
        return sf.SoundFile(str(path))
    except Exception as e:  # soundfile raises several types for bad files
        raise AudioError(path, f'cannot read audio ({_reason(e)})') from e


def _read(f, path, frames=-1, first=True):
    try:
        wav = f.read(frames, dtype='float32', always_2d=True)
    except Exception as e:
        raise AudioError(path, f'cannot read audio ({_reason(e)})') from e
    if first and wav.shape[0] == 0:
        raise AudioError(path, 'contains no samples')
    return wav


def _prepare(wav, orig_sr, sample_rate, min_samples, path):
    if not np.isfinite(wav).all():
        raise AudioError(path, 'contains NaN or infinite samples')
    wav = resample(to_mono(wav), orig_sr, sample_rate)
    if len(wav) < min_samples:
        wav = np.pad(wav, (0, min_samples - len(wav)))
    return np.ascontiguousarray(wav, dtype=np.float32)


def _reason(e):
    """libsndfile's own reason, without the path the caller prints anyway."""
    text = getattr(e, 'error_string', None) or str(e).strip()
    return text.splitlines()[-1].rstrip('.') if text else type(e).__name__
