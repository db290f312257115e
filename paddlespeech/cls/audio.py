"""Reading audio files into the mono float32 waveform the models expect."""
import numpy as np
import soundfile as sf

from .errors import UserError

AUDIO_SUFFIXES = {'.wav', '.flac', '.ogg', '.mp3', '.aiff', '.aif', '.au'}


class AudioError(UserError):
    """A file that cannot be used as input; the message names file and reason."""


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
    try:
        wav, sr = sf.read(str(path), dtype='float32', always_2d=True)
    except Exception as e:  # soundfile raises several types for bad files
        raise AudioError(f'{path}: cannot read audio ({_reason(e)})') from e
    if wav.shape[0] == 0:
        raise AudioError(f'{path}: contains no samples')
    if not np.isfinite(wav).all():
        raise AudioError(f'{path}: contains NaN or infinite samples')
    wav = resample(to_mono(wav), sr, sample_rate)
    if len(wav) < min_samples:
        wav = np.pad(wav, (0, min_samples - len(wav)))
    return np.ascontiguousarray(wav, dtype=np.float32)


def _reason(e):
    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    return msg.replace(str(e.filename) + ': ', '') if getattr(
        e, 'filename', None) else msg
